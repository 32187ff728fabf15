//! Hostile callers at the connection level: idle connections that would hold every slot,
//! more HTTP/2 streams than allowed, and running callout out of file descriptors.
//!
//! Durations are printed, never asserted: the assertions are about outcomes (served,
//! closed, refused), and every wait has a generous bound only so that a hang fails.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::harness::{Callout, basic_config};
use crate::support::h2::{self, RawH2};
use crate::support::{TokenServer, Upstream, http_get, lock, try_http_request};

/// Bound on any one wait; far above what each should take (about `idle_timeout`).
const HANG: Duration = Duration::from_secs(15);
const ADMIN: (&str, &str) = ("x-callout-permission-sets", "Admin_Set");
const PRLIMIT: &str = "/usr/bin/prlimit";

/// The test config with `lines` added to `[server]`.
fn config(token: &TokenServer, upstream: &Upstream, lines: &str) -> String {
    basic_config(token, upstream, "").replace("[server]", &format!("[server]\n{lines}"))
}

/// The task driving a client connection; it ends when the server closes the connection.
type Driver = JoinHandle<Result<(), hyper::Error>>;

/// An HTTP/2 client connection (hyper's, which answers PINGs by itself).
async fn h2_client(addr: SocketAddr) -> (http2::SendRequest<Empty<Bytes>>, Driver) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    (send, tokio::spawn(connection))
}

/// An HTTP/1.1 keep-alive client connection.
async fn h1_client(addr: SocketAddr) -> (http1::SendRequest<Empty<Bytes>>, Driver) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    (send, tokio::spawn(connection))
}

fn get(addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .header(ADMIN.0, ADMIN.1)
        .body(Empty::new())
        .unwrap()
}

/// Sends `request` and reads the whole answer; its status.
macro_rules! status_of {
    ($send:expr, $request:expr) => {{
        let response = timeout(HANG, $send.send_request($request))
            .await
            .expect("answered in time")
            .expect("answered, not cut off");
        let status = response.status();
        response.into_body().collect().await.expect("the whole body");
        status
    }};
}

/// Waits until the server has closed `connection`, idle since `idle_since`.
async fn closes(what: &str, connection: Driver, idle_since: Instant) {
    let ended = timeout(HANG, connection)
        .await
        .unwrap_or_else(|_| panic!("{what} was still open after {HANG:?}"))
        .unwrap();
    eprintln!(
        "{what}: closed ({ended:?}) {:?} after it went idle",
        idle_since.elapsed()
    );
}

#[tokio::test]
async fn idle_h2c_connections_are_closed_whatever_pings_they_answer() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // The server's keep-alive PINGs go out every header_read_timeout, well within idle_timeout.
    let lines = "idle_timeout = \"1s\"\nheader_read_timeout = \"200ms\"";
    let callout = Callout::start(&config(&token, &upstream, lines)).await;

    let opened = Instant::now();
    let (_silent, silent_task) = h2_client(callout.addr).await;
    let (mut used, used_task) = h2_client(callout.addr).await;
    assert_eq!(status_of!(used, get(callout.addr, "/Api/x")), StatusCode::OK);
    let used_idle = Instant::now();
    let mut raw = RawH2::connect(callout.addr).await.unwrap();
    raw.settings().await.unwrap();
    let raw_task = tokio::spawn(raw.answer_pings_until_closed());

    closes("an h2c connection that never sent a request", silent_task, opened).await;
    closes("an h2c connection idle after one request", used_task, used_idle).await;
    let quiet = timeout(HANG, raw_task).await.expect("closed in time").unwrap();
    eprintln!("the raw peer answered {} PINGs before it was closed", quiet.pings);
    assert!(quiet.goaway, "the idle connection was told to go away first");
}

/// hyper waits for the answer to its GOAWAY PING before it closes; a peer that never gives
/// one is dropped all the same.
#[tokio::test]
async fn an_idle_h2c_peer_that_ignores_goaway_is_dropped() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // Keep-alive PINGs every 30s (the default header_read_timeout): not what ends this one.
    let callout = Callout::start(&config(&token, &upstream, "idle_timeout = \"1s\"")).await;

    let mut raw = RawH2::connect(callout.addr).await.unwrap();
    raw.settings().await.unwrap();
    let opened = Instant::now();
    let quiet = timeout(HANG, raw.ignore_goaway_until_closed())
        .await
        .expect("dropped although it never answered");
    eprintln!(
        "a peer ignoring GOAWAY: dropped {:?} after it went idle",
        opened.elapsed()
    );
    assert!(quiet.goaway);
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_idle_timeout() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // header_read_timeout stays at its default (30s), far past the bound on the wait.
    let callout = Callout::start(&config(&token, &upstream, "idle_timeout = \"1s\"")).await;

    let (mut h1, h1_task) = h1_client(callout.addr).await;
    assert_eq!(status_of!(h1, get(callout.addr, "/Api/x")), StatusCode::OK);
    assert_eq!(status_of!(h1, get(callout.addr, "/Api/y")), StatusCode::OK);
    closes("an HTTP/1.1 keep-alive connection", h1_task, Instant::now()).await;
}

