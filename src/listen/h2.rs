//! HTTP/2 (h2c) caller connections: hyper's h2 server, plus the idle rule it lacks. A
//! connection with no request in flight for `idle_timeout` is told to go away, and dropped
//! if its peer does not go.
//!
//! hyper's keep-alive PINGs detect dead peers, not idle ones: a peer that answers them (as
//! every client library does) would otherwise hold its connection, and a `max_connections`
//! slot, for ever. Only requests count as activity here, never PINGs or SETTINGS.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

use super::body::CallerBody;
use super::connection::{Serving, Stream};
use super::socket::{Socket, Tracked};
use super::{Handler, Peer};

/// How long a peer told to go away (and with nothing in flight) gets to close before the
/// connection is dropped: hyper waits for the peer's answer to a PING before its final
/// GOAWAY, and a peer that never answers would otherwise keep the connection.
const GO_AWAY_BOUND: Duration = Duration::from_secs(5);

/// Requests in flight (the low 32 bits) and requests started (the high 32 bits, wrapping)
/// in one word, so that one atomic add per request both counts it and lets the idle check
/// see that something happened since it last looked.
#[derive(Default)]
struct Activity {
    word: AtomicU64,
    /// Told each time the count of requests in flight drops to zero.
    quiet: Notify,
}

const ONE_IN_FLIGHT: u64 = 1;
const ONE_STARTED: u64 = 1 << 32;
const IN_FLIGHT: u64 = u32::MAX as u64;

impl Activity {
    fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }
}

/// One request in flight: from the service call until hyper drops the response body, or the
/// request's future if the peer resets the stream first.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity
            .word
            .fetch_add(ONE_STARTED | ONE_IN_FLIGHT, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // hyper drops bodies on the stream's task, after it has queued the last frame, so
        // the connection task may already have looked at the count: wake it.
        if self.0.word.fetch_sub(ONE_IN_FLIGHT, Ordering::Release) & IN_FLIGHT == 1 {
            self.0.quiet.notify_one();
        }
    }
}

/// Where the idle check is.
#[derive(Clone, Copy)]
enum Idle {
    /// Nothing in flight since the word read this value; the timer runs to `idle_timeout`.
    Since(u64),
    /// Requests in flight: no timer, until the count drops to zero.
    Busy,
    /// GOAWAY sent; the timer runs to `GO_AWAY_BOUND`.
    GoingAway,
}

enum Verdict {
    GoAway,
    Drop,
}

/// Watches one connection's `Activity`. Its timer is reset only when the count of requests
/// in flight drops to zero, or when it fires; requests themselves never touch it.
struct IdleCheck<'a, 'n> {
    activity: &'n Activity,
    quiet: Pin<&'a mut Notified<'n>>,
    timer: Pin<&'a mut Sleep>,
    state: Idle,
    idle_timeout: Duration,
}

impl IdleCheck<'_, '_> {
    fn arm(&mut self, state: Idle, after: Duration) {
        self.state = state;
        self.timer.as_mut().reset(Instant::now() + after);
    }

    /// Ready when the connection should be told to go away, or dropped.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Verdict> {
        while self.quiet.as_mut().poll(cx).is_ready() {
            self.quiet.set(self.activity.quiet.notified());
            let word = self.activity.load();
            if !matches!(self.state, Idle::GoingAway) && word & IN_FLIGHT == 0 {
                self.arm(Idle::Since(word), self.idle_timeout);
            }
        }
        let mut verdict = Poll::Pending;
        // Until the timer is pending again, so that it wakes this task when next due.
        while !matches!(self.state, Idle::Busy) && self.timer.as_mut().poll(cx).is_ready() {
            let word = self.activity.load();
            match self.state {
                // Nothing started since the count was seen at zero: idle all along.
                Idle::Since(seen) if word == seen => {
                    self.arm(Idle::GoingAway, GO_AWAY_BOUND);
                    verdict = Poll::Ready(Verdict::GoAway);
                }
                Idle::Since(_) if word & IN_FLIGHT == 0 => self.arm(Idle::Since(word), self.idle_timeout),
                Idle::Since(_) => self.state = Idle::Busy,
                // Streams the peer opened before it saw the GOAWAY still get their answers.
                Idle::GoingAway if word & IN_FLIGHT != 0 => self.arm(Idle::GoingAway, GO_AWAY_BOUND),
                Idle::GoingAway => return Poll::Ready(Verdict::Drop),
                Idle::Busy => {}
            }
        }
        verdict
    }
}

impl<H: Handler> Serving<H> {
    pub(super) async fn serve_h2<S: Stream>(
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
        let activity = Arc::new(Activity::default());
        let handler = self.handler.clone();
        let counted = activity.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::start(&counted);
            let request = request.map(|body| CallerBody::new(body, None));
            let handler = handler.clone();
            // Made inside the block, so that it is built in place (see connection.rs).
            async move {
                let response = handler.handle(request, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _guard: in_flight,
                }))
            }
        });
        let connection = self.http2.serve_connection(TokioIo::new(io), service);
        let mut connection = pin!(connection);
        let mut stopping = pin!(shutdown.changed());
        let mut going_away = false;
        let quiet = pin!(activity.quiet.notified());
        let timer = pin!(tokio::time::sleep(self.idle_timeout));
        let mut idle = IdleCheck {
            activity: &activity,
            quiet,
            timer,
            state: Idle::Since(0),
            idle_timeout: self.idle_timeout,
        };
        let ended = poll_fn(|cx| {
            if !going_away && stopping.as_mut().poll(cx).is_ready() {
                going_away = true;
                connection.as_mut().graceful_shutdown();
            }
            match idle.poll(cx) {
                Poll::Ready(Verdict::GoAway) if !going_away => {
                    going_away = true;
                    tracing::debug!(after = ?idle.idle_timeout, "idle HTTP/2 connection told to go away");
                    connection.as_mut().graceful_shutdown();
                }
                Poll::Ready(Verdict::Drop) => {
                    tracing::debug!("peer did not close after GOAWAY; dropping the connection");
                    return Poll::Ready(Ok(()));
                }
                _ => {}
            }
            connection.as_mut().poll(cx)
        })
        .await;
        if let Err(err) = ended {
            tracing::debug!(error = %err, "connection ended with an error");
        }
    }
}
