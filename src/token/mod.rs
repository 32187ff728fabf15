//! Access tokens: the shared cache that hands them to requests, and when each is renewed.
//!
//! The cache does not know how a token is minted: a key's `Mint` does that (an OAuth grant,
//! in `auth::oauth`). Its equality covers every input that shapes a token, so it is part of
//! the cache key and a changed input never serves an old token.
//!
//! A failed token request ends in the cache too, which is where the token endpoint's text
//! is sanitised (`redact`), since only the cache knows every secret and token to hide.

mod cache;
mod error;
pub mod redact;

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

pub use cache::{CacheOutcome, SlotStatus, Token, TokenCache, TokenKey, TokenSlot};
pub use error::{Fetched, IdpText, TokenError};

/// How a token is obtained: one token request, made with `client`.
pub trait Mint: Clone + Eq + Hash + Send + Sync + 'static {
    type Client: Send + Sync + 'static;

    fn mint(&self, client: &Self::Client) -> impl Future<Output = Result<Fetched, TokenError>> + Send;
}

/// How long tokens live and when they are renewed; set per external credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lifetimes {
    pub refresh_before_expiry: Duration,
    pub default_token_ttl: Option<Duration>,
    pub token_timeout: Duration,
}

/// When a token stops being forwarded and when its renewal starts, both counted from the
/// moment its request was sent.
///
/// A token is never forwarded in the last `min(refresh_before_expiry, lifetime / 2)` of its
/// life, so that a request which picked it up still reaches the upstream in time. Renewal
/// starts in the background at the later of "one margin before that" and three quarters of
/// the usable window, so short-lived tokens are not renewed right after they arrive; but
/// always at least twice the token endpoint's last `latency` before the end of use, so that
/// no request has to wait for a slow endpoint.
pub fn schedule(
    lifetime: Duration,
    refresh_before_expiry: Duration,
    latency: Duration,
) -> (Duration, Duration) {
    let margin = refresh_before_expiry.min(lifetime / 2);
    let usable = lifetime - margin;
    let lead = margin.min(usable / 4).max(latency * 2).min(usable * 3 / 4);
    (usable - lead, usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;

    fn check(lifetime: u64, before: u64, refresh: u64, usable: u64) {
        let (r, u) = schedule(
            Duration::from_secs(lifetime),
            Duration::from_secs(before),
            Duration::ZERO,
        );
        assert_eq!(
            (r, u),
            (Duration::from_secs(refresh), Duration::from_secs(usable)),
            "lifetime {lifetime}s"
        );
    }

    #[test]
    fn schedules() {
        // An hour-long token: stop forwarding a minute before expiry, renew a minute before that.
        check(3600, 60, 3480, 3540);
        // A short token: half the life is the margin.
        check(8, 60, 3, 4);
        check(120, 60, 45, 60);
        check(0, 60, 0, 0);
    }

    #[test]
    fn a_slow_token_endpoint_gets_its_renewal_started_earlier() {
        let ms = Duration::from_millis;
        // 3 s counted, margin 1.5 s: with a fast endpoint renew at 1.125 s; with one that
        // takes 500 ms, at 0.5 s, so the new token is there before the old one stops.
        assert_eq!(schedule(ms(3000), ms(60_000), ms(1)), (ms(1125), ms(1500)));
        assert_eq!(schedule(ms(3000), ms(60_000), ms(500)), (ms(500), ms(1500)));
        // Never earlier than a quarter into the usable window.
        assert_eq!(schedule(ms(3000), ms(60_000), ms(5000)), (ms(375), ms(1500)));
        // Hour-long tokens: a slow endpoint changes nothing within the margin.
        assert_eq!(schedule(ms(3_600_000), ms(60_000), ms(2000)).0, ms(3_480_000));
    }

    #[test]
    fn renewal_always_precedes_the_end_of_use() {
        for lifetime in [1u64, 2, 10, 59, 61, 300, 86_400] {
            for before in [0u64, 1, 30, 60, 600] {
                let (r, u) = schedule(
                    Duration::from_secs(lifetime),
                    Duration::from_secs(before),
                    Duration::from_millis(300),
                );
                assert!(r <= u && u <= Duration::from_secs(lifetime));
            }
        }
    }

    #[test]
    fn access_token_is_redacted() {
        assert!(!format!("{:?}", AccessToken::new("abc")).contains("abc"));
    }
}
