//! The command line for operators: health probes, check without secrets, token hints, file watching.

use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::time::{Instant, sleep};

use crate::process::{eventually, free_addr};
use crate::support::{TokenServer, Upstream, http_get, try_http_request};

/// Bound for every wait on an effect: a start, a reload, an exit.
const PATIENCE: Duration = Duration::from_secs(10);
const READ: (&str, &str) = ("x-callout-permission-sets", "Read_Set");
/// Client secrets for `config`: a literal, and the file `reader-secret` beside the config.
const LITERAL: &str = "\"s\"";
const FILED: &str = r#"{ file = "reader-secret" }"#;

// === child processes ===

/// A `callout` child writing stdout and stderr into one file (sharing its offset, as a
/// terminal would); killed when dropped, so that no test leaks one.
struct Proc {
    child: Child,
    output: tempfile::NamedTempFile,
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let output = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_callout"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("CALLOUT_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(output.as_file().try_clone().unwrap())
            .stderr(output.as_file().try_clone().unwrap())
            .spawn()
            .expect("the callout binary starts");
        Proc { child, output }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.output.path()).unwrap()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the exit: its code and all its output.
    async fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + PATIENCE;
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "callout did not exit:\n{}",
                self.text()
            );
            sleep(Duration::from_millis(20)).await;
        }
        (self.child.try_wait().unwrap().and_then(|s| s.code()), self.text())
    }

    fn signal(&self, name: &str) {
        let args = [format!("-{name}"), self.child.id().to_string()];
        assert!(Command::new("kill").args(args).status().unwrap().success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `callout ARGS` to its end: exit code and output.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    Proc::spawn(args, env).finish().await
}

async fn check(config: &Path) -> (Option<i32>, String) {
    run(&["check", "--config", config.to_str().unwrap()], &[]).await
}

async fn health(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    run(&[&["health"], args].concat(), env).await
}

#[track_caller]
fn assert_has(out: &str, needles: &[&str]) {
    for needle in needles {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes a config `template` listening on `listen`, for commands that do not serve it.
fn write_config(path: &Path, template: &str, listen: &str) {
    write_mode(path, &template.replace("@LISTEN@", listen), 0o600);
}

// === configs and servers ===

/// `Api` (the upstream) through `Idp`, whose one principal `Reader` (`Read_Set`) has the
/// client secret `secret` (a TOML value). `server` goes into `[server]`, after `listen`.
fn config(token: &TokenServer, upstream: &Upstream, server: &str, secret: &str) -> String {
    format!(
        r#"[server]
listen = "@LISTEN@"
{server}

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"

[[external_credentials.Idp.principals]]
name = "Reader"
sequence = 1
permission_sets = ["Read_Set"]
client_id = "reader"
client_secret = {secret}

[named_credentials.Api]
url = "{}"
external_credential = "Idp"
"#,
        token.url(),
        upstream.url()
    )
}

/// `callout serve` of a config in its own folder, ready to take requests.
struct Serving {
    proc: Proc,
    addr: SocketAddr,
    /// The port that `@ADMIN@` in the template stands for.
    admin: u16,
    dir: tempfile::TempDir,
}

impl Serving {
    /// Writes `template` as `callout.toml` in `dir` and serves it; `@LISTEN@` becomes a free
    /// loopback address and `@ADMIN@` a free port.
    async fn start(dir: tempfile::TempDir, template: &str, env: &[(&str, &str)]) -> Serving {
        let config = dir.path().join("callout.toml");
        // A port free when looked at may be taken before the child binds it: try again.
        for _ in 0..3 {
            let (addr, admin) = (free_addr(), free_addr().port());
            let text = template.replace("@LISTEN@", &addr.to_string());
            write_mode(&config, &text.replace("@ADMIN@", &admin.to_string()), 0o600);
            let mut proc = Proc::spawn(&["serve", "--config", config.to_str().unwrap()], env);
            let deadline = Instant::now() + PATIENCE;
            while proc.running() && Instant::now() < deadline {
                let url = format!("http://{addr}/.callout/ready");
                let ready = tokio::time::timeout(PATIENCE, try_http_request("GET", &url, &[], Bytes::new()));
                if let Ok(Ok((StatusCode::OK, ..))) = ready.await {
                    return Serving {
                        proc,
                        addr,
                        admin,
                        dir,
                    };
                }
                sleep(Duration::from_millis(20)).await;
            }
            let (_, stderr) = proc.finish().await;
            assert_has(&stderr, &["cannot listen"]);
        }
        panic!("no free port in three tries");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> String {
        self.file("callout.toml").to_str().unwrap().to_owned()
    }

    fn log(&self) -> String {
        self.proc.text()
    }

    /// A proxied request, which must succeed.
    async fn get(&self) {
        let (status, _, body) = http_get(&format!("http://{}/Api/x", self.addr), &[READ]).await;
        assert_eq!(status, StatusCode::OK, "{body:?}\n{}", self.log());
    }

    /// Requests until the token endpoint has seen `secret`: a reload changed the token's key,
    /// so the next request fetches a new token with the new secret.
    async fn until_secret(&self, token: &TokenServer, secret: &str) {
        eventually(&format!("a token request with secret {secret:?}"), || async {
            self.get().await;
            last_secret(token).as_deref() == Some(secret)
        })
        .await;
    }
}

fn last_secret(token: &TokenServer) -> Option<String> {
    token.last_request()?.basic_auth().map(|(_, secret)| secret)
}

async fn servers() -> (TokenServer, Upstream) {
    (TokenServer::start().await, Upstream::start().await)
}

// === health ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_the_tcp_listener_without_reading_secrets() {
    let (token, upstream) = servers().await;
    let template = config(&token, &upstream, "", r#"{ env = "CLI_IT_READER_SECRET" }"#);
    let env = [("CLI_IT_READER_SECRET", "s")];
    let serving = Serving::start(tempfile::tempdir().unwrap(), &template, &env).await;
    let config = serving.config();

    // The probe's environment has no secret: it must not need one.
    assert_eq!(
        health(&["--config", &config], &[]).await,
        (Some(0), String::new())
    );
    assert_eq!(health(&[], &[("CALLOUT_CONFIG", &config)]).await.0, Some(0));
    let url = format!("http://{}", serving.addr);
    assert_eq!(health(&["--url", &url], &[]).await.0, Some(0));
    assert_eq!(health(&["--url", &format!("{url}/")], &[]).await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_a_unix_socket() {
    let (token, upstream) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    write_config(
        &path,
        &config(&token, &upstream, "", LITERAL),
        "unix:callout.sock",
    );
    let config = path.to_str().unwrap();
    let (code, out) = health(&["--config", config], &[]).await;
    assert_eq!(code, Some(1), "nothing serves yet: {out}");
    assert_has(&out, &["callout.sock"]);

    let mut serving = Proc::spawn(&["serve", "--config", config], &[]);
    let probe = || async { health(&["--config", config], &[]).await.0 == Some(0) };
    eventually("health answers 0 on the Unix socket", probe).await;
    assert!(serving.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_when_nothing_answers_or_the_proxy_drains() {
    let (token, upstream) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    let nobody = free_addr().to_string();
    write_config(&path, &config(&token, &upstream, "", LITERAL), &nobody);
    let (code, out) = health(&["--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(
        (code, out.lines().count()),
        (Some(1), 1),
        "one line saying why: {out}"
    );
    assert_has(&out, &[&nobody]);
    assert_eq!(
        health(&["--url", &format!("http://{nobody}")], &[]).await.0,
        Some(1)
    );
    assert_eq!(health(&[], &[]).await.0, Some(1), "neither --config nor --url");

    // The kernel accepts into the backlog, and nothing ever answers: the probe gives up.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, out) = health(&["--url", &format!("http://{}", hung.local_addr().unwrap())], &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_has(&out, &["no answer"]);

    // SIGTERM with a request in flight: the proxy drains, and is no longer ready.
    upstream.set_delay(Duration::from_secs(3));
    let template = config(&token, &upstream, r#"shutdown_grace = "10s""#, LITERAL);
    let mut serving = Serving::start(tempfile::tempdir().unwrap(), &template, &[]).await;
    let url = format!("http://{}/Api/slow", serving.addr);
    let slow = tokio::spawn(async move { http_get(&url, &[READ]).await.0 });
    eventually("the request is in flight", || async { upstream.started() == 1 }).await;
    serving.proc.signal("TERM");
    let config = serving.config();
    let probe = || async { health(&["--config", &config], &[]).await.0 == Some(1) };
    eventually("health fails", probe).await;
    assert!(serving.proc.running(), "still draining:\n{}", serving.log());
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
}

// === admin_listen ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_serves_probes_only_and_is_what_health_asks() {
    let (token, upstream) = servers().await;
    // Every interface, without allow_remote_callers: probes and scrapers come from the pod IP.
    let template = config(&token, &upstream, r#"admin_listen = "0.0.0.0:@ADMIN@""#, LITERAL);
    let serving = Serving::start(tempfile::tempdir().unwrap(), &template, &[]).await;
    let admin = format!("http://127.0.0.1:{}", serving.admin);
    let status = |path: &str| {
        let url = format!("{admin}{path}");
        async move { http_get(&url, &[READ]).await.0 }
    };
    for path in ["/.callout/health", "/.callout/ready", "/.callout/metrics"] {
        assert_eq!(status(path).await, StatusCode::OK, "{path}");
    }
    for path in ["/.callout/credentials", "/Api/x", "/Some_Cred/x"] {
        assert_eq!(status(path).await, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        (upstream.started(), token.requests()),
        (0, 0),
        "nothing was proxied"
    );

    assert_eq!(health(&["--config", &serving.config()], &[]).await.0, Some(0));
    // The same config with admin_listen where nothing listens: health asks there, not `listen`.
    let elsewhere = serving.file("elsewhere.toml");
    let dead = free_addr().port().to_string();
    write_config(
        &elsewhere,
        &template.replace("@ADMIN@", &dead),
        &serving.addr.to_string(),
    );
    let (code, out) = health(&["--config", elsewhere.to_str().unwrap()], &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_has(&out, &[&format!("127.0.0.1:{dead}")]);

    serving.proc.signal("TERM");
    let (code, log) = serving.proc.finish().await;
    assert_eq!(code, Some(0), "both listeners stop on SIGTERM:\n{log}");
}

// === check ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_no_secrets_passes_without_the_env_and_files_that_check_needs() {
    let (token, upstream) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    let filed = r#"[[external_credentials.Idp.principals]]
name = "Filed"
sequence = 2
permission_sets = ["File_Set"]
client_id = "filed"
client_secret = { file = "missing-secret.txt" }

[named_credentials.Api]"#;
    let text = config(&token, &upstream, "", r#"{ env = "CLI_IT_UNSET_SECRET" }"#);
    let text = text.replace("[named_credentials.Api]", filed);
    write_config(&path, &text, "127.0.0.1:7575");
    let no_secrets = ["check", "--config", path.to_str().unwrap(), "--no-secrets"];

    let (code, out) = run(&no_secrets, &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_has(&out, &["Filed", "Reader"]);
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(1), "{out}");
    assert_has(&out, &["CLI_IT_UNSET_SECRET", "missing-secret.txt"]);
    // A broken structure still fails without secrets.
    write_config(
        &path,
        &text.replace("sequence = 1", "sequence = \"one\""),
        "127.0.0.1:7575",
    );
    assert_eq!(run(&no_secrets, &[]).await.0, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_named_credentials_warns_that_there_is_nothing_to_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callout.toml");
    write_config(&path, "[server]\nlisten = \"@LISTEN@\"\n", "127.0.0.1:7575");
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(0), "{out}");
    assert_has(&out, &["warning:", "nothing to proxy"]);

    let (token, upstream) = servers().await;
    write_config(&path, &config(&token, &upstream, "", LITERAL), "127.0.0.1:7575");
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_others_can_read_warn_and_strict_permissions_refuse_them() {
    let (token, upstream) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, secret) = (dir.path().join("callout.toml"), dir.path().join("reader-secret"));
    let named = secret.display().to_string();
    let lax = config(&token, &upstream, "", FILED);
    let strict = config(&token, &upstream, "strict_file_permissions = true", FILED);

    write_config(&path, &lax, "127.0.0.1:7575");
    write_mode(&secret, "one", 0o644);
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(0), "{out}");
    assert_has(&out, &["warning:", &named, "0644", "chmod 600"]);
    write_mode(&secret, "one", 0o600);
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(&named), "{out}");

    write_config(&path, &strict, &free_addr().to_string());
    assert_eq!(check(&path).await.0, Some(0));
    write_mode(&secret, "one", 0o640);
    let (code, out) = check(&path).await;
    assert_eq!(code, Some(1), "{out}");
    assert_has(&out, &[&named, "0640"]);
    let (code, out) = run(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(code, Some(1), "serve refuses to start: {out}");
    assert_has(&out, &[&named]);

    // Not strict: serve starts and logs the warning.
    write_mode(&secret, "one", 0o604);
    let serving = Serving::start(dir, &lax, &[]).await;
    assert_has(&serving.log(), &[&named, "0604"]);
    drop(serving);

    // Strict, and a reload finds a file others can read: refused, the old config serves.
    let dir = tempfile::tempdir().unwrap();
    write_mode(&dir.path().join("reader-secret"), "one", 0o600);
    let serving = Serving::start(dir, &strict, &[]).await;
    serving.get().await;
    write_mode(&serving.file("reader-secret"), "two", 0o644);
    serving.proc.signal("HUP");
    eventually("the reload is refused", || async {
        serving.log().contains("reload refused")
    })
    .await;
    serving.get().await;
    assert_eq!(last_secret(&token).as_deref(), Some("one"));
}

// === token ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_a_working_permission_set_names_the_ones_that_work() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let demo = demo.to_str().unwrap();
    // Nothing listens on the demo's token URL: the hint comes before any token request.
    for sets in [&[][..], &["--permission-sets", "Nobody_Has_This"]] {
        let (code, out) = run(&[&["token", "Demo_API", "--config", demo], sets].concat(), &[]).await;
        assert_eq!(code, Some(1), "{out}");
        assert_has(&out, &["no_principal"]);
        let hint = out.lines().find(|l| l.starts_with("try --permission-sets"));
        let hint = hint.unwrap_or_else(|| panic!("no hint:\n{out}"));
        assert_has(
            hint,
            &[
                "Demo_Users (principal Demo_Service)",
                "Demo_Admins (principal Demo_Admin)",
            ],
        );
    }
}

// === watch_files ===

/// Serves `config` with the reader's secret in `reader-secret` ("one"), after a first
/// request has fetched a token with it.
async fn watching(token: &TokenServer, upstream: &Upstream, server: &str) -> Serving {
    let dir = tempfile::tempdir().unwrap();
    write_mode(&dir.path().join("reader-secret"), "one", 0o600);
    let serving = Serving::start(dir, &config(token, upstream, server, FILED), &[]).await;
    serving.until_secret(token, "one").await;
    serving
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_file_changed_in_place_is_used_by_the_next_token_request() {
    let (token, upstream) = servers().await;
    let serving = watching(&token, &upstream, "").await;
    std::fs::write(serving.file("reader-secret"), "two").unwrap();
    serving.until_secret(&token, "two").await;
    assert_has(&serving.log(), &["config reloaded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_style_symlink_swap_reloads() {
    let (token, upstream) = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("secrets");
    // What the kubelet does: a new timestamped folder, and a new `..data` renamed over the old.
    let update = |old: Option<&str>, new: &str, secret: &str| {
        std::fs::create_dir(mounted.join(new)).unwrap();
        write_mode(&mounted.join(new).join("reader-secret"), secret, 0o600);
        symlink(new, mounted.join("..data_tmp")).unwrap();
        std::fs::rename(mounted.join("..data_tmp"), mounted.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(mounted.join(old)).unwrap();
        }
    };
    std::fs::create_dir(&mounted).unwrap();
    update(None, "..2026_01_01", "one");
    symlink("..data/reader-secret", mounted.join("reader-secret")).unwrap();
    let template = config(&token, &upstream, "", r#"{ file = "secrets/reader-secret" }"#);
    let serving = Serving::start(dir, &template, &[]).await;
    serving.until_secret(&token, "one").await;

    update(Some("..2026_01_01"), "..2026_01_02", "two");
    serving.until_secret(&token, "two").await;
    // Again: a watch on the first file's inode would have gone with its folder.
    update(Some("..2026_01_02"), "..2026_01_03", "three");
    serving.until_secret(&token, "three").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_seen_by_the_watcher_is_refused_and_the_old_one_serves() {
    let (token, upstream) = servers().await;
    let serving = watching(&token, &upstream, "").await;
    let config = PathBuf::from(serving.config());
    let good = std::fs::read_to_string(&config).unwrap();
    write_mode(&config, &good.replace("sequence = 1", "sequence = \"x\""), 0o600);
    eventually("the reload is refused", || async {
        serving.log().contains("reload refused")
    })
    .await;
    serving.get().await;
    assert!(!serving.log().contains("config reloaded"), "{}", serving.log());

    // The watcher is still at work: a good config afterwards is taken.
    write_mode(&config, &good.replace(FILED, "\"three\""), 0o600);
    serving.until_secret(&token, "three").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_files_false_leaves_reloads_to_sighup() {
    let (token, upstream) = servers().await;
    let serving = watching(&token, &upstream, "watch_files = false").await;
    std::fs::write(serving.file("reader-secret"), "two").unwrap();
    // An absence can only be waited for: several debounce periods, then a request.
    sleep(Duration::from_millis(1500)).await;
    serving.get().await;
    assert_eq!(last_secret(&token).as_deref(), Some("one"));
    assert!(!serving.log().contains("config reloaded"), "{}", serving.log());
    // The change was there to see: SIGHUP takes it.
    serving.proc.signal("HUP");
    serving.until_secret(&token, "two").await;
}
