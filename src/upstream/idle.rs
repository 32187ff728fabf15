//! Cutting a body that moves no byte for too long, so that a stalled peer cannot hold a
//! connection (and its upstream slot) forever.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The idle clock of one body. The timer is made on the first poll that finds nothing to
/// read, so a body that never waits (most small ones) costs no allocation.
pub struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was last set.
    moved: bool,
}

impl IdleTimer {
    pub fn new(limit: Duration) -> IdleTimer {
        IdleTimer {
            limit,
            sleep: None,
            moved: false,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Tells the clock how a poll of the body went; true when the body has now been idle
    /// for the whole limit.
    pub fn expired(&mut self, cx: &mut Context<'_>, pending: bool) -> bool {
        if !pending {
            self.moved = true;
            return false;
        }
        let deadline = Instant::now() + self.limit;
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(sleep) if self.moved => sleep.as_mut().reset(deadline),
            Some(_) => {}
        }
        self.moved = false;
        let sleep = self.sleep.as_mut().expect("set above");
        sleep.as_mut().poll(cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_whole_quiet_limit() {
        let mut timer = IdleTimer::new(Duration::from_secs(10));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(!timer.expired(&mut cx, true));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!timer.expired(&mut cx, false), "a frame arrived");
        assert!(!timer.expired(&mut cx, true), "the clock starts again");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!timer.expired(&mut cx, true), "6 s since the last frame");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(timer.expired(&mut cx, true), "11 s since the last frame");
    }
}
