//! Request-level hardening: methods, upstream slots, idle bodies, admin access, rejection
//! storms.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::errors::{Setup, config, problem, setup, within};
use crate::harness::Callout;
use crate::routing::raw;
use crate::support::{TokenServer, Upstream, http_get, http_request};

#[tokio::test]
async fn trace_is_refused_and_never_forwarded() {
    let s = setup("", "", "").await;
    let head = "TRACE /Api/x HTTP/1.1\r\nHost: x\r\nx-callout-permission-sets: Admin_Set";
    let r = raw(s.callout.addr, head, b"").await;
    problem(r.status, &r.headers, r.body.as_bytes(), "method_not_allowed", 405);
    let allow = r.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && !allow.contains("TRACE"), "{allow}");
    assert_eq!(
        s.upstream.requests() + s.token.requests(),
        0,
        "no token is ever fetched for it"
    );
}

#[tokio::test]
async fn a_methods_list_allows_only_those() {
    let s = setup("", "", "methods = [\"GET\", \"HEAD\"]").await;
    let url = s.callout.url("/Api/x");
    let sets = [("x-callout-permission-sets", "Admin_Set")];
    let (status, headers, body) = within(http_request("POST", &url, &sets, Bytes::from_static(b"x"))).await;
    problem(status.as_u16(), &headers, &body, "method_not_allowed", 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    assert_eq!(s.upstream.requests() + s.token.requests(), 0);
    let (status, _, _) = within(http_get(&url, &sets)).await;
    assert_eq!(status, 200);
    assert_eq!(s.upstream.requests(), 1);
}

#[tokio::test]
async fn content_length_goes_out_in_canonical_form() {
    let s = setup("", "", "").await;
    let head =
        "POST /Api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\nx-callout-permission-sets: Admin_Set";
    let r = raw(s.callout.addr, head, b"hello").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.headers["content-length"], "5");
    assert_eq!(seen.body_len, 5);
}

