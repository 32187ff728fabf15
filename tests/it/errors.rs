//! Callout's own errors (RFC 9457 problem+json with `x-callout-error`), one test per code,
//! none of them ever showing a secret or a token; and the admin endpoints.
//!
//! Every token failure gets a fresh callout: after a failed token request callout backs
//! off, and a later case would see the earlier failure instead of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::harness::Callout;
use crate::routing::raw;
use crate::support::{Fault, TokenServer, Upstream, http_get, http_request};

const SECRETS: [&str; 2] = ["admin-secret-value", "reader-secret-value"];

/// Generous bound for one exchange; the timeouts under test are 300 ms.
const EXCHANGE: Duration = Duration::from_secs(5);

/// One named credential `Api` → `{upstream_url}/base` through external credential `Idp`
/// at `token_url`, principals `Admin` (1: `Admin_Set`) and `Reader` (2: `Read_Set`,
/// `Admin_Set`).
pub(crate) fn config(token_url: &str, upstream_url: &str, server: &str, ec: &str, named: &str) -> String {
    format!(
        r#"
[server]
{server}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token_url}"
{ec}

[[external_credentials.Idp.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Admin_Set"]
client_id = "admin-client"
client_secret = "{}"

[[external_credentials.Idp.principals]]
name = "Reader"
sequence = 2
permission_sets = ["Read_Set", "Admin_Set"]
client_id = "reader-client"
client_secret = "{}"

[named_credentials.Api]
url = "{upstream_url}/base"
external_credential = "Idp"
{named}
"#,
        SECRETS[0], SECRETS[1]
    )
}

pub(crate) struct Setup {
    pub token: TokenServer,
    pub upstream: Upstream,
    pub callout: Callout,
}

pub(crate) async fn setup(server: &str, ec: &str, named: &str) -> Setup {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&token.url(), &upstream.url(), server, ec, named);
    let callout = Callout::start(&toml).await;
    Setup {
        token,
        upstream,
        callout,
    }
}

impl Setup {
    pub async fn get(&self, path: &str, sets: &str) -> (StatusCode, HeaderMap, Bytes) {
        get(&self.callout, path, sets).await
    }
}

async fn get(callout: &Callout, path: &str, sets: &str) -> (StatusCode, HeaderMap, Bytes) {
    within(http_get(
        &callout.url(path),
        &[("x-callout-permission-sets", sets)],
    ))
    .await
}

pub(crate) async fn within<T>(exchange: impl Future<Output = T>) -> T {
    tokio::time::timeout(EXCHANGE, exchange)
        .await
        .expect("the exchange hung")
}

/// A port on 127.0.0.1 that nothing listens on (ephemeral ports are handed out in turn, so
/// it is not reused at once).
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts a complete problem+json answer for `code` and returns its `detail`.
pub(crate) fn problem(status: u16, headers: &HeaderMap, body: &[u8], code: &str, expected: u16) -> String {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, expected, "{code}: {text}");
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..]),
        "{code}"
    );
    assert_eq!(
        headers.get("x-callout-error").map(|v| v.as_bytes()),
        Some(code.as_bytes()),
        "{code}"
    );
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{code}: {e}: {text}"));
    assert!(json["type"].is_string(), "{code}: {json}");
    assert!(
        json["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{code}: {json}"
    );
    assert_eq!(json["status"], expected, "{code}: {json}");
    assert_eq!(json["code"], code, "{code}: {json}");
    let detail = json["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{code}: {json}"));
    assert!(!detail.is_empty(), "{code}: {json}");
    detail.to_owned()
}

