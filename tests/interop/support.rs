//! Fixtures for the interop suite: the node servers (`oidc.mjs`, `mock.mjs`, `rs.mjs`), the
//! Authlib server (`authlib_server.py`) and moto (`moto_server.py`), both in a Python venv, as
//! child processes, callout in-process, an RFC 7662 introspecting upstream, a small HTTP(S)
//! client, and test keys and certificates made at run time.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long `npm ci` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a server script may take to print its ready line before it is started again.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a server script is started before its test fails.
const READY_ATTEMPTS: u32 = 3;
/// Any single HTTP exchange made by the tests.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/interop`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

// ---------------------------------------------------------------------------------------------
// node and npm

/// Makes sure `tests/interop/node_modules` holds what `package-lock.json` pins, running
/// `npm ci` at most once per test process. Panics (never skips) when node or npm is missing
/// or the install fails: a suite that cannot run must not pass.
pub fn ensure_node_modules() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = READY.get_or_init(install) {
        panic!("interop suite cannot run: {e}");
    }
}

fn install() -> Result<(), String> {
    let dir = interop_dir();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("`node` is not runnable ({e}); install Node.js 20.19+ (22 LTS recommended)"))?;
    if !node.status.success() {
        return Err("`node --version` failed".into());
    }
    if installed_matches_lock(&dir) {
        return Ok(());
    }
    let mut child = Command::new("npm")
        .args(["ci", "--prefix"])
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`npm` is not runnable ({e}); install npm to fetch the interop servers"))?;
    let output = collect_output(&mut child);
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => {
                return Err(format!(
                    "`npm ci --prefix tests/interop` failed ({status}):\n{}",
                    output.lock().unwrap()
                ));
            }
            Ok(None) if started.elapsed() > NPM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`npm ci --prefix tests/interop` took over {NPM_TIMEOUT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for npm: {e}")),
        }
    }
    if installed_matches_lock(&dir) {
        Ok(())
    } else {
        Err("`npm ci` succeeded but node_modules does not match package-lock.json".into())
    }
}

/// Whether every package the lock file pins is installed at its pinned version.
fn installed_matches_lock(dir: &Path) -> bool {
    let Ok(lock) = std::fs::read_to_string(dir.join("package-lock.json")) else {
        return false;
    };
    let Ok(lock) = serde_json::from_str::<Value>(&lock) else {
        return false;
    };
    let Some(packages) = lock["packages"].as_object() else {
        return false;
    };
    packages
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .all(|(path, entry)| {
            std::fs::read_to_string(dir.join(path).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|pkg| pkg["version"] == entry["version"])
        })
}

