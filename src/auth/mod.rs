//! The credential seam: what a principal's credential puts on an outgoing request.
//!
//! Every protocol is one variant of `Credential`, built for each principal when a config
//! is loaded, so a request only applies it. The request path asks three things of it and
//! nothing else: how much of the body it must see (`body_rule`), what to set on an attempt
//! (`apply`), and whether the upstream's answer means the credential went stale and the
//! attempt is worth repeating (`rejected`).

mod basic;
pub mod oauth;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::config::{ExternalCredential, PrincipalKeys, Protocol};
use crate::token::{CacheOutcome, TokenError};

pub use basic::{Basic, basic_authorization};
pub use oauth::{OAuth, Tokens};

/// How one principal authenticates its requests.
#[derive(Clone)]
pub enum Credential {
    /// `protocol = "none"`, or `generate_authorization_header = false`: nothing is added.
    None,
    Basic(Basic),
    OAuth(OAuth),
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
    /// Token exchange needs the caller's token.
    #[error("this named credential exchanges the caller's token: send it as x-callout-subject-token")]
    SubjectTokenRequired,
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
            // Validation gives every principal the keys of its external credential's
            // protocol; `None` is the only protocol without keys.
            _ => Credential::None,
        }
    }

    pub fn body_rule(&self) -> BodyRule {
        BodyRule::Stream
    }

    /// Sets what this credential adds to `attempt`.
    pub async fn apply(&self, attempt: Attempt<'_>) -> Result<Applied, AuthError> {
        match self {
            Credential::None => Ok(Applied::default()),
            Credential::Basic(basic) => {
                basic.apply(attempt.headers);
                Ok(Applied::default())
            }
            Credential::OAuth(oauth) => oauth.apply(attempt.headers, attempt.subject_token).await,
        }
    }

    /// Whether the upstream's `status` rejected what `applied` sent, so that a new attempt
    /// (with a renewed credential) may succeed. A rejected token is dropped from the cache.
    pub fn rejected(&self, applied: &Applied, status: u16) -> bool {
        match self {
            Credential::None | Credential::Basic(_) => false,
            Credential::OAuth(oauth) => oauth.rejected(applied, status),
        }
    }
}
