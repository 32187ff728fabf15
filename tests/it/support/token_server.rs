//! A fake OAuth 2.0 token endpoint (RFC 6749 §4.4 client-credentials grant).
//!
//! It issues unique bearer tokens (§5.1), records every request it receives so
//! tests can check how the proxy authenticates, and can be told to misbehave
//! (see [`Fault`]) to drive the proxy's error paths (§5.2 and worse). Issued
//! tokens and their expiry instants go into a [`TokenRegistry`], which an
//! [`Upstream`](super::upstream::Upstream) can check presented tokens against.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{RespBody, Server, lock, lossy, respond};

/// Largest token request body the server will read.
const MAX_BODY: usize = 1 << 20;

/// What the token response says in `expires_in`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpiresIn {
    /// A JSON number, as RFC 6749 §5.1 says.
    Number(u64),
    /// A JSON string such as `"3600"`, as some real servers send.
    Str(String),
    /// No `expires_in` member at all.
    Absent,
}

impl ExpiresIn {
    fn seconds(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Str(s) => s.trim().parse().ok(),
            Self::Absent => None,
        }
    }

    fn to_json(&self) -> Option<Value> {
        match self {
            Self::Number(n) => Some(json!(n)),
            Self::Str(s) => Some(json!(s)),
            Self::Absent => None,
        }
    }
}

/// How the token endpoint misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// 200 `text/html` `<html>oops</html>`.
    Html,
    /// 400 with an RFC 6749 §5.2 error body.
    OAuthError { error: String, description: String },
    /// This status with a small `text/plain` body.
    Status(u16),
    /// 200 `application/json` with truncated JSON.
    Garbage,
    /// A normal token, but with `"token_type":"mac"`.
    TokenTypeMac,
    /// Read the request, then close the connection without sending a byte.
    Hangup,
    /// 200 `application/json` whose `Content-Length` covers a whole token response, of
    /// which only the first half is sent before the connection closes.
    Truncated,
    /// A normal token, its headers at once and then one body byte per this period.
    Trickle(Duration),
    /// This status with `Retry-After: <seconds>` and a small `text/plain` body.
    RetryAfter { status: u16, seconds: u64 },
    /// 401 `invalid_client` whose `error_description` echoes the request: the secret as
    /// decoded, then the `Authorization` header and the body as received.
    EchoRequest,
}

/// What a [`TokenRegistry`] knows about a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Expired,
    Unknown,
}

/// The tokens a [`TokenServer`] has issued and when they expire; cheap to
/// clone, all clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct TokenRegistry {
    tokens: Arc<Mutex<HashMap<String, Option<Instant>>>>,
}

impl TokenRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a token; `None` means it never expires.
    pub fn insert(&self, token: impl Into<String>, expires_at: Option<Instant>) {
        lock(&self.tokens).insert(token.into(), expires_at);
    }

    /// A token is expired from its expiry instant on.
    pub fn check(&self, token: &str) -> TokenCheck {
        match lock(&self.tokens).get(token) {
            None => TokenCheck::Unknown,
            Some(Some(at)) if Instant::now() >= *at => TokenCheck::Expired,
            Some(_) => TokenCheck::Valid,
        }
    }

    /// Makes a known token expired from now on; returns whether it was known.
    pub fn expire(&self, token: &str) -> bool {
        match lock(&self.tokens).get_mut(token) {
            Some(at) => {
                *at = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Makes every known token expired from now on.
    pub fn expire_all(&self) {
        let now = Instant::now();
        for at in lock(&self.tokens).values_mut() {
            *at = Some(now);
        }
    }
}

/// One request as the token server received it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// Form fields decoded with `form_urlencoded`, in order.
    pub form: Vec<(String, String)>,
    pub raw_body: String,
}

impl TokenRequest {
    /// The first form field called `key`.
    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// The `Authorization: Basic` credentials exactly as base64-decoded,
    /// split at the first `:`.
    pub fn basic_auth_raw(&self) -> Option<(String, String)> {
        let value = self.authorization.as_deref()?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((id.to_owned(), secret.to_owned()))
    }

    /// The `Authorization: Basic` credentials with each half also
    /// form-urlencoded-decoded, as RFC 6749 §2.3.1 has clients encode them.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let (id, secret) = self.basic_auth_raw()?;
        Some((form_decode(&id), form_decode(&secret)))
    }
}

