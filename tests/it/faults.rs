//! Hardening, section 4 "Faults": a token endpoint or upstream that breaks the connection,
//! answers half, trickles, asks for a pause or is down under load, and a caller that goes
//! away mid-upload. Each case ends with (a) a clear error to the affected caller, (b) nothing
//! leaked: callout's tasks and sockets are back to what they were before the fault, and
//! (c) a healthy proxy: with the fault switched off, the next request is forwarded.
//!
//! Leaks are measured exactly, not within a slack. The fixture servers run on a runtime of
//! their own, so the test runtime's task count is callout's (its accept loop, one task per
//! connection on either side, the token client's pool timer) plus our client's, which is
//! dropped before measuring. A fault that leaks a task or a socket, or that leaves a dead
//! connection in a pool, shows up as a difference from the baseline taken after warm-up.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

use crate::harness::Callout;
use crate::support::{Fault, TokenServer, Upstream, pattern_slice, raw_request, try_http_request};

/// Asserts the principal whose token the fault tests fetch (none is cached for it).
const ADMIN: &str = "Admin_Set";
/// Asserts the principal the warm-up uses, so the token client has a pooled connection
/// and the Admin token is still to be fetched.
const WARM: &str = "Warm_Set";
/// Bounds every single request: far above any honest answer, far below a hang.
const REQUEST_BOUND: Duration = Duration::from_secs(5);
/// How long the footprint may take to return to the baseline: connection tasks end as
/// their peers notice closed sockets.
const SETTLE: Duration = Duration::from_secs(4);

/// Bounds a whole test, so a hung proxy fails the test instead of the suite.
async fn bounded<F: Future>(secs: u64, test: F) -> F::Output {
    timeout(Duration::from_secs(secs), test)
        .await
        .expect("test timed out")
}

// === the rig ===

/// A second runtime for the fixture servers, so their tasks are not counted as callout's.
struct Fixtures(Option<Runtime>);

impl Fixtures {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self(Some(rt))
    }

    async fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().unwrap().spawn(f).await.unwrap()
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // Dropping a runtime may block, which async code must not.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Callout between a token endpoint and an upstream. Fields drop in order: callout first.
struct Rig {
    callout: Callout,
    token: TokenServer,
    upstream: Upstream,
    _fixtures: Fixtures,
}

impl Rig {
    /// `server` and `ec` are extra lines for `[server]` and the external credential.
    async fn start(server: &str, ec: &str) -> Rig {
        let fixtures = Fixtures::new();
        let token = fixtures.run(TokenServer::start()).await;
        let upstream = fixtures.run(Upstream::start()).await;
        let callout = Callout::start(&config(&token, &upstream, server, ec)).await;
        Rig {
            callout,
            token,
            upstream,
            _fixtures: fixtures,
        }
    }

    /// `GET /Api<path>` asserting `sets`, on a connection of its own that is closed after.
    async fn get(&self, path: &str, sets: &str) -> Answer {
        let url = self.callout.url(&format!("/Api{path}"));
        let headers = [("x-callout-permission-sets", sets)];
        let exchange = try_http_request("GET", &url, &headers, Bytes::new());
        match timeout(REQUEST_BOUND, exchange).await {
            Ok(Ok((status, headers, body))) => Answer::new(status, &headers, body),
            Ok(Err(e)) => panic!("GET {url} failed: {e}"),
            Err(_) => panic!("GET {url} hung"),
        }
    }

    /// The warm-up: a token for the Warm principal and a pooled upstream connection.
    async fn warm_up(&self, sets: &str) {
        let answer = self.get("/warm", sets).await;
        assert_eq!(answer.status, StatusCode::OK, "warm-up: {answer:?}");
    }

