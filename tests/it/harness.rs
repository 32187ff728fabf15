//! Starts callout in-process on `127.0.0.1:0` with a config written for the test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use callout::{Config, Proxy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{TokenServer, Upstream};

pub struct Callout {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Callout {
    /// Starts callout with `toml` as its config file (in a fresh folder).
    pub async fn start(toml: &str) -> Callout {
        Self::start_with_files(toml, &[]).await
    }

    /// Like `start`, with `files` (name, contents) written beside the config first.
    pub async fn start_with_files(toml: &str, files: &[(&str, &str)]) -> Callout {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let config = write_config(&dir, toml);
        let proxy = Proxy::new(config).expect("TLS setup");
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

    /// Replaces the config file and installs it, as SIGHUP does.
    pub fn reload(&self, toml: &str) -> Result<(), callout::config::ConfigError> {
        let path = self.dir.path().join("callout.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::load(&path)?;
        self.proxy.install(config).unwrap();
        Ok(())
    }

    /// Starts the graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Callout {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn write_config(dir: &tempfile::TempDir, toml: &str) -> Config {
    let path: PathBuf = dir.path().join("callout.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("test config is invalid: {e}"))
}

/// A config with one named credential `Api` to `upstream` through external credential
/// `Idp` at `token`, with principals `Admin` (sequence 1, set `Admin_Set`) and `Reader`
/// (sequence 2, sets `Read_Set` and `Admin_Set`), plus `extra` lines appended to the
/// external credential table.
pub fn basic_config(token: &TokenServer, upstream: &Upstream, extra_ec: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{token}"
{extra_ec}

[[external_credentials.Idp.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Admin_Set"]
client_id = "admin-client"
client_secret = "admin-secret-value"

[[external_credentials.Idp.principals]]
name = "Reader"
sequence = 2
permission_sets = ["Read_Set", "Admin_Set"]
client_id = "reader-client"
client_secret = "reader-secret-value"

[named_credentials.Api]
url = "{upstream}/base"
external_credential = "Idp"
"#,
        token = token.url(),
        upstream = upstream.url(),
    )
}
