//! One caller connection, from accept to close: HTTP/2 (h2c) or HTTP/1.1, told apart by the
//! first bytes (HTTP/2 goes on in `h2.rs`), and HTTP/1.1 keep-alive connections that hold no
//! buffers while idle.
//!
//! hyper keeps a read and a write buffer (8 KiB each) for as long as an HTTP/1.1 connection
//! lives, so ten thousand idle keep-alive callers would pin 160 MiB. Instead the socket is
//! lent to a hyper connection: once an exchange is over (request body read to its end,
//! response flushed) and the caller has sent nothing more for a short while, the socket
//! reads as closed to hyper, which ends cleanly and hands it back. The socket then waits
//! for the caller's next bytes with nothing but its own registration, and is lent to a new
//! hyper connection when they come. A busy connection never goes through this.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use super::body::CallerBody;
use super::socket::{ExchangeState, Lease, Responded, Socket, Tracked};
use super::{Handler, Peer};

/// Request heads larger than this get 431 (HTTP/1.1) or a stream reset (HTTP/2).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields per request.
const MAX_HEADERS: usize = 100;
/// What an HTTP/2 caller with prior knowledge sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A caller's socket: TCP or Unix.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Stream for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
}

impl Stream for UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        UnixStream::try_read(self, buf)
    }
}

/// How connections are served; one per listener, shared by its connections.
pub(super) struct Serving<H> {
    http1: http1::Builder,
    pub(super) http2: http2::Builder<TokioExecutor>,
    /// How long a new connection may take to show which protocol it speaks.
    header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept.
    pub(super) idle_timeout: Duration,
    pub(super) handler: Arc<H>,
}

impl<H: Handler> Serving<H> {
    pub(super) fn new(handler: Arc<H>) -> Serving<H> {
        let limits = handler.limits();
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            // A caller may shut down its sending side and wait for the answer. Without
            // this hyper also reads during every exchange to look for that EOF, which
            // makes it allocate a fresh 8 KiB buffer while the request still holds the old.
            .half_close(true)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            // To find dead peers while a request is in flight; idle ones are closed by
            // `idle_timeout`, whatever PINGs they answer.
            .keep_alive_interval(Some(limits.header_read_timeout));
        Serving {
            http1,
            http2,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            handler,
        }
    }

    /// Serves `stream` until the caller closes it, it idles past the timeout, or `shutdown`
    /// changes; then in-flight exchanges finish and the connection closes.
    pub(super) async fn serve<S: Stream>(&self, stream: S, peer: Peer, mut shutdown: watch::Receiver<()>) {
        let Some(first) = self.read_preface(&stream, &mut shutdown).await else {
            return;
        };
        if first == H2_PREFACE {
            // Boxed, as the HTTP/1.1 connection is in `serve_h1`: the task's size is its
            // largest state, and most connections spend most of their time idle.
            Box::pin(self.serve_h2(stream, first, peer, shutdown)).await;
        } else {
            self.serve_h1(stream, first, peer, shutdown).await;
        }
    }