/// Neither the body nor any header value shows a client secret or an issued token.
fn assert_no_secrets(token: &TokenServer, headers: &HeaderMap, body: &[u8]) {
    let mut shown = String::from_utf8_lossy(body).into_owned();
    for (name, value) in headers {
        shown.push_str(&format!(
            "\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    assert_hidden(&token.issued(), &shown);
}

/// `shown` holds no client secret and none of the `issued` tokens.
fn assert_hidden(issued: &[String], shown: &str) {
    for secret in SECRETS.iter().copied().chain(issued.iter().map(String::as_str)) {
        assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
    }
}

#[tokio::test]
async fn bad_request() {
    let s = setup("", "", "").await;
    let head = format!(
        "GET /Api/a/../../x HTTP/1.1\r\nHost: {}\r\nx-callout-permission-sets: Admin_Set",
        s.callout.addr
    );
    let r = raw(s.callout.addr, &head, b"").await;
    problem(r.status, &r.headers, r.body.as_bytes(), "bad_request", 400);
    assert_no_secrets(&s.token, &r.headers, r.body.as_bytes());
    assert_eq!(s.upstream.requests(), 0);
}

#[tokio::test]
async fn no_principal() {
    let s = setup("", "", "").await;
    let (status, headers, body) = s.get("/Api/x", "Nobody_Set").await;
    let detail = problem(status.as_u16(), &headers, &body, "no_principal", 403);
    assert!(detail.contains("Idp"), "{detail}");
    assert_no_secrets(&s.token, &headers, &body);
    assert_eq!(s.upstream.requests() + s.token.requests(), 0);
}

#[tokio::test]
async fn unknown_named_credential_suggests_the_closest_name() {
    let s = setup("", "", "").await;
    let (status, headers, body) = s.get("/Apj/x", "Admin_Set").await;
    let detail = problem(status.as_u16(), &headers, &body, "unknown_named_credential", 404);
    assert!(detail.contains("Apj"), "{detail}");
    assert!(detail.contains("`Api`"), "no suggestion in {detail}");
    assert_no_secrets(&s.token, &headers, &body);
    assert_eq!(s.upstream.requests() + s.token.requests(), 0);
}

#[tokio::test]
async fn method_not_allowed() {
    let s = setup("", "", "").await;
    let head = format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nx-callout-permission-sets: Admin_Set",
        s.upstream.addr()
    );
    let r = raw(s.callout.addr, &head, b"").await;
    problem(r.status, &r.headers, r.body.as_bytes(), "method_not_allowed", 405);
    assert_no_secrets(&s.token, &r.headers, r.body.as_bytes());
    assert_eq!(s.upstream.requests() + s.token.requests(), 0);
}

#[tokio::test]
async fn body_too_large_by_content_length() {
    let s = setup("max_request_body = 1024", "", "").await;
    let url = s.callout.url("/Api/upload");
    let exchange = http_request(
        "POST",
        &url,
        &[("x-callout-permission-sets", "Admin_Set")],
        Bytes::from(vec![b'x'; 1025]),
    );
    let (status, headers, body) = within(exchange).await;
    problem(status.as_u16(), &headers, &body, "body_too_large", 413);
    assert_no_secrets(&s.token, &headers, &body);
    assert_eq!(s.upstream.requests(), 0);

    // At the limit is fine.
    let exchange = http_request(
        "POST",
        &url,
        &[("x-callout-permission-sets", "Admin_Set")],
        Bytes::from(vec![b'x'; 1024]),
    );
    let (status, _, _) = within(exchange).await;
    assert_eq!(status, 200);
    assert_eq!(s.upstream.last().unwrap().body_len, 1024);
}

/// A request body of `left` 256-byte chunks with no declared length, so hyper sends it
/// chunked and its size is known only as it arrives.
struct Chunked {
    left: usize,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        this.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'y'; 256])))))
    }
}

async fn post_chunked(s: &Setup, chunks: usize) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(s.callout.url("/Api/upload"))
        .header("x-callout-permission-sets", "Admin_Set")
        .body(Chunked { left: chunks })
        .unwrap();
    within(async {
        let response = client.request(request).await.expect("exchange");
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    })
    .await
}