    /// Polls `GET /Api/after` as `sets` until it is forwarded. Until then every answer must
    /// be the failure the fault left behind (`code`, shared while callout backs off), and
    /// the only token request made is the one that succeeds. Returns how many requests
    /// shared the failure.
    async fn recover(&self, sets: &str, code: &str) -> usize {
        let token_requests = self.token.requests();
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut shared = 0;
        loop {
            let answer = self.get("/after", sets).await;
            if answer.status == StatusCode::OK {
                break;
            }
            assert_eq!(answer.code.as_deref(), Some(code), "while recovering: {answer:?}");
            assert_eq!(
                self.token.requests(),
                token_requests,
                "a failure is shared, not retried"
            );
            shared += 1;
            assert!(Instant::now() < deadline, "callout did not recover: {answer:?}");
            sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            self.token.requests(),
            token_requests + 1,
            "one token request to recover"
        );
        let seen = self.upstream.last().expect("the upstream saw the request");
        assert_eq!(seen.target, "/after");
        let issued = self.token.issued();
        let bearer = format!("Bearer {}", issued.last().unwrap());
        assert_eq!(seen.headers["authorization"], bearer.as_str(), "the fresh token");
        shared
    }

    fn footprint(&self) -> Footprint {
        let tasks = Handle::current().metrics().num_alive_tasks();
        let (token, upstream, callout) = (
            self.token.addr().port(),
            self.upstream.addr().port(),
            self.callout.addr.port(),
        );
        let mut footprint = Footprint {
            tasks,
            to_token: 0,
            to_upstream: 0,
            from_callers: 0,
        };
        for (local, remote) in open_sockets() {
            footprint.to_token += usize::from(remote == token);
            footprint.to_upstream += usize::from(remote == upstream);
            footprint.from_callers += usize::from(local == callout);
        }
        footprint
    }

    /// The footprint once the warm-up's connections from us are gone and nothing moves.
    async fn baseline(&self) -> Footprint {
        let deadline = Instant::now() + SETTLE;
        let mut last = self.footprint();
        let mut steady = 0;
        while steady < 5 {
            assert!(Instant::now() < deadline, "no steady baseline: {last:?}");
            sleep(Duration::from_millis(20)).await;
            let now = self.footprint();
            steady = if now == last && now.from_callers == 0 {
                steady + 1
            } else {
                0
            };
            last = now;
        }
        assert!(last.to_token >= 1 && last.to_upstream >= 1, "pooled: {last:?}");
        last
    }

    /// Waits for the footprint to return to `baseline` exactly.
    async fn assert_back_to(&self, baseline: Footprint, case: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = self.footprint();
            if now == baseline {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{case}: leaked, before {baseline:?}, after {now:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(token: &TokenServer, upstream: &Upstream, server: &str, ec: &str) -> String {
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
permission_sets = ["{ADMIN}"]
client_id = "admin-client"
client_secret = "admin-secret-value"

[[external_credentials.Idp.principals]]
name = "Warm"
sequence = 2
permission_sets = ["{WARM}"]
client_id = "warm-client"
client_secret = "warm-secret-value"

[named_credentials.Api]
url = "{upstream}"
external_credential = "Idp"
"#,
        token = token.url(),
        upstream = upstream.url(),
    )
}

/// What callout holds: tasks on the test runtime, and open sockets (ESTABLISHED,
/// SYN_SENT or CLOSE_WAIT: a file descriptor not yet closed) to the token endpoint, to the
/// upstream, and from callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footprint {
    tasks: usize,
    to_token: usize,
    to_upstream: usize,
    from_callers: usize,
}

/// (local port, remote port) of every IPv4 socket with a file descriptor still open:
/// ESTABLISHED, SYN_SENT or CLOSE_WAIT. (The table also holds every TIME_WAIT of the
/// machine, thousands after a load test: skip those cheaply.)
fn open_sockets() -> Vec<(u16, u16)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    let mut open = Vec::new();
    for line in table.lines().skip(1) {
        let mut cols = line.split_whitespace().skip(1);
        let (Some(local), Some(remote), Some(state)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if matches!(state, "01" | "02" | "08") {
            open.push((port(local), port(remote)));
        }
    }
    open
}

/// A response as the caller saw it, with callout's error code and detail if it is ours.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    code: Option<String>,
    detail: Option<String>,
}

impl Answer {
    fn new(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Answer {
        let code = headers
            .get("x-callout-error")
            .map(|v| v.to_str().unwrap().to_owned());
        let detail = code.as_ref().map(|code| {
            assert_eq!(headers["content-type"], "application/problem+json");
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], code.as_str(), "header and body agree");
            assert_eq!(problem["status"], status.as_u16());
            problem["detail"].as_str().unwrap().to_owned()
        });
        Answer { status, code, detail }
    }

