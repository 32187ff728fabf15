//! `callout health`: one bounded request to `/.callout/ready`, for exec probes in images
//! without a shell or curl.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Listen};

/// A hung proxy must fail the probe, not hang it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const READY: &str = "/.callout/ready";

/// Where a probe connects: `host:port` or a Unix socket.
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

/// Asks `/.callout/ready` of the proxy that `config` or `url` names; `Err` says why it is
/// not ready (or not there).
pub async fn probe(config: Option<&Path>, url: Option<&str>) -> Result<(), String> {
    let (target, path) = match (url, config) {
        (Some(url), _) => url_target(url)?,
        (None, Some(config)) => (config_target(config)?, READY.to_owned()),
        (None, None) => return Err("give --config PATH (or CALLOUT_CONFIG) or --url URL".to_owned()),
    };
    let asked = match &target {
        Target::Tcp(addr) => format!("http://{addr}{path}"),
        Target::Unix(socket) => format!("{path} on unix:{}", socket.display()),
    };
    let answer = async {
        match &target {
            Target::Tcp(addr) => get(tokio::net::TcpStream::connect(addr.as_str()).await, addr, &path).await,
            Target::Unix(socket) => {
                get(tokio::net::UnixStream::connect(socket).await, "localhost", &path).await
            }
        }
    };
    let status = tokio::time::timeout(PROBE_TIMEOUT, answer)
        .await
        .map_err(|_| format!("{asked}: no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|why| format!("{asked}: {why}"))?;
    match status {
        http::StatusCode::OK => Ok(()),
        _ => Err(format!("{asked} answered {status}")),
    }
}

async fn get<S>(stream: std::io::Result<S>, host: &str, path: &str) -> Result<http::StatusCode, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = stream.map_err(|e| format!("cannot connect: {e}"))?;
    let (mut send, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a path from a parsed URI and a host from an address make a request");
    let response = send.send_request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status())
}

/// `admin_listen` when set (what probes are meant to use), else `listen`. An address that
/// listens on every interface is asked on loopback.
fn config_target(path: &Path) -> Result<Target, String> {
    let config = Config::load_with(path, false).map_err(|e| e.to_string())?;
    let local = |addr: SocketAddr| match addr.ip() {
        ip if !ip.is_unspecified() => Target::Tcp(addr.to_string()),
        IpAddr::V4(_) => Target::Tcp(format!("127.0.0.1:{}", addr.port())),
        IpAddr::V6(_) => Target::Tcp(format!("[::1]:{}", addr.port())),
    };
    Ok(match (config.server.admin_listen, &config.server.listen) {
        (Some(addr), _) => local(addr),
        (None, Listen::Tcp(addr)) => local(*addr),
        (None, Listen::Unix { path, .. }) => Target::Unix(path.clone()),
    })
}

fn url_target(url: &str) -> Result<(Target, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--url {url}: {e}"))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) if !authority.as_str().contains('@') => authority,
        _ => return Err(format!("--url {url}: give http://HOST:PORT")),
    };
    let port = if authority.port().is_some() { "" } else { ":80" };
    let base = uri.path().trim_end_matches('/');
    Ok((
        Target::Tcp(format!("{authority}{port}")),
        format!("{base}{READY}"),
    ))
}
