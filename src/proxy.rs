//! The request path: admin or proxy; route, principal, token, forward; refresh-and-retry.
//!
//! `Proxy` owns what lives across reloads (the token cache, the upstream clients, the
//! metrics) and the current `Routes`, swapped atomically on reload. A request takes the
//! routes it started with and finishes on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use rustls_pki_types::CertificateDer;

use crate::body::{BodyError, CallerBody, Prepared, RequestBody, ResponseBody};
use crate::caller::{Peer, authenticate, effective_sets};
use crate::client::Connector;
use crate::config::{Config, ExternalCredential, NamedCredential};
use crate::error::{ProxyError, cause_chain};
use crate::forward::{Outgoing, clean_response};
use crate::metrics::{Labels, Metrics, Outcome, Series};
use crate::principal::{PrincipalIndex, header_sets};
use crate::routing::{parse_target, upstream_uri};
use crate::token::{CacheOutcome, ClientCredentials, Grant, Lifetimes, TokenCache, TokenKey, TokenSlot};
use crate::upstream::{Upstream, UpstreamBody};

/// Extra trust anchors (`ca_file`) that a connector was built with.
type TrustAnchors = Vec<CertificateDer<'static>>;
/// `scheme://authority`.
type Origin = String;

/// The proxy: shared by every connection.
pub struct Proxy {
    routes: ArcSwap<Routes>,
    tokens: Arc<TokenCache>,
    /// Connectors by extra trust anchors, and upstreams by origin and trust anchors; kept
    /// across reloads so idle connections survive.
    connectors: Mutex<HashMap<TrustAnchors, Connector>>,
    upstreams: Mutex<HashMap<(Origin, TrustAnchors), Arc<Upstream>>>,
    metrics: Metrics,
    draining: AtomicBool,
}

/// A loaded config with everything a request needs already resolved.
pub struct Routes {
    pub config: Arc<Config>,
    by_name: HashMap<Box<str>, Route>,
    /// Requests that matched no principal or no named credential.
    unmatched: Arc<Series>,
}

struct Route {
    named: Arc<NamedCredential>,
    index: Arc<PrincipalIndex>,
    principals: Vec<PrincipalRoute>,
    upstream: Arc<Upstream>,
    /// For requests that were refused before a principal was chosen.
    unattributed: Arc<Series>,
}

struct PrincipalRoute {
    slot: Arc<TokenSlot>,
    series: Arc<Series>,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, rustls::Error> {
        let token_http = crate::client::pooled(&[])?;
        let proxy = Proxy {
            routes: ArcSwap::from_pointee(Routes::empty()),
            tokens: TokenCache::new(token_http),
            connectors: Mutex::new(HashMap::new()),
            upstreams: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
        };
        proxy.install(config)?;
        Ok(Arc::new(proxy))
    }

    /// Swaps in a new config. Tokens whose inputs did not change are kept.
    pub fn install(&self, config: Config) -> Result<(), rustls::Error> {
        let routes = self.build_routes(config)?;
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    pub fn tokens(&self) -> &Arc<TokenCache> {
        &self.tokens
    }

    /// Marks the proxy as shutting down: readiness turns 503 so load balancers move on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn build_routes(&self, config: Config) -> Result<Routes, rustls::Error> {
        let config = Arc::new(config);
        let mut slots_by_ec: HashMap<&str, (Arc<PrincipalIndex>, Vec<Arc<TokenSlot>>)> = HashMap::new();
        for ec in &config.external_credentials {
            let index = Arc::new(PrincipalIndex::new(&ec.principals));
            let slots = ec
                .principals
                .iter()
                .map(|p| self.tokens.slot(token_key(ec, p)))
                .collect();
            slots_by_ec.insert(&ec.name, (index, slots));
        }
        let mut by_name = HashMap::with_capacity(config.named_credentials.len());
        for (name, named) in &config.named_credentials {
            let ec = &named.external_credential;
            let (index, slots) = &slots_by_ec[&*ec.name];
            let labels = |principal: &str| Labels {
                named_credential: name.clone(),
                external_credential: ec.name.clone(),
                principal: principal.into(),
            };
            let principals = ec
                .principals
                .iter()
                .zip(slots)
                .map(|(p, slot)| PrincipalRoute {
                    slot: slot.clone(),
                    series: self.metrics.series(labels(&p.name)),
                })
                .collect();
            let route = Route {
                named: named.clone(),
                index: index.clone(),
                principals,
                upstream: self.upstream_for(named)?,
                unattributed: self.metrics.series(labels("")),
            };
            by_name.insert(name.clone(), route);
        }
        Ok(Routes {
            config,
            by_name,
            unmatched: self.metrics.series(Labels {
                named_credential: "".into(),
                external_credential: "".into(),
                principal: "".into(),
            }),
        })
    }

