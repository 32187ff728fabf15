//! `[auth_providers.NAME]`: one client registration (token endpoint, client, how it
//! authenticates) that any number of external credentials take via `auth_provider`.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::client::CLIENT_KEYS;
use super::raw::{ClientAuth, Flow};
use super::read::{Reader, Table};
use super::{OAuthClient, Registration};

/// Keys of a token endpoint registration, on a provider or an external credential.
pub(super) const REGISTRATION_KEYS: &[&str] = &[
    "token_url",
    "client_auth",
    "token_params",
    "ca_file",
    "allow_plain_http",
];

/// `[auth_providers]` keys of the browser flow (SPEC), not built yet: named as such rather
/// than as unknown.
const BROWSER_KEYS: &[&str] = &[
    "authorize_url",
    "device_authorization_url",
    "refresh_params",
    "pkce",
    "issuer",
];

/// Token request fields callout fills in itself; a duplicate would be refused by servers.
const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "assertion",
    "subject_token",
    "subject_token_type",
];

/// A validated `[auth_providers]` entry.
#[derive(Debug)]
pub struct AuthProvider {
    pub name: Box<str>,
    pub registration: Arc<Registration>,
    /// The flow its client keys are for: `jwt_bearer` when it has a `jwt_subject`.
    pub flow: Flow,
}

impl Reader<'_> {
    pub(super) fn auth_provider(&mut self, name: &Spanned<String>, mut t: Table<'_>) -> Option<AuthProvider> {
        // A provider serves several external credentials, each with its flow; what its
        // client keys must hold is decided by the one flow-specific key, `jwt_subject`.
        let flow = if t.has("jwt_subject") {
            Flow::JwtBearer
        } else {
            Flow::ClientCredentials
        };
        let (client_auth, registration) = self.registration(&mut t);
        let client = self.oauth_client(&mut t, Some(flow), client_auth);
        let keys: Vec<&str> = REGISTRATION_KEYS.iter().chain(CLIENT_KEYS).copied().collect();
        self.finish(t, &keys, &|key| {
            BROWSER_KEYS.contains(&key).then(|| {
                "is for the browser flow (flow = \"browser\"), which this version does not have yet"
                    .to_owned()
            })
        });
        let mut registration = registration?;
        registration.client = Some(client?);
        Some(AuthProvider {
            name: name.get_ref().clone().into_boxed_str(),
            registration: Arc::new(registration),
            flow,
        })
    }

    /// The registration keys of `t`: `client_auth` (needed to read the client keys even
    /// when the rest is broken) and the registration without its client.
    pub(super) fn registration(&mut self, t: &mut Table<'_>) -> (ClientAuth, Option<Registration>) {
        let context = t.context.clone();
        let token_url = self.require::<String>(t, "token_url");
        let client_auth = self.take::<ClientAuth>(t, "client_auth");
        let token_params = self.take::<BTreeMap<String, String>>(t, "token_params");
        let ca_file = self.take::<String>(t, "ca_file");
        let allow_plain_http = self
            .take::<bool>(t, "allow_plain_http")
            .is_some_and(Spanned::into_inner);
        let client_auth = client_auth.map(Spanned::into_inner).unwrap_or_default();

        let url_span = token_url.as_ref().map(Spanned::span);
        let token_url =
            token_url.and_then(|url| self.endpoint_url(&context, "token_url", &url, allow_plain_http));
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
        let roots = match ca_file.map(|file| self.ca_file(&context, &file)) {
            None => Some(Vec::new()),
            Some(Some((_, roots))) => Some(roots),
            Some(None) => None,
        };
        if client_auth == ClientAuth::TlsClientAuth
            && let Some(url) = &token_url
            && url.scheme() != Some(&http::uri::Scheme::HTTPS)
        {
            self.problem(
                url_span,
                format!("{context}: client_auth = \"tls_client_auth\" needs an https token_url"),
            );
        }
        let registration = match (token_url, roots) {
            (Some(token_url), Some(roots)) => Some(Registration {
                token_url,
                client_auth,
                token_params: token_params.into_iter().collect(),
                roots,
                client: None,
            }),
            _ => None,
        };
        (client_auth, registration)
    }
}

impl AuthProvider {
    pub fn client(&self) -> &OAuthClient {
        self.registration
            .client
            .as_ref()
            .expect("a provider's registration always has its client")
    }
}
