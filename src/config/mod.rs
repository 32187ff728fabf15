//! Configuration: reads the TOML file, checks every rule, and builds the validated model.
//!
//! Loading reads the config file, the secret files and `ca_file`s, and the environment;
//! it opens no sockets. Every problem found is collected, with its line and column, and
//! reported at once.

mod callers;
mod client;
mod describe;
mod external;
mod headers;
mod keys;
mod named;
mod names;
mod oauth;
mod permissions;
mod principals;
mod providers;
mod raw;
mod read;
mod secrets;
mod server;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::uri::{Authority, Scheme};
use rustls_pki_types::CertificateDer;

pub use describe::describe;
pub use names::{check_name, suggestion};
pub use oauth::{Exchange, JwtSigning, OAuth2, OAuthClient, Registration, TlsIdentity};
pub use providers::AuthProvider;
pub use raw::{ClientAuth, Flow};

use crate::secret::Secret;

/// A loaded, validated configuration. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub server: Server,
    /// Sorted by name.
    pub auth_providers: Vec<Arc<AuthProvider>>,
    /// In file order (sorted by name).
    pub external_credentials: Vec<Arc<ExternalCredential>>,
    /// Keyed by name: what the first path segment of a request is looked up in.
    pub named_credentials: HashMap<Box<str>, Arc<NamedCredential>>,
    /// When not empty, every proxied request must come from one of these.
    pub callers: Vec<Caller>,
    /// Literal secrets are written in the file itself (rather than `env` or `file`).
    pub has_literal_secrets: bool,
    /// The secret files the config reads (secrets, caller tokens), for permission checks.
    pub secret_files: Vec<PathBuf>,
    /// Every file the config reads besides itself, secrets and CA bundles alike.
    pub files: Vec<PathBuf>,
}

/// Where callout listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A Unix-domain socket, created with `mode` permissions.
    Unix {
        path: PathBuf,
        mode: u32,
    },
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A known caller: who may use callout, and with which permission sets.
#[derive(Debug)]
pub struct Caller {
    pub name: Box<str>,
    /// Presented as `Proxy-Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// On a Unix socket, a peer with this uid is this caller.
    pub uid: Option<u32>,
    /// May read every admin endpoint (`credentials`, `metrics`).
    pub admin: bool,
    /// May assert the user a request is for (`x-callout-user`, `x-callout-user-FIELD`).
    pub assert_users: bool,
    /// The permission sets this caller may assert; also what it gets when it asserts none.
    pub permission_sets: Vec<Box<str>>,
}

#[derive(Debug)]
pub struct Server {
    pub listen: Listen,
    pub default_permission_sets: Vec<Box<str>>,
    pub retry_body_limit: u64,
    pub max_request_body: u64,
    pub shutdown_grace: Duration,
    pub allow_remote_callers: bool,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// A caller connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Streams per HTTP/2 caller connection.
    pub max_concurrent_streams: u32,
    /// Upstream exchanges in flight per named credential, unless it sets its own.
    pub max_upstream_connections: usize,
    /// A request or response body that moves no byte for this long is cut.
    pub body_idle_timeout: Duration,
    /// Secret files that group or others can read are an error, not a warning.
    pub strict_file_permissions: bool,
    /// A second listener for probes and scrapers: health, ready and metrics only.
    pub admin_listen: Option<SocketAddr>,
    /// Reload when the config or a file it names changes.
    pub watch_files: bool,
}

#[derive(Debug)]
pub struct ExternalCredential {
    pub name: Box<str>,
    pub protocol: Protocol,
    /// Sorted by sequence, lowest first.
    pub principals: Vec<Principal>,
}

/// How an external credential authenticates, with the settings its protocol has.
#[derive(Debug)]
pub enum Protocol {
    OAuth2(Box<OAuth2>),
    Basic,
    /// Only what the `headers` formulas build from the principals' `parameters`.
    Custom,
    AwsSigV4(Box<AwsSigV4>),
    None,
}

/// The settings of `protocol = "aws_sigv4"`.
#[derive(Debug)]
pub struct AwsSigV4 {
    pub region: String,
    pub service: String,
}

#[derive(Debug)]
pub struct Principal {
    pub name: Box<str>,
    pub sequence: i64,
    pub permission_sets: Vec<Box<str>>,
    /// Overrides the external credential's scope when set (OAuth only).
    pub scope: Option<String>,
    pub keys: PrincipalKeys,
}

/// What a principal authenticates with; always the kind its external credential's
/// protocol needs.
#[derive(Debug)]
pub enum PrincipalKeys {
    /// An OAuth client of its own.
    Client(Box<OAuthClient>),
    /// The OAuth client of the external credential's `auth_provider`.
    Provider,
    Basic {
        username: Secret,
        password: Secret,
    },
    /// `parameters`, sorted by name: what `$Credential.EC.NAME` gives.
    Custom {
        parameters: Vec<(String, Secret)>,
    },
    Aws {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
        /// Sign with temporary credentials of this role, got with the keys above.
        assume_role: Option<AssumeRole>,
    },
    None,
}

/// `role_arn`: STS AssumeRole with the principal's keys, for temporary credentials.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
    /// The STS endpoint; `https://sts.REGION.amazonaws.com/` when not set.
    pub sts_url: Option<http::Uri>,
}

