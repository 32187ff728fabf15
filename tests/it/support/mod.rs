//! Fixtures for the integration tests: a fake OAuth 2.0 token endpoint
//! ([`TokenServer`]), a fake upstream API ([`Upstream`]), and small plain-HTTP
//! client helpers to talk to them or to the proxy.
//!
//! Both servers are real hyper servers on `127.0.0.1:0` that stop accepting,
//! and drop their open connections, when the fixture value is dropped.

#![allow(dead_code)]

pub mod h2;
pub mod token_server;
pub mod upstream;

#[allow(unused_imports)] // which ones a test binary uses varies
pub use token_server::{ExpiresIn, Fault, TokenCheck, TokenRegistry, TokenRequest, TokenServer};
#[allow(unused_imports)]
pub use upstream::{Digest, Seen, Upstream, digest, pattern, pattern_digest, pattern_slice};

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Response body type of the fixture servers.
pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// Error type of [`try_http_request`].
pub type BoxError = Box<dyn Error + Send + Sync>;

/// How long [`raw_request`] waits for the peer to close the connection.
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// A hyper server on `127.0.0.1:0` (HTTP/1.1 with keep-alive, or h2c with
/// prior knowledge), one task per connection. Dropping it aborts the accept
/// task, which drops the listener and aborts every connection task.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<RespBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Locks a fixture mutex, ignoring poisoning (a panicking test thread must
/// not take every later assertion down with it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A header value as a string, whatever bytes the peer sent.
pub(crate) fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// A response with a complete body.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `GET url` over plain HTTP; panics if the exchange fails.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    http_request(Method::GET, url, headers, Bytes::new()).await
}

/// One request over plain HTTP/1.1 (`method` is a `Method` or a `&str`);
/// panics if the exchange fails.
pub async fn http_request<M>(
    method: M,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes)
where
    M: TryInto<Method>,
    M::Error: std::fmt::Debug,
{
    let method = method.try_into().expect("valid HTTP method");
    match try_http_request(method.clone(), url, headers, body).await {
        Ok(response) => response,
        Err(e) => panic!("{method} {url} failed: {e}"),
    }
}

/// Like [`http_request`], but returns connection and protocol errors.
pub async fn try_http_request<M>(
    method: M,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), BoxError>