    fn upstream_for(&self, named: &NamedCredential) -> Result<Arc<Upstream>, rustls::Error> {
        let origin = format!("{}://{}", named.url.scheme, named.url.authority);
        let key = (origin, named.extra_roots.clone());
        let mut upstreams = self.upstreams.lock().expect("upstream map poisoned");
        if let Some(upstream) = upstreams.get(&key) {
            return Ok(upstream.clone());
        }
        let connector = {
            let mut connectors = self.connectors.lock().expect("connector map poisoned");
            match connectors.get(&named.extra_roots) {
                Some(c) => c.clone(),
                None => {
                    let c = crate::client::connector(&named.extra_roots)?;
                    connectors.insert(named.extra_roots.clone(), c.clone());
                    c
                }
            }
        };
        let origin: http::Uri = key.0.parse().expect("a scheme and an authority make a URI");
        let upstream = Upstream::new(origin, connector);
        upstreams.insert(key, upstream.clone());
        Ok(upstream)
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, request: Request<CallerBody>, peer: Peer) -> Response<ResponseBody> {
        let started = Instant::now();
        if request.uri().path().starts_with("/.callout/") {
            return crate::admin::handle(&self, &request).map(Either::Right);
        }
        let routes = self.routes.load_full();
        let method = request.method().clone();
        let mut log = RequestLog::default();
        let result = self.proxy(&routes, request, peer, &mut log).await;
        let elapsed = started.elapsed();
        let (response, outcome) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                (response.map(Either::Left), Outcome::Status(status))
            }
            Err(err) => {
                let (code, _) = err.code();
                tracing::debug!(code, error = %err, "request refused");
                log.error = Some(code);
                (err.to_response().map(Either::Right), Outcome::Error(code))
            }
        };
        log.series.unwrap_or(&routes.unmatched).record(outcome, elapsed);
        tracing::info!(
            target: "callout::access",
            method = %method,
            caller = log.caller.unwrap_or("-"),
            named_credential = log.named_credential.unwrap_or("-"),
            principal = log.principal.unwrap_or("-"),
            status = response.status().as_u16(),
            error = log.error.unwrap_or("-"),
            token = log.cache.map_or("-", CacheOutcome::as_str),
            retried = log.retried,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
        );
        response
    }

    async fn proxy<'r>(
        &self,
        routes: &'r Routes,
        request: Request<CallerBody>,
        peer: Peer,
        log: &mut RequestLog<'r>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        if request.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed(Method::CONNECT));
        }
        let (parts, body) = request.into_parts();
        let caller = authenticate(&routes.config.callers, &parts.headers, peer)?;
        log.caller = caller.map(|c| &*c.name);
        let target = parse_target(parts.uri.path(), parts.uri.query())
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        let route = routes.route(target.name)?;
        let named = &route.named;
        let ec: &ExternalCredential = &named.external_credential;
        log.named_credential = Some(&named.name);
        log.series = Some(&route.unattributed);

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

        let server = &routes.config.server;
        let body = RequestBody::prepare(body, server.retry_body_limit, server.max_request_body)
            .await
            .map_err(body_error)?;
        let uri = upstream_uri(&named.url, &target);
        let outgoing = Outgoing::new(
            parts.method,
            uri,
            parts.headers,
            &named.headers,
            named.generate_authorization_header,
        );

        if !named.generate_authorization_header {
            let body = match body {
                Prepared::Buffered(bytes) => RequestBody::buffered(bytes),
                Prepared::Streaming(body) => body,
            };
            return send(route, &outgoing, None, body).await;
        }

        let (token, cache) = principal.slot.get().await?;
        log.cache = Some(cache);
        let replay = match &body {
            Prepared::Buffered(bytes) => Some(bytes.clone()),
            Prepared::Streaming(_) => None,
        };
        let first_body = match body {
            Prepared::Buffered(bytes) => RequestBody::buffered(bytes),
            Prepared::Streaming(body) => body,
        };
        let response = send(route, &outgoing, Some(token.authorization()), first_body).await?;
        if !ec.refreshes_on(response.status().as_u16()) {
            return Ok(response);
        }
        principal.slot.invalidate(&token);
        let Some(bytes) = replay else {
            // The body is gone: the caller gets the upstream's answer, the next request a new token.
            return Ok(response);
        };
        drop(response);
        let (token, _) = principal.slot.get().await?;
        log.retried = true;
        let response = send(
            route,
            &outgoing,
            Some(token.authorization()),
            RequestBody::buffered(bytes),
        )
        .await?;
        if ec.refreshes_on(response.status().as_u16()) {
            principal.slot.invalidate(&token);
        }
        Ok(response)
    }
}

