//! The caller's socket as hyper sees it, and the state of one HTTP/1.1 exchange on it: what
//! lets a quiet keep-alive connection hand its socket back without losing a byte.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::Stream;

/// How long an HTTP/1.1 connection stays quiet after a response before its buffers go.
/// Handing back and taking up again costs about as much as a third of a request, so a
/// busy connection (the next request within this time) keeps its hyper connection, and
/// one idle for longer pays at most a few microseconds per this many milliseconds.
const HAND_BACK_AFTER: Duration = Duration::from_millis(10);

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
    pub(super) fn start(&self) {
        self.0.store(0, Ordering::Release);
    }

    pub fn body_ended(&self) {
        self.0.fetch_or(BODY_ENDED, Ordering::AcqRel);
    }

    pub(super) fn responded(&self) {
        self.0.fetch_or(RESPONDED, Ordering::AcqRel);
    }

    pub(super) fn flushed(&self) {
        if self.0.load(Ordering::Acquire) & RESPONDED != 0 {
            self.0.fetch_or(FLUSHED, Ordering::AcqRel);
        }
    }

    /// Bytes arrived after the response: whatever they are, they are hyper's to read now.
    pub(super) fn received(&self) {
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

/// A response body that holds `guard` until hyper drops it, which hyper does once the body
/// has ended (or at once for a body known to be empty): the guard's own drop says that the
/// response is over.
pub struct Tracked<B, G> {
    pub(super) body: B,
    /// Held only for what its drop does.
    pub(super) _guard: G,
}

impl<B: Body<Data = Bytes> + Unpin, G: Unpin> Body for Tracked<B, G> {
    type Data = Bytes;
    type Error = B::Error;

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

/// Marks an HTTP/1.1 exchange answered when its response body goes.
pub(super) struct Responded(pub(super) ExchangeState);

impl Drop for Responded {
    fn drop(&mut self) {
        self.0.responded();
    }
}

/// The caller's socket as hyper sees it: bytes already read from it put back in front and,
/// on HTTP/1.1, a lease that makes it read as closed once an exchange is over and the caller
/// has sent nothing more for `HAND_BACK_AFTER`.
pub(super) struct Socket<S> {
    pub(super) prefix: Bytes,
    pub(super) stream: S,
    pub(super) lease: Option<Lease>,
}

pub(super) struct Lease {
    state: ExchangeState,
    /// When to hand the socket back if the caller stays quiet.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Whether this read the EOF that ended the hyper connection, rather than the caller.
    pub(super) handed_back: bool,
}

impl Lease {
    pub(super) fn new(state: ExchangeState) -> Lease {
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