/// Decodes one form-urlencoded component (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    // Escape the separators so the whole string parses as a single name.
    let escaped = s.replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(escaped.as_bytes())
        .map(|(k, _)| k.into_owned())
        .next()
        .unwrap_or_default()
}

/// A running fake token endpoint; shuts down when dropped.
pub struct TokenServer {
    state: Arc<State>,
    server: Server,
}

struct State {
    registry: TokenRegistry,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    next_token: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
    issued: Mutex<Vec<String>>,
    expires_in: Mutex<ExpiresIn>,
    fault: Mutex<Fault>,
    delay: Mutex<Duration>,
    /// When set, a request with another client secret gets 401 `invalid_client` (one
    /// without a secret, authenticated otherwise, is not judged).
    accepted_secret: Mutex<Option<String>>,
}

impl TokenServer {
    /// Starts a server with a fresh registry.
    pub async fn start() -> Self {
        Self::start_with(TokenRegistry::new()).await
    }

    /// Starts a server that records issued tokens in `registry`.
    pub async fn start_with(registry: TokenRegistry) -> Self {
        let state = Arc::new(State {
            registry,
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            next_token: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            expires_in: Mutex::new(ExpiresIn::Number(3600)),
            fault: Mutex::new(Fault::None),
            delay: Mutex::new(Duration::ZERO),
            accepted_secret: Mutex::new(None),
        });
        let handler_state = state.clone();
        let server = Server::start(move |req| handle(handler_state.clone(), req)).await;
        Self { state, server }
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn url(&self) -> String {
        format!("{}/token", self.server.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn registry(&self) -> TokenRegistry {
        self.state.registry.clone()
    }

    /// Requests received, whatever their path, method or outcome.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests ever being handled at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request whose body could be read, in arrival order.
    pub fn requests_log(&self) -> Vec<TokenRequest> {
        lock(&self.state.log).clone()
    }

    pub fn last_request(&self) -> Option<TokenRequest> {
        lock(&self.state.log).last().cloned()
    }

    /// Default `ExpiresIn::Number(3600)`.
    pub fn set_expires_in(&self, e: ExpiresIn) {
        *lock(&self.state.expires_in) = e;
    }

    /// Default `Fault::None`.
    pub fn set_fault(&self, f: Fault) {
        *lock(&self.state.fault) = f;
    }

    /// Delay before every response, on top of any `Fault::Delay`.
    /// Accept only `secret` (Basic or form) from now on; `None` accepts any.
    pub fn set_accepted_secret(&self, secret: Option<&str>) {
        *lock(&self.state.accepted_secret) = secret.map(str::to_owned);
    }

    pub fn set_delay(&self, d: Duration) {
        *lock(&self.state.delay) = d;
    }

    /// Tokens issued so far, in order.
    pub fn issued(&self) -> Vec<String> {
        lock(&self.state.issued).clone()
    }

    pub fn form_value(req: &TokenRequest, key: &str) -> Option<String> {
        req.form_value(key)
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let arrived = Instant::now();
    state.requests.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state);

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable request body"),
    };
    let request = TokenRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        authorization: parts.headers.get(header::AUTHORIZATION).map(lossy),
        content_type: parts.headers.get(header::CONTENT_TYPE).map(lossy),
        form: form_urlencoded::parse(&body).into_owned().collect(),
        raw_body: String::from_utf8_lossy(&body).into_owned(),
    };
    let scope = request.form_value("scope");
    let echo = echo(&request);
    let sent_secret = request
        .basic_auth()
        .map(|(_, s)| s)
        .or_else(|| request.form_value("client_secret"));
    let refused = lock(&state.accepted_secret)
        .as_ref()
        .is_some_and(|accepted| sent_secret.as_ref().is_some_and(|sent| sent != accepted));
    lock(&state.log).push(request);

    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if parts.uri.path() != "/token" {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if parts.method != Method::POST {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }

    if refused {
        return json_response(StatusCode::UNAUTHORIZED, &json!({ "error": "invalid_client" }));
    }
    let fault = lock(&state.fault).clone();
    match fault {
        Fault::None => state.issue(arrived, scope, "Bearer"),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            state.issue(arrived, scope, "Bearer")
        }
        Fault::Html => respond(StatusCode::OK, "text/html", "<html>oops</html>"),
        Fault::OAuthError { error, description } => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": error, "error_description": description }),
        ),
        Fault::Status(s) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, &format!("status {s}"))
        }
        Fault::Garbage => respond(StatusCode::OK, "application/json", r#"{"access_token": "#),
        Fault::TokenTypeMac => state.issue(arrived, scope, "mac"),
        Fault::Hangup => {
            let mut resp = Response::new(Scripted::new(Vec::new()).boxed());
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("64"));
            resp
        }
        Fault::Truncated => {
            let json: &'static [u8] =
                br#"{"access_token":"tok-truncated","token_type":"Bearer","expires_in":3600}"#;
            let half = Bytes::from_static(&json[..json.len() / 2]);
            // The pause lets hyper flush the half before the early end closes the connection.
            let script = vec![Step::Data(half), Step::Pause(Duration::from_millis(20))];
            declared(StatusCode::OK, "application/json", json.len(), script)
        }
        Fault::Trickle(period) => {
            let body = state.issue(arrived, scope, "Bearer").into_body();
            let json = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let mut script = Vec::new();
            for i in 0..json.len() {
                if i > 0 {
                    script.push(Step::Pause(period));
                }
                script.push(Step::Data(json.slice(i..i + 1)));
            }
            declared(StatusCode::OK, "application/json", json.len(), script)
        }
        Fault::EchoRequest => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "invalid_client", "error_description": echo }),
        ),
        Fault::RetryAfter { status, seconds } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut resp = text(code, &format!("status {status}"));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            resp
        }
    }
}

