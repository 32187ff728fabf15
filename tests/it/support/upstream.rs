//! A fake upstream API for the proxy to forward to.
//!
//! It records every request exactly as it arrived ([`Seen`]: raw request
//! target, headers, body length and FNV-1a digest, read frame by frame so
//! uploads of any size use constant memory), can check bearer tokens against
//! a [`TokenRegistry`] or answer chosen statuses to chosen tokens, and serves
//! a few routes:
//!
//! * `/stream/<N>`: 200 with N bytes of a deterministic pattern (byte `i` is
//!   `i % 251`), generated in 64 KiB chunks; see [`pattern_digest`].
//! * `/redirect`: 302 to `http://elsewhere.example/`.
//! * `/cut/<DECLARED>/<SENT>`: 200 with `Content-Length: DECLARED`, of which the first SENT
//!   bytes of the pattern are sent; 100 ms later the connection closes (a mid-body reset).
//! * anything else: 200 JSON echo of the request, with `x-upstream: 1`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde_json::json;

use super::token_server::{Step, TokenCheck, TokenRegistry, declared};
use super::{RespBody, Server, lock, lossy, respond};

/// Size of the chunks `/stream/<N>` is sent in.
const CHUNK: usize = 64 * 1024;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request target byte for byte, no decoding or normalisation:
    /// `path?query` for origin-form (and for HTTP/2, where it is `:path`);
    /// the whole URI for HTTP/1 absolute-form or authority-form targets.
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    /// [`digest`] of the body.
    pub body_digest: u64,
    pub version: Version,
}

/// A running fake upstream; shuts down when dropped.
pub struct Upstream {
    state: Arc<State>,
    server: Server,
}

struct State {
    registry: Option<TokenRegistry>,
    requests: AtomicUsize,
    started: AtomicUsize,
    incomplete: AtomicUsize,
    expired: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    rejected: Mutex<HashSet<String>>,
    statuses: Mutex<HashMap<String, u16>>,
    delay: Mutex<Duration>,
}

impl Upstream {
    /// Starts an upstream that accepts any token (or none).
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// Starts an upstream that answers 401 to tokens `registry` does not
    /// know or says are expired (and to requests without a bearer token).
    pub async fn start_checking(registry: TokenRegistry) -> Self {
        Self::start_inner(Some(registry)).await
    }

    async fn start_inner(registry: Option<TokenRegistry>) -> Self {
        let state = Arc::new(State {
            registry,
            requests: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            incomplete: AtomicUsize::new(0),
            expired: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            rejected: Mutex::new(HashSet::new()),
            statuses: Mutex::new(HashMap::new()),
            delay: Mutex::new(Duration::ZERO),
        });
        let handler_state = state.clone();
        let server = Server::start(move |req| handle(handler_state.clone(), req)).await;
        Self { state, server }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Requests received with their body fully read.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests whose head arrived, whether or not their body then arrived whole.
    pub fn started(&self) -> usize {
        self.state.started.load(Ordering::SeqCst)
    }

    /// Requests whose body broke off before its end (not in [`Self::seen`]).
    pub fn incomplete(&self) -> usize {
        self.state.incomplete.load(Ordering::SeqCst)
    }

    /// Every fully read request, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    pub fn last(&self) -> Option<Seen> {
        lock(&self.state.seen).last().cloned()
    }

    /// Requests carrying a token the registry says is expired.
    pub fn expired_seen(&self) -> usize {
        self.state.expired.load(Ordering::SeqCst)
    }

    /// Answer 401 `WWW-Authenticate: Bearer error="invalid_token"` to this
    /// exact token.
    pub fn reject_token(&self, token: &str) {
        lock(&self.state.rejected).insert(token.to_owned());
    }

    /// Answer `status` to this exact token; takes precedence over everything.
    pub fn status_for_token(&self, token: &str, status: u16) {
        lock(&self.state.statuses).insert(token.to_owned(), status);
    }

