//! `[external_credentials.NAME]`: how to authenticate, per protocol.
//!
//! Which keys an entry may have depends on its `protocol`; a key of another protocol is
//! named as such rather than as unknown. Principals are read in `principals.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::names::suggestion;
use super::providers::{AuthProvider, REGISTRATION_KEYS};
use super::raw::{ClientAuth, Flow, ProtocolName, RawDuration};
use super::read::{Reader, Table};
use super::{AwsSigV4, Exchange, ExternalCredential, OAuth2, Protocol};

const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REJECT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8693 §3: what a caller's token is, unless configured.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Keys of `flow = "token_exchange"` only.
const EXCHANGE_KEYS: &[&str] = &[
    "subject_token_type",
    "requested_token_type",
    "audience",
    "resource",
];

/// Keys of every external credential.
const COMMON_KEYS: &[&str] = &["protocol", "principals", "headers"];
/// Keys of `protocol = "aws_sigv4"` only.
const AWS_KEYS: &[&str] = &["aws_region", "aws_service"];
/// Keys of `protocol = "oauth2"` only.
const OAUTH2_KEYS: &[&str] = &[
    "flow",
    "auth_provider",
    "token_url",
    "scope",
    "client_auth",
    "token_params",
    "ca_file",
    "subject_token_type",
    "requested_token_type",
    "audience",
    "resource",
    "refresh_on_status",
    "refresh_before_expiry",
    "default_token_ttl",
    "token_timeout",
    "reject_refresh_interval",
    "allow_plain_http",
];

/// The keys an external credential of `protocol` may have (every key, when unknown).
pub(super) fn keys_of(protocol: Option<ProtocolName>) -> Vec<&'static str> {
    let mut keys = COMMON_KEYS.to_vec();
    for (p, more) in [
        (ProtocolName::Oauth2, OAUTH2_KEYS),
        (ProtocolName::AwsSigv4, AWS_KEYS),
    ] {
        if protocol.is_none_or(|protocol| protocol == p) {
            keys.extend_from_slice(more);
        }
    }
    keys
}

/// Why `key` is out of place in an entry of `protocol`, when it belongs to another one.
pub(super) fn belongs_elsewhere(protocol: Option<ProtocolName>, key: &str) -> Option<String> {
    let protocol = protocol?;
    let owner = [
        (ProtocolName::Oauth2, OAUTH2_KEYS),
        (ProtocolName::AwsSigv4, AWS_KEYS),
    ]
    .into_iter()
    .find(|(p, keys)| *p != protocol && keys.contains(&key))?
    .0;
    Some(format!(
        "applies only to protocol = \"{}\", not to protocol = \"{}\"",
        owner.as_str(),
        protocol.as_str()
    ))
}

/// What the principals of an `oauth2` external credential carry: the keys of a client of
/// `flow` with `client_auth`, or none when the client comes from an auth provider.
pub(super) struct ClientShape {
    pub flow: Option<Flow>,
    pub client_auth: ClientAuth,
    pub provider: Option<Box<str>>,
}

/// Every `[auth_providers]` entry by name; `None` for one with problems of its own.
pub(super) type Providers = HashMap<String, Option<Arc<AuthProvider>>>;

