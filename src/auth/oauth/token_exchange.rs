//! Token exchange (RFC 8693): the caller's token (`x-callout-subject-token`) is traded for
//! one for the named credential's audience. Each subject token has its own cache slot, kept
//! no longer than the subject token itself lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::client_auth::ClientAuthentication;
use super::endpoint::TokenClients;
use super::token_request::{Endpoint, request_token};
use super::{Grant, Tokens};
use crate::config::Exchange;
use crate::secret::Secret;
use crate::token::{Fetched, TokenError, TokenKey, TokenSlot};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Subject tokens with a slot, per principal. Past this, slots without a usable token are
/// dropped first, then all: a caller sending a new subject token per request must not grow
/// memory without bound.
const MAX_SUBJECTS: usize = 1024;

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

/// The slots of one principal's exchanges, by SHA-256 of the subject token.
pub struct Exchanges {
    template: TokenKey<Grant>,
    tokens: Arc<Tokens>,
    slots: Mutex<HashMap<[u8; 32], Arc<TokenSlot<Grant>>>>,
}

impl Exchanges {
    /// `template` is the key of every slot, with an empty subject token.
    pub fn new(template: TokenKey<Grant>, tokens: &Arc<Tokens>) -> Exchanges {
        Exchanges {
            template,
            tokens: tokens.clone(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(&self) -> &TokenKey<Grant> {
        &self.template
    }

    /// The slot for `subject_token`.
    pub fn slot(&self, subject_token: &str) -> Arc<TokenSlot<Grant>> {
        let digest = ring::digest::digest(&ring::digest::SHA256, subject_token.as_bytes());
        let id: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        let mut slots = self.slots.lock().expect("exchange slots poisoned");
        if let Some(slot) = slots.get(&id) {
            return slot.clone();
        }
        if slots.len() >= MAX_SUBJECTS {
            slots.retain(|_, slot| slot.status().cached);
            if slots.len() >= MAX_SUBJECTS {
                slots.clear();
            }
        }
        let mut key = self.template.clone();
        if let Grant::TokenExchange(x) = &mut key.grant {
            x.subject_token = Secret::new(subject_token);
        }
        let slot = self.tokens.slot(key);
        slots.insert(id, slot.clone());
        slot
    }

    /// How many subject tokens have a slot.
    pub fn subjects(&self) -> usize {
        self.slots.lock().expect("exchange slots poisoned").len()
    }
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
