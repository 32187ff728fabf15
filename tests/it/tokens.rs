//! SPEC "Request handling" 4 (tokens: the request, the response, lifetimes, one request in
//! flight per key) and 6 (refresh on status), end to end over real sockets.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

use crate::harness::Callout;
use crate::support::{
    ExpiresIn, Fault, Seen, TokenRegistry, TokenRequest, TokenServer, Upstream, digest, http_get,
    http_request, pattern,
};

const ADMIN: (&str, &str) = ("x-callout-permission-sets", "Admin_Set");
/// A client id that form-urlencoding changes.
const CLIENT_ID: &str = "app id";
/// Every character RFC 6749 §2.3.1 encoding exists for, plus TOML's own escapes.
const HARD_SECRET: &str = "p:a%25s+s/w=o&r d ü\"\\";

/// Bounds a whole test, so a hung proxy fails the test instead of the suite.
async fn bounded<F: Future>(secs: u64, test: F) -> F::Output {
    timeout(Duration::from_secs(secs), test)
        .await
        .expect("test timed out")
}

/// The parts of the config a test varies; the rest is one named credential `Api` to
/// `upstream/base` through external credential `Idp` with one principal `Admin`.
#[derive(Clone, Copy)]
struct Conf<'a> {
    /// Lines of `[server]`.
    server: &'a str,
    /// Lines of `[external_credentials.Idp]`.
    ec: &'a str,
    /// `client_secret` as a TOML value.
    secret: &'a str,
    /// More lines of the principal.
    principal: &'a str,
    /// Lines of `[named_credentials.Api]`.
    named: &'a str,
}

const CONF: Conf<'static> = Conf {
    server: "",
    ec: "",
    secret: r#""plain-secret""#,
    principal: "",
    named: "",
};

