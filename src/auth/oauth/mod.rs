//! `protocol = "oauth2"`: a bearer token per principal, from the shared cache, minted by
//! the external credential's grant (one file per grant) and renewed when the upstream
//! rejects it.

mod client_credentials;
mod response;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use http_body_util::Full;

pub use client_credentials::ClientCredentials;
pub use response::parse_token_response;

use super::Applied;
use crate::config::{ExternalCredential, OAuth2, Principal};
use crate::secret::Secret;
use crate::token::{Fetched, Lifetimes, Mint, TokenCache, TokenError, TokenKey, TokenSlot};

/// The HTTP client token requests go out on.
pub type TokenHttp = hyper_util::client::legacy::Client<crate::upstream::Connector, Full<Bytes>>;

/// The token cache of every OAuth credential.
pub type Tokens = TokenCache<Grant>;

/// How a token is obtained. One variant per OAuth flow; equality covers every input that
/// shapes the token, so it doubles as the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    ClientCredentials(ClientCredentials),
}

impl Mint for Grant {
    type Client = TokenHttp;

    async fn mint(&self, http: &TokenHttp) -> Result<Fetched, TokenError> {
        match self {
            Grant::ClientCredentials(cc) => cc.fetch(http).await,
        }
    }
}

/// A principal's OAuth credential: its token slot and what counts as a rejection.
#[derive(Clone)]
pub struct OAuth {
    slot: Arc<TokenSlot<Grant>>,
    /// Statuses that, besides 401, mean "this token is no longer good".
    refresh_on_status: Arc<[u16]>,
    reject_refresh_interval: std::time::Duration,
}

impl OAuth {
    /// The credential of `principal`, whose client is `client_id` and `client_secret`.
    pub fn new(
        ec: &ExternalCredential,
        settings: &OAuth2,
        principal: &Principal,
        (client_id, client_secret): (&str, &Secret),
        tokens: &Arc<Tokens>,
    ) -> OAuth {
        let grant = Grant::ClientCredentials(ClientCredentials {
            token_url: settings.token_url.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            client_auth: settings.client_auth,
            scope: ec.effective_scope(principal).map(str::to_owned),
            params: settings.token_params.clone(),
        });
        let key = TokenKey {
            external_credential: ec.name.clone(),
            principal: principal.name.clone(),
            grant,
            lifetimes: Lifetimes {
                refresh_before_expiry: settings.refresh_before_expiry,
                default_token_ttl: settings.default_token_ttl,
                token_timeout: settings.token_timeout,
            },
        };
        OAuth {
            slot: tokens.slot(key),
            refresh_on_status: settings.refresh_on_status.clone().into(),
            reject_refresh_interval: settings.reject_refresh_interval,
        }
    }

    pub fn slot(&self) -> &Arc<TokenSlot<Grant>> {
        &self.slot
    }

    pub(super) async fn apply(&self, headers: &mut HeaderMap) -> Result<Applied, TokenError> {
        let (token, cache) = self.slot.get().await?;
        headers.insert(AUTHORIZATION, token.authorization().clone());
        Ok(Applied {
            token: Some(token),
            cache: Some(cache),
        })
    }

    pub(super) fn rejected(&self, applied: &Applied, status: u16) -> bool {
        if status != 401 && !self.refresh_on_status.contains(&status) {
            return false;
        }
        applied
            .token
            .as_ref()
            .is_some_and(|token| self.slot.reject(token, self.reject_refresh_interval))
    }
}
