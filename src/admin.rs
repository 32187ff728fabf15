//! `/.callout/{health,ready,metrics,credentials}`: what operators and probes read.
//! Nothing here ever shows a secret or a token.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::error::ProxyError;
use crate::proxy::{Proxy, text};

pub fn handle<B>(proxy: &Proxy, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ProxyError::MethodNotAllowed(request.method().clone()).to_response();
    }
    match request.uri().path() {
        "/.callout/health" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/.callout/ready" if proxy.is_draining() => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
        "/.callout/ready" => text(StatusCode::OK, "text/plain", "ready\n"),
        "/.callout/metrics" => {
            let slots = proxy.tokens().live_slots();
            text(StatusCode::OK, "text/plain; version=0.0.4", proxy.metrics().render(&slots))
        }
        "/.callout/credentials" => {
            let body = credentials(proxy);
            text(StatusCode::OK, "application/json", body.to_string())
        }
        _ => ProxyError::BadRequest("unknown admin path; try /.callout/health, /.callout/ready, /.callout/metrics or /.callout/credentials".to_string())
        .to_response(),
    }
}

fn credentials(proxy: &Proxy) -> serde_json::Value {
    let routes = proxy.routes();
    let list: Vec<_> = routes
        .credentials()
        .into_iter()
        .map(|(named, slots)| {
            let ec = &named.external_credential;
            let principals: Vec<_> = ec
                .principals
                .iter()
                .zip(slots)
                .map(|(p, slot)| {
                    let status = slot.status();
                    json!({
                        "name": &*p.name,
                        "sequence": p.sequence,
                        "permission_sets": p.permission_sets.iter().map(|s| &**s).collect::<Vec<_>>(),
                        "scope": ec.effective_scope(p),
                        "token": {
                            "cached": status.cached,
                            "expires_in_seconds": status.expires_in.map(|d| d.as_secs()),
                            "fetch_count": status.fetches,
                            "failure_count": status.failures,
                            "last_error": status.last_error,
                        },
                    })
                })
                .collect();
            json!({
                "name": &*named.name,
                "url": named.url.to_string(),
                "external_credential": &*ec.name,
                "token_url": ec.token_url.to_string(),
                "principals": principals,
            })
        })
        .collect();
    json!({ "named_credentials": list })
}
