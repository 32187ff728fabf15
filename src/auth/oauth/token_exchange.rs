//! Token exchange (RFC 8693): the caller's token (`x-callout-subject-token`) is traded for
//! one for the named credential's audience. Each subject token has its own cache slot
//! (`keyed.rs`), and its token is kept no longer than the subject token itself lives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::client_auth::ClientAuthentication;
use super::endpoint::TokenClients;
use super::token_request::{Endpoint, request_token};
use crate::config::Exchange;
use crate::secret::Secret;
use crate::token::{Fetched, TokenError};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenExchange {
    pub endpoint: Endpoint,
    pub client: ClientAuthentication,
    pub exchange: Exchange,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
    pub subject_token: Secret,
}

impl TokenExchange {
    pub async fn fetch(&self, clients: &TokenClients) -> Result<Fetched, TokenError> {
        let x = &self.exchange;
        let mut fields = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", self.subject_token.expose()),
            ("subject_token_type", x.subject_token_type.as_str()),
        ];
        let optional = [
            ("requested_token_type", &x.requested_token_type),
            ("audience", &x.audience),
            ("resource", &x.resource),
            ("scope", &self.scope),
        ];
        fields.extend(optional.iter().filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))));
        fields.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let result = request_token(clients, &self.endpoint, &fields, &self.client).await;
        match result {
            Ok(mut fetched) => {
                // The exchanged token stands for the subject: it is not used past the
                // subject token's own expiry, whatever the server said.
                if let Some(left) = remaining_life(self.subject_token.expose(), SystemTime::now()) {
                    fetched.lifetime = Some(fetched.lifetime.map_or(left, |l| l.min(left)));
                }
                Ok(fetched)
            }
            Err(mut err) => {
                err.sanitize(&[self.subject_token.expose()]);
                Err(err)
            }
        }
    }
}

/// How long a JWT subject token has left by its `exp` (unverified: the token endpoint
/// verifies it; this only bounds how long its exchange is cached). `None` for opaque tokens.
fn remaining_life(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(Duration::from_secs_f64((exp - now).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn a_jwt_subject_bounds_the_lifetime_and_an_opaque_one_does_not() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            remaining_life(&jwt(r#"{"exp":1000090}"#), now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            remaining_life(&jwt(r#"{"exp":999000}"#), now),
            Some(Duration::ZERO)
        );
        assert_eq!(remaining_life("opaque-token", now), None);
        assert_eq!(remaining_life(&jwt(r#"{"sub":"x"}"#), now), None);
        assert_eq!(remaining_life("a.!!!.c", now), None);
    }
}
