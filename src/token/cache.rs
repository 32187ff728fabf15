//! The token cache: one slot per token key, a lock-free read path, one token request in
//! flight per slot, renewal in the background ahead of expiry.
//!
//! Slots are handed out at config load and held by the loaded config, so a request reaches
//! its slot without a map lookup. A reload asks for slots again by key: a key whose inputs
//! did not change gets the same slot back, with its token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Lifetimes, Mint, TokenError, schedule};
use crate::secret::{AccessToken, Secret};

/// After a failed token request, further requests share its failure for this long,
/// doubling with each consecutive failure up to `MAX_BACKOFF` (or longer when the endpoint
/// sent `Retry-After`, still capped), so an outage is not met with a token request per
/// caller request.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a server-given `expires_in` is not counted (see `TokenSlot::fetch`).
const SERVER_ROUNDING: Duration = Duration::from_secs(1);

/// What identifies a cached token: its owner and every input that shaped it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey<G> {
    pub external_credential: Box<str>,
    pub principal: Box<str>,
    pub grant: G,
    pub lifetimes: Lifetimes,
}

/// A token as cached, with its precomputed `Authorization` value.
pub struct Token {
    value: AccessToken,
    header: HeaderValue,
    /// When the request that minted it was sent.
    obtained: Instant,
    refresh_at: Option<Instant>,
    usable_until: Option<Instant>,
    expires_at: Option<Instant>,
}

impl Token {
    /// `Bearer <token>`, marked sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.header
    }

    pub fn access_token(&self) -> &AccessToken {
        &self.value
    }

    pub fn expires_in(&self, now: Instant) -> Option<Duration> {
        self.expires_at.map(|e| e.saturating_duration_since(now))
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.obtained)
    }

    fn usable(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|u| now < u)
    }

    fn due_for_renewal(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|r| now >= r)
    }
}

/// Whether a request found its token in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        }
    }
}

type Outcome = Result<Arc<Token>, TokenError>;

/// Hands out slots; shared by all configs a process loads.
pub struct TokenCache<G: Mint> {
    client: G::Client,
    slots: Mutex<Slots<G>>,
    /// Every secret of the config loaded last, to be kept out of token endpoint text.
    secrets: ArcSwap<Vec<Secret>>,
}

/// Slots by key. Entries of slots no config holds any more are swept out when the map has
/// doubled since the last sweep: a sweep per insert would make loading a config with n
/// credentials quadratic.
struct Slots<G: Mint> {
    map: HashMap<TokenKey<G>, Weak<TokenSlot<G>>>,
    sweep_at: usize,
}