/// Collects a child's stdout and stderr (when piped) into one string, on threads.
fn collect_output(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let readers: Vec<Box<dyn Read + Send>> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for mut reader in readers {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    out
}

/// A server script from `tests/interop` (node, or Python for Authlib and moto) running as a
/// child process. It exits when its stdin closes; dropping this closes stdin, kills it and
/// reaps it.
pub struct NodeServer {
    pub name: &'static str,
    /// The JSON line the script printed once listening.
    pub ready: Value,
    /// The CA that signed its HTTPS certificate, when it serves HTTPS.
    pub ca_pem: Option<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl NodeServer {
    /// Starts `node tests/interop/<script>` with `config` as JSON in the environment
    /// variable `env`, and waits for its ready line.
    pub fn start(script: &'static str, env: &str, config: &Value) -> NodeServer {
        ensure_node_modules();
        let config = config.to_string();
        NodeServer::spawn(script, || {
            let mut command = Command::new("node");
            command.arg(script).current_dir(interop_dir()).env(env, &config);
            command
        })
    }

    /// Runs the command `make` builds (stdin, stdout and stderr are piped here) and waits for
    /// the one JSON line it prints on stdout once listening. A server that has not printed it
    /// within `READY_TIMEOUT` is killed and started again, `READY_ATTEMPTS` times in all:
    /// on a loaded machine node has been seen, rarely, to stall at start-up, and that is the
    /// fixture's problem, not callout's. Each stalled try is described on stderr.
    pub fn spawn(name: &'static str, make: impl Fn() -> Command) -> NodeServer {
        let mut reports = Vec::new();
        for attempt in 1..=READY_ATTEMPTS {
            match NodeServer::try_spawn(name, make()) {
                Ok(server) => return server,
                Err(report) => {
                    eprintln!("`{name}` start {attempt} of {READY_ATTEMPTS} failed: {report}");
                    reports.push(report);
                }
            }
        }
        panic!(
            "`{name}` did not report ready in {READY_ATTEMPTS} starts of {READY_TIMEOUT:?} each:\n{}",
            reports.join("\n")
        );
    }

    fn try_spawn(name: &'static str, mut command: Command) -> Result<NodeServer, String> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{name}`: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                    stderr.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        // Lines on stdout that are not the ready line, kept for the report of a stalled start.
        let other_stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let other_stdout = other_stdout.clone();
            std::thread::spawn(move || {
                // Keep draining after the ready line so the script never blocks on a full pipe.
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(value) if value.is_object() => {
                            let _ = tx.send(value);
                        }
                        _ => {
                            let mut other = other_stdout.lock().unwrap();
                            if other.len() < 4096 {
                                other.push_str(&(line + "\n"));
                            }
                        }
                    }
                }
            });
        }
        let pid = child.id();
        let mut server = NodeServer {
            name,
            ready: Value::Null,
            ca_pem: None,
            child,
            stdin,
            stderr,
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => {
                server.ready = ready;
                Ok(server)
            }
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                let state = process_state(pid);
                std::thread::sleep(Duration::from_millis(200));
                Err(format!(
                    "no ready line within {READY_TIMEOUT:?} (exit: {status:?}; {state}); \
                     other stdout: {:?}; stderr:\n{}",
                    other_stdout.lock().unwrap(),
                    server.stderr()
                ))
            }
        }
    }

    /// A string field of the ready line.
    pub fn get(&self, key: &str) -> String {
        self.ready[key]
            .as_str()
            .unwrap_or_else(|| panic!("{} ready line has no `{key}`: {}", self.name, self.ready))
            .to_owned()
    }

    /// Everything the script wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `GET <base>/__stats` of a script that has one.
    pub async fn stats(&self, base_key: &str) -> Value {
        let url = format!("{}/__stats", self.get(base_key).trim_end_matches('/'));
        self.get_json(&url).await
    }

    /// `GET url` (HTTPS trusting `ca_pem` when set), which must answer 200 with JSON.
    pub async fn get_json(&self, url: &str) -> Value {
        let (status, _, body) =
            match try_http_ca(Method::GET, url, &[], Bytes::new(), self.ca_pem.as_deref()).await {
                Ok(r) => r,
                Err(e) => panic!("GET {url} failed: {e}"),
            };
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Linux says of a stalled child: its scheduler state, where it sleeps in the kernel,
/// and the CPU time it has used (user and system clock ticks), per thread.
fn process_state(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "no /proc entry".into();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let path = task.path();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let wchan = std::fs::read_to_string(path.join("wchan")).unwrap_or_default();
        out.push(format!(
            "thread {} {} wchan={} utime={} stime={}",
            task.file_name().to_string_lossy(),
            fields.first().unwrap_or(&"?"),
            wchan,
            fields.get(11).unwrap_or(&"?"),
            fields.get(12).unwrap_or(&"?"),
        ));
    }
    out.join(", ")
}

/// oidc-provider with `config` (see `oidc.mjs`).
pub fn oidc_provider(config: Value) -> NodeServer {
    NodeServer::start("oidc.mjs", "OIDC_CONFIG", &config)
}