fn config(token: &TokenServer, upstream: &Upstream, c: Conf<'_>) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"
{ec}

[[external_credentials.Idp.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Admin_Set"]
client_id = "{CLIENT_ID}"
client_secret = {secret}
{principal}

[named_credentials.Api]
url = "{upstream}/base"
external_credential = "Idp"
{named}
"#,
        token = token.url(),
        upstream = upstream.url(),
        server = c.server,
        ec = c.ec,
        secret = c.secret,
        principal = c.principal,
        named = c.named,
    )
}

/// `s` as a TOML basic string: JSON's escapes are a subset of TOML's.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One request as the Admin principal.
async fn call(callout: &Callout) -> (StatusCode, HeaderMap, Bytes) {
    http_get(&callout.url("/Api/x"), &[ADMIN]).await
}

/// The token the upstream's echo says it received.
fn echoed_token(body: &[u8]) -> String {
    let echo: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not an upstream echo ({e}): {}", String::from_utf8_lossy(body)));
    let auth = echo["authorization"].as_str().expect("no authorization echoed");
    auth.strip_prefix("Bearer ")
        .expect("not a bearer token")
        .to_owned()
}

/// The token an upstream request carried.
fn seen_token(seen: &Seen) -> String {
    let auth = seen.headers["authorization"].to_str().unwrap();
    auth.strip_prefix("Bearer ")
        .expect("not a bearer token")
        .to_owned()
}

fn only_request(token: &TokenServer) -> TokenRequest {
    let log = token.requests_log();
    assert_eq!(log.len(), 1, "{log:#?}");
    log.into_iter().next().unwrap()
}

/// A pooled keep-alive client, so request loops do not burn a port per request.
fn pooled_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn pooled_get(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> (StatusCode, Bytes) {
    let request = http::Request::get(url)
        .header(ADMIN.0, ADMIN.1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.expect("callout unreachable");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

// === the token request ===

#[tokio::test]
async fn client_auth_modes_send_id_and_secret_intact() {
    bounded(10, async {
        for mode in [None, Some("header"), Some("header_unencoded"), Some("body")] {
            let token = TokenServer::start().await;
            let upstream = Upstream::start_checking(token.registry()).await;
            let ec = mode.map(|m| format!("client_auth = \"{m}\"")).unwrap_or_default();
            let secret = toml_str(HARD_SECRET);
            let conf = Conf {
                ec: &ec,
                secret: &secret,
                ..CONF
            };
            let callout = Callout::start(&config(&token, &upstream, conf)).await;

            let (status, _, body) = call(&callout).await;
            assert_eq!(status, 200, "{mode:?}: {body:?}");
            assert_eq!(echoed_token(&body), token.issued()[0], "{mode:?}");

            let req = only_request(&token);
            assert_eq!(req.method, "POST", "{mode:?}");
            assert_eq!(req.path, "/token", "{mode:?}");
            let content_type = req.content_type.as_deref().unwrap_or_default();
            assert!(
                content_type.starts_with("application/x-www-form-urlencoded"),
                "{mode:?}: {content_type}"
            );
            assert_eq!(
                req.form_value("grant_type").as_deref(),
                Some("client_credentials")
            );
            let pair = Some((CLIENT_ID.to_owned(), HARD_SECRET.to_owned()));
            match mode {
                None | Some("header") => {
                    // RFC 6749 §2.3.1: form-urlencoded, then Basic.
                    assert_eq!(req.basic_auth(), pair, "{mode:?}");
                    let (raw_id, raw_secret) = req.basic_auth_raw().unwrap();
                    assert!(!raw_id.contains(' '), "id not encoded: {raw_id}");
                    assert!(!raw_secret.contains(':'), "secret not encoded");
                }
                Some("header_unencoded") => assert_eq!(req.basic_auth_raw(), pair),
                _ => {
                    assert_eq!(req.authorization, None);
                    assert_eq!(req.form_value("client_id").as_deref(), Some(CLIENT_ID));
                    assert_eq!(req.form_value("client_secret").as_deref(), Some(HARD_SECRET));
                }
            }
            if mode != Some("body") {
                assert_eq!(req.form_value("client_id"), None, "{mode:?}");
                assert_eq!(req.form_value("client_secret"), None, "{mode:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn scope_and_token_params_arrive_as_form_fields() {
    // (external credential lines, principal lines, expected form fields besides grant_type)
    type Fields = &'static [(&'static str, &'static str)];
    let cases: &[(&str, &str, Fields)] = &[
        ("", "", &[]),
        (
            r#"scope = "api refresh_token""#,
            "",
            &[("scope", "api refresh_token")],
        ),
        (
            r#"scope = "api refresh_token""#,
            r#"scope = "read:things""#,
            &[("scope", "read:things")],
        ),
        (
            r#"
scope = "api"
token_params = { audience = "https://api.example.com", resource = "urn:x&y=z" }"#,
            "",
            &[
                ("scope", "api"),
                ("audience", "https://api.example.com"),
                ("resource", "urn:x&y=z"),
            ],
        ),
    ];
    bounded(10, async {
        for &(ec, principal, expected) in cases {
            let token = TokenServer::start().await;
            let upstream = Upstream::start().await;
            let conf = Conf {
                ec,
                principal,
                ..CONF
            };
            let callout = Callout::start(&config(&token, &upstream, conf)).await;
            let (status, _, body) = call(&callout).await;
            assert_eq!(status, 200, "{ec} / {principal}: {body:?}");

            let req = only_request(&token);
            let mut fields: Vec<(String, String)> = req.form.clone();
            fields.sort();
            let mut want: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .chain([("grant_type".to_owned(), "client_credentials".to_owned())])
                .collect();
            want.sort();
            assert_eq!(fields, want, "{ec} / {principal}: raw body {}", req.raw_body);
        }
    })
    .await;
}

#[tokio::test]
async fn client_secret_from_the_environment() {
    const VAR: &str = "CALLOUT_IT_TOKENS_CLIENT_SECRET_FROM_ENV";
    // SAFETY: the variable name is unique to this test and nothing else in the process reads
    // or writes it; std serialises its own environment accesses.
    unsafe { std::env::set_var(VAR, HARD_SECRET) };
    bounded(10, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let secret = format!(r#"{{ env = "{VAR}" }}"#);
        let conf = Conf {
            secret: &secret,
            ..CONF
        };
        let callout = Callout::start(&config(&token, &upstream, conf)).await;
        assert_eq!(call(&callout).await.0, 200);
        let sent = only_request(&token).basic_auth();
        assert_eq!(sent, Some((CLIENT_ID.to_owned(), HARD_SECRET.to_owned())));
    })
    .await;
}

#[tokio::test]
async fn client_secret_from_a_file_next_to_the_config() {
    bounded(10, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let callout = Callout::start(&config(&token, &upstream, CONF)).await;
        // The harness owns the config folder, so the file config comes in as a reload; a
        // relative path resolved anywhere but the config's folder fails the load.
        let from_file = config(
            &token,
            &upstream,
            Conf {
                secret: r#"{ file = "secret.txt" }"#,
                ..CONF
            },
        );
        // (file content, secret sent): exactly one trailing newline goes.
        for (content, secret) in [("from:file%+\n", "from:file%+"), ("two\n\n", "two\n")] {
            std::fs::write(callout.dir.path().join("secret.txt"), content).unwrap();
            callout.reload(&from_file).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(call(&callout).await.0, 200);
            let sent = token.last_request().unwrap().basic_auth();
            assert_eq!(
                sent,
                Some((CLIENT_ID.to_owned(), secret.to_owned())),
                "{content:?}"
            );
        }
        // Each secret minted its own token, and the literal one was never used.
        assert_eq!(token.requests(), 2);
    })
    .await;
}

// === lifetimes ===

#[tokio::test]
async fn expires_in_number_string_or_absent() {
    // (expires_in, default_token_ttl, token requests for two calls 1.2 s apart)
    let cases = [
        (ExpiresIn::Number(3600), None, 1),
        (ExpiresIn::Number(1), None, 2),
        (ExpiresIn::Str("3600".into()), None, 1),
        (ExpiresIn::Str("1".into()), None, 2),
        // No lifetime and no default: good until the upstream rejects it.
        (ExpiresIn::Absent, None, 1),
        (ExpiresIn::Absent, Some("1s"), 2),
        (ExpiresIn::Absent, Some("1h"), 1),
    ];
    bounded(15, async {
        // The cases sleep, so they run side by side.
        let mut runs = JoinSet::new();
        for (expires_in, ttl, want) in cases {
            runs.spawn(async move {
                let label = format!("{expires_in:?}, default_token_ttl {ttl:?}");
                let token = TokenServer::start().await;
                token.set_expires_in(expires_in);
                let upstream = Upstream::start_checking(token.registry()).await;
                let ec = ttl
                    .map(|t| format!("default_token_ttl = \"{t}\""))
                    .unwrap_or_default();
                let conf = Conf { ec: &ec, ..CONF };
                let callout = Callout::start(&config(&token, &upstream, conf)).await;

                let (status, _, first) = call(&callout).await;
                assert_eq!(status, 200, "{label}: {first:?}");
                sleep(Duration::from_millis(1200)).await;
                let (status, _, second) = call(&callout).await;
                assert_eq!(status, 200, "{label}: {second:?}");

                assert_eq!(token.requests(), want, "{label}");
                let issued = token.issued();
                assert_eq!(echoed_token(&first), issued[0], "{label}");
                assert_eq!(echoed_token(&second), issued[want - 1], "{label}");
                assert_eq!(upstream.requests(), 2, "{label}: a token was rejected");
            });
        }
        while let Some(run) = runs.join_next().await {
            run.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_burst_makes_one_token_request() {
    const N: usize = 1000;
    bounded(30, async {
        let token = TokenServer::start().await;
        // Slow enough that the whole burst piles up behind the first token request.
        token.set_delay(Duration::from_millis(200));
        let upstream = Upstream::start_checking(token.registry()).await;
        let callout = Callout::start(&config(&token, &upstream, CONF)).await;

        let client = pooled_client();
        let url = callout.url("/Api/burst");
        let mut burst = JoinSet::new();
        for _ in 0..N {
            let (client, url) = (client.clone(), url.clone());
            burst.spawn(async move { pooled_get(&client, &url).await });
        }
        let mut tokens = Vec::new();
        while let Some(result) = burst.join_next().await {
            let (status, body) = result.unwrap();
            assert_eq!(status, 200, "{body:?}");
            tokens.push(echoed_token(&body));
        }

        assert_eq!(token.requests(), 1);
        assert_eq!(token.max_in_flight(), 1);
        let issued = token.issued();
        assert!(tokens.iter().all(|t| *t == issued[0]));
        assert_eq!(upstream.requests(), N);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_across_lifetimes_never_sends_an_expired_token() {
    const LOOPS: usize = 20;
    const RUN: Duration = Duration::from_millis(4500);
    bounded(20, async {
        let token = TokenServer::start().await;
        // Renewal is due 1.5 s after each token request and no token is used after 2 s,
        // a full second before the token endpoint expires it.
        token.set_expires_in(ExpiresIn::Number(3));
        let upstream = Upstream::start_checking(token.registry()).await;
        let conf = Conf {
            ec: r#"refresh_before_expiry = "1s""#,
            ..CONF
        };
        let callout = Callout::start(&config(&token, &upstream, conf)).await;

        let client = pooled_client();
        let url = callout.url("/Api/steady");
        let started = Instant::now();
        let mut loops = JoinSet::new();
        for _ in 0..LOOPS {
            let (client, url) = (client.clone(), url.clone());
            loops.spawn(async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while started.elapsed() < RUN {
                    let (status, body) = pooled_get(&client, &url).await;
                    if status == 200 {
                        ok += 1;
                    } else {
                        failed.push((status, body));
                    }
                    sleep(Duration::from_millis(5)).await;
                }
                (ok, failed)
            });
        }
        let mut ok = 0;
        while let Some(result) = loops.join_next().await {
            let (n, failed) = result.unwrap();
            assert!(failed.is_empty(), "{failed:?}");
            ok += n;
        }
        let elapsed = started.elapsed();

        assert_eq!(upstream.expired_seen(), 0);
        // Every response was a first attempt's 200: no token was ever rejected.
        assert_eq!(upstream.requests(), ok);
        let fetched = token.requests();
        assert!(fetched >= 3, "only {fetched} tokens in {elapsed:?}: no renewal");
        // Renewals are at least 1.5 s apart; a storm would be one per waiting caller.
        let bound = elapsed.as_secs() as usize + 2;
        assert!(fetched <= bound, "{fetched} token requests in {elapsed:?}");
        assert_eq!(token.max_in_flight(), 1);
    })
    .await;
}

#[tokio::test]
async fn renewal_runs_in_the_background_while_the_old_token_serves() {
    bounded(15, async {
        let token = TokenServer::start().await;
        // expires_in 5 counts as 4 s (servers round `exp` down), margin 1 s: renewal is due
        // from 2.25 s, the token is usable to 3 s.
        token.set_expires_in(ExpiresIn::Number(5));
        let upstream = Upstream::start_checking(token.registry()).await;
        let conf = Conf {
            ec: r#"refresh_before_expiry = "1s""#,
            ..CONF
        };
        let callout = Callout::start(&config(&token, &upstream, conf)).await;

        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        let old = echoed_token(&body);
        token.set_delay(Duration::from_millis(1500));

        // Call until one of the calls has started the renewal.
        sleep(Duration::from_millis(2000)).await;
        let mut calls = 0;
        while token.requests() < 2 {
            assert!(calls < 100, "no renewal started");
            let (status, _, body) = call(&callout).await;
            assert_eq!(status, 200);
            assert_eq!(echoed_token(&body), old);
            calls += 1;
            sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(token.issued().len(), 1, "renewal already done");

        // The renewal is in flight for another second or more: a call now does not wait.
        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        assert_eq!(echoed_token(&body), old);
        assert_eq!(seen_token(&upstream.last().unwrap()), old);
        assert_eq!(token.issued().len(), 1, "the call waited for the renewal");

        let waited = timeout(Duration::from_secs(5), async {
            while token.issued().len() < 2 {
                sleep(Duration::from_millis(20)).await;
            }
        });
        waited.await.expect("renewal never finished");
        // One renewal, however many calls came while it ran.
        assert_eq!(token.requests(), 2);
        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        assert_eq!(echoed_token(&body), token.issued()[1]);
        // The endpoint took 1.5 s, so the new token's renewal is scheduled early (at least
        // twice that before its end of use): this call may already have started it.
        assert!(token.requests() <= 3);
        assert_eq!(upstream.expired_seen(), 0);
    })
    .await;
}

#[tokio::test]
async fn expired_token_is_not_forwarded_while_the_token_endpoint_is_down() {
    bounded(15, async {
        let token = TokenServer::start().await;
        // Lifetime 2 s: usable for 1 s (the margin is half the lifetime), expired at 2 s.
        token.set_expires_in(ExpiresIn::Number(2));
        let upstream = Upstream::start_checking(token.registry()).await;
        let callout = Callout::start(&config(&token, &upstream, CONF)).await;

        assert_eq!(call(&callout).await.0, 200);
        token.set_fault(Fault::Status(503));

        // Once in the last margin of its life, once past its expiry.
        for wait in [1500, 700] {
            sleep(Duration::from_millis(wait)).await;
            let (status, headers, body) = call(&callout).await;
            assert_eq!(status, 502, "{body:?}");
            assert_eq!(headers["x-callout-error"], "token_request_failed");
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "token_request_failed");
        }
        assert!(token.requests() >= 2, "no token request was tried");
        assert_eq!(upstream.requests(), 1, "{:#?}", upstream.seen());
        assert_eq!(upstream.expired_seen(), 0);
    })
    .await;
}

// === refresh on status ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rejected_token_for_many_callers_is_replaced_once() {
    const N: usize = 100;
    bounded(20, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let callout = Callout::start(&config(&token, &upstream, CONF)).await;
        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        let old = echoed_token(&body);

        upstream.reject_token(&old);
        // Every caller takes the old token before the first rejection; most rejections come
        // back after the new token is cached and must not drop it.
        upstream.set_delay(Duration::from_millis(300));
        let client = pooled_client();
        let url = callout.url("/Api/rejected");
        let mut callers = JoinSet::new();
        for _ in 0..N {
            let (client, url) = (client.clone(), url.clone());
            callers.spawn(async move { pooled_get(&client, &url).await });
        }
        let mut answers = Vec::new();
        while let Some(result) = callers.join_next().await {
            let (status, body) = result.unwrap();
            assert_eq!(status, 200, "{body:?}");
            answers.push(echoed_token(&body));
        }

        assert_eq!(token.requests(), 2);
        let new = token.issued()[1].clone();
        assert!(answers.iter().all(|t| *t == new));
        let seen: Vec<String> = upstream.seen().iter().skip(1).map(seen_token).collect();
        assert_eq!(seen.iter().filter(|t| **t == new).count(), N);
        assert!(seen.iter().all(|t| *t == new || *t == old), "{seen:?}");
    })
    .await;
}

#[tokio::test]
async fn buffered_body_is_replayed_intact() {
    bounded(10, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let callout = Callout::start(&config(&token, &upstream, CONF)).await;
        let (_, _, body) = call(&callout).await;
        let old = echoed_token(&body);
        upstream.reject_token(&old);

        let sent = Bytes::from(pattern(100_000));
        let (status, _, body) =
            http_request("POST", &callout.url("/Api/upload"), &[ADMIN], sent.clone()).await;
        assert_eq!(status, 200, "{body:?}");

        let seen = upstream.seen();
        assert_eq!(seen.len(), 3, "one call, then the upload and its retry");
        let (first, retry) = (&seen[1], &seen[2]);
        assert_eq!(seen_token(first), old);
        assert_eq!(seen_token(retry), token.issued()[1]);
        for attempt in [first, retry] {
            assert_eq!(attempt.method, "POST");
            assert_eq!(attempt.target, "/base/upload");
            assert_eq!(attempt.body_len, 100_000);
            assert_eq!(attempt.body_digest, digest(&sent));
        }
        assert_eq!(token.requests(), 2);
    })
    .await;
}

#[tokio::test]
async fn body_past_the_retry_limit_is_not_replayed() {
    bounded(10, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let conf = Conf {
            server: "retry_body_limit = 1024",
            ..CONF
        };
        let callout = Callout::start(&config(&token, &upstream, conf)).await;
        let (_, _, body) = call(&callout).await;
        let old = echoed_token(&body);
        upstream.reject_token(&old);

        let sent = Bytes::from(pattern(10_240));
        let (status, headers, body) =
            http_request("POST", &callout.url("/Api/upload"), &[ADMIN], sent.clone()).await;
        // The upstream's own answer, untouched.
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], r#"Bearer error="invalid_token""#);
        assert_eq!(headers["content-type"], "text/plain");
        assert!(headers.get("x-callout-error").is_none());
        assert_eq!(body, "unauthorized");
        assert_eq!(upstream.requests(), 2, "the body was sent twice");
        let upload = upstream.last().unwrap();
        assert_eq!((upload.body_len, upload.body_digest), (10_240, digest(&sent)));

        // The rejected token is gone all the same: the next call gets a new one, first time.
        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        assert_eq!(token.requests(), 2);
        assert_eq!(echoed_token(&body), token.issued()[1]);
        assert_eq!(upstream.requests(), 3);
    })
    .await;
}

#[tokio::test]
async fn refresh_on_status_retries_listed_statuses_once() {
    struct Case {
        refresh_on_status: &'static str,
        /// What the upstream answers the first token.
        first: u16,
        /// Whether the upstream rejects the next token too (with a 401).
        retry_rejected: bool,
        status: u16,
        attempts: usize,
        token_requests: usize,
    }
    let cases = [
        Case {
            refresh_on_status: "[403]",
            first: 403,
            retry_rejected: false,
            status: 200,
            attempts: 2,
            token_requests: 2,
        },
        Case {
            refresh_on_status: "[500]",
            first: 500,
            retry_rejected: false,
            status: 200,
            attempts: 2,
            token_requests: 2,
        },
        // Not listed: the upstream's answer as it is, and the token stays.
        Case {
            refresh_on_status: "[500]",
            first: 403,
            retry_rejected: false,
            status: 403,
            attempts: 1,
            token_requests: 1,
        },
        Case {
            refresh_on_status: "[]",
            first: 500,
            retry_rejected: false,
            status: 500,
            attempts: 1,
            token_requests: 1,
        },
        // Retried once, and no more.
        Case {
            refresh_on_status: "[403]",
            first: 403,
            retry_rejected: true,
            status: 401,
            attempts: 2,
            token_requests: 2,
        },
        Case {
            refresh_on_status: "[]",
            first: 401,
            retry_rejected: true,
            status: 401,
            attempts: 2,
            token_requests: 2,
        },
    ];
    bounded(15, async {
        for case in cases {
            let label = format!(
                "refresh_on_status {}, first {}, retry rejected {}",
                case.refresh_on_status, case.first, case.retry_rejected
            );
            let token = TokenServer::start().await;
            // A registry the token server does not fill rejects every token with a 401.
            let upstream = if case.retry_rejected {
                Upstream::start_checking(TokenRegistry::new()).await
            } else {
                Upstream::start().await
            };
            let ec = format!("refresh_on_status = {}", case.refresh_on_status);
            let conf = Conf { ec: &ec, ..CONF };
            let callout = Callout::start(&config(&token, &upstream, conf)).await;
            // Warm the cache without calling the upstream.
            callout
                .proxy
                .lookup_token("Api", &["Admin_Set"], None)
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let old = token.issued()[0].clone();
            upstream.status_for_token(&old, case.first);

            let (status, headers, body) = call(&callout).await;
            assert_eq!(status, case.status, "{label}: {body:?}");
            assert!(headers.get("x-callout-error").is_none(), "{label}");
            if status == 200 {
                assert_eq!(echoed_token(&body), token.issued()[1], "{label}");
            } else if case.retry_rejected {
                // The retry's answer: the checking upstream's own 401.
                assert_eq!(body, "unauthorized", "{label}");
                assert_eq!(headers["www-authenticate"], r#"Bearer error="invalid_token""#);
            } else {
                assert_eq!(body, "status for token", "{label}");
            }
            assert_eq!(upstream.requests(), case.attempts, "{label}");
            assert_eq!(token.requests(), case.token_requests, "{label}");
            let tokens: Vec<String> = upstream.seen().iter().map(seen_token).collect();
            assert_eq!(tokens[0], old, "{label}");
            if case.attempts == 2 {
                assert_eq!(tokens[1], token.issued()[1], "{label}");
            }
        }
    })
    .await;
}

// === rotation ===

#[tokio::test]
async fn reload_keeps_the_token_unless_its_inputs_change() {
    bounded(10, async {
        let token = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let original = config(&token, &upstream, CONF);
        let callout = Callout::start(&original).await;
        let (_, _, body) = call(&callout).await;
        let first = echoed_token(&body);

        // Same inputs, whether or not anything else changed.
        let with_header = config(
            &token,
            &upstream,
            Conf {
                named: r#"headers = { "X-Reloaded" = "yes" }"#,
                ..CONF
            },
        );
        for (label, toml) in [("identical", &original), ("new header", &with_header)] {
            callout.reload(toml).unwrap_or_else(|e| panic!("{e}"));
            let (status, _, body) = call(&callout).await;
            assert_eq!(status, 200, "{label}");
            assert_eq!(echoed_token(&body), first, "{label}");
            assert_eq!(token.requests(), 1, "{label}");
        }
        assert_eq!(upstream.last().unwrap().headers["x-reloaded"], "yes");

        let rotated = config(
            &token,
            &upstream,
            Conf {
                secret: r#""rotated-secret""#,
                ..CONF
            },
        );
        callout.reload(&rotated).unwrap_or_else(|e| panic!("{e}"));
        let (status, _, body) = call(&callout).await;
        assert_eq!(status, 200);
        assert_eq!(token.requests(), 2);
        let sent = token.last_request().unwrap().basic_auth();
        assert_eq!(sent, Some((CLIENT_ID.to_owned(), "rotated-secret".to_owned())));
        assert_eq!(echoed_token(&body), token.issued()[1]);
    })
    .await;
}
