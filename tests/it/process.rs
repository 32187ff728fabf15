//! The real `callout` binary as a child process: signals (reload, graceful shutdown), what it
//! writes to stderr, memory while streaming, and the command line.

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, sleep, timeout};

use crate::support::{
    Digest, Fault, TokenServer, Upstream, http_get, http_request, lock, pattern_digest, pattern_slice,
    try_http_request,
};

/// How long a child may take to start serving, or to exit once told to.
const STARTUP: Duration = Duration::from_secs(5);
const EXIT: Duration = Duration::from_secs(10);
/// Bound for "wait until" loops on observable state.
const EVENTUALLY: Duration = Duration::from_secs(5);
/// Stands for the listen address in config templates; replaced with a free port.
pub(crate) const LISTEN: &str = "@LISTEN@";

// === child processes ===

/// A child's output pipe, drained by a thread so the child never blocks on a full pipe.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn new(mut pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 16 * 1024];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                lock(&sink).extend_from_slice(&chunk[..n]);
            }
        });
        Capture {
            buf,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.buf)).into_owned()
    }

    /// Everything, once the child has exited (the pipe is then at its end).
    fn finish(&mut self) -> String {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.text()
    }
}

/// A running child; killed and reaped when dropped, so no test leaks a process.
pub(crate) struct Proc {
    child: Child,
    stdout: Capture,
    stderr: Capture,
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callout"));
        command
            .args(args)
            // The test runner's own settings must not leak into the child.
            .env_remove("RUST_LOG")
            .env_remove("CALLOUT_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the callout binary starts");
        let stdout = Capture::new(child.stdout.take().unwrap());
        let stderr = Capture::new(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid works")
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "callout did not exit within {within:?}; stderr:\n{}",
                    self.stderr.text()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished CLI invocation left behind.
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `callout ARGS` to completion (bounded).
pub(crate) async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut proc = Proc::spawn(args, env);
    let status = proc.wait_exit(EXIT).await;
    Output {
        code: status.code(),
        stdout: proc.stdout.finish(),
        stderr: proc.stderr.finish(),
    }
}

/// `callout serve` on a free loopback port, ready to take requests.
pub(crate) struct Serving {
    pub(crate) proc: Proc,
    addr: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serving {
    /// Writes `template` (with `@LISTEN@` for the address) and `files` into a fresh folder and
    /// serves it.
    pub(crate) async fn start(
        template: &str,
        files: &[(&str, &str)],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Serving {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config = dir.path().join("callout.toml");
        // The port is free when we look but may be taken before the child binds it: retry.
        for _ in 0..3 {
            let addr = free_addr();
            write_private(&config, &template.replace(LISTEN, &addr.to_string()));
            let config_arg = config.to_str().unwrap();
            let mut all_args = vec!["serve", "--config", config_arg];
            all_args.extend_from_slice(args);
            let mut proc = Proc::spawn(&all_args, env);
            match wait_ready(&mut proc, addr).await {
                Ok(()) => {
                    return Serving {
                        proc,
                        addr,
                        config,
                        _dir: dir,
                    };
                }
                Err(stderr) if stderr.contains("cannot listen") => continue,
                Err(stderr) => panic!("callout serve did not become ready; stderr:\n{stderr}"),
            }
        }
        panic!("no free port could be bound in three tries");
    }

    /// The folder the config and its files are in.
    pub(crate) fn config_dir(&self) -> &Path {
        self.config.parent().unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replaces the config file (the listen address stays the same).
    pub(crate) fn rewrite(&self, template: &str) {
        write_private(&self.config, &template.replace(LISTEN, &self.addr.to_string()));
    }

    pub(crate) fn stderr(&self) -> String {
        strip_ansi(&self.proc.stderr.text())
    }

    /// Sends `signal` and waits for the process to exit; returns its status and all of stderr.
    pub(crate) async fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        self.proc.signal(signal);
        let status = self.proc.wait_exit(EXIT).await;
        (status, self.proc.stderr.finish())
    }
}

/// Writes a config readable by its owner only, as a config holding literal secrets should be.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub(crate) fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Polls `/.callout/ready`; `Err(stderr)` if the child exits or the wait runs out.
async fn wait_ready(proc: &mut Proc, addr: SocketAddr) -> Result<(), String> {
    let url = format!("http://{addr}/.callout/ready");
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if proc.exited().is_some() {
            return Err(proc.stderr.finish());
        }
        let attempt = timeout(
            Duration::from_secs(1),
            try_http_request("GET", &url, &[], Bytes::new()),
        );
        if let Ok(Ok((StatusCode::OK, _, _))) = attempt.await {
            return Ok(());
        }
        sleep(Duration::from_millis(20)).await;
    }
    Err(proc.stderr.text())
}

/// Waits (bounded) until `check` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + EVENTUALLY;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Removes ANSI colour sequences (`ESC [ ... final`), which the text log format may carry.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    text[..at].matches('\n').count() + 1
}

/// Whether `output` reports a problem at `callout.toml:LINE:COL:` (any column within that
/// line of `config`) whose message mentions `keyword`.
fn problem_at(output: &str, config: &str, line: usize, keyword: &str) -> bool {
    let width = config.lines().nth(line - 1).map_or(0, |l| l.chars().count());
    let place = format!("callout.toml:{line}:");
    output.lines().any(|l| {
        let Some(at) = l.find(&place) else { return false };
        let rest = &l[at + place.len()..];
        let Some((column, message)) = rest.split_once(": ") else {
            return false;
        };
        column
            .parse::<usize>()
            .is_ok_and(|c| (1..=width + 1).contains(&c))
            && message.contains(keyword)
    })
}

// === configs ===

/// `Api` (to the upstream's root) through `Idp`: principal `Admin` (sequence 1, `Admin_Set`)
/// and `Reader` (sequence 2, `Read_Set`). `server` and `named` are appended to the `[server]`
/// and `[named_credentials.Api]` tables; `tail` to the file.
fn config(token: &TokenServer, upstream: &Upstream, server: &str, named: &str, tail: &str) -> String {
    format!(
        r#"[server]
listen = "{LISTEN}"
{server}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"
scope = "api.read"

[[external_credentials.Idp.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Admin_Set"]
client_id = "admin-client"
client_secret = "admin-secret-value"

[[external_credentials.Idp.principals]]
name = "Reader"
sequence = 2
permission_sets = ["Read_Set"]
client_id = "reader-client"
client_secret = "reader-secret-value"

[named_credentials.Api]
url = "{upstream}"
external_credential = "Idp"
{named}
{tail}"#,
        token = token.url(),
        upstream = upstream.url(),
    )
}

const READ: (&str, &str) = ("x-callout-permission-sets", "Read_Set");

async fn get_ok(serving: &Serving, path: &str) -> serde_json::Value {
    let (status, _, body) = http_get(&serving.url(path), &[READ]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    serde_json::from_slice(&body).unwrap()
}

async fn credentials(serving: &Serving) -> serde_json::Value {
    let (status, _, body) = http_get(&serving.url("/.callout/credentials"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

fn named_names(credentials: &serde_json::Value) -> Vec<String> {
    credentials["named_credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

// === SIGHUP ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_cached_tokens_and_adds_the_new_credential() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let serving = Serving::start(&config(&token, &upstream, "", "", ""), &[], &[], &[]).await;

    get_ok(&serving, "/Api/before").await;
    assert_eq!(token.requests(), 1);

    // Same external credential and principals: the token's inputs do not change.
    let reloaded = config(
        &token,
        &upstream,
        "",
        r#"headers = { "X-Reloaded" = "yes" }"#,
        &format!(
            "\n[named_credentials.Api_Two]\nurl = \"{}/two\"\nexternal_credential = \"Idp\"\n",
            upstream.url()
        ),
    );
    serving.rewrite(&reloaded);
    serving.proc.signal("HUP");
    eventually("the reloaded config lists Api_Two", || async {
        named_names(&credentials(&serving).await).contains(&"Api_Two".to_owned())
    })
    .await;

    get_ok(&serving, "/Api/after").await;
    let seen = upstream.last().unwrap();
    assert_eq!(seen.target, "/after");
    assert_eq!(seen.headers["x-reloaded"], "yes", "the new config serves");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {}", token.issued()[0]),
        "the token cached before the reload is still used"
    );

    get_ok(&serving, "/Api_Two/x").await;
    assert_eq!(upstream.last().unwrap().target, "/two/x");
    assert_eq!(token.requests(), 1, "no token request after the reload");
    assert_eq!(upstream.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_config_logs_where_and_keeps_serving() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let serving = Serving::start(&config(&token, &upstream, "", "", ""), &[], &[], &[]).await;
    get_ok(&serving, "/Api/before").await;

    let bad = config(
        &token,
        &upstream,
        "surprise = 1",
        "",
        &format!(
            "\n[named_credentials.Bad__Name]\nurl = \"{}\"\nexternal_credential = \"Idp\"\n",
            upstream.url()
        ),
    );
    let unknown_line = line_of(&bad, "surprise = 1");
    let name_line = line_of(&bad, "[named_credentials.Bad__Name]");
    serving.rewrite(&bad);
    serving.proc.signal("HUP");
    eventually("the refused reload is logged", || async {
        problem_at(&serving.stderr(), &bad, name_line, "Bad__Name")
    })
    .await;
    let stderr = serving.stderr();
    assert!(problem_at(&stderr, &bad, unknown_line, "surprise"), "{stderr}");

    get_ok(&serving, "/Api/after").await;
    assert_eq!(upstream.last().unwrap().target, "/after");
    assert_eq!(
        token.requests(),
        1,
        "the old config and its cached token keep serving"
    );
    assert_eq!(named_names(&credentials(&serving).await), ["Api"]);
    let (status, headers, _) = http_get(&serving.url("/Bad__Name/x"), &[READ]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-callout-error"], "unknown_named_credential");
}

// === SIGTERM / SIGINT ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_in_flight_request_refuses_new_ones_and_exits_zero() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let toml = config(&token, &upstream, r#"shutdown_grace = "5s""#, "", "");
    let mut serving = Serving::start(&toml, &[], &[], &[]).await;
    upstream.set_delay(Duration::from_millis(2000));

    let url = serving.url("/Api/slow");
    let in_flight = tokio::spawn(async move { http_get(&url, &[READ]).await });
    eventually("the upstream holds the request", || async {
        upstream.requests() == 1
    })
    .await;

    serving.proc.signal("TERM");
    let addr = serving.addr;
    eventually("new connections are refused", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        serving.proc.exited().is_none(),
        "the listener must close while the in-flight request still runs, not only at exit"
    );

    let (status, headers, body) = timeout(EXIT, in_flight).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["x-upstream"], "1");
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["target"], "/slow");

    let status = serving.proc.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(0), "{}", serving.stderr());
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_zero() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let serving = Serving::start(&config(&token, &upstream, "", "", ""), &[], &[], &[]).await;
    get_ok(&serving, "/Api/x").await;
    let addr = serving.addr;
    let (status, stderr) = serving.stop("INT").await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// === logs ===

/// A client id and secret, with everything a leak could look like.
struct Credential {
    id: &'static str,
    secret: &'static str,
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn base64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Credential {
    fn forbidden(&self) -> Vec<String> {
        let json = serde_json::to_string(self.secret).unwrap();
        let debug = format!("{:?}", self.secret);
        vec![
            self.secret.to_owned(),
            form(self.secret),
            json[1..json.len() - 1].to_owned(),
            debug[1..debug.len() - 1].to_owned(),
            base64(&format!("{}:{}", self.id, self.secret)),
            base64(&format!("{}:{}", form(self.id), form(self.secret))),
        ]
    }
}

// Secrets with characters that form encoding, Basic, TOML, JSON and Debug all treat
// specially, so every encoded form differs from the raw one.
const HEADER: Credential = Credential {
    id: "header id:1",
    secret: "H-s3cret:%41+/ =&\u{fc}\"q\\",
};
const UNENCODED: Credential = Credential {
    id: "unencoded-id",
    secret: "U-s3cret%2B+ \u{fc}/=?#&;'",
};
const BODY: Credential = Credential {
    id: "body id&1",
    secret: "B-s3cret&client_secret=x%+\u{fc} \"q\"",
};

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Three external credentials, one per `client_auth`, with secrets from a literal, the
/// environment and a file.
fn three_ways_config(token: &TokenServer, upstream: &Upstream) -> String {
    let ec = |name: &str, auth: &str, id: &str, secret: &str| {
        format!(
            r#"
[external_credentials.{name}]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"
client_auth = "{auth}"

[[external_credentials.{name}.principals]]
name = "App"
sequence = 1
permission_sets = ["Apps"]
client_id = {id}
client_secret = {secret}
"#,
            token = token.url(),
            id = toml_string(id),
        )
    };
    let nc = |name: &str, ec: &str| {
        format!(
            "\n[named_credentials.{name}]\nurl = \"{}\"\nexternal_credential = \"{ec}\"\n",
            upstream.url()
        )
    };
    [
        format!("[server]\nlisten = \"{LISTEN}\"\n"),
        ec("Idp_Header", "header", HEADER.id, &toml_string(HEADER.secret)),
        ec(
            "Idp_Unencoded",
            "header_unencoded",
            UNENCODED.id,
            r#"{ env = "CALLOUT_IT_UNENCODED_SECRET" }"#,
        ),
        ec("Idp_Body", "body", BODY.id, r#"{ file = "body-secret.txt" }"#),
        nc("Api_Header", "Idp_Header"),
        nc("Api_Unencoded", "Idp_Unencoded"),
        nc("Api_Body", "Idp_Body"),
    ]
    .concat()
}

/// The (method, named credential, status) of each access log line.
fn access_lines(log: &str, json: bool) -> Vec<(String, String, u16)> {
    let mut found = Vec::new();
    for line in log.lines() {
        if !line.contains("callout::access") {
            continue;
        }
        if json {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let field = |k: &str| {
                v.get(k)
                    .or_else(|| v.get("fields").and_then(|f| f.get(k)))
                    .cloned()
            };
            let (Some(m), Some(n), Some(s)) = (field("method"), field("named_credential"), field("status"))
            else {
                continue;
            };
            found.push((
                m.as_str().unwrap_or_default().to_owned(),
                n.as_str().unwrap_or_default().to_owned(),
                s.as_u64().unwrap_or_default() as u16,
            ));
        } else {
            let field = |k: &str| {
                line.split_whitespace()
                    .find_map(|t| t.strip_prefix(&format!("{k}=")))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            if let (Some(m), Some(n), Some(s)) = (field("method"), field("named_credential"), field("status"))
            {
                found.push((m, n, s.parse().unwrap_or_default()));
            }
        }
    }
    found
}

/// A full run at trace level: one request per client auth placement, one upstream rejection
/// with refresh, one OAuth error from the token endpoint, then SIGTERM. Returns all of stderr
/// and everything that must not be in it.
async fn logged_run(log_format: &str) -> (String, Vec<String>) {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let body_secret_file = format!("{}\n", BODY.secret);
    let serving = Serving::start(
        &three_ways_config(&token, &upstream),
        &[("body-secret.txt", &body_secret_file)],
        &["--log-format", log_format],
        &[
            ("RUST_LOG", "trace"),
            ("CALLOUT_IT_UNENCODED_SECRET", UNENCODED.secret),
        ],
    )
    .await;
    let apps = [("x-callout-permission-sets", "Apps")];
    let send = |method: &'static str, path: &str| {
        let url = serving.url(path);
        async move { http_request(method, &url, &apps, Bytes::from_static(b"{}")).await }
    };

    for (method, path) in [
        ("GET", "/Api_Header/a"),
        ("GET", "/Api_Unencoded/b"),
        ("POST", "/Api_Body/c"),
    ] {
        let (status, _, body) = send(method, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
    }
    // The secrets really went out, each in its placement, during the logged run.
    let log = token.requests_log();
    assert_eq!(log.len(), 3);
    assert_eq!(
        log[0].basic_auth(),
        Some((HEADER.id.into(), HEADER.secret.into()))
    );
    assert_eq!(
        log[0].basic_auth_raw(),
        Some((form(HEADER.id), form(HEADER.secret)))
    );
    assert_eq!(
        log[1].basic_auth_raw(),
        Some((UNENCODED.id.into(), UNENCODED.secret.into()))
    );
    assert_eq!(log[2].form_value("client_secret").as_deref(), Some(BODY.secret));

    // An upstream rejection: refresh and retry.
    upstream.reject_token(&token.issued()[0]);
    let (status, _, _) = send("PUT", "/Api_Header/d").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(token.requests(), 4);
    assert_eq!(
        upstream.last().unwrap().headers["authorization"],
        format!("Bearer {}", token.issued()[3])
    );

    // A rejection whose refresh the token endpoint refuses.
    token.set_fault(Fault::OAuthError {
        error: "invalid_client".into(),
        description: "client authentication failed".into(),
    });
    upstream.reject_token(&token.issued()[1]);
    let (status, headers, body) = send("DELETE", "/Api_Unencoded/e").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body:?}");
    assert_eq!(headers["x-callout-error"], "token_request_failed");
    assert_eq!(token.requests(), 5);

    let (status, stderr) = serving.stop("TERM").await;
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut forbidden: Vec<String> = [HEADER, UNENCODED, BODY]
        .iter()
        .flat_map(Credential::forbidden)
        .collect();
    forbidden.extend(token.issued());
    assert_eq!(token.issued().len(), 4);
    (stderr, forbidden)
}

fn assert_no_leaks(stderr: &str, forbidden: &[String], json: bool) {
    let clean = strip_ansi(stderr);
    assert!(
        clean.lines().count() > 10,
        "the trace log is nearly empty:\n{clean}"
    );
    for secret in forbidden {
        assert!(
            !stderr.contains(secret.as_str()) && !clean.contains(secret.as_str()),
            "the log contains {secret:?}"
        );
    }
    assert!(
        !clean.to_ascii_lowercase().contains("bearer tok-"),
        "the log shows a bearer token"
    );

    let mut lines = access_lines(&clean, json);
    lines.sort();
    let mut expected: Vec<(String, String, u16)> = [
        ("GET", "Api_Header", 200),
        ("GET", "Api_Unencoded", 200),
        ("POST", "Api_Body", 200),
        ("PUT", "Api_Header", 200),
        ("DELETE", "Api_Unencoded", 502),
    ]
    .iter()
    .map(|(m, n, s)| (m.to_string(), n.to_string(), *s))
    .collect();
    expected.sort();
    assert_eq!(lines, expected, "one access line per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_text_log_holds_no_secret_or_token() {
    let (stderr, forbidden) = logged_run("text").await;
    assert_no_leaks(&stderr, &forbidden, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_json_log_holds_no_secret_or_token() {
    let (stderr, forbidden) = logged_run("json").await;
    assert_no_leaks(&stderr, &forbidden, true);
    assert_access_fields(&stderr);
}

/// Every access line has a request id, the path without its query, and a duration in
/// whole microseconds.
fn assert_access_fields(stderr: &str) {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("callout::access"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mut ids = std::collections::HashSet::new();
    for line in &lines {
        let id = line["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty() && ids.insert(id.to_owned()), "{line}");
        let path = line["path"].as_str().unwrap_or_default();
        assert!(path.starts_with("/Api_") && !path.contains('?'), "{line}");
        assert!(line["duration_us"].is_u64(), "{line}");
    }
    assert!(lines.iter().any(|l| l["upstream_status"] == 200), "{lines:?}");
}

// === streaming ===

const FIFTY_MB: u64 = 50 << 20;
/// The pattern repeats every 251 bytes, so a chunk of 256 periods can be sent over and over.
const PERIOD_CHUNK: usize = 251 * 256;

/// `len` bytes of the upstream's `/stream/` pattern, produced as the client sends them.
struct PatternUpload {
    chunk: Bytes,
    left: u64,
}

impl Body for PatternUpload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = this.left.min(this.chunk.len() as u64) as usize;
        this.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        // No exact size: the request goes out chunked, the path that cannot be sized up front.
        SizeHint::new()
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_each_way_in_bounded_memory() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start_checking(token.registry()).await;
    let toml = config(&token, &upstream, "max_request_body = 104857600", "", "");
    let serving = Serving::start(&toml, &[], &[], &[]).await;
    let expected_digest = pattern_digest(FIFTY_MB);

    let transfers = async {
        let request = Request::get(serving.url(&format!("/Api/stream/{FIFTY_MB}")))
            .header(READ.0, READ.1)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let (mut len, mut digest) = (0u64, Digest::new());
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                len += data.len() as u64;
                digest.update(data);
            }
        }
        assert_eq!(len, FIFTY_MB);
        assert_eq!(digest.finish(), expected_digest);

        let upload = PatternUpload {
            chunk: Bytes::from(pattern_slice(0, PERIOD_CHUNK)),
            left: FIFTY_MB,
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(serving.url("/Api/upload"))
            .header(READ.0, READ.1)
            .body(upload)
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let echo: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(echo["body_len"], FIFTY_MB);
        assert_eq!(echo["body_digest"], format!("{expected_digest:016x}"));
    };
    timeout(Duration::from_secs(60), transfers)
        .await
        .expect("the transfers finish");

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body_len, FIFTY_MB);
    assert_eq!(token.requests(), 1);

    let peak_mib = vm_hwm_kib(serving.proc.pid()) / 1024;
    assert!(
        peak_mib < 40,
        "callout peaked at {peak_mib} MiB moving 50 MiB each way: bodies are being buffered"
    );
}

// === command line ===

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every `{ env = "VAR" }` in a TOML value.
fn env_vars(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            if let (1, Some(toml::Value::String(var))) = (t.len(), t.get("env")) {
                out.push(var.clone());
            }
            t.values().for_each(|v| env_vars(v, out));
        }
        toml::Value::Array(a) => a.iter().for_each(|v| env_vars(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_every_shipped_config_and_prints_its_map() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_path("config"))
        .map(|dir| dir.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    assert!(!files.is_empty(), "config/ holds no example *.toml");

    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let table: toml::Table = text.parse().unwrap();
        // The examples name their secrets by environment variable, as users would set them.
        let mut vars = Vec::new();
        env_vars(&toml::Value::Table(table.clone()), &mut vars);
        // Keys and certificates must parse: those get test fixtures.
        let key = std::fs::read_to_string(manifest_path("tests/fixtures/keys/rsa-2048-pkcs8.pem")).unwrap();
        let cert = std::fs::read_to_string(manifest_path("tests/it/certs/server.pem")).unwrap();
        let env: Vec<(&str, &str)> = vars
            .iter()
            .map(|v| match v.as_str() {
                v if v.ends_with("_PRIVATE_KEY") => (v, key.as_str()),
                v if v.ends_with("_CERTIFICATE") => (v, cert.as_str()),
                v => (v, "stand-in-secret-value"),
            })
            .collect();

        let out = cli(&["check", "--config", file.to_str().unwrap()], &env).await;
        assert_eq!(out.code, Some(0), "{}: {}", file.display(), out.all());
        let named = table["named_credentials"].as_table().unwrap();
        assert!(!named.is_empty(), "{}", file.display());
        for name in named.keys() {
            assert!(
                out.stdout.contains(name.as_str()),
                "{} misses {name}:\n{}",
                file.display(),
                out.stdout
            );
        }
        for ec in table["external_credentials"].as_table().unwrap().values() {
            for p in ec["principals"].as_array().unwrap() {
                let name = p["name"].as_str().unwrap();
                assert!(
                    out.stdout.contains(name),
                    "{} misses {name}:\n{}",
                    file.display(),
                    out.stdout
                );
            }
        }
        assert!(!out.all().contains("stand-in-secret"), "check printed a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_problem_with_line_and_column() {
    let text = r#"[server]
listen = "127.0.0.1:7575"
surprise = 1

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "http://idp.example.com/token"

[[external_credentials.Idp.principals]]
name = "First"
sequence = 1
permission_sets = ["Set_A"]
client_id = "first"
client_secret = "first-secret"

[[external_credentials.Idp.principals]]
name = "Second"
sequence = 1
permission_sets = ["Set_B"]
client_id = "second"
client_secret = { env = "CALLOUT_IT_UNSET_SECRET" }

[named_credentials.Bad__Api]
url = "https://api.example.com"
external_credential = "Idp"
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    write_private(&path, text);
    let mut proc = Proc::spawn(&["check", "--config", path.to_str().unwrap()], &[]);
    let status = proc.wait_exit(EXIT).await;
    let all = format!("{}{}", proc.stdout.finish(), proc.stderr.finish());
    assert_eq!(status.code(), Some(1), "{all}");

    let check = |needle: &str, keyword: &str| {
        let line = line_of(text, needle);
        assert!(
            problem_at(&all, text, line, keyword),
            "no problem at line {line} mentioning {keyword:?}:\n{all}"
        );
    };
    check("surprise = 1", "surprise");
    check("token_url = \"http://idp", "http://idp.example.com/token");
    check("sequence = 1\npermission_sets = [\"Set_B\"]", "sequence");
    check("client_secret = { env", "CALLOUT_IT_UNSET_SECRET");
    check("[named_credentials.Bad__Api]", "Bad__Api");
    assert!(!all.contains("first-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_prints_the_principal_and_reveals_only_when_asked() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    let text = config(&token, &upstream, "", "", "").replace(LISTEN, "127.0.0.1:7575");
    write_private(&path, &text);
    let path = path.to_str().unwrap();

    let check = |sets: &'static str, principal: &'static str, client_id: &'static str| {
        let token = &token;
        async move {
            let before = token.requests();
            let out = cli(
                &["token", "Api", "--permission-sets", sets, "--config", path],
                &[],
            )
            .await;
            assert_eq!(out.code, Some(0), "{}", out.all());
            assert!(out.stdout.contains(principal), "{sets}: {}", out.stdout);
            assert!(out.stdout.contains("api.read"), "the scope: {}", out.stdout);
            assert!(out.stdout.contains("expires in: 3"), "the expiry: {}", out.stdout);
            assert_eq!(token.requests(), before + 1);
            assert_eq!(token.last_request().unwrap().basic_auth().unwrap().0, client_id);
            let issued = token.issued().last().unwrap().clone();
            assert!(!out.all().contains(&issued), "printed the token without --reveal");
            assert!(!out.all().contains("tok-"), "printed a token without --reveal");
        }
    };
    check("Read_Set", "Reader", "reader-client").await;
    // Both asserted: the lowest sequence wins.
    check("Read_Set,Admin_Set", "Admin", "admin-client").await;

    let out = cli(
        &[
            "token",
            "Api",
            "--permission-sets",
            "Read_Set",
            "--config",
            path,
            "--reveal",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(out.stdout.lines().last(), Some(token.issued()[2].as_str()));

    let out = cli(
        &["token", "Nope", "--permission-sets", "Read_Set", "--config", path],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("Nope"), "{}", out.stderr);
    assert_eq!(token.requests(), 3, "an unknown named credential fetches nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_describes_the_commands_and_options() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["serve", "check", "token"]),
        (&["serve", "--help"], &["--config", "--log-format"]),
        (&["check", "--help"], &["--config"]),
        (
            &["token", "--help"],
            &["--permission-sets", "--reveal", "--config"],
        ),
    ];
    for (args, mentions) in cases {
        let out = cli(args, &[]).await;
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.all());
        for m in *mentions {
            assert!(
                out.stdout.contains(m),
                "{args:?} does not mention {m}:\n{}",
                out.stdout
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_one_when_the_address_is_taken_or_the_config_is_invalid() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    write_private(
        &path,
        &config(&token, &upstream, "", "", "").replace(LISTEN, &addr),
    );
    let out = cli(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains(&addr), "names the address: {}", out.stderr);
    assert!(
        out.stderr.to_ascii_lowercase().contains("in use"),
        "says why: {}",
        out.stderr
    );
    drop(taken);

    let bad = config(&token, &upstream, "", "", "")
        .replace(LISTEN, &addr)
        .replace("sequence = 2", "sequence = 1");
    write_private(&path, &bad);
    let out = cli(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    let line = bad
        .match_indices("sequence = 1")
        .nth(1)
        .map(|(at, _)| bad[..at].matches('\n').count() + 1);
    assert!(
        problem_at(&out.stderr, &bad, line.unwrap(), "sequence"),
        "{}",
        out.stderr
    );
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "an invalid config must not be served"
    );
    assert_eq!(token.requests(), 0);
}