#[tokio::test]
async fn a_request_in_flight_keeps_its_connection_past_idle_timeout() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&token, &upstream, "idle_timeout = \"1s\"")).await;
    upstream.set_delay(Duration::from_millis(2500));

    let (mut h2, h2_task) = h2_client(callout.addr).await;
    let (mut h1, h1_task) = h1_client(callout.addr).await;
    let (h2_status, h1_status) =
        tokio::join!(async { status_of!(h2, get(callout.addr, "/Api/slow")) }, async {
            status_of!(h1, get(callout.addr, "/Api/slow"))
        },);
    assert_eq!(h2_status, StatusCode::OK);
    assert_eq!(h1_status, StatusCode::OK);
    // Had either been told to go away meanwhile (its slow request would still have been
    // answered), a new request on it now would fail.
    upstream.set_delay(Duration::ZERO);
    assert_eq!(status_of!(h2, get(callout.addr, "/Api/next")), StatusCode::OK);
    assert_eq!(status_of!(h1, get(callout.addr, "/Api/next")), StatusCode::OK);
    let idle_since = Instant::now();
    assert_eq!(upstream.requests(), 4);

    // Once the answers are in, the connections are idle and go.
    closes("the h2c connection after its slow request", h2_task, idle_since).await;
    closes(
        "the HTTP/1.1 connection after its slow request",
        h1_task,
        idle_since,
    )
    .await;
}

/// The attack: idle connections that answer PINGs, as many as `max_connections`, must not
/// lock out a caller for longer than about `idle_timeout`.
#[tokio::test]
async fn idle_h2c_connections_cannot_lock_callers_out() {
    const SLOTS: usize = 20;
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let lines = format!("max_connections = {SLOTS}\nidle_timeout = \"1s\"\nheader_read_timeout = \"300ms\"");
    let callout = Callout::start(&config(&token, &upstream, &lines)).await;

    let mut attackers = Vec::new();
    for _ in 0..SLOTS {
        let mut raw = RawH2::connect(callout.addr).await.unwrap();
        // The server's SETTINGS: this connection holds a slot.
        timeout(HANG, raw.settings()).await.expect("served").unwrap();
        attackers.push(tokio::spawn(raw.answer_pings_until_closed()));
    }

    let started = Instant::now();
    let (status, _, _) = timeout(HANG, http_get(&callout.url("/Api/x"), &[ADMIN]))
        .await
        .expect("a caller got in while idle connections held every slot");
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::OK);

    let mut pings = 0;
    let mut goaways = 0;
    for attacker in attackers {
        let quiet = timeout(HANG, attacker).await.expect("closed in time").unwrap();
        pings += quiet.pings;
        goaways += usize::from(quiet.goaway);
    }
    eprintln!(
        "{SLOTS} idle h2c connections (max_connections = {SLOTS}, idle_timeout = 1s): the next caller \
         waited {waited:?}; all {SLOTS} were closed, {goaways} with a GOAWAY, after answering {pings} PINGs"
    );
    assert_eq!(goaways, SLOTS);
}

#[tokio::test]
async fn more_streams_than_max_concurrent_streams_are_refused() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Callout::start(&config(&token, &upstream, "max_concurrent_streams = 2")).await;
    // Long enough that the first two streams are still open when the third arrives.
    upstream.set_delay(Duration::from_millis(1500));

    let mut raw = RawH2::connect(callout.addr).await.unwrap();
    let settings = timeout(HANG, raw.settings()).await.expect("served").unwrap();
    assert!(
        settings.contains(&(h2::SETTINGS_MAX_CONCURRENT_STREAMS, 2)),
        "the server announces the limit: {settings:?}"
    );

    // A peer ignoring the limit: the third stream must be refused, the first two answered.
    for id in [1, 3, 5] {
        raw.get(id, "/Api/slow", &[ADMIN]).await.unwrap();
    }
    let mut answered = Vec::new();
    let mut refused = Vec::new();
    let read_all = async {
        while answered.len() + refused.len() < 3 {
            let frame = raw.read_frame().await.expect("the connection stays open");
            if raw.answer(&frame).await.unwrap() {
                continue;
            }
            match frame.kind {
                h2::HEADERS => answered.push(frame.stream),
                h2::RST_STREAM => refused.push((frame.stream, frame.error_code())),
                _ => {}
            }
        }
    };
    timeout(HANG, read_all)
        .await
        .expect("every stream was answered or refused");
    answered.sort_unstable();
    assert_eq!(answered, [1, 3]);
    assert_eq!(refused, [(5, Some(h2::REFUSED_STREAM))]);
    assert_eq!(upstream.started(), 2);
}

// === out of file descriptors ===

