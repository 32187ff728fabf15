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

/// The attack that found the upstream hole: two HTTP/2 callers open 200 streams each to
/// one named credential whose upstream never finishes its bodies, under a limit of 400
/// file descriptors. Before the per-credential cap every stream took an upstream
/// connection, the process ran out of descriptors, and every other caller and named
/// credential got 502 "Too many open files". Now the flood gets at most
/// `max_upstream_connections` upstream connections and 503 `upstream_busy` past that, and
/// everybody else is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_under_a_low_fd_limit_do_not_starve_others() {
    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        r#"
[server]
listen = "{addr}"
default_permission_sets = ["Everyone"]

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"

[[external_credentials.Idp.principals]]
name = "Service"
sequence = 1
permission_sets = ["Everyone"]
client_id = "service"
client_secret = "service-secret-value"

[named_credentials.Flooded]
url = "{upstream}"
external_credential = "Idp"
max_upstream_connections = 100
timeout = "2s"

[named_credentials.Other]
url = "{upstream}"
external_credential = "Idp"
"#,
        token = token.url(),
        upstream = upstream.url(),
    );
    let config = dir.path().join("callout.toml");
    std::fs::write(&config, toml).unwrap();
    let mut child = tokio::process::Command::new("prlimit")
        .args([
            "--nofile=400:400",
            "--",
            env!("CARGO_BIN_EXE_callout"),
            "serve",
            "--config",
        ])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs callout");
    let base = format!("http://{addr}");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(Ok((status, _, _))) = tokio::time::timeout(
            Duration::from_secs(1),
            crate::support::try_http_request("GET", &format!("{base}/.callout/ready"), &[], Bytes::new()),
        )
        .await
            && status == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "callout did not start under prlimit");

    let mut senders = Vec::new();
    for _ in 0..2 {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(connection);
        senders.push(sender);
    }
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..400 {
        let mut sender = senders[i % 2].clone();
        let base = base.clone();
        streams.spawn(async move {
            let request = http::Request::get(format!("{base}/Flooded/stall/60000"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            // The response is held, its body never read: the stream stays open.
            let response = sender.send_request(request).await.ok()?;
            let status = response.status().as_u16();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(response);
            Some(status)
        });
    }
    // While the flood holds its connections, another named credential and a new caller
    // of the flooded one are answered, and the answer is never a 502.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _, body) = within(http_get(&format!("{base}/Other/x"), &[])).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, headers, _) = within(http_get(&format!("{base}/Flooded/x"), &[])).await;
    assert_eq!(
        (status.as_u16(), headers["x-callout-error"].to_str().unwrap()),
        (503, "upstream_busy")
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id().unwrap()))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!("stalled-stream flood: 400 streams, callout holds {fds} file descriptors (limit 400)");
    assert!(fds < 300, "{fds} descriptors: the cap did not hold");
    streams.abort_all();
    let _ = child.kill().await;
}

#[tokio::test]
async fn a_request_id_is_kept_or_made_and_goes_both_ways() {
    let s = setup("", "", "").await;
    let sets = ("x-callout-permission-sets", "Admin_Set");
    let (_, headers, _) = within(http_get(
        &s.callout.url("/Api/x"),
        &[sets, ("x-request-id", "trace-42")],
    ))
    .await;
    assert_eq!(headers["x-request-id"], "trace-42");
    assert_eq!(s.upstream.last().unwrap().headers["x-request-id"], "trace-42");
    let long = "x".repeat(129);
    let (_, headers, _) = within(http_get(
        &s.callout.url("/Api/x"),
        &[sets, ("x-request-id", &long)],
    ))
    .await;
    let made = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made, long);
    assert_eq!(s.upstream.last().unwrap().headers["x-request-id"], made.as_str());
    // Callout's own errors carry one too.
    let (status, headers, _) = within(http_get(&s.callout.url("/Nope/x"), &[])).await;
    assert_eq!(status, 404);
    assert!(!headers["x-request-id"].is_empty());
}