/// oauth2-mock-server with `config` (see `mock.mjs`).
pub fn mock_server(config: Value) -> NodeServer {
    NodeServer::start("mock.mjs", "MOCK_CONFIG", &config)
}

/// oidc-provider over HTTPS (see `oidc.mjs`): `config` plus `tls` naming the server
/// certificate and key of `pki` and its CA, which `stats()` then trusts.
pub fn oidc_provider_tls(mut config: Value, pki: &Pki) -> NodeServer {
    config["tls"] = json!({
        "cert": pki.path("server.pem"),
        "key": pki.path("server.key"),
        "ca": pki.path("ca.pem"),
    });
    let mut server = oidc_provider(config);
    server.ca_pem = Some(pki.ca_pem.clone());
    server
}

/// A JWT-verifying resource server (see `rs.mjs`); its `url` is in `ready["url"]`.
pub fn jwks_resource_server(config: Value) -> NodeServer {
    NodeServer::start("rs.mjs", "RS_CONFIG", &config)
}

/// The Authlib JWT bearer server and its API (see `authlib_server.py`), run with the venv's
/// python; `ready` has `issuer`, `token_endpoint` and `api`.
pub fn authlib_server(config: Value) -> NodeServer {
    let python = venv_python();
    let config = config.to_string();
    NodeServer::spawn("authlib_server.py", || {
        let mut command = python_command(&python, "authlib_server.py");
        command.env("AUTHLIB_CONFIG", &config);
        command
    })
}

/// moto with IAM authentication on (see `moto_server.py`), run with the venv's python;
/// `ready` has `url`, `region`, `account`, `bucket`, the IAM user's `user_arn`,
/// `access_key_id` and `secret_access_key`, and a role session's `session_arn`,
/// `session_access_key_id`, `session_secret_access_key` and `session_token`.
pub fn moto_server() -> NodeServer {
    let python = venv_python();
    NodeServer::spawn("moto_server.py", || {
        let mut command = python_command(&python, "moto_server.py");
        // None of the machine's AWS settings may reach moto's bootstrap client.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("AWS_")) {
                command.env_remove(name);
            }
        }
        command
    })
}