impl Reader<'_> {
    pub(super) fn external_credential(
        &mut self,
        name: &Spanned<String>,
        mut t: Table<'_>,
        providers: &Providers,
    ) -> Option<ExternalCredential> {
        let protocol_name = self
            .require::<ProtocolName>(&mut t, "protocol")
            .map(Spanned::into_inner);
        let (protocol, shape) = match protocol_name {
            Some(ProtocolName::Oauth2) => {
                let (shape, settings) = self.oauth2(&mut t, providers);
                (settings.map(|o| Protocol::OAuth2(Box::new(o))), Some(shape))
            }
            Some(ProtocolName::Basic) => (Some(Protocol::Basic), None),
            Some(ProtocolName::Custom) => (Some(Protocol::Custom), None),
            Some(ProtocolName::AwsSigv4) => {
                let region = self.require::<String>(&mut t, "aws_region");
                let service = self.require::<String>(&mut t, "aws_service");
                let settings = match (region, service) {
                    (Some(region), Some(service)) => Some(Protocol::AwsSigV4(Box::new(AwsSigV4 {
                        region: region.into_inner(),
                        service: service.into_inner(),
                    }))),
                    _ => None,
                };
                (settings, None)
            }
            Some(ProtocolName::None) => (Some(Protocol::None), None),
            None => (None, None),
        };
        let principals = self.principals(&mut t, protocol_name, shape.as_ref());
        let raw_headers = self.take(&mut t, "headers");
        let context = t.context.clone();
        let headers = self.headers(&context, raw_headers, false);
        self.ec_headers.insert(name.get_ref().clone(), headers);
        self.finish(t, &keys_of(protocol_name), &|key| {
            belongs_elsewhere(protocol_name, key)
        });
        Some(ExternalCredential {
            name: name.get_ref().clone().into_boxed_str(),
            protocol: protocol?,
            principals,
        })
    }

    /// The settings of an `oauth2` external credential. Every key is read, so that one
    /// bad value does not hide another.
    fn oauth2(&mut self, t: &mut Table<'_>, providers: &Providers) -> (ClientShape, Option<OAuth2>) {
        let context = t.context.clone();
        let flow = self.require::<Flow>(t, "flow").map(Spanned::into_inner);
        if flow == Some(Flow::JwtBearer)
            && let Some(value) = t.raw("client_auth")
        {
            self.problem(
                Some(value.span()),
                format!("{context}: client_auth is not used by flow = \"jwt_bearer\", which sends no client authentication (RFC 7523 §2.1)"),
            );
        }
        let provider_name = self.take::<String>(t, "auth_provider");
        let (client_auth, registration, provider) = match &provider_name {
            Some(pname) => {
                for key in REGISTRATION_KEYS {
                    if let Some(value) = t.raw(key) {
                        self.problem(
                            Some(value.span()),
                            format!("{context}: {key} comes from auth provider `{}`; an external credential that names one has no {key}", pname.get_ref()),
                        );
                    }
                }
                let provider = self.provider_for(&context, pname, flow, providers);
                let client_auth = provider
                    .as_ref()
                    .map_or_else(ClientAuth::default, |p| p.registration.client_auth);
                (
                    client_auth,
                    provider.as_ref().map(|p| p.registration.clone()),
                    provider,
                )
            }
            None => {
                let (client_auth, registration) = self.registration(t);
                (client_auth, registration.map(Arc::new), None)
            }
        };
        let shape = ClientShape {
            flow,
            client_auth,
            provider: provider_name
                .as_ref()
                .map(|n| n.get_ref().clone().into_boxed_str()),
        };
        let scope = self.take::<String>(t, "scope");
        if let Some(scope) = &scope {
            self.check_scope(&context, scope);
        }
        let refresh_on_status = self.take::<Vec<Spanned<i64>>>(t, "refresh_on_status");
        let refresh_before_expiry = self.take::<RawDuration>(t, "refresh_before_expiry");
        let default_token_ttl = self.take::<RawDuration>(t, "default_token_ttl");
        let token_timeout = self.take::<RawDuration>(t, "token_timeout");
        let reject_refresh_interval = self.take::<RawDuration>(t, "reject_refresh_interval");
        let exchange = self.exchange(t, flow);

        let mut statuses = Vec::new();
        for status in refresh_on_status.map(Spanned::into_inner).unwrap_or_default() {
            match u16::try_from(*status.get_ref()) {
                Ok(s @ 400..=599) => statuses.push(s),
                _ => self.problem(
                    Some(status.span()),
                    format!(
                        "{context}: refresh_on_status {} is not an HTTP error status (400-599)",
                        status.get_ref()
                    ),
                ),
            }
        }

        let duration = |d: Option<Spanned<RawDuration>>| d.map(|d| d.into_inner().0);
        let settings = match (flow, registration) {
            (Some(flow), Some(registration)) if provider_name.is_none() || provider.is_some() => {
                Some(OAuth2 {
                    flow,
                    registration,
                    auth_provider: shape.provider.clone(),
                    scope: scope.map(Spanned::into_inner),
                    refresh_on_status: statuses,
                    refresh_before_expiry: duration(refresh_before_expiry)
                        .unwrap_or(DEFAULT_REFRESH_BEFORE_EXPIRY),
                    default_token_ttl: duration(default_token_ttl),
                    token_timeout: duration(token_timeout).unwrap_or(DEFAULT_TOKEN_TIMEOUT),
                    reject_refresh_interval: duration(reject_refresh_interval)
                        .unwrap_or(DEFAULT_REJECT_REFRESH_INTERVAL),
                    exchange,
                })
            }
            _ => None,
        };
        (shape, settings)
    }

    /// The auth provider `name` refers to, when it exists and suits `flow`.
    fn provider_for(
        &mut self,
        context: &str,
        name: &Spanned<String>,
        flow: Option<Flow>,
        providers: &Providers,
    ) -> Option<Arc<AuthProvider>> {
        let pname = name.get_ref();
        let provider = match providers.get(pname) {
            Some(p) => p.clone()?,
            None => {
                let hint = suggestion(pname, providers.keys().map(String::as_str));
                self.problem(
                    Some(name.span()),
                    format!("{context}: auth provider `{pname}` is not defined in [auth_providers]{hint}"),
                );
                return None;
            }
        };
        let flow = flow?;
        let bearer = flow == Flow::JwtBearer;
        if bearer != (provider.flow == Flow::JwtBearer) {
            let why = if bearer {
                "has no jwt_subject, which flow = \"jwt_bearer\" needs"
            } else {
                "has a jwt_subject, so it serves only flow = \"jwt_bearer\""
            };
            self.problem(
                Some(name.span()),
                format!("{context}: auth provider `{pname}` {why}"),
            );
            return None;
        }
        Some(provider)
    }

    fn exchange(&mut self, t: &mut Table<'_>, flow: Option<Flow>) -> Option<Exchange> {
        let context = t.context.clone();
        if flow != Some(Flow::TokenExchange) {
            for key in EXCHANGE_KEYS {
                if flow.is_some()
                    && let Some(value) = t.raw(key)
                {
                    self.problem(
                        Some(value.span()),
                        format!("{context}: {key} applies only to flow = \"token_exchange\""),
                    );
                }
            }
            return None;
        }
        let mut take = |key: &str| self.take::<String>(t, key).map(Spanned::into_inner);
        Some(Exchange {
            subject_token_type: take("subject_token_type").unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_owned()),
            requested_token_type: take("requested_token_type"),
            audience: take("audience"),
            resource: take("resource"),
        })
    }
}