/// What `Fault::EchoRequest` says about `request`.
fn echo(req: &TokenRequest) -> String {
    let secret = req
        .basic_auth()
        .map(|(_, s)| s)
        .or_else(|| req.form_value("client_secret"));
    let auth = req.authorization.as_deref().unwrap_or("none");
    format!(
        "client secret {} is not right; Authorization: {auth}; body: {}",
        secret.unwrap_or_default(),
        req.raw_body
    )
}

/// A response framed by `Content-Length: len` whose body is played from `script`.
pub(crate) fn declared(
    status: StatusCode,
    content_type: &'static str,
    len: usize,
    script: Vec<Step>,
) -> Response<RespBody> {
    let mut resp = Response::new(Scripted::new(script).boxed());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// One step of a [`Scripted`] body.
pub(crate) enum Step {
    Data(Bytes),
    Pause(Duration),
}

/// A response body played from a script, for the wire faults hyper's own bodies cannot
/// make. It gives hyper no size hint, so hyper frames it by the response's
/// `Content-Length` header; a script that ends short of that length makes hyper send what
/// was flushed and close the connection mid-body (with nothing sent yet: before the head).
pub(crate) struct Scripted {
    steps: VecDeque<Step>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Scripted {
    pub(crate) fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
            pause: None,
        }
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match this.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Step::Pause(d)) => this.pause = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
    }
}

impl State {
    /// Issues a new token, registers it, and builds the §5.1 response.
    fn issue(&self, arrived: Instant, scope: Option<String>, token_type: &str) -> Response<RespBody> {
        let n = self.next_token.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}-{:016x}", RandomState::new().hash_one(n));
        let expires_in = lock(&self.expires_in).clone();
        let expires_at = expires_in
            .seconds()
            .and_then(|s| arrived.checked_add(Duration::from_secs(s)));
        self.registry.insert(token.clone(), expires_at);
        lock(&self.issued).push(token.clone());

        let mut body = Map::new();
        body.insert("access_token".into(), json!(token));
        body.insert("token_type".into(), json!(token_type));
        if let Some(e) = expires_in.to_json() {
            body.insert("expires_in".into(), e);
        }
        if let Some(scope) = scope {
            body.insert("scope".into(), json!(scope));
        }
        json_response(StatusCode::OK, &Value::Object(body))
    }
}

/// A JSON response with the §5.1 cache headers.
fn json_response(status: StatusCode, body: &Value) -> Response<RespBody> {
    let mut resp = respond(status, "application/json", body.to_string());
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn text(status: StatusCode, body: &str) -> Response<RespBody> {
    respond(status, "text/plain", body.to_owned())
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}
