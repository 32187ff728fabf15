//! The request path, one way round: admin or proxy; caller, route, principal, body,
//! credential, upstream; refresh-and-retry; then the metric and the access log line.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{Either, Full};

use super::Proxy;
use super::admin::{Asker, View};
use super::caller::{authenticate, effective_sets};
use super::error::{ALLOW_DEFAULT, ProxyError};
use super::formulas::{self, RequestFields, User};
use super::principal::header_sets;
use super::request_id::{REQUEST_ID, request_id};
use super::routes::{Route, Routes};
use super::target::{parse_target, upstream_uri};
use crate::auth::{Applied, Attempt, BodyRule, Credential};
use crate::cause::cause_chain;
use crate::listen::{CallerBody, Peer};
use crate::metrics::{Outcome, Series};
use crate::token::CacheOutcome;
use crate::upstream::{BodyError, Outgoing, Prepared, RequestBody, UpstreamBody, clean_response};

/// The caller's own token, for token exchange. Like every `x-callout-` header it never goes
/// upstream.
pub const SUBJECT_TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static("x-callout-subject-token");

/// What the caller's response carries: the upstream's body as it streams, or ours.
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// Answers one request.
pub async fn handle(proxy: Arc<Proxy>, request: Request<CallerBody>, peer: Peer) -> Response<ResponseBody> {
    let started = Instant::now();
    let routes = proxy.routes.load_full();
    if request.uri().path().starts_with("/.callout/") {
        let caller = authenticate(&routes.config.callers, request.headers(), peer);
        let asker = Asker::Caller(caller.map(|c| c.map(|c| c.admin)));
        return admin(&proxy, &routes, &request, asker);
    }
    let method = request.method().clone();
    let id = request_id(request.headers());
    // A clone of the URI is a reference count: the path is logged without a copy.
    let uri = request.uri().clone();
    let mut log = RequestLog::default();
    let result = forward(&routes, request, peer, &id, &mut log).await;
    let elapsed = started.elapsed();
    let (response, outcome) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            log.upstream_status = Some(status);
            (response.map(Either::Left), Outcome::Status(status))
        }
        Err(err) => {
            let (code, _) = err.code();
            tracing::debug!(code, error = %err, "request refused");
            log.error = Some(code);
            (err.to_response().map(Either::Right), Outcome::Error(code))
        }
    };
    let mut response = response;
    log.series.unwrap_or(&routes.unmatched).record(outcome, elapsed);
    tracing::info!(
        target: "callout::access",
        request_id = id.to_str().unwrap_or_default(),
        method = %method,
        path = %Bounded(uri.path()),
        caller = log.caller.unwrap_or("-"),
        named_credential = log.named_credential.unwrap_or("-"),
        principal = log.principal.unwrap_or("-"),
        status = response.status().as_u16(),
        upstream_status = log.upstream_status,
        error = log.error.unwrap_or("-"),
        token = log.cache.map_or("-", CacheOutcome::as_str),
        retried = log.retried,
        duration_us = elapsed.as_micros() as u64,
    );
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// Answers a request on `admin_listen`: health, ready and metrics, nothing else.
pub async fn handle_probe(proxy: Arc<Proxy>, request: Request<CallerBody>) -> Response<ResponseBody> {
    let routes = proxy.routes.load_full();
    if !request.uri().path().starts_with("/.callout/") {
        let path = request.uri().path().chars().take(64).collect();
        return ProxyError::UnknownAdminPath(path)
            .to_response()
            .map(Either::Right);
    }
    admin(&proxy, &routes, &request, Asker::Probe)
}

fn admin<B>(proxy: &Proxy, routes: &Routes, request: &Request<B>, asker: Asker) -> Response<ResponseBody> {
    let view = View {
        routes,
        metrics: &proxy.metrics,
        tokens: &proxy.tokens,
        draining: proxy.is_draining(),
    };
    super::admin::handle(&view, request, asker).map(Either::Right)
}

