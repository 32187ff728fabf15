//! `/.callout/{health,ready,metrics,credentials}`: what operators and probes read.
//! Nothing here ever shows a secret or a token.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::error::ProxyError;
use super::routes::Routes;
use crate::auth::oauth::{OAuth, Source};
use crate::auth::{Credential, Tokens};
use crate::config::Protocol;
use crate::metrics::{Metrics, TokenCounts};

/// What the admin endpoints read: nothing of the proxy but these.
pub struct View<'a> {
    pub routes: &'a Routes,
    pub metrics: &'a Metrics,
    pub tokens: &'a Tokens,
    pub draining: bool,
}

/// Who is asking, as far as the admin endpoints care.
pub enum Asker {
    /// On `admin_listen`: probes and scrapers, which get health, ready and metrics only.
    Probe,
    /// On the proxy's own listener: whether the caller is an admin (`Ok(None)` when no
    /// `[callers]` are configured). Health and ready are open to all.
    Caller(Result<Option<bool>, ProxyError>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    Ready,
    Metrics,
    Credentials,
}

const ENDPOINTS: [(&str, Endpoint); 4] = [
    ("/.callout/health", Endpoint::Health),
    ("/.callout/ready", Endpoint::Ready),
    ("/.callout/metrics", Endpoint::Metrics),
    ("/.callout/credentials", Endpoint::Credentials),
];

pub fn handle<B>(view: &View<'_>, request: &Request<B>, asker: Asker) -> Response<Full<Bytes>> {
    match endpoint(request, asker) {
        Ok(endpoint) => answer(view, endpoint),
        Err(err) => err.to_response(),
    }
}

/// The endpoint `request` may read, or why it may not.
fn endpoint<B>(request: &Request<B>, asker: Asker) -> Result<Endpoint, ProxyError> {
    let path = request.uri().path();
    let found = ENDPOINTS.iter().find(|(p, _)| *p == path).map(|(_, e)| *e);
    let endpoint = match (found, &asker) {
        // Not served on admin_listen at all, so that it cannot be reached from the network.
        (Some(Endpoint::Credentials), Asker::Probe) | (None, _) => {
            return Err(ProxyError::UnknownAdminPath(path.chars().take(64).collect()));
        }
        (Some(endpoint), _) => endpoint,
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Err(ProxyError::MethodNotAllowed {
            method: request.method().clone(),
            allow: http::HeaderValue::from_static("GET, HEAD"),
        });
    }
    match (endpoint, asker) {
        (Endpoint::Health | Endpoint::Ready, _) | (_, Asker::Probe) => Ok(endpoint),
        (_, Asker::Caller(Err(err))) => Err(err),
        (_, Asker::Caller(Ok(None | Some(true)))) => Ok(endpoint),
        (_, Asker::Caller(Ok(Some(false)))) => {
            Err(ProxyError::AdminRequired(if endpoint == Endpoint::Metrics {
                "/.callout/metrics"
            } else {
                "/.callout/credentials"
            }))
        }
    }
}

fn answer(view: &View<'_>, endpoint: Endpoint) -> Response<Full<Bytes>> {
    match endpoint {
        Endpoint::Health => text(StatusCode::OK, "text/plain", "ok\n"),
        Endpoint::Ready if view.draining => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
        Endpoint::Ready => text(StatusCode::OK, "text/plain", "ready\n"),
        Endpoint::Metrics => {
            // Token exchange keeps a slot per subject token, and a reload can briefly
            // leave an old slot live beside the new one: one series per principal, summed.
            let mut tokens: Vec<TokenCounts> = Vec::new();
            for slot in view.tokens.live_slots() {
                let status = slot.status();
                let key = slot.key();
                let secret_in_use = key.grant.client().secret_in_use();
                match tokens.last_mut() {
                    Some(t)
                        if t.external_credential == key.external_credential
                            && t.principal == key.principal =>
                    {
                        t.fetches += status.fetches;
                        t.failures += status.failures;
                        t.secret_in_use = t.secret_in_use.or(secret_in_use);
                    }
                    _ => tokens.push(TokenCounts {
                        external_credential: key.external_credential.clone(),
                        principal: key.principal.clone(),
                        fetches: status.fetches,
                        failures: status.failures,
                        secret_in_use,
                    }),
                }
            }
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                view.metrics.render(&tokens),
            )
        }
        Endpoint::Credentials => {
            let body = credentials(view.routes);
            text(StatusCode::OK, "application/json", body.to_string())
        }
    }
}

fn credentials(routes: &Routes) -> serde_json::Value {
    let list: Vec<_> = routes
        .credentials()
        .into_iter()
        .map(|(named, credentials)| {
            let ec = &named.external_credential;
            let principals: Vec<_> = ec
                .principals
                .iter()
                .zip(credentials)
                .map(|(p, credential)| {
                    let token = match credential {
                        Credential::OAuth(oauth) => token_state(oauth),
                        Credential::Basic(_) | Credential::AwsSigV4(_) | Credential::None => {
                            serde_json::Value::Null
                        }
                    };
                    json!({
                        "name": &*p.name,
                        "sequence": p.sequence,
                        "permission_sets": p.permission_sets.iter().map(|s| &**s).collect::<Vec<_>>(),
                        "scope": ec.effective_scope(p),
                        "token": token,
                    })
                })
                .collect();
            json!({
                "name": &*named.name,
                "url": named.url.to_string(),
                "external_credential": &*ec.name,
                "protocol": ec.protocol.describe(),
                "token_url": match &ec.protocol {
                    Protocol::OAuth2(settings) => Some(settings.token_url().to_string()),
                    Protocol::Basic | Protocol::Custom | Protocol::AwsSigV4(_) | Protocol::None => None,
                },
                "principals": principals,
            })
        })
        .collect();
    json!({ "named_credentials": list })
}

/// What `/.callout/credentials` says of an OAuth principal's token: never the token.
fn token_state(oauth: &OAuth) -> serde_json::Value {
    match oauth.source() {
        Source::Slot(slot) => {
            let status = slot.status();
            json!({
                "cached": status.cached,
                "expires_in_seconds": status.expires_in.map(|d| d.as_secs()),
                "fetch_count": status.fetches,
                "failure_count": status.failures,
                "last_error": status.last_error,
                "client_secret_in_use": slot.key().grant.client().secret_in_use(),
            })
        }
        Source::Keyed { slots, subject, .. } => json!({
            "keyed_tokens": slots.keys(),
            "per": if *subject { "subject token" } else { "scope" },
            "client_secret_in_use": slots.key().grant.client().secret_in_use(),
        }),
    }
}

/// A plain response of ours.
fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