impl<G: Mint> TokenCache<G> {
    pub fn new(client: G::Client) -> Arc<TokenCache<G>> {
        Arc::new(TokenCache {
            client,
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                sweep_at: 0,
            }),
            secrets: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// The secrets of the config about to be loaded (`Config::secrets`): set before its
    /// slots are asked for, so that each slot knows those of the config that holds it.
    pub fn set_secrets(&self, secrets: Vec<Secret>) {
        self.secrets.store(Arc::new(secrets));
    }

    /// Every slot a live config holds, by external credential and principal.
    pub fn live_slots(&self) -> Vec<Arc<TokenSlot<G>>> {
        let mut live: Vec<_> = {
            let slots = self.slots.lock().expect("token slot map poisoned");
            slots.map.values().filter_map(Weak::upgrade).collect()
        };
        live.sort_by(|a, b| {
            (&a.key.external_credential, &a.key.principal)
                .cmp(&(&b.key.external_credential, &b.key.principal))
        });
        live
    }

    /// The slot for `key`: the existing one if a live config still holds it.
    pub fn slot(self: &Arc<Self>, key: TokenKey<G>) -> Arc<TokenSlot<G>> {
        let mut slots = self.slots.lock().expect("token slot map poisoned");
        if slots.map.len() >= slots.sweep_at {
            slots.map.retain(|_, slot| slot.strong_count() > 0);
            slots.sweep_at = (2 * slots.map.len()).max(64);
        }
        if let Some(slot) = slots.map.get(&key).and_then(Weak::upgrade) {
            slot.secrets.store(self.secrets.load_full());
            return slot;
        }
        let slot = Arc::new(TokenSlot {
            cache: Arc::downgrade(self),
            key: key.clone(),
            current: ArcSwapOption::empty(),
            flight: Mutex::new(Flight::default()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            forced: Mutex::new(None),
            last_error: Mutex::new(None),
            secrets: ArcSwap::new(self.secrets.load_full()),
        });
        slots.map.insert(key, Arc::downgrade(&slot));
        slot
    }
}

/// One cached token and the machinery to renew it.
pub struct TokenSlot<G: Mint> {
    cache: Weak<TokenCache<G>>,
    key: TokenKey<G>,
    current: ArcSwapOption<Token>,
    flight: Mutex<Flight>,
    fetches: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    last_error: Mutex<Option<String>>,
    /// When an upstream rejection last dropped the current token.
    forced: Mutex<Option<Instant>>,
    /// The secrets of the config that last asked for this slot. After a reload that
    /// rotated this slot's secret away, requests still on the old config can make this
    /// slot send it, and the cache then knows only the new one.
    secrets: ArcSwap<Vec<Secret>>,
}

#[derive(Default)]
struct Flight {
    /// The token request under way, if any; every waiter watches the same one.
    running: Option<watch::Receiver<Option<Outcome>>>,
    /// The last failure, shared with new requests until the backoff ends.
    failed: Option<(TokenError, Instant)>,
}

/// What the admin endpoint shows of a slot. No token and no secret.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    pub cached: bool,
    pub expires_in: Option<Duration>,
    pub fetches: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl<G: Mint> TokenSlot<G> {
    pub fn key(&self) -> &TokenKey<G> {
        &self.key
    }

    /// A usable token: from the cache when it has one, else from the token request that
    /// is (or is now) in flight.
    pub async fn get(self: &Arc<Self>) -> Result<(Arc<Token>, CacheOutcome), TokenError> {
        let now = Instant::now();
        if let Some(token) = self.current.load_full()
            && token.usable(now)
        {
            if token.due_for_renewal(now) {
                self.renew_in_background(now);
            }
            return Ok((token, CacheOutcome::Hit));
        }
        let mut rx = match self.join_or_start(now) {
            Joined::Ready(token) => return Ok((token, CacheOutcome::Hit)),
            Joined::Failed(err) => return Err(err),
            Joined::Waiting(rx) => rx,
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| TokenError::Unreachable("token request task ended without an answer".into()))?
            .clone()
            .expect("wait_for returned a value");
        outcome.map(|t| (t, CacheOutcome::Miss))
    }

    /// The upstream rejected `used`: whether a new attempt, with another token, is worth
    /// making. A token that is no longer the cached one has been replaced already, so yes,
    /// at no cost. The cached one is dropped (and a new one minted) at most once per
    /// `min_interval`, so that an upstream rejecting every token cannot make each request
    /// cost a token request: inside the window the caller gets the upstream's answer.
    pub fn reject(&self, used: &Arc<Token>, min_interval: Duration) -> bool {
        let now = Instant::now();
        // Under the lock, so that of two rejections of one token the second sees that the
        // first dropped it (and retries with the new one) instead of seeing only the window.
        let mut forced = self.forced.lock().expect("poisoned");
        let current = self.current.load();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, used)) {
            return true;
        }
        if forced.is_some_and(|at| now.saturating_duration_since(at) < min_interval) {
            return false;
        }
        *forced = Some(now);
        self.invalidate(used);
        true
    }

    /// Drops `used` if it is still the cached token: of many requests rejected with the same
    /// token, only the first causes a new token request.
    pub fn invalidate(&self, used: &Arc<Token>) {
        let previous = self.current.compare_and_swap(used, None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            tracing::debug!(
                external_credential = &*self.key.external_credential,
                principal = &*self.key.principal,
                "token rejected by the upstream; dropped from the cache"
            );
        }
    }

    pub fn status(&self) -> SlotStatus {
        let now = Instant::now();
        let current = self.current.load();
        SlotStatus {
            cached: current.as_ref().is_some_and(|t| t.usable(now)),
            expires_in: current.as_ref().and_then(|t| t.expires_in(now)),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("poisoned").clone(),
        }
    }

    fn renew_in_background(self: &Arc<Self>, now: Instant) {
        // A failure during renewal is kept for the backoff like any other, and the current
        // token goes on serving until it is no longer usable.
        let _ = self.join_or_start(now);
    }