    /// Reads until the bytes are the HTTP/2 preface or cannot become it, so that an HTTP/1.1
    /// caller costs one short read. A new connection owes a request head, so it gets
    /// `header_read_timeout` for these bytes.
    async fn read_preface<S: Stream>(&self, stream: &S, shutdown: &mut watch::Receiver<()>) -> Option<Bytes> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + self.header_read_timeout;
        while seen.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&seen) {
            if !wait_readable(stream, deadline, shutdown).await {
                return None;
            }
            let mut buf = [0; H2_PREFACE.len()];
            match stream.try_read(&mut buf[..H2_PREFACE.len() - seen.len()]) {
                Ok(0) => return None,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        Some(seen.into())
    }

    async fn serve_h1<S: Stream>(
        &self,
        mut stream: S,
        mut pending: Bytes,
        peer: Peer,
        mut shutdown: watch::Receiver<()>,
    ) {
        loop {
            if pending.is_empty() {
                // Between exchanges: nothing in flight.
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                if !wait_readable(&stream, deadline, &mut shutdown).await {
                    return;
                }
            }
            // Boxed so that a connection waiting above is a small task.
            let lease = Box::pin(self.lend(stream, pending, peer, &mut shutdown));
            let Some((returned, unread)) = lease.await else {
                return;
            };
            (stream, pending) = (returned, unread);
        }
    }

    /// Serves HTTP/1.1 on `stream` until the caller has been quiet for a while after a
    /// response; then returns the socket and any bytes read past that response.
    async fn lend<S: Stream>(
        &self,
        stream: S,
        pending: Bytes,
        peer: Peer,
        shutdown: &mut watch::Receiver<()>,
    ) -> Option<(S, Bytes)> {
        let exchange = ExchangeState::default();
        let io = Socket {
            prefix: pending,
            stream,
            lease: Some(Lease::new(exchange.clone())),
        };
        let handler = self.handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            exchange.start();
            let request = request.map(|body| CallerBody::new(body, Some(exchange.clone())));
            let handler = handler.clone();
            let exchange = exchange.clone();
            // The handler's future is made inside this block, so that it is built in place
            // in hyper's dispatcher: made outside, its few KiB would be copied on the way in.
            async move {
                let response = handler.handle(request, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _guard: Responded(exchange),
                }))
            }
        });
        let mut connection = self.http1.serve_connection(TokioIo::new(io), service);
        let mut stopping = pin!(shutdown.changed());
        let mut draining = false;
        let ended = poll_fn(|cx| {
            if !draining && stopping.as_mut().poll(cx).is_ready() {
                draining = true;
                Pin::new(&mut connection).graceful_shutdown();
            }
            // Not `poll_without_shutdown`, which would need the service future boxed:
            // `Socket` itself skips the shutdown when it hands the socket back.
            Pin::new(&mut connection).poll(cx)
        })
        .await;
        let parts = connection.into_parts();
        let socket = parts.io.into_inner();
        let handed_back = socket.lease.as_ref().is_some_and(|l| l.handed_back) && !draining;
        match ended {
            Ok(()) if handed_back => {}
            // The caller had sent part of its next request head: hyper stopped at the
            // (pretend) end of input without writing anything, and the part it read is in
            // `read_buf`.
            Err(_) if handed_back && !parts.read_buf.is_empty() => {}
            Ok(()) => return None,
            Err(err) => {
                tracing::debug!(error = %err, "connection ended with an error");
                return None;
            }
        }
        // A copy: an empty or short slice would pin hyper's whole read buffer.
        Some((socket.stream, Bytes::copy_from_slice(&parts.read_buf)))
    }
}

/// Waits until `stream` has bytes (or an EOF) to read; false on timeout or shutdown.
async fn wait_readable<S: Stream>(
    stream: &S,
    deadline: tokio::time::Instant,
    shutdown: &mut watch::Receiver<()>,
) -> bool {
    tokio::select! {
        ready = poll_fn(|cx| stream.poll_read_ready(cx)) => ready.is_ok(),
        () = tokio::time::sleep_until(deadline) => false,
        _ = shutdown.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::listen::Limits;

    /// Answers every request with 200 and no body.
    struct Ok200;

    impl Handler for Ok200 {
        type Body = http_body_util::Empty<Bytes>;

        fn handle(
            self: Arc<Self>,
            _: Request<CallerBody>,
            _: Peer,
        ) -> impl Future<Output = hyper::Response<Self::Body>> + Send + 'static {
            std::future::ready(hyper::Response::new(http_body_util::Empty::new()))
        }

        fn limits(&self) -> Limits {
            Limits {
                max_connections: 1,
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(5),
                max_concurrent_streams: 10,
                shutdown_grace: Duration::from_secs(1),
            }
        }

        fn start_draining(&self) {}
    }

    async fn response(client: &mut TcpStream) -> String {
        let mut buf = [0; 1024];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The lease itself, on real sockets: the socket comes back after a response and a quiet
    /// spell, with the part of the next request that hyper had already read.
    #[tokio::test]
    async fn a_quiet_socket_comes_back_with_what_was_read_past_the_response() {
        let serving = Serving::new(Arc::new(Ok200));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_stop, mut shutdown) = watch::channel(());
        let within = Duration::from_secs(5);

        client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b")
            .await
            .unwrap();
        let lent = serving.lend(server, Bytes::new(), Peer::default(), &mut shutdown);
        let (server, unread) = tokio::time::timeout(within, lent)
            .await
            .expect("the socket comes back after a quiet spell")
            .expect("the socket comes back, not closed");
        assert_eq!(&unread[..], b"GET /b");
        assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));

        client.write_all(b" HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let lent = serving.lend(server, unread, Peer::default(), &mut shutdown);
        let (_, unread) = tokio::time::timeout(within, lent)
            .await
            .expect("the socket comes back after a quiet spell")
            .expect("the socket comes back, not closed");
        assert!(unread.is_empty());
        assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    }
}
