//! The credential seam: what a principal's credential puts on an outgoing request.
//!
//! Every protocol is one variant of `Credential`, built for each principal when a config
//! is loaded, so a request only applies it. The request path asks three things of it and
//! nothing else: how much of the body it must see (`body_rule`), what to set on an attempt
//! (`apply`), and whether the upstream's answer means the credential went stale and the
//! attempt is worth repeating (`rejected`).

mod assume_role;
mod basic;
pub mod oauth;
mod sigv4;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::config::{ExternalCredential, PrincipalKeys, Protocol};
use crate::token::{CacheOutcome, TokenError};

pub use basic::{Basic, basic_authorization};
pub use oauth::{OAuth, Tokens};
pub use sigv4::AwsSigV4;

/// How one principal authenticates its requests.
#[derive(Clone)]
pub enum Credential {
    /// `protocol = "none"`, or `generate_authorization_header = false`: nothing is added.
    None,
    Basic(Basic),
    OAuth(OAuth),
    AwsSigV4(AwsSigV4),
}

/// How much of a request body a credential must read before it can apply itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// It never looks at the body: buffer only what a retry needs.
    Stream,
    /// It signs the body: buffer all of it, up to `max_request_body`.
    Buffer,
}

/// The request an attempt is about to send, as a credential sees it.
pub struct Attempt<'a> {
    pub method: &'a Method,
    /// Absolute: scheme, authority, path and query as they go upstream.
    pub uri: &'a Uri,
    pub headers: &'a mut HeaderMap,
    /// The whole body when it was buffered; `None` when it streams.
    pub body: Option<&'a Bytes>,
    /// The caller's `x-callout-subject-token` (token exchange), never forwarded itself.
    pub subject_token: Option<&'a http::HeaderValue>,
    /// What formulas of the credential (a scope formula) read: the request's merge fields.
    pub fields: Option<&'a (dyn crate::formula::Fields + Sync)>,
}

/// What a credential put on one attempt, kept to judge the upstream's answer.
#[derive(Default)]
pub struct Applied {
    token: Option<Arc<crate::token::Token>>,
    /// Whether a token came from the cache; `None` when no token was involved.
    pub cache: Option<CacheOutcome>,
    /// The slot the token came from, where a rejection is reported.
    slot: Option<Arc<crate::token::TokenSlot<oauth::Grant>>>,
}

/// Why a credential could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot sign the request: {0}")]
    Sign(#[from] crate::sigv4::SignError),
    /// A scope formula could not be evaluated for this request.
    #[error("the scope cannot be built: {0}")]
    Scope(#[from] crate::formula::EvalError),
    /// Token exchange needs the caller's token.
    #[error("this named credential exchanges the caller's token: send it as x-callout-subject-token")]
    SubjectTokenRequired,
}

impl Applied {
    /// The OAuth token the attempt carries, for header formulas.
    pub fn token(&self) -> Option<&crate::token::Token> {
        self.token.as_deref()
    }
}

impl Credential {
    /// The credential of `principal` (index into `ec.principals`), minting OAuth tokens
    /// through `tokens`. `send` is the named credential's `generate_authorization_header`.
    pub fn new(ec: &ExternalCredential, principal: usize, send: bool, tokens: &Arc<Tokens>) -> Credential {
        if !send {
            return Credential::None;
        }
        let p = &ec.principals[principal];
        match (&ec.protocol, &p.keys) {
            (Protocol::OAuth2(settings), PrincipalKeys::Client(client)) => {
                Credential::OAuth(OAuth::new(ec, settings, p, client, tokens))
            }
            (Protocol::OAuth2(settings), PrincipalKeys::Provider) => {
                let client = settings
                    .registration
                    .client
                    .as_ref()
                    .expect("an auth provider's registration has its client");
                Credential::OAuth(OAuth::new(ec, settings, p, client, tokens))
            }
            (Protocol::Basic, PrincipalKeys::Basic { username, password }) => {
                Credential::Basic(Basic::new(username, password))
            }
            (
                Protocol::AwsSigV4(settings),
                PrincipalKeys::Aws {
                    access_key_id,
                    secret_access_key,
                    session_token,
                    assume_role,
                },
            ) => Credential::AwsSigV4(AwsSigV4::new(
                settings,
                (access_key_id, secret_access_key, session_token.as_ref()),
                assume_role.as_ref(),
            )),
            // Validation gives every principal the keys of its external credential's
            // protocol; `None` is the only protocol without keys.
            _ => Credential::None,
        }
    }

    /// What applies for a named credential with `generate_authorization_header = false`:
    /// nothing, or with `token_for_formulas` the OAuth token (or Basic value) without its
    /// header, for the formulas that read it.
    pub fn for_formulas_only(&self, token_for_formulas: bool) -> Credential {
        match self {
            Credential::OAuth(oauth) if token_for_formulas => Credential::OAuth(oauth.without_header()),
            Credential::Basic(basic) if token_for_formulas => Credential::Basic(basic.without_header()),
            _ => Credential::None,
        }
    }

    /// The `Authorization` value a Basic credential encoded at load; `None` for others,
    /// whose value (a token) comes with each attempt.
    pub fn basic_authorization(&self) -> Option<&http::HeaderValue> {
        match self {
            Credential::Basic(basic) => Some(basic.authorization()),
            _ => None,
        }
    }

    /// Whether it exchanges the caller's `x-callout-subject-token`.
    pub fn takes_subject_token(&self) -> bool {
        matches!(self, Credential::OAuth(oauth) if oauth.takes_subject_token())
    }

    pub fn body_rule(&self) -> BodyRule {
        match self {
            Credential::AwsSigV4(sigv4) => sigv4.body_rule(),
            _ => BodyRule::Stream,
        }
    }

    /// Sets what this credential adds to `attempt`.
    pub async fn apply(&self, attempt: Attempt<'_>) -> Result<Applied, AuthError> {
        match self {
            Credential::None => Ok(Applied::default()),
            Credential::Basic(basic) => {
                basic.apply(attempt.headers);
                Ok(Applied::default())
            }
            Credential::OAuth(oauth) => {
                oauth
                    .apply(attempt.headers, attempt.subject_token, attempt.fields)
                    .await
            }
            Credential::AwsSigV4(sigv4) => {
                sigv4.apply(attempt).await?;
                Ok(Applied::default())
            }
        }
    }

    /// Whether the upstream's `status` rejected what `applied` sent, so that a new attempt
    /// (with a renewed credential) may succeed. A rejected token is dropped from the cache.
    pub fn rejected(&self, applied: &Applied, status: u16) -> bool {
        match self {
            Credential::None | Credential::Basic(_) | Credential::AwsSigV4(_) => false,
            Credential::OAuth(oauth) => oauth.rejected(applied, status),
        }
    }
}
