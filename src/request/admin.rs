//! `/.callout/{health,ready,metrics,credentials}`: what operators and probes read.
//! Nothing here ever shows a secret or a token.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::error::ProxyError;
use super::routes::Routes;
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

pub fn handle<B>(view: &View<'_>, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ProxyError::MethodNotAllowed(request.method().clone()).to_response();
    }
    match request.uri().path() {
        "/.callout/health" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/.callout/ready" if view.draining => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
        "/.callout/ready" => text(StatusCode::OK, "text/plain", "ready\n"),
        "/.callout/metrics" => {
            let tokens: Vec<TokenCounts> = view
                .tokens
                .live_slots()
                .iter()
                .map(|slot| {
                    let status = slot.status();
                    TokenCounts {
                        external_credential: slot.key().external_credential.clone(),
                        principal: slot.key().principal.clone(),
                        fetches: status.fetches,
                        failures: status.failures,
                    }
                })
                .collect();
            text(StatusCode::OK, "text/plain; version=0.0.4", view.metrics.render(&tokens))
        }
        "/.callout/credentials" => {
            let body = credentials(view.routes);
            text(StatusCode::OK, "application/json", body.to_string())
        }
        _ => ProxyError::BadRequest("unknown admin path; try /.callout/health, /.callout/ready, /.callout/metrics or /.callout/credentials".to_string())
        .to_response(),
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
                        Credential::OAuth(oauth) => {
                            let status = oauth.slot().status();
                            json!({
                                "cached": status.cached,
                                "expires_in_seconds": status.expires_in.map(|d| d.as_secs()),
                                "fetch_count": status.fetches,
                                "failure_count": status.failures,
                                "last_error": status.last_error,
                            })
                        }
                        Credential::Basic(_) | Credential::None => serde_json::Value::Null,
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
                    Protocol::OAuth2(settings) => Some(settings.token_url.to_string()),
                    Protocol::Basic | Protocol::None => None,
                },
                "principals": principals,
            })
        })
        .collect();
    json!({ "named_credentials": list })
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
