//! One caller connection, from accept to close: HTTP/2 (h2c) or HTTP/1.1, told apart by the
//! first bytes, and HTTP/1.1 keep-alive connections that hold no buffers while idle.
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
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use crate::body::{CallerBody, ResponseBody};
use crate::caller::Peer;
use crate::proxy::Proxy;

/// Request heads larger than this get 431 (HTTP/1.1) or a stream reset (HTTP/2).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields per request.
const MAX_HEADERS: usize = 100;
/// How long an HTTP/1.1 connection stays quiet after a response before its buffers go.
/// Handing back and taking up again costs about as much as a third of a request, so a
/// busy connection (the next request within this time) keeps its hyper connection, and
/// one idle for longer pays at most a few microseconds per this many milliseconds.
const HAND_BACK_AFTER: Duration = Duration::from_millis(10);
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
pub struct Serving {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long a caller may take to send a request head, and how long an idle keep-alive
    /// connection is kept.
    idle_timeout: Duration,
    proxy: Arc<Proxy>,
}

impl Serving {
    pub fn new(proxy: Arc<Proxy>) -> Serving {
        let idle_timeout = proxy.routes().config.server.header_read_timeout;
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(idle_timeout)
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
            .max_concurrent_streams(256)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .keep_alive_interval(Some(idle_timeout));
        Serving {
            http1,
            http2,
            idle_timeout,
            proxy,
        }
    }

    /// Serves `stream` until the caller closes it, it idles past the timeout, or `shutdown`
    /// changes; then in-flight exchanges finish and the connection closes.
    pub async fn serve<S: Stream>(&self, stream: S, peer: Peer, mut shutdown: watch::Receiver<()>) {
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
    /// caller costs one short read.
    async fn read_preface<S: Stream>(&self, stream: &S, shutdown: &mut watch::Receiver<()>) -> Option<Bytes> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + self.idle_timeout;
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

    async fn serve_h2<S: Stream>(
        &self,
        stream: S,
        preface: Bytes,
        peer: Peer,
        mut shutdown: watch::Receiver<()>,
    ) {
        let io = Socket {
            prefix: preface,
            stream,
            lease: None,
        };
        let proxy = self.proxy.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            let request = request.map(|body| CallerBody::new(body, None));
            async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
        });
        let connection = self.http2.serve_connection(TokioIo::new(io), service);
        let mut connection = pin!(connection);
        let mut stopping = pin!(shutdown.changed());
        let mut draining = false;
        let ended = poll_fn(|cx| {
            if !draining && stopping.as_mut().poll(cx).is_ready() {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            connection.as_mut().poll(cx)
        })
        .await;
        if let Err(err) = ended {
            tracing::debug!(error = %err, "connection ended with an error");
        }
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
        let proxy = self.proxy.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            exchange.start();
            let proxy = proxy.clone();
            let request = request.map(|body| CallerBody::new(body, Some(exchange.clone())));
            let exchange = exchange.clone();
            async move {
                let response = proxy.handle(request, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, exchange }))
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

/// Where one HTTP/1.1 exchange (request and response) is, as flags set by the parts that
/// see each step.
///
/// The socket may be handed back only when all three are set: the request body has been
/// read to its end (so the next byte starts a new request, whatever the body held), the
/// response has ended, and hyper has flushed it.
#[derive(Clone, Default)]
pub struct ExchangeState(Arc<AtomicU8>);

const BODY_ENDED: u8 = 1;
const RESPONDED: u8 = 2;
const FLUSHED: u8 = 4;
const DONE: u8 = BODY_ENDED | RESPONDED | FLUSHED;
/// The wait before handing the socket back has begun.
const WAITING: u8 = 8;

impl ExchangeState {
    /// A request head has been read: a new exchange begins.
    fn start(&self) {
        self.0.store(0, Ordering::Release);
    }

    pub fn body_ended(&self) {
        self.0.fetch_or(BODY_ENDED, Ordering::AcqRel);
    }

    fn responded(&self) {
        self.0.fetch_or(RESPONDED, Ordering::AcqRel);
    }