/// One attempt at the upstream, bounded by the named credential's timeout.
async fn send(
    route: &Route,
    outgoing: &Outgoing,
    authorization: Option<&http::HeaderValue>,
    body: RequestBody,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let request = outgoing.request(authorization, body);
    let timeout = route.named.timeout;
    match tokio::time::timeout(timeout, route.upstream.send(request)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout(timeout)),
        Ok(Ok(response)) => Ok(clean_response(response)),
        Ok(Err(err)) => Err(upstream_error(&*err)),
    }
}

fn upstream_error(err: &(dyn std::error::Error + Send + Sync + 'static)) -> ProxyError {
    // A failure of the caller's body shows up as a failure of the upstream request.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge(limit) => ProxyError::BodyTooLarge { limit: *limit },
                BodyError::Caller(_) => ProxyError::BadRequest(body.to_string()),
            };
        }
        source = e.source();
    }
    ProxyError::UpstreamUnreachable(cause_chain(err))
}

fn body_error(err: BodyError) -> ProxyError {
    match err {
        BodyError::TooLarge(limit) => ProxyError::BodyTooLarge { limit },
        BodyError::Caller(_) => ProxyError::BadRequest(err.to_string()),
    }
}

fn token_key(ec: &ExternalCredential, p: &crate::config::Principal) -> TokenKey {
    TokenKey {
        external_credential: ec.name.clone(),
        principal: p.name.clone(),
        grant: Grant::ClientCredentials(ClientCredentials {
            token_url: ec.token_url.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            client_auth: ec.client_auth,
            scope: ec.effective_scope(p).map(str::to_owned),
            params: ec.token_params.clone(),
        }),
        lifetimes: Lifetimes {
            refresh_before_expiry: ec.refresh_before_expiry,
            default_token_ttl: ec.default_token_ttl,
            token_timeout: ec.token_timeout,
        },
    }
}

/// What the access log line says about a request.
#[derive(Default)]
struct RequestLog<'r> {
    caller: Option<&'r str>,
    named_credential: Option<&'r str>,
    principal: Option<&'r str>,
    cache: Option<CacheOutcome>,
    error: Option<&'static str>,
    retried: bool,
    series: Option<&'r Arc<Series>>,
}

// === impl Routes ===

impl Routes {
    fn empty() -> Routes {
        Routes {
            config: Arc::new(Config {
                path: Default::default(),
                server: crate::config::Server::default(),
                external_credentials: Vec::new(),
                named_credentials: HashMap::new(),
                callers: Vec::new(),
                has_literal_secrets: false,
            }),
            by_name: HashMap::new(),
            unmatched: Arc::new(Series::default()),
        }
    }

    /// The route a request's first path segment names.
    fn route(&self, name: &str) -> Result<&Route, ProxyError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProxyError::UnknownNamedCredential {
                name: name.chars().take(64).collect(),
                suggestion: crate::config::suggestion(name, self.by_name.keys().map(|k| &**k)),
            })
    }

    /// Each named credential with its principals' token slots, sorted by name.
    pub fn credentials(&self) -> Vec<(&NamedCredential, Vec<&Arc<TokenSlot>>)> {
        let mut out: Vec<_> = self
            .by_name
            .values()
            .map(|r| (&*r.named, r.principals.iter().map(|p| &p.slot).collect()))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }
}

/// A plain response of ours (admin endpoints).
pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// What `callout token` prints: the outcome of resolving a caller like a request would.
pub struct TokenLookup {
    pub principal: Box<str>,
    pub scope: Option<String>,
    pub token: Arc<crate::token::Token>,
}

impl Proxy {
    /// Resolves `named` and `asserted` like a request, and gets the token it would use.
    pub async fn lookup_token(&self, named: &str, asserted: &[&str]) -> Result<TokenLookup, ProxyError> {
        let routes = self.routes();
        let route = routes.route(named)?;
        let ec = &route.named.external_credential;
        let Some(chosen) = route.index.choose(asserted.iter().copied()) else {
            return Err(ProxyError::NoPrincipal {
                external_credential: ec.name.clone(),
            });
        };
        let (token, _) = route.principals[chosen].slot.get().await?;
        let principal = &ec.principals[chosen];
        Ok(TokenLookup {
            principal: principal.name.clone(),
            scope: ec.effective_scope(principal).map(str::to_owned),
            token,
        })
    }
}