    fn join_or_start(self: &Arc<Self>, now: Instant) -> Joined {
        let mut flight = self.flight.lock().expect("token flight poisoned");
        if let Some(rx) = &flight.running {
            return Joined::Waiting(rx.clone());
        }
        // Re-check under the lock: a request that just finished may have filled the cache.
        if let Some(token) = self.current.load_full()
            && token.usable(now)
            && !token.due_for_renewal(now)
        {
            return Joined::Ready(token);
        }
        if let Some((err, until)) = &flight.failed
            && now < *until
        {
            return Joined::Failed(err.clone());
        }
        let Some(cache) = self.cache.upgrade() else {
            return Joined::Failed(TokenError::Unreachable("callout is shutting down".into()));
        };
        let (tx, rx) = watch::channel(None);
        flight.running = Some(rx.clone());
        drop(flight);

        let slot = self.clone();
        tokio::spawn(async move {
            let outcome = slot.fetch(&cache).await;
            let mut flight = slot.flight.lock().expect("token flight poisoned");
            flight.running = None;
            flight.failed = match &outcome {
                Ok(_) => None,
                Err(err) => {
                    let n = slot.consecutive_failures.load(Ordering::Relaxed).min(8);
                    let ours = FIRST_BACKOFF * 2u32.pow(n.saturating_sub(1));
                    let backoff = err
                        .retry_after()
                        .map_or(ours, |asked| asked.max(ours))
                        .min(MAX_BACKOFF);
                    Some((err.clone(), Instant::now() + backoff))
                }
            };
            drop(flight);
            // Waiters that went away are fine: the token is cached for the next request.
            let _ = tx.send(Some(outcome));
        });
        Joined::Waiting(rx)
    }

    /// One token request, with its bookkeeping. Stores a new token before it is announced.
    async fn fetch(&self, cache: &TokenCache<G>) -> Outcome {
        let lifetimes = self.key.lifetimes;
        let sent = Instant::now();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result =
            match tokio::time::timeout(lifetimes.token_timeout, self.key.grant.mint(&cache.client)).await {
                Ok(result) => result,
                Err(_) => Err(TokenError::Timeout(lifetimes.token_timeout)),
            };
        match result {
            Ok(fetched) => {
                // Servers compute `exp` as a whole second, rounded down, after they received
                // the request: a second less keeps us on the safe side of their clock.
                let lifetime = fetched
                    .lifetime
                    .map(|l| l.saturating_sub(SERVER_ROUNDING))
                    .or(lifetimes.default_token_ttl);
                let (refresh_at, usable_until, expires_at) = match lifetime {
                    Some(lifetime) => {
                        let (refresh, usable) =
                            schedule(lifetime, lifetimes.refresh_before_expiry, sent.elapsed());
                        (Some(sent + refresh), Some(sent + usable), Some(sent + lifetime))
                    }
                    None => (None, None, None),
                };
                let mut header = HeaderValue::try_from(format!("Bearer {}", fetched.token.expose()))
                    .expect("parse_token_response admits only header-safe tokens");
                header.set_sensitive(true);
                let token = Arc::new(Token {
                    value: fetched.token,
                    header,
                    obtained: sent,
                    refresh_at,
                    usable_until,
                    expires_at,
                });
                self.current.store(Some(token.clone()));
                self.consecutive_failures.store(0, Ordering::Relaxed);
                *self.last_error.lock().expect("poisoned") = None;
                tracing::debug!(
                    external_credential = &*self.key.external_credential,
                    principal = &*self.key.principal,
                    expires_in = ?lifetime,
                    "token obtained"
                );
                Ok(token)
            }
            Err(mut err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                self.sanitize(&mut err, cache);
                let detail = err.detail_for_operators();
                tracing::warn!(
                    external_credential = &*self.key.external_credential,
                    principal = &*self.key.principal,
                    error = %detail,
                    "token request failed"
                );
                *self.last_error.lock().expect("poisoned") = Some(detail);
                Err(err)
            }
        }
    }

    /// Takes out of `err` every secret and token callout holds. Here, because every token
    /// request ends here and nowhere else are both known: the configured secrets (the
    /// cache's and this slot's own, see `secrets`) and the current token of every live
    /// slot. Reading the answer (`Mint::mint`) knows only its own grant, and passing the
    /// rest down would make every grant carry it. Error path only: the cost is no matter.
    fn sanitize(&self, err: &mut TokenError, cache: &TokenCache<G>) {
        let configured = cache.secrets.load();
        let this_config = self.secrets.load();
        let tokens: Vec<Arc<Token>> = cache
            .live_slots()
            .iter()
            .filter_map(|slot| slot.current.load_full())
            .chain(self.current.load_full())
            .collect();
        let secrets: Vec<&str> = configured
            .iter()
            .chain(this_config.iter())
            .map(Secret::expose)
            .chain(tokens.iter().map(|t| t.value.expose()))
            .collect();
        err.sanitize(&secrets);
    }
}

enum Joined {
    Ready(Arc<Token>),
    Failed(TokenError),
    Waiting(watch::Receiver<Option<Outcome>>),
}