/// `python script` in `tests/interop`, unbuffered so the ready line arrives at once.
fn python_command(python: &Path, script: &str) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script)
        .current_dir(interop_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

// ---------------------------------------------------------------------------------------------
// Python: the venv that runs authlib_server.py and moto_server.py

#[path = "../common/venv.rs"]
mod venv;
pub use venv::venv_python;

// ---------------------------------------------------------------------------------------------
// Test keys and certificates, made at run time

/// Runs `openssl` with `args`, `input` on its stdin; its stdout. Panics (never skips) when
/// openssl is missing or fails.
pub fn openssl(args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("interop suite cannot run: `openssl` is not runnable ({e}); it makes the RSA test keys")
        });
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(
        output.status.success(),
        "`openssl {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A fresh RSA 2048 private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
pub fn rsa_private_key() -> String {
    openssl(
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "",
    )
}

/// A fresh EC private key (`rcgen::PKCS_ECDSA_P256_SHA256` or `_P384_SHA384`), PKCS#8 PEM.
pub fn ec_private_key(alg: &'static rcgen::SignatureAlgorithm) -> String {
    rcgen::KeyPair::generate_for(alg).unwrap().serialize_pem()
}

/// The same private key in its algorithm's own format: PKCS#1 (`BEGIN RSA PRIVATE KEY`) for
/// RSA, SEC1 (`BEGIN EC PRIVATE KEY`) for EC.
pub fn traditional_pem(private_pem: &str) -> String {
    openssl(&["pkey", "-traditional"], private_pem)
}

/// The public half of a private key, SPKI PEM (`BEGIN PUBLIC KEY`).
pub fn public_pem(private_pem: &str) -> String {
    openssl(&["pkey", "-pubout"], private_pem)
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (subject `CN=<client
/// CN>`), all ECDSA P-256, made with rcgen; PEM files in `dir`: `ca.pem`, `server.pem`,
/// `server.key`, `client.pem`, `client.key` (keys PKCS#8).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    /// The client certificate, DER (for its RFC 8705 `x5t#S256` thumbprint).
    pub client_der: Vec<u8>,
}

impl Pki {
    pub fn new(client_cn: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
            Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        fn named(cn: &str) -> DistinguishedName {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            dn
        }
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name = named("callout interop test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        server.distinguished_name = named("127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name = named(client_cn);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        for (name, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("server.pem", server_cert.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client_cert.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
            client_der: client_cert.der().to_vec(),
        }
    }

    /// The absolute path of one of the files, as a string.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// RFC 8705 §3.1 `x5t#S256` of the client certificate: base64url(SHA-256(DER)).
    pub fn client_thumbprint(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, &self.client_der))
    }
}

// ---------------------------------------------------------------------------------------------
// callout in-process (the pattern of tests/it/harness.rs)

pub struct Callout {
    pub addr: SocketAddr,
    pub proxy: Arc<callout::Proxy>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Callout {
    /// Starts callout with `toml` as its config file (in a fresh folder).
    pub async fn start(toml: &str) -> Callout {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callout.toml");
        std::fs::write(&path, toml).unwrap();
        let config =
            callout::Config::load(&path).unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let proxy = callout::Proxy::new(config).expect("TLS setup");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(callout::run(listener, proxy.clone(), async {
            let _ = stopped.await;
        }));
        Callout {
            addr,
            proxy,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /NAME/path` through callout, as a caller holding `permission_sets`.
    pub async fn get(&self, path: &str, permission_sets: &str) -> (StatusCode, HeaderMap, Value) {
        self.get_with(path, &[("x-callout-permission-sets", permission_sets)])
            .await
    }

    /// `GET /NAME/path` through callout with `headers`; the body read as JSON.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, body) = http(Method::GET, &self.url(path), headers, Bytes::new()).await;
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({ "non_json_body": String::from_utf8_lossy(&body).into_owned() }));
        (status, headers, json)
    }
}

impl Drop for Callout {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A TOML basic string (JSON string syntax is a subset TOML accepts: `\"`, `\\`, `\n`,
/// `\uXXXX`, raw non-ASCII).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One principal of a callout config.
pub struct Principal<'a> {
    pub name: &'a str,
    pub sequence: u32,
    pub permission_set: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub scope: Option<&'a str>,
}

/// A callout config: named credential `Api` → `upstream`, external credential `Idp` →
/// `token_url` with `ec_extra` lines (client_auth, scope, token_params, ...), and
/// `principals`.
pub fn callout_config(
    token_url: &str,
    ec_extra: &str,
    principals: &[Principal<'_>],
    upstream: &str,
) -> String {
    let mut toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = {token_url}
token_timeout = "5s"
{ec_extra}
"#,
        token_url = toml_str(token_url),
    );
    for p in principals {
        toml.push_str(&format!(
            "\n[[external_credentials.Idp.principals]]\nname = {}\nsequence = {}\npermission_sets = [{}]\nclient_id = {}\nclient_secret = {}\n",
            toml_str(p.name),
            p.sequence,
            toml_str(p.permission_set),
            toml_str(p.client_id),
            toml_str(p.client_secret),
        ));
        if let Some(scope) = p.scope {
            toml.push_str(&format!("scope = {}\n", toml_str(scope)));
        }
    }
    toml.push_str(&format!(
        "\n[named_credentials.Api]\nurl = {}\nexternal_credential = \"Idp\"\ntimeout = \"10s\"\n",
        toml_str(upstream)
    ));
    toml
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One plain-HTTP exchange with a deadline; panics on failure.
pub async fn http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    match try_http(method.clone(), url, headers, body).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {url} failed: {e}"),
    }
}

pub async fn try_http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    try_http_ca(method, url, headers, body, None).await
}

/// One exchange with a deadline, plain HTTP or HTTPS; HTTPS trusts only `ca_pem` (none
/// when `None`).
pub async fn try_http_ca(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    ca_pem: Option<&str>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    // Connections are pooled per runtime: a client from another test's (finished) runtime
    // would hand out dead connections, so build one here; it is cheap.
    let client = https_client(ca_pem);
    let exchange = async {
        let response = client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))?
}

/// A pooled client, for load loops (make one per test: its pool is tied to the runtime).
pub fn pooled_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for plain HTTP and for HTTPS to servers whose certificate `ca_pem` (when given)
/// signed; no other trust anchor.
pub fn https_client(ca_pem: Option<&str>) -> HttpsClient {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// HTTP Basic credentials as RFC 6749 §2.3.1 wants them: each half form-urlencoded.
pub fn basic_rfc6749(id: &str, secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

// ---------------------------------------------------------------------------------------------
// An upstream that checks every bearer token at the authorization server's introspection
// endpoint (RFC 7662).

#[derive(Default)]
pub struct IntrospectionStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub tokens: Mutex<HashSet<String>>,
    pub reasons: Mutex<BTreeMap<String, u64>>,
}

pub struct IntrospectingUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<IntrospectionStats>,
    task: JoinHandle<()>,
}

struct Introspector {
    endpoint: String,
    authorization: String,
    stats: Arc<IntrospectionStats>,
    client: HttpsClient,
}

impl IntrospectingUpstream {
    /// Starts on `127.0.0.1:0`. Each request's bearer token is POSTed to `endpoint` with
    /// client `id`/`secret` (client_secret_basic); `active: true` → 200 with the
    /// introspection response as body, else 401 `invalid_token`.
    pub async fn start(endpoint: &str, id: &str, secret: &str) -> IntrospectingUpstream {
        IntrospectingUpstream::start_with_ca(endpoint, id, secret, None).await
    }

    /// The same with an `https://` introspection endpoint whose certificate `ca_pem` signed.
    pub async fn start_with_ca(
        endpoint: &str,
        id: &str,
        secret: &str,
        ca_pem: Option<&str>,
    ) -> IntrospectingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(IntrospectionStats::default());
        let inspector = Arc::new(Introspector {
            endpoint: endpoint.to_owned(),
            authorization: basic_rfc6749(id, secret),
            stats: stats.clone(),
            client: https_client(ca_pem),
        });
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let inspector = inspector.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let inspector = inspector.clone();
                    async move { Ok::<_, Infallible>(inspector.handle(req).await) }
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        IntrospectingUpstream { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.stats.rejected.load(Ordering::Relaxed)
    }

    pub fn distinct_tokens(&self) -> usize {
        self.stats.tokens.lock().unwrap().len()
    }

    pub fn reasons(&self) -> BTreeMap<String, u64> {
        self.stats.reasons.lock().unwrap().clone()
    }
}

impl Drop for IntrospectingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Introspector {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let path = req.uri().to_string();
        // Drain the request body.
        let _ = req.into_body().collect().await;
        let Some(token) = bearer else {
            return self.reject("no bearer token");
        };
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", &token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = Request::post(&self.endpoint)
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(format!(
                    "introspection answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
        };
        let introspection = match tokio::time::timeout(HTTP_TIMEOUT, answer).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.reject(&e),
            Err(_) => return self.reject("introspection timed out"),
        };
        if introspection["active"] != json!(true) {
            return self.reject("inactive");
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.tokens.lock().unwrap().insert(token);
        let body = json!({ "introspection": introspection, "path": path });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn reject(&self, reason: &str) -> Response<Full<Bytes>> {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        *self
            .stats
            .reasons
            .lock()
            .unwrap()
            .entry(reason.to_owned())
            .or_default() += 1;
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                json!({ "error": "invalid_token", "reason": reason }).to_string(),
            )))
            .unwrap()
    }
}