#[tokio::test]
async fn a_request_past_the_upstream_slots_gets_upstream_busy() {
    let s = setup(
        "body_idle_timeout = \"1s\"",
        "",
        "max_upstream_connections = 1\ntimeout = \"500ms\"",
    )
    .await;
    let sets = [("x-callout-permission-sets", "Admin_Set")];
    // A response whose body stalls holds the one slot for as long as it is being read.
    let held = within(crate::support::client_get(
        &s.callout.url("/Api/stall/10000"),
        &sets,
    ))
    .await;
    assert_eq!(held.status(), 200);
    let (status, headers, body) = within(http_get(&s.callout.url("/Api/other"), &sets)).await;
    let detail = problem(status.as_u16(), &headers, &body, "upstream_busy", 503);
    assert!(detail.contains("all 1 upstream connections"), "{detail}");
    assert_eq!(
        s.upstream.started(),
        1,
        "the busy request never reached the upstream"
    );
    // The stalled body is cut after body_idle_timeout, and the slot is free again.
    drop(held);
    let mut freed = false;
    for _ in 0..20 {
        let (status, _, _) = within(http_get(&s.callout.url("/Api/after"), &sets)).await;
        if status == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the slot was never freed");
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_and_frees_its_slot() {
    let s = setup(
        "body_idle_timeout = \"300ms\"",
        "",
        "max_upstream_connections = 1",
    )
    .await;
    let sets = [("x-callout-permission-sets", "Admin_Set")];
    // A pause shorter than the limit goes through whole.
    let (status, _, body) = within(http_get(&s.callout.url("/Api/stall/50"), &sets)).await;
    assert_eq!((status.as_u16(), body.len()), (200, 20));
    // A longer one is cut: the caller gets the head and the first bytes, then an error.
    let response = within(crate::support::client_get(
        &s.callout.url("/Api/stall/10000"),
        &sets,
    ))
    .await;
    assert_eq!(response.status(), 200);
    let read = within(response.into_body().collect()).await;
    assert!(read.is_err(), "the body must end in an error, not complete");
    // The one upstream slot is free again.
    let (status, _, _) = within(http_get(&s.callout.url("/Api/after"), &sets)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stalled_request_body_is_cut() {
    let s = setup("body_idle_timeout = \"300ms\"", "", "").await;
    let mut conn = tokio::net::TcpStream::connect(s.callout.addr).await.unwrap();
    let head = "POST /Api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nx-callout-permission-sets: Admin_Set\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b'x'; 10]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "callout must not wait for the rest of the body forever"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("sent no byte for"), "{answer}");
    assert_eq!(s.upstream.requests(), 0);
}

const ADMIN_TOKEN: &str = "admin-caller-token-0123456789";
const APP_TOKEN: &str = "app-caller-token-0123456789ab";

async fn with_callers() -> Setup {
    let callers = format!(
        r#"
[callers.Ops]
token = "{ADMIN_TOKEN}"
admin = true
permission_sets = ["Admin_Set"]

[callers.App]
token = "{APP_TOKEN}"
permission_sets = ["Admin_Set"]
"#
    );
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!("{callers}\n{}", config(&token.url(), &upstream.url(), "", "", ""));
    let callout = Callout::start(&toml).await;
    Setup {
        token,
        upstream,
        callout,
    }
}

#[tokio::test]
async fn with_callers_only_admin_callers_read_credentials_and_metrics() {
    let s = with_callers().await;
    let get = |path: &'static str, token: Option<&'static str>| {
        let url = s.callout.url(path);
        async move {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("proxy-authorization", b.as_str()))
                .collect();
            within(http_get(&url, &headers)).await
        }
    };
    for path in ["/.callout/health", "/.callout/ready"] {
        assert_eq!(get(path, None).await.0, 200, "{path} is open to probes");
    }
    for path in ["/.callout/credentials", "/.callout/metrics"] {
        let (status, headers, body) = get(path, None).await;
        problem(status.as_u16(), &headers, &body, "caller_unauthorized", 401);
        let (status, headers, body) = get(path, Some(APP_TOKEN)).await;
        problem(status.as_u16(), &headers, &body, "admin_required", 403);
        let (status, _, body) = get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(ADMIN_TOKEN) && !text.contains(APP_TOKEN), "{text}");
    }
}

#[tokio::test]
async fn unknown_admin_paths_are_404_and_wrong_methods_405_with_allow() {
    let s = setup("", "", "").await;
    let (status, headers, body) = within(http_get(&s.callout.url("/.callout/nope"), &[])).await;
    problem(status.as_u16(), &headers, &body, "not_found", 404);
    let url = s.callout.url("/.callout/health");
    let (status, headers, body) = within(http_request("DELETE", &url, &[], Bytes::new())).await;
    problem(status.as_u16(), &headers, &body, "method_not_allowed", 405);
    assert_eq!(headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn an_upstream_rejecting_every_token_costs_one_forced_refresh_per_interval() {
    // Every request is answered 401, whatever the token. Before the interval, each of the
    // ten requests dropped its token and fetched a new one for its retry: twenty token
    // requests for ten caller requests.
    let s = setup("", "", "").await;
    let sets = [("x-callout-permission-sets", "Admin_Set")];
    for _ in 0..10 {
        let (status, headers, _) = within(http_get(&s.callout.url("/Api/status/401"), &sets)).await;
        assert_eq!(status, 401, "the upstream's answer");
        assert!(headers.get("x-callout-error").is_none());
    }
    assert_eq!(s.token.requests(), 2, "the first token, and one forced refresh");
    assert_eq!(s.upstream.requests(), 11, "one retry, for the first request only");

    // With no interval, every rejection forces a refresh again.
    let s = setup("", "reject_refresh_interval = \"0s\"", "").await;
    for _ in 0..3 {
        within(http_get(&s.callout.url("/Api/status/401"), &sets)).await;
    }
    assert_eq!(
        s.token.requests(),
        6,
        "a token and a refresh for each request, as before"
    );
}
