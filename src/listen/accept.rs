//! Accepting connections (TCP or a Unix socket) up to the limit, and draining them on
//! shutdown.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::connection::{Serving, Stream};
use super::{Handler, Peer};

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
/// requests up to the handler's `shutdown_grace` to finish.
pub async fn run<H: Handler>(
    listener: impl Into<Listener>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    let listener = listener.into();
    let serving = Arc::new(Serving::new(handler.clone()));
    let connections = Arc::new(Semaphore::new(handler.limits().max_connections));
    // Every connection holds a receiver: a send tells them to finish, and `closed` tells
    // when the last one has.
    let (stop, _) = watch::channel(());
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
                        spawn(&serving, stream, Peer::default(), stop.subscribe(), permit);
                    }
                    Ok(Accepted::Unix(stream)) => {
                        let peer = Peer { uid: stream.peer_cred().ok().map(|c| c.uid()) };
                        spawn(&serving, stream, peer, stop.subscribe(), permit);
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
    handler.start_draining();
    let grace = handler.limits().shutdown_grace;
    tracing::info!(grace = ?grace, "stopped accepting; draining in-flight requests");
    stop.send_replace(());
    tokio::select! {
        () = stop.closed() => tracing::info!("all connections finished"),
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

fn spawn<H: Handler, S: Stream>(
    serving: &Arc<Serving<H>>,
    stream: S,
    peer: Peer,
    stop: watch::Receiver<()>,
    permit: OwnedSemaphorePermit,
) {
    let serving = serving.clone();
    tokio::spawn(async move {
        serving.serve(stream, peer, stop).await;
        drop(permit);
    });
}