#[tokio::test]
async fn body_too_large_mid_stream() {
    // Buffered path: the limit is hit while reading ahead for a possible retry.
    let s = setup("max_request_body = 1024", "", "").await;
    let (status, headers, body) = post_chunked(&s, 5).await;
    problem(status.as_u16(), &headers, &body, "body_too_large", 413);
    assert_no_secrets(&s.token, &headers, &body);
    assert_eq!(s.upstream.requests(), 0);
    let (status, _, _) = post_chunked(&s, 4).await;
    assert_eq!(status, 200, "exactly the limit is fine");
    assert_eq!(s.upstream.last().unwrap().body_len, 1024);

    // Streaming path: past `retry_body_limit` the body streams upstream and is cut off there.
    let s = setup("max_request_body = 1024\nretry_body_limit = 300", "", "").await;
    let (status, headers, body) = post_chunked(&s, 6).await;
    problem(status.as_u16(), &headers, &body, "body_too_large", 413);
    assert_no_secrets(&s.token, &headers, &body);
    assert_eq!(
        s.upstream.requests(),
        0,
        "no complete request reached the upstream"
    );
}

/// One request on a fresh callout whose token endpoint misbehaves with `fault`; returns the
/// `detail` of the 502 `token_request_failed` it must get.
async fn token_failure(fault: Fault) -> String {
    let s = setup("", "", "").await;
    s.token.set_fault(fault.clone());
    let (status, headers, body) = s.get("/Api/x", "Admin_Set").await;
    let detail = problem(status.as_u16(), &headers, &body, "token_request_failed", 502);
    assert_eq!(s.token.requests(), 1, "{fault:?}");
    assert_eq!(
        s.upstream.requests(),
        0,
        "{fault:?}: nothing goes out without a token"
    );
    assert_no_secrets(&s.token, &headers, &body);
    detail
}

#[tokio::test]
async fn token_request_failed() {
    let detail = token_failure(Fault::OAuthError {
        error: "invalid_client".into(),
        description: "Client authentication failed for this client".into(),
    })
    .await;
    // The code and the status; the description is for operators only.
    assert_eq!(detail, "token endpoint answered HTTP 400: invalid_client");
    for fault in [
        Fault::Html,
        Fault::Status(500),
        Fault::Garbage,
        // A token is minted, but it is not a Bearer token, so it must not be used or shown.
        Fault::TokenTypeMac,
    ] {
        token_failure(fault).await;
    }
}

#[tokio::test]
async fn token_request_failed_when_nothing_listens() {
    let upstream = Upstream::start().await;
    let token_url = format!("http://127.0.0.1:{}/token", dead_port().await);
    let callout = Callout::start(&config(&token_url, &upstream.url(), "", "", "")).await;
    let (status, headers, body) = get(&callout, "/Api/x", "Admin_Set").await;
    problem(status.as_u16(), &headers, &body, "token_request_failed", 502);
    assert_hidden(&[], &String::from_utf8_lossy(&body));
    assert_eq!(upstream.requests(), 0);
}

#[tokio::test]
async fn upstream_unreachable() {
    let token = TokenServer::start().await;
    let upstream_url = format!("http://127.0.0.1:{}", dead_port().await);
    let callout = Callout::start(&config(&token.url(), &upstream_url, "", "", "")).await;
    let (status, headers, body) = get(&callout, "/Api/x", "Admin_Set").await;
    problem(status.as_u16(), &headers, &body, "upstream_unreachable", 502);
    assert_eq!(token.requests(), 1);
    assert_no_secrets(&token, &headers, &body);
}