async fn forward<'r>(
    routes: &'r Routes,
    request: Request<CallerBody>,
    peer: Peer,
    id: &HeaderValue,
    log: &mut RequestLog<'r>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    // Never forwarded: CONNECT would open a tunnel, and TRACE echoes the request, token
    // included, back to the caller.
    if request.method() == Method::CONNECT || request.method() == Method::TRACE {
        return Err(ProxyError::MethodNotAllowed {
            method: request.method().clone(),
            allow: ALLOW_DEFAULT,
        });
    }
    let (parts, body) = request.into_parts();
    let caller = authenticate(&routes.config.callers, &parts.headers, peer)?;
    log.caller = caller.map(|c| &*c.name);
    let callers_configured = !routes.config.callers.is_empty();
    let user = User::asserted(
        &parts.headers,
        caller,
        callers_configured,
        &routes.config.server.listen,
    )?;
    let target = parse_target(parts.uri.path(), parts.uri.query())
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let route = routes.route(target.name)?;
    let named = &route.named;
    let ec = &named.external_credential;
    log.named_credential = Some(&named.name);
    log.series = Some(&route.unattributed);
    if let Some(allow) = &route.allow
        && !named.methods.as_ref().is_some_and(|m| m.contains(&parts.method))
    {
        return Err(ProxyError::MethodNotAllowed {
            method: parts.method,
            allow: allow.clone(),
        });
    }

    let asserted = header_sets(&parts.headers).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let sets = effective_sets(caller, asserted, &routes.config.server.default_permission_sets);
    let Some(chosen) = route.index.choose(sets) else {
        return Err(ProxyError::NoPrincipal {
            external_credential: ec.name.clone(),
        });
    };
    let principal = &route.principals[chosen];
    log.principal = Some(&ec.principals[chosen].name);
    log.series = Some(&principal.series);
    let credential = &principal.credential;

    let server = &routes.config.server;
    let buffer_up_to = match credential.body_rule() {
        BodyRule::Stream => server.retry_body_limit,
        BodyRule::Buffer => server.max_request_body,
    };
    let body = RequestBody::prepare(
        body,
        buffer_up_to,
        server.max_request_body,
        server.body_idle_timeout,
    )
    .await
    .map_err(body_error)?;
    let uri = upstream_uri(&named.url, &target);
    // Taken before the headers are cleaned (every x-callout-* header stays here).
    let subject_token = match credential.takes_subject_token() {
        true => parts.headers.get(SUBJECT_TOKEN_HEADER).cloned(),
        false => None,
    };
    let mut outgoing = Outgoing::new(
        parts.method,
        uri,
        parts.headers,
        &named.headers,
        named.generate_authorization_header,
    );
    outgoing.headers.insert(REQUEST_ID, id.clone());
    let (replay, first_body) = match body {
        Prepared::Buffered(bytes) => (Some(bytes.clone()), RequestBody::buffered(bytes)),
        Prepared::Streaming(body) => (None, body),
    };

    let subject_token = subject_token.as_ref();
    let who = Who {
        principal: &ec.principals[chosen],
        user: &user,
        subject_token,
    };
    let (response, applied) =
        attempt(route, credential, &outgoing, (replay.as_ref(), &who), first_body).await?;
    log.cache = applied.cache;
    if !credential.rejected(&applied, response.status().as_u16()) {
        return Ok(response);
    }
    let Some(bytes) = replay else {
        // The body is gone: the caller gets the upstream's answer, the next request a new
        // credential.
        return Ok(response);
    };
    drop(response);
    log.retried = true;
    let body = RequestBody::buffered(bytes.clone());
    let (response, applied) = attempt(route, credential, &outgoing, (Some(&bytes), &who), body).await?;
    // Rejected again: drop what was used, so the next request does not reuse it.
    credential.rejected(&applied, response.status().as_u16());
    Ok(response)
}

/// One attempt at the upstream with `credential` applied, bounded by the named
/// credential's timeout.
async fn attempt(
    route: &Route,
    credential: &Credential,
    outgoing: &Outgoing,
    (buffered, who): (Option<&Bytes>, &Who<'_>),
    body: RequestBody,
) -> Result<(Response<UpstreamBody>, Applied), ProxyError> {
    let mut headers = outgoing.headers.clone();
    let (before, after) = route.named.header_templates();
    if !before.is_empty() {
        formulas::render(before, &who.fields(None, None), &mut headers)?;
    }
    let applied = credential
        .apply(Attempt {
            method: &outgoing.method,
            uri: &outgoing.uri,
            headers: &mut headers,
            body: buffered,
            subject_token: who.subject_token,
            fields: Some(&who.fields(None, None)),
        })
        .await?;
    if !after.is_empty() {
        let fields = who.fields(applied.token(), credential.basic_authorization());
        formulas::render(after, &fields, &mut headers)?;
    }
    let request = outgoing.request(headers, body);
    let timeout = route.named.timeout;
    // A free upstream slot first, waiting no longer than for the response itself. Most
    // requests find one at once and never set up the timer.
    let permit = match route.slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => match tokio::time::timeout(timeout, route.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                return Err(ProxyError::UpstreamBusy {
                    limit: route.slot_count,
                    waited: timeout,
                });
            }
        },
    };
    match tokio::time::timeout(timeout, route.upstream.send(request)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout(timeout)),
        Ok(Ok(mut response)) => {
            response.body_mut().guard(route.body_idle_timeout, permit);
            Ok((clean_response(response), applied))
        }
        Ok(Err(err)) => Err(upstream_error(&*err)),
    }
}

/// Who a request is for: what header formulas and token exchange read.
struct Who<'a> {
    principal: &'a crate::config::Principal,
    user: &'a User,
    subject_token: Option<&'a HeaderValue>,
}

impl<'a> Who<'a> {
    fn fields(
        &self,
        token: Option<&'a crate::token::Token>,
        basic: Option<&'a HeaderValue>,
    ) -> RequestFields<'a> {
        RequestFields {
            principal: self.principal,
            token,
            basic,
            user: self.user,
        }
    }
}

fn upstream_error(err: &(dyn std::error::Error + Send + Sync + 'static)) -> ProxyError {
    // A failure of the caller's body shows up as a failure of the upstream request.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge(limit) => ProxyError::BodyTooLarge { limit: *limit },
                BodyError::Caller(_) | BodyError::Idle(_) => ProxyError::BadRequest(body.to_string()),
            };
        }
        source = e.source();
    }
    ProxyError::UpstreamUnreachable(cause_chain(err))
}

fn body_error(err: BodyError) -> ProxyError {
    match err {
        BodyError::TooLarge(limit) => ProxyError::BodyTooLarge { limit },
        BodyError::Caller(_) | BodyError::Idle(_) => ProxyError::BadRequest(err.to_string()),
    }
}

/// What the access log line says about a request.
#[derive(Default)]
struct RequestLog<'r> {
    upstream_status: Option<u16>,
    caller: Option<&'r str>,
    named_credential: Option<&'r str>,
    principal: Option<&'r str>,
    cache: Option<CacheOutcome>,
    error: Option<&'static str>,
    retried: bool,
    series: Option<&'r Arc<Series>>,
}

/// The path as logged: without the query (which may carry anything), at most 256
/// characters.
struct Bounded<'a>(&'a str);

impl std::fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(256) {
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
            None => f.write_str(self.0),
        }
    }
}
