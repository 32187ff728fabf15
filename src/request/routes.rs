//! A loaded config with everything a request needs already resolved: each named
//! credential joined to its principals' credentials, metric series and upstream, so a
//! request does one hash lookup and takes no lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Semaphore;

use super::error::ProxyError;
use super::principal::PrincipalIndex;
use crate::auth::{Credential, Tokens};
use crate::config::{Config, NamedCredential, suggestion};
use crate::metrics::{Labels, Metrics, Series};
use crate::upstream::Upstream;

pub struct Routes {
    pub config: Arc<Config>,
    by_name: HashMap<Box<str>, Route>,
    /// Requests that matched no principal or no named credential.
    pub(super) unmatched: Arc<Series>,
}

pub(super) struct Route {
    pub named: Arc<NamedCredential>,
    pub index: Arc<PrincipalIndex>,
    /// In the order of the external credential's principals.
    pub principals: Vec<PrincipalRoute>,
    pub upstream: Arc<Upstream>,
    /// For requests that were refused before a principal was chosen.
    pub unattributed: Arc<Series>,
    /// Upstream exchanges in flight: `slot_count` permits.
    pub slots: Arc<Semaphore>,
    pub slot_count: usize,
    pub body_idle_timeout: Duration,
    /// The `Allow` header when the named credential restricts `methods`.
    pub allow: Option<HeaderValue>,
}

pub(super) struct PrincipalRoute {
    pub credential: Credential,
    pub series: Arc<Series>,
}

impl Routes {
    /// Joins `config` to the process's token cache, metrics and upstream connections.
    pub(super) fn build(
        config: Config,
        tokens: &Arc<Tokens>,
        metrics: &Metrics,
        upstream_for: &dyn Fn(&NamedCredential) -> Result<Arc<Upstream>, rustls::Error>,
    ) -> Result<Routes, rustls::Error> {
        let config = Arc::new(config);
        // Once per external credential, however many named credentials share it: each
        // OAuth principal's token slot is looked up in the cache here.
        let mut by_ec: HashMap<&str, (Arc<PrincipalIndex>, Vec<Credential>)> = HashMap::new();
        for ec in &config.external_credentials {
            let index = Arc::new(PrincipalIndex::new(&ec.principals));
            let credentials = (0..ec.principals.len())
                .map(|i| Credential::new(ec, i, true, tokens))
                .collect();
            by_ec.insert(&ec.name, (index, credentials));
        }
        let mut by_name = HashMap::with_capacity(config.named_credentials.len());
        for (name, named) in &config.named_credentials {
            let ec = &named.external_credential;
            let (index, credentials) = &by_ec[&*ec.name];
            let labels = |principal: &str| Labels {
                named_credential: name.clone(),
                external_credential: ec.name.clone(),
                principal: principal.into(),
            };
            let principals = ec
                .principals
                .iter()
                .zip(credentials)
                .map(|(p, credential)| PrincipalRoute {
                    credential: if named.generate_authorization_header {
                        credential.clone()
                    } else {
                        credential.for_formulas_only(!named.header_templates().1.is_empty())
                    },
                    series: metrics.series(labels(&p.name)),
                })
                .collect();
            let slot_count = named
                .max_upstream_connections
                .unwrap_or(config.server.max_upstream_connections);
            let allow = named.methods.as_ref().map(|methods| {
                let list: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
                HeaderValue::from_str(&list.join(", ")).expect("method names are valid header text")
            });
            let route = Route {
                named: named.clone(),
                index: index.clone(),
                principals,
                upstream: upstream_for(named)?,
                unattributed: metrics.series(labels("")),
                slots: Arc::new(Semaphore::new(slot_count)),
                slot_count,
                body_idle_timeout: config.server.body_idle_timeout,
                allow,
            };
            by_name.insert(name.clone(), route);
        }
        Ok(Routes {
            config,
            by_name,
            unmatched: metrics.series(Labels {
                named_credential: "".into(),
                external_credential: "".into(),
                principal: "".into(),
            }),
        })
    }

    pub(super) fn empty() -> Routes {
        Routes {
            config: Arc::new(Config {
                auth_providers: Vec::new(),
                path: Default::default(),
                server: crate::config::Server::default(),
                external_credentials: Vec::new(),
                named_credentials: HashMap::new(),
                callers: Vec::new(),
                has_literal_secrets: false,
                files: Vec::new(),
                secret_files: Vec::new(),
            }),
            by_name: HashMap::new(),
            unmatched: Arc::new(Series::default()),
        }
    }

    /// The route a request's first path segment names.
    pub(super) fn route(&self, name: &str) -> Result<&Route, ProxyError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProxyError::UnknownNamedCredential {
                name: name.chars().take(64).collect(),
                suggestion: suggestion(name, self.by_name.keys().map(|k| &**k)),
            })
    }

    /// Each named credential with its principals' credentials, sorted by name.
    pub fn credentials(&self) -> Vec<(&NamedCredential, Vec<&Credential>)> {
        let mut out: Vec<_> = self
            .by_name
            .values()
            .map(|r| (&*r.named, r.principals.iter().map(|p| &p.credential).collect()))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }
}