#[tokio::test]
async fn token_request_timeout() {
    let s = setup("", r#"token_timeout = "300ms""#, "").await;
    s.token.set_fault(Fault::Delay(Duration::from_secs(3)));
    let (status, headers, body) = s.get("/Api/x", "Admin_Set").await;
    problem(status.as_u16(), &headers, &body, "token_request_timeout", 504);
    assert_eq!(s.token.requests(), 1);
    assert_eq!(s.upstream.requests(), 0);
    assert_no_secrets(&s.token, &headers, &body);
}

#[tokio::test]
async fn upstream_timeout() {
    let s = setup("", "", r#"timeout = "300ms""#).await;
    s.upstream.set_delay(Duration::from_secs(3));
    let (status, headers, body) = s.get("/Api/x", "Admin_Set").await;
    problem(status.as_u16(), &headers, &body, "upstream_timeout", 504);
    assert_eq!(s.upstream.requests(), 1, "the request did reach the upstream");
    assert_no_secrets(&s.token, &headers, &body);
}

async fn admin_get(callout: &Callout, path: &str) -> (StatusCode, HeaderMap, String) {
    let (status, headers, body) = within(http_get(&callout.url(path), &[])).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The `token` object of principal `name` in `/.callout/credentials`.
fn token_state(credentials: &Value, name: &str) -> Value {
    credentials["named_credentials"][0]["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no principal {name} in {credentials}"))["token"]
        .clone()
}

#[tokio::test]
async fn admin_endpoints() {
    let s = setup("", "", "").await;
    for path in ["/.callout/health", "/.callout/ready"] {
        let (status, _, body) = admin_get(&s.callout, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    let (status, headers, body) = admin_get(&s.callout, "/.callout/credentials").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().contains("json"));
    let before: Value = serde_json::from_str(&body).unwrap();
    let named = &before["named_credentials"];
    assert_eq!(named.as_array().unwrap().len(), 1, "{before}");
    assert_eq!(named[0]["name"], "Api");
    assert_eq!(named[0]["external_credential"], "Idp");
    let principals = named[0]["principals"].as_array().unwrap();
    let summary: Vec<_> = principals
        .iter()
        .map(|p| {
            (
                p["name"].clone(),
                p["sequence"].clone(),
                p["permission_sets"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Admin".into(), 1.into(), serde_json::json!(["Admin_Set"])),
            (
                "Reader".into(),
                2.into(),
                serde_json::json!(["Read_Set", "Admin_Set"])
            ),
        ],
        "principals by sequence"
    );
    assert_eq!(token_state(&before, "Admin")["cached"], false);
    assert_eq!(token_state(&before, "Admin")["fetch_count"], 0);

    let (status, _, _) = s.get("/Api/x", "Admin_Set").await;
    assert_eq!(status, 200);
    let issued = s.token.issued();
    assert_eq!(issued.len(), 1);

    let (_, _, body) = admin_get(&s.callout, "/.callout/credentials").await;
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token_state(&after, "Admin")["cached"], true, "{after}");
    assert_eq!(token_state(&after, "Admin")["fetch_count"], 1, "{after}");
    assert_eq!(token_state(&after, "Reader")["cached"], false, "{after}");
    assert_eq!(token_state(&after, "Reader")["fetch_count"], 0, "{after}");
    assert_hidden(&issued, &body);

    let (status, headers, metrics) = admin_get(&s.callout, "/.callout/metrics").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let line = r#"callout_requests_total{named_credential="Api",external_credential="Idp",principal="Admin",outcome="2xx"} 1"#;
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    assert!(
        metrics.contains("# TYPE callout_request_duration_seconds histogram"),
        "{metrics}"
    );
    let count = r#"callout_request_duration_seconds_count{named_credential="Api",external_credential="Idp",principal="Admin"} 1"#;
    assert!(metrics.lines().any(|l| l == count), "{metrics}");
    assert!(
        metrics.contains(r#"callout_request_duration_seconds_bucket{named_credential="Api",external_credential="Idp",principal="Admin",le="+Inf"} 1"#),
        "{metrics}"
    );
    // The one token request made so far is counted for Admin.
    let token_counted = |l: &str| {
        l.starts_with("callout_token_requests_total{")
            && l.contains(r#"principal="Admin""#)
            && l.ends_with(" 1")
    };
    assert!(metrics.lines().any(token_counted), "{metrics}");
    assert_hidden(&issued, &metrics);

    for path in [
        "/.callout/health",
        "/.callout/ready",
        "/.callout/metrics",
        "/.callout/credentials",
    ] {
        let url = s.callout.url(path);
        let (status, headers, body) = within(http_request("POST", &url, &[], Bytes::new())).await;
        problem(status.as_u16(), &headers, &body, "method_not_allowed", 405);
    }
    assert_eq!(s.upstream.requests(), 1, "admin paths are never proxied");
}
