//! `[external_credentials.NAME]`: how to authenticate, per protocol.
//!
//! Which keys an entry may have depends on its `protocol`; a key of another protocol is
//! named as such rather than as unknown. Principals are read in `principals.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::raw::{ClientAuth, Flow, ProtocolName, RawDuration};
use super::read::{Reader, Table};
use super::{ExternalCredential, OAuth2, Protocol};

const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REJECT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Token request fields callout fills in itself; a duplicate would be refused by servers.
const RESERVED_TOKEN_PARAMS: &[&str] = &["grant_type", "scope", "client_id", "client_secret"];

/// Keys of every external credential.
const COMMON_KEYS: &[&str] = &["protocol", "principals"];
/// Keys of `protocol = "oauth2"` only.
const OAUTH2_KEYS: &[&str] = &[
    "flow",
    "token_url",
    "scope",
    "client_auth",
    "token_params",
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
    if matches!(protocol, Some(ProtocolName::Oauth2) | None) {
        keys.extend_from_slice(OAUTH2_KEYS);
    }
    keys
}

/// Why `key` is out of place in an entry of `protocol`, when it belongs to another one.
pub(super) fn belongs_elsewhere(
    protocol: Option<ProtocolName>,
    key: &str,
    oauth2_keys: &[&str],
) -> Option<String> {
    let protocol = protocol?;
    (protocol != ProtocolName::Oauth2 && oauth2_keys.contains(&key)).then(|| {
        format!(
            "applies only to protocol = \"oauth2\", not to protocol = \"{}\"",
            protocol.as_str()
        )
    })
}

impl Reader<'_> {
    pub(super) fn external_credential(
        &mut self,
        name: &Spanned<String>,
        mut t: Table<'_>,
    ) -> Option<ExternalCredential> {
        let protocol_name = self
            .require::<ProtocolName>(&mut t, "protocol")
            .map(Spanned::into_inner);
        let protocol = match protocol_name {
            Some(ProtocolName::Oauth2) => self.oauth2(&mut t).map(|o| Protocol::OAuth2(Box::new(o))),
            Some(ProtocolName::Basic) => Some(Protocol::Basic),
            Some(ProtocolName::None) => Some(Protocol::None),
            None => None,
        };
        let principals = self.principals(&mut t, protocol_name);
        self.finish(t, &keys_of(protocol_name), &|key| {
            belongs_elsewhere(protocol_name, key, OAUTH2_KEYS)
        });
        Some(ExternalCredential {
            name: name.get_ref().clone().into_boxed_str(),
            protocol: protocol?,
            principals,
        })
    }

    /// The settings of an `oauth2` external credential. Every key is read, so that one
    /// bad value does not hide another.
    fn oauth2(&mut self, t: &mut Table<'_>) -> Option<OAuth2> {
        let context = t.context.clone();
        let flow = self.require::<Flow>(t, "flow");
        let token_url = self.require::<String>(t, "token_url");
        let scope = self.take::<String>(t, "scope");
        let client_auth = self.take::<ClientAuth>(t, "client_auth");
        let token_params = self.take::<BTreeMap<String, String>>(t, "token_params");
        let refresh_on_status = self.take::<Vec<Spanned<i64>>>(t, "refresh_on_status");
        let refresh_before_expiry = self.take::<RawDuration>(t, "refresh_before_expiry");
        let default_token_ttl = self.take::<RawDuration>(t, "default_token_ttl");
        let token_timeout = self.take::<RawDuration>(t, "token_timeout");
        let reject_refresh_interval = self.take::<RawDuration>(t, "reject_refresh_interval");
        let allow_plain_http = self
            .take::<bool>(t, "allow_plain_http")
            .is_some_and(Spanned::into_inner);

        let token_url =
            token_url.and_then(|url| self.endpoint_url(&context, "token_url", &url, allow_plain_http));

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

        let params_span = token_params.as_ref().map(Spanned::span);
        let token_params = token_params.map(Spanned::into_inner).unwrap_or_default();
        for key in token_params.keys() {
            if RESERVED_TOKEN_PARAMS.contains(&key.as_str()) {
                self.problem(
                    params_span.clone(),
                    format!("{context}: token_params cannot set `{key}`: callout sends it itself"),
                );
            }
        }

        let duration = |d: Option<Spanned<RawDuration>>| d.map(|d| d.into_inner().0);
        Some(OAuth2 {
            flow: flow?.into_inner(),
            token_url: token_url?,
            scope: scope.map(Spanned::into_inner),
            client_auth: client_auth.map(Spanned::into_inner).unwrap_or_default(),
            token_params: token_params.into_iter().collect(),
            refresh_on_status: statuses,
            refresh_before_expiry: duration(refresh_before_expiry).unwrap_or(DEFAULT_REFRESH_BEFORE_EXPIRY),
            default_token_ttl: duration(default_token_ttl),
            token_timeout: duration(token_timeout).unwrap_or(DEFAULT_TOKEN_TIMEOUT),
            reject_refresh_interval: duration(reject_refresh_interval)
                .unwrap_or(DEFAULT_REJECT_REFRESH_INTERVAL),
        })
    }
}
