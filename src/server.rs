//! Accepting connections (HTTP/1.1 and h2c on one port, TCP or a Unix socket) and draining
//! them on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::caller::Peer;
use crate::proxy::Proxy;

/// Request heads larger than this get 431 (HTTP/1.1) or a stream reset (HTTP/2).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields per request.
const MAX_HEADERS: usize = 100;

/// Where connections come from.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Listener::Tcp(listener)
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Self {
        Listener::Unix(listener)
    }
}

/// Binds a Unix socket at `path` with permissions `mode`, replacing a stale socket.
///
/// The socket is created inside a fresh private directory, given its mode, and only then
/// renamed into place, so there is no moment at which it exists with looser permissions.
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".callout-{}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("sock");
    let result = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Serves `listener` until `shutdown` completes, then stops accepting and gives in-flight
/// requests up to the config's `shutdown_grace` to finish.
pub async fn run(listener: impl Into<Listener>, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) {
    let listener = listener.into();
    // A client that has not sent its request head by then is disconnected (slowloris); it
    // is also how long an idle keep-alive connection is kept.
    let header_read_timeout = proxy.routes().config.server.header_read_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(header_read_timeout));
    let connections = Arc::new(Semaphore::new(proxy.routes().config.server.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        // At the connection limit, stop accepting: new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = accept(&listener) => {
                match accepted {
                    Ok(Accepted::Tcp(stream)) => {
                        let _ = stream.set_nodelay(true);
                        serve(&builder, &graceful, &proxy, TokioIo::new(stream), Peer::default(), permit);
                    }
                    Ok(Accepted::Unix(stream)) => {
                        let peer = Peer { uid: stream.peer_cred().ok().map(|c| c.uid()) };
                        serve(&builder, &graceful, &proxy, TokioIo::new(stream), peer, permit);
                    }
                    Err(err) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    proxy.start_draining();
    let grace = proxy.routes().config.server.shutdown_grace;
    tracing::info!(grace = ?grace, "stopped accepting; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown_grace elapsed; closing the remaining connections"),
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    proxy: &Arc<Proxy>,
    io: I,
    peer: Peer,
    permit: OwnedSemaphorePermit,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let proxy = proxy.clone();
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
    });
    let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "connection ended with an error");
        }
        drop(permit);
    });
}
