//! Accepting connections (TCP or a Unix socket) up to the limit, shedding new ones when the
//! process runs out of file descriptors, and draining them on shutdown.

use std::fs::File;
use std::future::{Future, poll_fn};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

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
    let mut shedding = Shedding::new();
    tokio::pin!(shutdown);

    loop {
        // At the connection limit, stop accepting: new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = accept(&listener) => {
                if accepted.is_ok() {
                    shedding.accepted();
                }
                match accepted {
                    Ok(Accepted::Tcp(stream)) => {
                        let _ = stream.set_nodelay(true);
                        spawn(&serving, stream, Peer::default(), stop.subscribe(), permit);
                    }
                    Ok(Accepted::Unix(stream)) => {
                        let peer = Peer { uid: stream.peer_cred().ok().map(|c| c.uid()) };
                        spawn(&serving, stream, peer, stop.subscribe(), permit);
                    }
                    Err(err) if out_of_descriptors(&err) => {
                        shedding.shed(&listener, &err).await;
                        tokio::time::sleep(BACK_OFF).await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(BACK_OFF).await;
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

/// How long to stop accepting after a failed accept, rather than spin on it.
const BACK_OFF: Duration = Duration::from_millis(50);
/// At most one warning about shed connections per this long.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// EMFILE (the process's limit) or ENFILE (the system's).
fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(24 | 23))
}

/// What lets the listener turn connections away at the file descriptor limit.
///
/// Without a free descriptor, `accept` fails and the connection stays in the backlog, where
/// its caller waits until it gives up. One descriptor kept in reserve can be freed to
/// accept the connection and close it at once, so that the caller learns straight away.
/// Connections already being served are never touched.
struct Shedding {
    reserve: Option<File>,
    /// Connections closed since the last log line.
    shed: u64,
    /// Whether the last accept failed for want of descriptors.
    short: bool,
    /// When the last log line about shedding was written: a flood must not become a flood
    /// of log lines too.
    logged: Option<Instant>,
}

impl Shedding {
    fn new() -> Shedding {
        Shedding {
            reserve: File::open("/dev/null").ok(),
            shed: 0,
            short: false,
            logged: None,
        }
    }

    fn may_log(&mut self) -> bool {
        let may = self.logged.is_none_or(|at| at.elapsed() >= SHED_LOG_INTERVAL);
        if may {
            self.logged = Some(Instant::now());
        }
        may
    }

    async fn shed(&mut self, listener: &Listener, err: &io::Error) {
        self.short = true;
        self.reserve = None;
        // Only a connection already waiting: nothing here may wait for one to come.
        let pending = poll_fn(|cx| {
            Poll::Ready(match listener {
                Listener::Tcp(l) => l.poll_accept(cx).map(|r| r.map(drop)),
                Listener::Unix(l) => l.poll_accept(cx).map(|r| r.map(drop)),
            })
        })
        .await;
        if let Poll::Ready(Ok(())) = pending {
            self.shed += 1;
        }
        // Another task may have taken the freed descriptor; then the next failure tries again.
        self.reserve = File::open("/dev/null").ok();
        if self.may_log() {
            tracing::warn!(
                error = %err,
                shed = self.shed,
                "out of file descriptors: closing new connections at once; those being served go on"
            );
            self.shed = 0;
        }
    }

    /// An accept worked: say so once after shedding, with what the last warning did not count.
    fn accepted(&mut self) {
        if self.short && self.may_log() {
            tracing::info!(shed = self.shed, "file descriptors free again; accepting");
            self.short = false;
            self.shed = 0;
        }
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