where
    M: TryInto<Method>,
    M::Error: std::fmt::Debug,
{
    let method = method.try_into().expect("valid HTTP method");
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// `GET url`, returning the response with its body still to be read.
pub async fn client_get(url: &str, headers: &[(&str, &str)]) -> hyper::Response<hyper::body::Incoming> {
    let mut request = Request::builder().method(Method::GET).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("a valid request");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// Writes `raw` on a new TCP connection to `addr` and returns everything read
/// back until the peer closes the connection or 5 s have passed (so send
/// `Connection: close` unless the wait is the point). For request targets and
/// framing that HTTP clients would normalise or refuse.
pub async fn raw_request(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The peer may answer and close before reading everything; still read.
    let _ = stream.write_all(raw).await;
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(RAW_TIMEOUT, read_all).await;
    String::from_utf8_lossy(&received).into_owned()
}

#[cfg(test)]
mod fixture_smoke {
    use super::*;

    fn json(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    async fn post_form(
        server: &TokenServer,
        headers: &[(&str, &str)],
        form: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        http_request("POST", &server.url(), &all, Bytes::from(form.to_owned())).await
    }

    #[tokio::test]
    async fn token_server_issues_and_records() {
        let server = TokenServer::start().await;
        assert!(server.url().starts_with("http://127.0.0.1:"));
        assert!(server.url().ends_with("/token"));

        let (status, headers, body) = post_form(
            &server,
            &[("authorization", "Basic bXklMjBpZDpzJTNBZWNyZXQ=")],
            "grant_type=client_credentials&scope=read+write%21",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let body = json(&body);
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("tok-1-"), "{token}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read write!");

        let req = server.last_request().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/token");
        assert_eq!(
            req.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            req.authorization.as_deref(),
            Some("Basic bXklMjBpZDpzJTNBZWNyZXQ=")
        );
        assert_eq!(req.basic_auth_raw(), Some(("my%20id".into(), "s%3Aecret".into())));
        assert_eq!(req.basic_auth(), Some(("my id".into(), "s:ecret".into())));
        assert_eq!(req.raw_body, "grant_type=client_credentials&scope=read+write%21");
        assert_eq!(
            req.form,
            vec![
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("scope".to_owned(), "read write!".to_owned()),
            ]
        );
        assert_eq!(
            TokenServer::form_value(&req, "grant_type").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(req.form_value("client_id"), None);

        server.set_expires_in(ExpiresIn::Str("60".into()));
        let (_, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        let body = json(&body);
        assert_eq!(body["expires_in"], "60");
        assert!(body.get("scope").is_none());

        server.set_expires_in(ExpiresIn::Absent);
        let (_, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert!(json(&body).get("expires_in").is_none());

        server.set_expires_in(ExpiresIn::Number(0));
        let (_, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        let expired = json(&body)["access_token"].as_str().unwrap().to_owned();

        let issued = server.issued();
        assert_eq!(issued.len(), 4);
        assert_eq!(issued[0], token);
        assert!(issued[3].starts_with("tok-4-"));
        let registry = server.registry();
        assert_eq!(registry.check(&issued[0]), TokenCheck::Valid);
        assert_eq!(registry.check(&issued[2]), TokenCheck::Valid);
        assert_eq!(registry.check(&expired), TokenCheck::Expired);
        assert_eq!(registry.check("tok-nope"), TokenCheck::Unknown);
        assert!(registry.expire(&issued[0]));
        assert_eq!(registry.check(&issued[0]), TokenCheck::Expired);
        assert_eq!(server.requests(), 4);
        assert_eq!(server.requests_log().len(), 4);
    }

    #[tokio::test]
    async fn token_server_faults_and_routing() {
        let server = TokenServer::start().await;

        let (status, headers, _) = http_get(&server.url(), &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "POST");
        let other = server.url().replace("/token", "/other");
        let (status, _, _) = http_request("POST", &other, &[], Bytes::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        server.set_fault(Fault::Html);
        let (status, headers, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html");
        assert_eq!(body, "<html>oops</html>");

        server.set_fault(Fault::OAuthError {
            error: "invalid_client".into(),
            description: "bad secret".into(),
        });
        let (status, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body = json(&body);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "bad secret");

        server.set_fault(Fault::Status(503));
        let (status, _, _) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        server.set_fault(Fault::Garbage);
        let (status, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(status, StatusCode::OK);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());

        server.set_fault(Fault::TokenTypeMac);
        let (_, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(json(&body)["token_type"], "mac");

        server.set_fault(Fault::Delay(Duration::from_millis(50)));
        let (status, _, body) = post_form(&server, &[], "grant_type=client_credentials").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json(&body)["token_type"], "Bearer");

        assert_eq!(server.issued().len(), 2);
        assert_eq!(server.requests(), 8);
        assert_eq!(server.max_in_flight(), 1);
    }

    #[tokio::test]
    async fn token_server_counts_concurrent_requests() {
        let server = TokenServer::start().await;
        server.set_delay(Duration::from_millis(300));
        let url = server.url();
        let mut tasks = JoinSet::new();
        for _ in 0..3 {
            let url = url.clone();
            tasks.spawn(async move {
                http_request(
                    "POST",
                    &url,
                    &[],
                    Bytes::from_static(b"grant_type=client_credentials"),
                )
                .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().0, StatusCode::OK);
        }
        assert_eq!(server.max_in_flight(), 3);
        assert_eq!(server.issued().len(), 3);
    }

    #[tokio::test]
    async fn upstream_echoes_and_records() {
        let upstream = Upstream::start().await;
        let body = Bytes::from(vec![7u8; 100_000]);
        let (status, headers, response) = http_request(
            "PUT",
            &format!("{}/v1/things?a=1&b=%20", upstream.url()),
            &[("authorization", "Bearer abc"), ("x-custom", "yes")],
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-upstream"], "1");
        let echo = json(&response);
        assert_eq!(echo["method"], "PUT");
        assert_eq!(echo["target"], "/v1/things?a=1&b=%20");
        assert_eq!(echo["body_len"], 100_000);
        assert_eq!(echo["body_digest"], format!("{:016x}", digest(&body)));
        assert_eq!(echo["authorization"], "Bearer abc");

        let seen = upstream.last().unwrap();
        assert_eq!(seen.method, "PUT");
        assert_eq!(seen.headers["x-custom"], "yes");
        assert_eq!(seen.body_len, 100_000);
        assert_eq!(seen.body_digest, digest(&body));
        assert_eq!(seen.version, http::Version::HTTP_11);

        let (_, _, response) = http_get(&upstream.url(), &[]).await;
        assert_eq!(json(&response)["authorization"], serde_json::Value::Null);
        assert_eq!(upstream.requests(), 2);
        assert_eq!(upstream.seen().len(), 2);

        let (status, headers, _) = http_get(&format!("{}/redirect", upstream.url()), &[]).await;
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(headers[header::LOCATION], "http://elsewhere.example/");
    }

    #[tokio::test]
    async fn upstream_streams_pattern() {
        let upstream = Upstream::start().await;
        for n in [0u64, 1, 250, 251, 65_536, 1_000_003] {
            let (status, headers, body) = http_get(&format!("{}/stream/{n}", upstream.url()), &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_LENGTH], n.to_string().as_str());
            assert_eq!(body.len() as u64, n);
            assert_eq!(digest(&body), pattern_digest(n));
        }
        let (_, _, body) = http_get(&format!("{}/stream/300", upstream.url()), &[]).await;
        assert_eq!(body, pattern(300));
        assert_eq!(body[251], 0);
        let (status, _, _) = http_get(&format!("{}/stream/x", upstream.url()), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn upstream_digest_is_incremental() {
        let data = pattern(10_000);
        let mut d = Digest::new();
        for chunk in data.chunks(333) {
            d.update(chunk);
        }
        assert_eq!(d.finish(), digest(&data));
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[tokio::test]
    async fn upstream_large_upload() {
        let upstream = Upstream::start().await;
        let body = Bytes::from(pattern(8 << 20));
        let (status, _, _) =
            http_request("POST", &format!("{}/upload", upstream.url()), &[], body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        let seen = upstream.last().unwrap();
        assert_eq!(seen.body_len, 8 << 20);
        assert_eq!(seen.body_digest, pattern_digest(8 << 20));
    }

    #[tokio::test]
    async fn upstream_token_checks() {
        let tokens = TokenServer::start().await;
        let upstream = Upstream::start_checking(tokens.registry()).await;
        let fetch = || async {
            let (_, _, body) = post_form(&tokens, &[], "grant_type=client_credentials").await;
            json(&body)["access_token"].as_str().unwrap().to_owned()
        };
        let get = |token: String| {
            let url = format!("{}/x", upstream.url());
            async move { http_get(&url, &[("authorization", &format!("Bearer {token}"))]).await }
        };

        let good = fetch().await;
        assert_eq!(get(good.clone()).await.0, StatusCode::OK);

        let (status, headers, _) = get("tok-unknown".into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        let (status, headers, _) = http_get(&upstream.url(), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

        tokens.set_expires_in(ExpiresIn::Number(0));
        let expired = fetch().await;
        assert_eq!(get(expired).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(upstream.expired_seen(), 1);

        upstream.reject_token(&good);
        let (status, headers, _) = get(good.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        upstream.status_for_token(&good, 403);
        assert_eq!(get(good.clone()).await.0, StatusCode::FORBIDDEN);
        assert_eq!(upstream.requests(), 6);

        let open = Upstream::start().await;
        open.status_for_token("t1", 500);
        let url = open.url();
        assert_eq!(
            http_get(&url, &[("authorization", "Bearer t1")]).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            http_get(&url, &[("authorization", "bearer t2")]).await.0,
            StatusCode::OK
        );
        assert_eq!(http_get(&url, &[]).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn upstream_sees_raw_targets() {
        let upstream = Upstream::start().await;
        let response = raw_request(
            upstream.addr(),
            b"GET /a%2Fb?x=%20y&z HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains(r#""target":"/a%2Fb?x=%20y&z""#), "{response}");
        assert_eq!(upstream.last().unwrap().target, "/a%2Fb?x=%20y&z");

        raw_request(
            upstream.addr(),
            b"GET /a/../b HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(upstream.last().unwrap().target, "/a/../b");

        raw_request(
            upstream.addr(),
            b"GET http://evil/x?y HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(upstream.last().unwrap().target, "http://evil/x?y");
        assert_eq!(upstream.requests(), 3);

        // Malformed input gets an error response, not a panic.
        let response = raw_request(
            upstream.addr(),
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    }

    #[tokio::test]
    async fn upstream_counts_broken_uploads() {
        let upstream = Upstream::start().await;
        let response = raw_request(
            upstream.addr(),
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nnot-hex\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert_eq!(upstream.incomplete(), 1);
        assert_eq!(upstream.requests(), 0);
    }

    #[tokio::test]
    async fn upstream_delay_and_keep_alive() {
        let upstream = Upstream::start().await;
        upstream.set_delay(Duration::from_millis(100));
        let started = tokio::time::Instant::now();
        let response = raw_request(
            upstream.addr(),
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
        let targets: Vec<_> = upstream.seen().into_iter().map(|s| s.target).collect();
        assert_eq!(targets, ["/1", "/2"]);
    }

    #[tokio::test]
    async fn upstream_accepts_h2c() {
        let upstream = Upstream::start().await;
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let request = Request::get(format!("{}/h2?q=%41", upstream.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let seen = upstream.last().unwrap();
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(seen.target, "/h2?q=%41");
    }

    #[tokio::test]
    async fn servers_shut_down_on_drop() {
        let upstream = Upstream::start().await;
        let addr = upstream.addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        open.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        assert!(open.read(&mut buf).await.unwrap() > 0);
        drop(upstream);

        // The kept-alive connection is closed...
        let eof = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match open.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        assert!(eof.await.is_ok(), "connection left open");
        // ...and the listener is gone.
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        });
        assert!(refused.await.is_ok(), "still accepting");

        let tokens = TokenServer::start().await;
        let addr = tokens.addr();
        drop(tokens);
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        });
        assert!(refused.await.is_ok(), "still accepting");
    }
}