/// A header whose value is a formula, rendered for each attempt.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    pub name: http::HeaderName,
    pub value: crate::formula::Formula,
    /// Its value depends on a secret: marked sensitive, never shown.
    pub secret: bool,
    /// It reads the token, so it is rendered after the credential is applied.
    pub needs_token: bool,
}

#[derive(Debug)]
pub struct NamedCredential {
    pub name: Box<str>,
    pub url: UpstreamUrl,
    pub external_credential: Arc<ExternalCredential>,
    pub generate_authorization_header: bool,
    /// How long to wait for the upstream's response headers (and for a free connection).
    pub timeout: Duration,
    /// Upstream exchanges in flight at once; `None` takes `[server]`'s.
    pub max_upstream_connections: Option<usize>,
    /// The methods callers may use; `None` allows all but TRACE and CONNECT.
    pub methods: Option<Vec<http::Method>>,
    pub ca_file: Option<PathBuf>,
    /// Extra trust anchors read from `ca_file`.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `client_certificate` and `private_key`: mutual TLS with the upstream.
    pub client_identity: Option<TlsIdentity>,
    /// Constant headers (the external credential's and its own).
    pub headers: HeaderMap,
    /// Headers built by formulas, per attempt; those that need the token last.
    pub header_templates: Vec<HeaderTemplate>,
}

/// A named credential's `url`, split so that building an upstream URI is one concatenation.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The base path without a trailing slash; empty for the host's root.
    pub base_path: String,
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl NamedCredential {
    /// The header formulas rendered before the credential applies itself (so that a
    /// signing credential signs them), and those that read its token, rendered after.
    pub fn header_templates(&self) -> (&[HeaderTemplate], &[HeaderTemplate]) {
        let split = self.header_templates.partition_point(|t| !t.needs_token);
        self.header_templates.split_at(split)
    }
}

impl Default for Server {
    fn default() -> Server {
        server::default_server()
    }
}

impl ExternalCredential {
    /// The scope a token for this principal is requested with (OAuth only).
    pub fn effective_scope<'a>(&'a self, principal: &'a Principal) -> Option<&'a str> {
        let Protocol::OAuth2(settings) = &self.protocol else {
            return None;
        };
        principal.scope.as_deref().or(settings.scope.as_deref())
    }
}

impl Protocol {
    /// The `protocol` value, with the flow for OAuth: what `check` and admin show.
    pub fn describe(&self) -> &'static str {
        match self {
            Protocol::OAuth2(settings) => settings.flow.as_str(),
            Protocol::Basic => "basic",
            Protocol::Custom => "custom",
            Protocol::AwsSigV4(_) => "aws_sigv4",
            Protocol::None => "none",
        }
    }
}

/// How a config is read.
pub struct LoadOptions<'a> {
    /// Looks up `{ env = ... }` secrets.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `false` checks structure and references without reading env or file secrets.
    pub read_secrets: bool,
}

/// Everything wrong with a config file, each with its place.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when the problem has no place in the file (e.g. it could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} has {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        // A broken file can produce a problem per character; the first ones tell the story.
        const SHOWN: usize = 20;
        for p in self.problems.iter().take(SHOWN) {
            if p.line == 0 {
                write!(f, "\n  {}: {}", self.path.display(), p.message)?;
            } else {
                write!(
                    f,
                    "\n  {}:{}:{}: {}",
                    self.path.display(),
                    p.line,
                    p.column,
                    p.message
                )?;
            }
        }
        if n > SHOWN {
            write!(f, "\n  … and {} more", n - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Things worth a warning that do not make the config invalid.
    pub fn warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        if self.has_literal_secrets
            && let Ok(meta) = std::fs::metadata(&self.path)
            && meta.permissions().mode() & 0o077 != 0
        {
            out.push(format!(
                "{} holds literal secrets and can be read by other users (mode {:o}); run `chmod 600` on it, or move the secrets to `{{ env = ... }}` or `{{ file = ... }}`",
                self.path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        if self.named_credentials.is_empty() {
            out.push(format!(
                "{} has no [named_credentials]: callout has nothing to proxy",
                self.path.display()
            ));
        }
        if !self.server.strict_file_permissions {
            out.extend(permissions::loose_files(&self.secret_files));
        }
        out
    }

    /// Reads and validates the config at `path`, resolving relative paths against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, true)
    }

    /// Like `load`; without `read_secrets`, env and file secrets are not read.
    pub fn load_with(path: &Path, read_secrets: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        let env = |var: &str| std::env::var(var).ok();
        Self::from_toml_with(
            path,
            &text,
            &LoadOptions {
                env: &env,
                read_secrets,
            },
        )
    }

    /// Validates config text; `path` names the file in messages and anchors relative paths.
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::from_toml_with(
            path,
            text,
            &LoadOptions {
                env,
                read_secrets: true,
            },
        )
    }

    pub fn from_toml_with(path: &Path, text: &str, options: &LoadOptions<'_>) -> Result<Config, ConfigError> {
        validate::validate(path, text, options).map_err(|problems| ConfigError {
            path: path.to_owned(),
            problems,
        })
    }
}