/// `callout serve` as a child under `prlimit --nofile=N:N`; killed when dropped.
struct Limited {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Limited {
    async fn start(toml: &str, nofile: u32) -> Limited {
        assert!(
            Path::new(PRLIMIT).exists(),
            "{PRLIMIT} is missing: this test needs util-linux's prlimit (CI installs util-linux)"
        );
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let path = dir.path().join("callout.toml");
            std::fs::write(&path, toml.replace("127.0.0.1:0", &addr.to_string())).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let mut child = Command::new(PRLIMIT)
                .arg(format!("--nofile={nofile}:{nofile}"))
                .args(["--", env!("CARGO_BIN_EXE_callout"), "serve", "--config"])
                .arg(&path)
                .env_remove("RUST_LOG")
                .env_remove("CALLOUT_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("prlimit runs");
            let stderr = Arc::new(Mutex::new(Vec::new()));
            let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    lock(&sink).extend_from_slice(&chunk[..n]);
                }
            });
            let mut limited = Limited {
                child,
                stderr,
                addr,
                _dir: dir,
            };
            if limited.ready().await {
                return limited;
            }
            assert!(
                limited.stderr().contains("cannot listen"),
                "callout did not start: {}",
                limited.stderr()
            );
        }
        panic!("no free port could be bound in three tries");
    }

    async fn ready(&mut self) -> bool {
        let url = format!("http://{}/.callout/ready", self.addr);
        let deadline = Instant::now() + HANG;
        while Instant::now() < deadline && self.child.try_wait().unwrap().is_none() {
            let attempt = timeout(
                Duration::from_secs(1),
                try_http_request("GET", &url, &[], Bytes::new()),
            );
            if let Ok(Ok((StatusCode::OK, _, _))) = attempt.await {
                return true;
            }
            sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// File descriptors the child has open.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Outcome {
    Served(TcpStream),
    Closed,
}

/// A new connection sending one keep-alive request: answered, or closed unanswered.
async fn knock(addr: SocketAddr) -> Outcome {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the kernel takes the connection");
    if stream
        .write_all(b"GET /.callout/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return Outcome::Closed;
    }
    let mut buf = [0u8; 512];
    match stream.read(&mut buf).await {
        Ok(n @ 1..) => {
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
            Outcome::Served(stream)
        }
        Ok(0) | Err(_) => Outcome::Closed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_new_connections_are_shed_and_served_ones_go_on() {
    const NOFILE: u32 = 64;
    /// Connections turned away before the flood stops.
    const SHED: usize = 20;
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let callout = Limited::start(&config(&token, &upstream, ""), NOFILE).await;
    let baseline = callout.fds();

    let (mut keeper, keeper_task) = h1_client(callout.addr).await;
    assert_eq!(status_of!(keeper, get(callout.addr, "/Api/keep")), StatusCode::OK);

    let mut served = Vec::new();
    let (mut shed, mut kept_answers, mut peak) = (0, 1, 0);
    let mut slowest_shed = Duration::ZERO;
    for _ in 0..4 * NOFILE {
        let started = Instant::now();
        let knocked = timeout(Duration::from_secs(5), knock(callout.addr)).await;
        match knocked.expect("a connection past the limit was left hanging instead of closed") {
            Outcome::Served(stream) => served.push(stream),
            Outcome::Closed => {
                shed += 1;
                slowest_shed = slowest_shed.max(started.elapsed());
            }
        }
        peak = peak.max(callout.fds());
        assert_eq!(
            status_of!(keeper, get(callout.addr, "/Api/keep")),
            StatusCode::OK,
            "the connection being served goes on"
        );
        kept_answers += 1;
        if shed == SHED {
            break;
        }
    }
    assert_eq!(shed, SHED, "accepts never failed under --nofile={NOFILE}");
    let at_limit = served.len();
    assert!(at_limit > 0);

    drop(served);
    let started = Instant::now();
    let deadline = started + HANG;
    let after = format!("http://{}/Api/after", callout.addr);
    loop {
        let attempt = timeout(
            Duration::from_secs(2),
            try_http_request("GET", &after, &[ADMIN], Bytes::new()),
        );
        if let Ok(Ok((StatusCode::OK, _, _))) = attempt.await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new callers were not served after the flood"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let recovered = started.elapsed();
    assert_eq!(status_of!(keeper, get(callout.addr, "/Api/keep")), StatusCode::OK);
    drop(keeper);
    let _ = timeout(HANG, keeper_task).await;

    let log = callout.stderr();
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("out of file descriptors"))
        .collect();
    assert!(!warnings.is_empty(), "no warning about shedding:\n{log}");
    eprintln!(
        "--nofile={NOFILE}: {baseline} fds open at start, {peak} at the peak; {} connections served \
         at the limit, {shed} shed (the slowest closed after {slowest_shed:?}); the kept connection \
         got {kept_answers} answers; served again {recovered:?} after the flood closed; {} warning \
         lines, the first: {}",
        at_limit,
        warnings.len(),
        warnings[0]
    );
}