    fn assert_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(
            (self.status.as_u16(), self.code.as_deref()),
            (status, Some(code)),
            "{self:?}"
        );
        let detail = self.detail.as_deref().unwrap();
        assert!(!detail.contains("secret-value"), "{detail}");
        detail
    }
}

// === the fixtures' wire faults ===

/// The wire faults rely on how hyper frames a body shorter than its `Content-Length`; if
/// that changed, the tests below would test something else.
#[tokio::test]
async fn wire_faults_do_what_they_say() {
    bounded(10, async {
        let token = TokenServer::start().await;
        let post = b"POST /token HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials";

        token.set_fault(Fault::Hangup);
        assert_eq!(closed_on(token.addr(), post).await, "", "not a byte of answer");

        token.set_fault(Fault::Truncated);
        let answer = closed_on(token.addr(), post).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        let declared: usize = header_value(head, "content-length").parse().unwrap();
        assert!(!body.is_empty() && body.len() < declared, "{answer}");
        assert_eq!(token.requests(), 2);

        token.set_fault(Fault::RetryAfter {
            status: 429,
            seconds: 2,
        });
        let answer = raw_request(token.addr(), post).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert_eq!(header_value(&answer, "retry-after"), "2");

        let upstream = Upstream::start().await;
        let answer = closed_on(
            upstream.addr(),
            b"GET /cut/1000/100 HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(header_value(head, "content-length"), "1000");
        assert_eq!(body.len(), 100);
        assert_eq!(upstream.started(), 1);
    })
    .await;
}

/// What `raw` gets back on a connection the fixture closes early, well before
/// `raw_request` would give up on it.
async fn closed_on(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    timeout(Duration::from_secs(3), raw_request(addr, raw))
        .await
        .expect("the fixture closes the connection")
}

fn header_value<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

// === the token endpoint ===

/// A token endpoint fault on the first token request for Admin: the caller gets
/// `status`/`code`, the token endpoint saw exactly that one request and the upstream none;
/// then, with the fault off, the next request gets a fresh token and is forwarded, and
/// nothing is left over.
async fn token_fault(fault: Fault, ec: &str, status: u16, code: &str) -> String {
    let rig = Rig::start("", ec).await;
    rig.warm_up(WARM).await;
    let baseline = rig.baseline().await;
    let (token_requests, upstream_requests) = (rig.token.requests(), rig.upstream.started());

    rig.token.set_fault(fault.clone());
    let answer = rig.get("/during", ADMIN).await;
    let detail = answer.assert_error(status, code).to_owned();
    assert_eq!(rig.token.requests(), token_requests + 1, "{fault:?}");
    assert_eq!(
        rig.upstream.started(),
        upstream_requests,
        "{fault:?}: no token, no request"
    );

    rig.token.set_fault(Fault::None);
    rig.recover(ADMIN, code).await;
    rig.assert_back_to(baseline, &format!("{fault:?}")).await;
    assert_eq!(rig.token.max_in_flight(), 1);
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_hanging_up_is_token_request_failed() {
    let detail = bounded(15, token_fault(Fault::Hangup, "", 502, "token_request_failed")).await;
    assert!(detail.starts_with("token endpoint unreachable"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_response_cut_short_is_token_request_failed_not_a_hang() {
    // The default token_timeout (10 s) is longer than the request bound: a callout waiting
    // for the rest of the body would fail as hung, not with this error.
    let detail = bounded(15, token_fault(Fault::Truncated, "", 502, "token_request_failed")).await;
    assert!(detail.starts_with("token endpoint"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_token_endpoint_is_token_request_timeout() {
    // The headers come at once and the body a byte a second: the timeout covers the body.
    let fault = Fault::Trickle(Duration::from_secs(1));
    let ec = r#"token_timeout = "1s""#;
    let detail = bounded(15, token_fault(fault, ec, 504, "token_request_timeout")).await;
    assert!(detail.contains("1s"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_retry_after_is_honoured() {
    bounded(15, async {
        let rig = Rig::start("", "").await;
        rig.warm_up(WARM).await;
        let baseline = rig.baseline().await;

        rig.token.set_fault(Fault::RetryAfter {
            status: 429,
            seconds: 2,
        });
        let asked = Instant::now();
        let first = rig.get("/during", ADMIN).await;
        let detail = first.assert_error(502, "token_request_failed").to_owned();
        assert!(
            detail.contains("429") && detail.contains("retry after 2s"),
            "{detail}"
        );
        let token_requests = rig.token.requests();

        // Our own backoff after one failure is 250 ms: only Retry-After keeps these requests
        // from asking again.
        let mut shared = 0;
        while asked.elapsed() < Duration::from_millis(1500) {
            let answer = rig.get("/during", ADMIN).await;
            assert_eq!(answer.assert_error(502, "token_request_failed"), detail);
            assert_eq!(
                rig.token.requests(),
                token_requests,
                "asked again within Retry-After"
            );
            shared += 1;
            sleep(Duration::from_millis(100)).await;
        }
        assert!(shared >= 3, "only {shared} requests in the Retry-After window");

        // After it, a new token request (which now succeeds).
        rig.token.set_fault(Fault::None);
        rig.recover(ADMIN, "token_request_failed").await;
        rig.assert_back_to(baseline, "429 Retry-After").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_outage_at_1000_requests_per_second() {
    bounded(20, async {
        let rig = Rig::start("", "").await;
        rig.warm_up(WARM).await;
        let baseline = rig.baseline().await;
        let before = rig.token.requests();

        rig.token.set_fault(Fault::Status(503));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let url = rig.callout.url("/Api/during");
        let mut callers = JoinSet::new();
        // 2,000 requests, one a millisecond; should the machine lag, the outage still ends
        // at 2.5 s, so that the backoff (and the wait for recovery) stays as computed below.
        let mut pace = tokio::time::interval(Duration::from_millis(1));
        let outage = Instant::now();
        for _ in 0..2000 {
            pace.tick().await;
            if outage.elapsed() > Duration::from_millis(2500) {
                break;
            }
            let request = Request::get(&url)
                .header("x-callout-permission-sets", ADMIN)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let client = client.clone();
            callers.spawn(timeout(Duration::from_secs(3), async move {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, crate::support::BoxError>(Answer::new(parts.status, &parts.headers, body))
            }));
        }
        let fired = callers.len();
        let mut failed = 0;
        while let Some(outcome) = callers.join_next().await {
            let answer = outcome.unwrap().expect("a caller hung").expect("a caller failed");
            answer.assert_error(502, "token_request_failed");
            failed += 1;
        }
        assert_eq!(failed, fired);
        assert!(fired >= 1000, "only {fired} requests fired");

        // Backoff 250 ms, doubling: token requests at about 0, 0.25, 0.75 and 1.75 s.
        let during = rig.token.requests() - before;
        assert!((2..=8).contains(&during), "{during} token requests in the outage");
        assert_eq!(rig.token.max_in_flight(), 1, "one token request at a time");

        rig.token.set_fault(Fault::None);
        drop(client);
        rig.recover(ADMIN, "token_request_failed").await;
        rig.assert_back_to(baseline, "outage").await;
    })
    .await;
}

// === the upstream ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_mid_response_breaks_the_body_then_the_next_request_works() {
    bounded(15, async {
        let rig = Rig::start("", "").await;
        rig.warm_up(ADMIN).await;
        let baseline = rig.baseline().await;

        const DECLARED: usize = 1 << 20;
        const SENT: usize = 64 * 1024;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::get(rig.callout.url(&format!("/Api/cut/{DECLARED}/{SENT}")))
            .header("x-callout-permission-sets", ADMIN)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let broken = async {
            let response = client.request(request).await.expect("the response starts");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["x-upstream"], "1", "the upstream's response");
            let mut body = response.into_body();
            let mut received = Vec::new();
            let end = loop {
                match body.frame().await {
                    Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            };
            (received, end)
        };
        let (received, end) = timeout(REQUEST_BOUND, broken).await.expect("the body hung");
        assert!(end.is_some(), "a cut body must not look complete");
        assert!(received.len() <= SENT, "{} bytes", received.len());
        assert_eq!(
            received,
            pattern_slice(0, received.len()),
            "what was sent is intact"
        );
        drop(client);

        assert_eq!(rig.get("/after", ADMIN).await.status, StatusCode::OK);
        assert_eq!(rig.upstream.last().unwrap().target, "/after");
        assert_eq!(rig.token.requests(), 1, "an upstream fault is not a token fault");
        rig.assert_back_to(baseline, "upstream reset").await;
    })
    .await;
}

// === callers ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_disconnecting_mid_upload_leaks_nothing() {
    // Buffered for a possible retry (1 MB is within the default 1 MiB retry_body_limit), the
    // body never reaches the upstream; streamed, the upstream sees it break off.
    struct Case {
        server: &'static str,
        streams: bool,
    }
    let cases = [
        Case {
            server: "",
            streams: false,
        },
        Case {
            server: "retry_body_limit = 65536",
            streams: true,
        },
    ];
    for case in cases {
        bounded(15, async {
            let rig = Rig::start(case.server, "").await;
            rig.warm_up(ADMIN).await;
            let baseline = rig.baseline().await;
            let (started, complete) = (rig.upstream.started(), rig.upstream.requests());

            let mut caller = TcpStream::connect(rig.callout.addr).await.unwrap();
            let head = format!(
                "POST /Api/upload HTTP/1.1\r\nHost: callout\r\nx-callout-permission-sets: {ADMIN}\r\n\
                 Content-Length: 1000000\r\n\r\n"
            );
            caller.write_all(head.as_bytes()).await.unwrap();
            caller.write_all(&pattern_slice(0, 100_000)).await.unwrap();
            if case.streams {
                eventually("the upload reaches the upstream", || {
                    rig.upstream.started() > started
                })
                .await;
            } else {
                // Let callout read what there is, so it is waiting for the rest.
                sleep(Duration::from_millis(100)).await;
            }
            drop(caller);

            if case.streams {
                eventually("the upstream sees it break off", || {
                    rig.upstream.incomplete() == 1
                })
                .await;
            }
            assert_eq!(rig.upstream.requests(), complete, "never forwarded as complete");

            assert_eq!(rig.get("/after", ADMIN).await.status, StatusCode::OK);
            assert_eq!(rig.upstream.last().unwrap().target, "/after");
            rig.assert_back_to(baseline, case.server).await;
            let expected_started = started + usize::from(case.streams) + 1;
            assert_eq!(rig.upstream.started(), expected_started, "{}", case.server);
            assert_eq!(rig.upstream.incomplete(), usize::from(case.streams));
        })
        .await;
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 3 s");
        sleep(Duration::from_millis(10)).await;
    }
}