    /// Sleep this long before sending any response's headers.
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.state.delay) = d;
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    state.started.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut digest = Digest::new();
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_len += data.len() as u64;
                    digest.update(data);
                }
            }
            Err(_) => {
                state.incomplete.fetch_add(1, Ordering::SeqCst);
                return text(StatusCode::BAD_REQUEST, "request body broke off");
            }
        }
    }

    let target = wire_target(&parts);
    let authorization = parts.headers.get(header::AUTHORIZATION).map(lossy);
    lock(&state.seen).push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body_len,
        body_digest: digest.finish(),
        version: parts.version,
    });
    state.requests.fetch_add(1, Ordering::SeqCst);

    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(resp) = state.check_token(authorization.as_deref().and_then(bearer_token)) {
        return resp;
    }

    let path = parts.uri.path();
    if let Some(n) = path.strip_prefix("/stream/") {
        return match n.parse::<u64>() {
            Ok(n) => {
                let mut resp = Response::new(PatternBody { sent: 0, len: n }.boxed());
                let headers = resp.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert("x-upstream", HeaderValue::from_static("1"));
                resp
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "bad length"),
        };
    }
    if let Some(rest) = path.strip_prefix("/cut/") {
        let lengths = rest
            .split_once('/')
            .and_then(|(d, s)| Some((d.parse().ok()?, s.parse().ok()?)));
        return match lengths {
            Some((declared_len, sent)) if sent < declared_len => {
                let data = Bytes::from(pattern_slice(0, sent));
                let script = vec![Step::Data(data), Step::Pause(Duration::from_millis(100))];
                let mut resp = declared(StatusCode::OK, "application/octet-stream", declared_len, script);
                resp.headers_mut()
                    .insert("x-upstream", HeaderValue::from_static("1"));
                resp
            }
            _ => text(StatusCode::BAD_REQUEST, "bad lengths"),
        };
    }
    if let Some((_, code)) = path.split_once("/status/") {
        // A fixed answer, whatever the credential: for protocols that never refresh.
        return match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => text(status, "fixed status"),
            None => text(StatusCode::BAD_REQUEST, "bad status"),
        };
    }
    if let Some((_, ms)) = path.split_once("/stall/") {
        // 10 bytes, a pause of `ms`, then the other 10 of the declared 20.
        return match ms.parse::<u64>() {
            Ok(ms) => {
                let half = Bytes::from(pattern_slice(0, 10));
                let script = vec![
                    Step::Data(half.clone()),
                    Step::Pause(Duration::from_millis(ms)),
                    Step::Data(half),
                ];
                declared(StatusCode::OK, "application/octet-stream", 20, script)
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "bad pause"),
        };
    }
    if path == "/redirect" {
        let mut resp = text(StatusCode::FOUND, "redirect");
        resp.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_static("http://elsewhere.example/"),
        );
        return resp;
    }
    let echo = json!({
        "method": parts.method.as_str(),
        "target": target,
        "body_len": body_len,
        "body_digest": format!("{:016x}", digest.finish()),
        "authorization": authorization,
    });
    let mut resp = respond(StatusCode::OK, "application/json", echo.to_string());
    resp.headers_mut()
        .insert("x-upstream", HeaderValue::from_static("1"));
    resp
}

impl State {
    /// The response to send instead of routing, if the token calls for one.
    fn check_token(&self, token: Option<&str>) -> Option<Response<RespBody>> {
        if let Some(token) = token {
            let status = lock(&self.statuses).get(token).copied();
            if let Some(status) = status {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = text(status, "status for token");
                if status == StatusCode::UNAUTHORIZED {
                    add_challenge(&mut resp, true);
                }
                return Some(resp);
            }
            if lock(&self.rejected).contains(token) {
                return Some(unauthorized(true));
            }
        }
        let registry = self.registry.as_ref()?;
        let Some(token) = token else {
            return Some(unauthorized(false));
        };
        match registry.check(token) {
            TokenCheck::Valid => None,
            TokenCheck::Expired => {
                self.expired.fetch_add(1, Ordering::SeqCst);
                Some(unauthorized(true))
            }
            TokenCheck::Unknown => Some(unauthorized(true)),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// 401 with an RFC 6750 §3 challenge; `invalid` adds `error="invalid_token"`.
fn unauthorized(invalid: bool) -> Response<RespBody> {
    let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized");
    add_challenge(&mut resp, invalid);
    resp
}

fn add_challenge(resp: &mut Response<RespBody>, invalid: bool) {
    let challenge = if invalid {
        r#"Bearer error="invalid_token""#
    } else {
        "Bearer"
    };
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
}

fn text(status: StatusCode, body: &str) -> Response<RespBody> {
    respond(status, "text/plain", body.to_owned())
}

/// The request target as it was on the wire.
fn wire_target(parts: &Parts) -> String {
    let uri = &parts.uri;
    let origin_form =
        parts.version == Version::HTTP_2 || (uri.scheme().is_none() && uri.authority().is_none());
    match uri.path_and_query() {
        Some(pq) if origin_form => pq.as_str().to_owned(),
        _ => uri.to_string(),
    }
}

/// FNV-1a 64, fed incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(u64);

impl Digest {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub const fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a 64 of `bytes`.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut d = Digest::new();
    d.update(bytes);
    d.finish()
}

/// Bytes `offset..offset + len` of the `/stream/<N>` pattern.
pub fn pattern_slice(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(|i| (i % 251) as u8).collect()
}

/// The whole `/stream/<n>` body (for small `n`).
pub fn pattern(n: usize) -> Vec<u8> {
    pattern_slice(0, n)
}

/// [`digest`] of the `/stream/<n>` body, computed in constant memory.
pub fn pattern_digest(n: u64) -> u64 {
    let mut d = Digest::new();
    let mut offset = 0;
    while offset < n {
        let len = (n - offset).min(CHUNK as u64) as usize;
        d.update(&pattern_slice(offset, len));
        offset += len as u64;
    }
    d.finish()
}

/// The `/stream/<N>` body, generated chunk by chunk as it is polled.
struct PatternBody {
    sent: u64,
    len: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.len {
            return Poll::Ready(None);
        }
        let n = (this.len - this.sent).min(CHUNK as u64) as usize;
        let chunk = Bytes::from(pattern_slice(this.sent, n));
        this.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}
