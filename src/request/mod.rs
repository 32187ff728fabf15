//! The request side: who is calling, which named credential and principal, the admin
//! endpoints, and the pipeline that takes a request from the listener to the upstream.
//!
//! `Proxy` owns what lives across reloads (the token cache, the upstream connections, the
//! metrics) and the current `Routes`, swapped atomically on reload. A request takes the
//! routes it started with and finishes on them.

mod admin;
mod caller;
mod error;
mod formulas;
mod pipeline;
mod principal;
mod request_id;
mod routes;
mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;

pub use error::{ERROR_HEADER, ProxyError};
pub use principal::{PERMISSION_SETS_HEADER, PrincipalIndex, asserted_sets, header_sets};
pub use routes::Routes;
pub use target::{Target, TargetError, parse_target, upstream_uri};

use crate::auth::oauth::TokenClients;
use crate::auth::{Credential, Tokens};
use crate::config::{Config, NamedCredential, TlsIdentity};
use crate::listen::{Handler, Limits};
use crate::metrics::Metrics;
use crate::token::Token;
use crate::upstream::{Connector, Upstream};

/// Extra trust anchors (`ca_file`) and the client certificate a connector was built with.
type TlsSetup = (Vec<CertificateDer<'static>>, Option<TlsIdentity>);
/// `scheme://authority`.
type Origin = String;

/// The proxy: shared by every connection.
pub struct Proxy {
    routes: ArcSwap<Routes>,
    tokens: Arc<Tokens>,
    /// Connectors by extra trust anchors, and upstreams by origin and trust anchors; kept
    /// across reloads so idle connections survive.
    connectors: Mutex<HashMap<TlsSetup, Connector>>,
    upstreams: Mutex<HashMap<(Origin, TlsSetup), Arc<Upstream>>>,
    metrics: Metrics,
    draining: AtomicBool,
}

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, rustls::Error> {
        let proxy = Proxy {
            routes: ArcSwap::from_pointee(Routes::empty()),
            tokens: Tokens::new(TokenClients::default()),
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
        self.tokens
            .set_secrets(config.secrets().into_iter().cloned().collect());
        let routes = Routes::build(config, &self.tokens, &self.metrics, &|named| {
            self.upstream_for(named)
        })?;
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn upstream_for(&self, named: &NamedCredential) -> Result<Arc<Upstream>, rustls::Error> {
        let origin = format!("{}://{}", named.url.scheme, named.url.authority);
        let tls: TlsSetup = (named.extra_roots.clone(), named.client_identity.clone());
        let key = (origin, tls.clone());
        let mut upstreams = self.upstreams.lock().expect("upstream map poisoned");
        if let Some(upstream) = upstreams.get(&key) {
            return Ok(upstream.clone());
        }
        let connector = {
            let mut connectors = self.connectors.lock().expect("connector map poisoned");
            match connectors.get(&tls) {
                Some(c) => c.clone(),
                None => {
                    let identity = tls.1.as_ref().map(|i| (i.chain.as_slice(), &*i.key));
                    let c = crate::upstream::connector(&tls.0, identity)?;
                    connectors.insert(tls.clone(), c.clone());
                    c
                }
            }
        };
        let origin: http::Uri = key.0.parse().expect("a scheme and an authority make a URI");
        let upstream = Upstream::new(origin, connector);
        upstreams.insert(key, upstream.clone());
        Ok(upstream)
    }

    /// Resolves `named` and `asserted` like a request, and gets the token it would use.
    /// `subject_token` is the caller's token, for token exchange.
    pub async fn lookup_token(
        &self,
        named: &str,
        asserted: &[&str],
        subject_token: Option<&http::HeaderValue>,
    ) -> Result<TokenLookup, ProxyError> {
        let routes = self.routes();
        let route = routes.route(named)?;
        let ec = &route.named.external_credential;
        let Some(chosen) = route.index.choose(asserted.iter().copied()) else {
            return Err(ProxyError::NoPrincipal {
                external_credential: ec.name.clone(),
            });
        };
        let principal = &ec.principals[chosen];
        let token = match &route.principals[chosen].credential {
            Credential::OAuth(oauth) => Some(oauth.token(subject_token).await?),
            Credential::Basic(_) | Credential::AwsSigV4(_) | Credential::None => None,
        };
        Ok(TokenLookup {
            principal: principal.name.clone(),
            scope: ec.effective_scope(principal).map(str::to_owned),
            token,
        })
    }
}

impl Handler for Proxy {
    type Body = pipeline::ResponseBody;

    fn handle(
        self: Arc<Self>,
        request: http::Request<crate::listen::CallerBody>,
        peer: crate::listen::Peer,
    ) -> impl Future<Output = http::Response<Self::Body>> + Send + 'static {
        pipeline::handle(self, request, peer)
    }

    fn limits(&self) -> Limits {
        let server = &self.routes().config.server;
        Limits {
            max_connections: server.max_connections,
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_concurrent_streams: server.max_concurrent_streams,
            shutdown_grace: server.shutdown_grace,
        }
    }

    fn start_draining(&self) {
        // Readiness turns 503 so that load balancers move on.
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// The handler of `admin_listen`: health, ready and metrics for probes and scrapers on
/// the pod IP, and nothing that could be proxied.
pub struct Probes(pub Arc<Proxy>);

impl Handler for Probes {
    type Body = pipeline::ResponseBody;

    fn handle(
        self: Arc<Self>,
        request: http::Request<crate::listen::CallerBody>,
        _: crate::listen::Peer,
    ) -> impl Future<Output = http::Response<Self::Body>> + Send + 'static {
        pipeline::handle_probe(self.0.clone(), request)
    }

    fn limits(&self) -> Limits {
        self.0.limits()
    }

    fn start_draining(&self) {}
}

/// What `callout token` prints: the outcome of resolving a caller like a request would.
pub struct TokenLookup {
    pub principal: Box<str>,
    pub scope: Option<String>,
    /// `None` for a protocol without tokens.
    pub token: Option<Arc<Token>>,
}