    fn flushed(&self) {
        if self.0.load(Ordering::Acquire) & RESPONDED != 0 {
            self.0.fetch_or(FLUSHED, Ordering::AcqRel);
        }
    }

    /// Bytes arrived after the response: whatever they are, they are hyper's to read now.
    fn received(&self) {
        if self.0.load(Ordering::Acquire) & FLUSHED != 0 {
            self.0.store(0, Ordering::Release);
        }
    }

    /// Whether the exchange is over, and whether this is the first time that is asked.
    fn is_done(&self) -> Option<bool> {
        let state = self.0.load(Ordering::Acquire);
        if state & DONE != DONE {
            return None;
        }
        if state & WAITING == 0 {
            self.0.fetch_or(WAITING, Ordering::AcqRel);
        }
        Some(state & WAITING == 0)
    }
}

/// A response body that marks its exchange answered when hyper drops it, which hyper does
/// once the body has ended (or at once for a body known to be empty).
pub struct Tracked {
    body: ResponseBody,
    exchange: ExchangeState,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.exchange.responded();
    }
}

/// The caller's socket as hyper sees it: bytes already read from it put back in front and,
/// on HTTP/1.1, a lease that makes it read as closed once an exchange is over and the caller
/// has sent nothing more for `HAND_BACK_AFTER`.
struct Socket<S> {
    prefix: Bytes,
    stream: S,
    lease: Option<Lease>,
}

struct Lease {
    state: ExchangeState,
    /// When to hand the socket back if the caller stays quiet.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Whether this read the EOF that ended the hyper connection, rather than the caller.
    handed_back: bool,
}

impl Lease {
    fn new(state: ExchangeState) -> Lease {
        Lease {
            state,
            idle: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            handed_back: false,
        }
    }

    /// A read found nothing to read: pretend the end of input if the exchange is over and
    /// the quiet spell has passed.
    fn poll_hand_back(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(first) = self.state.is_done() else {
            return Poll::Pending;
        };
        if first {
            let deadline = tokio::time::Instant::now() + HAND_BACK_AFTER;
            self.idle.as_mut().reset(deadline);
        }
        ready!(self.idle.as_mut().poll(cx));
        self.handed_back = true;
        Poll::Ready(Ok(()))
    }
}

impl<S: Stream> AsyncRead for Socket<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.stream).poll_read(cx, buf)
        };
        let Some(lease) = &mut this.lease else {
            return polled;
        };
        match polled {
            Poll::Pending => lease.poll_hand_back(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // The caller's next request: not to be cut off, even if it stalls.
                lease.state.received();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: Stream> AsyncWrite for Socket<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes the socket only after writing out all it has buffered.
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        if let Some(lease) = &self.lease {
            lease.state.flushed();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.lease.as_ref().is_some_and(|l| l.handed_back) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::Config;

    async fn response(client: &mut TcpStream) -> String {
        let mut buf = [0; 1024];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The lease itself, on real sockets: the socket comes back after a response and a quiet
    /// spell, with the part of the next request that hyper had already read.
    #[tokio::test]
    async fn a_quiet_socket_comes_back_with_what_was_read_past_the_response() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
        let serving = Serving::new(Proxy::new(Config::load(&demo).unwrap()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_stop, mut shutdown) = watch::channel(());
        let within = Duration::from_secs(5);

        client
            .write_all(b"GET /.callout/health HTTP/1.1\r\nHost: x\r\n\r\nGET /.callout/he")
            .await
            .unwrap();
        let lent = serving.lend(server, Bytes::new(), Peer::default(), &mut shutdown);
        let (server, unread) = tokio::time::timeout(within, lent)
            .await
            .expect("the socket comes back after a quiet spell")
            .expect("the socket comes back, not closed");
        assert_eq!(&unread[..], b"GET /.callout/he");
        assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));

        client
            .write_all(b"alth HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let lent = serving.lend(server, unread, Peer::default(), &mut shutdown);
        let (_, unread) = tokio::time::timeout(within, lent)
            .await
            .expect("the socket comes back after a quiet spell")
            .expect("the socket comes back, not closed");
        assert!(unread.is_empty());
        assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    }
}
