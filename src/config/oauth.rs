//! The validated model of `protocol = "oauth2"`: where tokens come from (the registration,
//! the external credential's own or an `[auth_providers]` entry's), and how a client
//! authenticates there (a secret, a signing key, a TLS certificate).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::raw::{ClientAuth, Flow};
use crate::jws::{Algorithm, SigningKey};
use crate::secret::Secret;

/// The settings of `protocol = "oauth2"`.
#[derive(Debug)]
pub struct OAuth2 {
    pub flow: Flow,
    /// Where tokens are requested and how the client authenticates.
    pub registration: Arc<Registration>,
    /// The `[auth_providers]` entry the registration comes from, if any.
    pub auth_provider: Option<Box<str>>,
    pub scope: Option<String>,
    /// Statuses that, besides 401, mean "this token is no longer good".
    pub refresh_on_status: Vec<u16>,
    pub refresh_before_expiry: Duration,
    pub default_token_ttl: Option<Duration>,
    pub token_timeout: Duration,
    /// A refresh forced by an upstream rejection happens at most once per this interval.
    pub reject_refresh_interval: Duration,
    /// `flow = "token_exchange"` only.
    pub exchange: Option<Exchange>,
}

/// A client registration at a token endpoint.
#[derive(Debug)]
pub struct Registration {
    pub token_url: http::Uri,
    pub client_auth: ClientAuth,
    /// Extra form fields of the token request, sorted by name.
    pub token_params: Vec<(String, String)>,
    /// Extra trust anchors for the token endpoint (`ca_file`).
    pub roots: Vec<CertificateDer<'static>>,
    /// The provider's own client; `None` when each principal brings its own.
    pub client: Option<OAuthClient>,
}

/// An OAuth client: its id and what it proves itself with. Which keys are set follows from
/// the flow and `client_auth`; validation sees to it.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// A secret staged at the provider before the current one is deleted.
    pub next_client_secret: Option<Secret>,
    /// Signs `private_key_jwt` client assertions and `jwt_bearer` grants.
    pub jwt: Option<Arc<JwtSigning>>,
    /// The TLS client certificate of `tls_client_auth`.
    pub tls: Option<TlsIdentity>,
}

/// How assertions are signed, and the claims they carry besides the fresh ones.
#[derive(Debug, Clone)]
pub struct JwtSigning {
    /// `None` only when the config was read without secrets (`check --no-secrets`).
    pub key: Option<SigningKey>,
    pub algorithm: Algorithm,
    pub key_id: Option<String>,
    /// `x5t` and `x5t#S256` of `client_certificate`, when one is given with the key.
    pub thumbprints: Option<(String, String)>,
    /// `iss`; the client id when not set.
    pub issuer: Option<String>,
    /// `sub` of a `jwt_bearer` assertion (a client assertion's is the client id).
    pub subject: Option<String>,
    /// `aud`; the token URL when not set.
    pub audience: Option<String>,
    pub lifetime: Duration,
    /// `jwt_claims`, sorted by name.
    pub claims: Vec<(String, serde_json::Value)>,
    /// Claims whose value is a formula over the request's `$User` fields, rendered per
    /// request (`sub` for a formula `jwt_subject`): each user gets a token of their own.
    pub formulas: Vec<(String, crate::formula::Formula)>,
}

/// A certificate chain and its private key, for TLS client authentication.
#[derive(Clone)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    /// SHA-256 of the leaf certificate: what tells two identities apart.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("fingerprint", &hex8(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && key_bytes(&self.key) == key_bytes(&other.key)
    }
}

impl Eq for TlsIdentity {}

impl Hash for TlsIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint.hash(state);
    }
}

fn key_bytes<'a>(key: &'a PrivateKeyDer<'_>) -> &'a [u8] {
    key.secret_der()
}

impl TlsIdentity {
    /// The leaf's fingerprint as `check` shows it.
    pub fn describe(&self) -> String {
        format!("certificate sha256:{}", hex8(&self.fingerprint))
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The RFC 8693 parameters of `flow = "token_exchange"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exchange {
    pub subject_token_type: String,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
}

impl OAuth2 {
    pub fn token_url(&self) -> &http::Uri {
        &self.registration.token_url
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.registration.client_auth
    }
}
