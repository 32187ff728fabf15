//! `protocol = "oauth2"`: a bearer token per principal, from the shared cache, minted by
//! the external credential's grant (one file per grant) and renewed when the upstream
//! rejects it.

mod client_auth;
mod client_credentials;
mod endpoint;
mod jwt_bearer;
mod keyed;
mod response;
mod token_exchange;
mod token_request;

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

pub use client_auth::{ClientAuthentication, Signer, StagedSecret};
pub use client_credentials::ClientCredentials;
pub use endpoint::{TokenClients, TokenTls};
pub use jwt_bearer::JwtBearer;
pub use keyed::KeyedSlots;
pub use response::parse_token_response;
pub use token_exchange::TokenExchange;
pub use token_request::Endpoint;

use super::{Applied, AuthError};
use crate::config::{ClientAuth, ExternalCredential, Flow, OAuth2, OAuthClient, Principal};
use crate::formula::{Field, Fields, Formula};
use crate::secret::Secret;
use crate::token::{Fetched, Lifetimes, Mint, TokenCache, TokenError, TokenKey, TokenSlot};

/// The token cache of every OAuth credential.
pub type Tokens = TokenCache<Grant>;

/// How a token is obtained. One variant per OAuth flow; equality covers every input that
/// shapes the token, so it doubles as the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    ClientCredentials(ClientCredentials),
    JwtBearer(JwtBearer),
    TokenExchange(TokenExchange),
}

impl Mint for Grant {
    type Client = TokenClients;

    async fn mint(&self, clients: &TokenClients) -> Result<Fetched, TokenError> {
        match self {
            Grant::ClientCredentials(grant) => grant.fetch(clients).await,
            Grant::JwtBearer(grant) => grant.fetch(clients).await,
            Grant::TokenExchange(grant) => grant.fetch(clients).await,
        }
    }
}

impl Grant {
    /// How the client authenticates, for display.
    pub fn client(&self) -> &ClientAuthentication {
        match self {
            Grant::ClientCredentials(g) => &g.client,
            Grant::TokenExchange(g) => &g.client,
            Grant::JwtBearer(_) => &ClientAuthentication::None,
        }
    }

    /// The JWT settings of the grant, when it signs assertions.
    fn jwt(&mut self) -> Option<&mut Signer> {
        match self {
            Grant::JwtBearer(g) => Some(&mut g.signer),
            Grant::ClientCredentials(ClientCredentials {
                client: ClientAuthentication::PrivateKeyJwt { jwt, .. },
                ..
            })
            | Grant::TokenExchange(TokenExchange {
                client: ClientAuthentication::PrivateKeyJwt { jwt, .. },
                ..
            }) => Some(jwt),
            _ => None,
        }
    }

    /// Sets claims rendered for one request (`sub` is the subject).
    fn set_claims(&mut self, rendered: Vec<(String, String)>) {
        let Some(signer) = self.jwt() else { return };
        let mut jwt = (*signer.0).clone();
        for (name, value) in rendered {
            if name == "sub" {
                jwt.subject = Some(value);
            } else {
                jwt.claims.push((name, serde_json::Value::String(value)));
            }
        }
        jwt.formulas.clear();
        *signer = Signer(Arc::new(jwt));
    }

    fn set_scope(&mut self, scope: &str) {
        let slot = match self {
            Grant::ClientCredentials(g) => &mut g.scope,
            Grant::JwtBearer(g) => &mut g.scope,
            Grant::TokenExchange(g) => &mut g.scope,
        };
        *slot = Some(scope.to_owned());
    }

    fn set_subject_token(&mut self, token: Secret) {
        if let Grant::TokenExchange(g) = self {
            g.subject_token = token;
        }
    }
}

/// A principal's OAuth credential: where its token comes from and what counts as a
/// rejection.
#[derive(Clone)]
pub struct OAuth {
    source: Source,
    /// Statuses that, besides 401, mean "this token is no longer good".
    refresh_on_status: Arc<[u16]>,
    reject_refresh_interval: std::time::Duration,
    /// `false` when the token only feeds header formulas
    /// (`generate_authorization_header = false`).
    set_header: bool,
}

#[derive(Clone)]
pub enum Source {
    /// One token for every request of the principal.
    Slot(Arc<TokenSlot<Grant>>),
    /// A token per subject token (`flow = "token_exchange"`) and per evaluated scope
    /// (a scope formula).
    Keyed {
        slots: Arc<KeyedSlots>,
        /// The scope formula, when the scope varies per request.
        scope: Option<Arc<Formula>>,
        /// Whether the caller's subject token is exchanged.
        subject: bool,
        /// Assertion claims that are formulas (`jwt_subject = "{!$User.Username}"`).
        claims: Arc<[(String, Formula)]>,
    },
}

impl OAuth {
    /// The credential of `principal`, whose OAuth client is `client`.
    pub fn new(
        ec: &ExternalCredential,
        settings: &OAuth2,
        principal: &Principal,
        client: &OAuthClient,
        tokens: &Arc<Tokens>,
    ) -> OAuth {
        let registration = &settings.registration;
        let endpoint = Endpoint {
            url: registration.token_url.clone(),
            tls: TokenTls {
                roots: registration.roots.clone(),
                identity: client.tls.clone(),
            },
        };
        // A scope that is a formula over the request's fields is set per slot (`keyed.rs`).
        let scope_text = ec.effective_scope(principal);
        let scope_formula = scope_text
            .map(|s| Formula::parse(s).expect("validation parses scopes"))
            .filter(|f| f.constant().is_none());
        let scope = match &scope_formula {
            Some(_) => None,
            None => scope_text.map(str::to_owned),
        };
        let params = registration.token_params.clone();
        let signer = || Signer(client.jwt.clone().expect("validation gives JWT clients a signer"));
        let grant = match settings.flow {
            Flow::ClientCredentials => Grant::ClientCredentials(ClientCredentials {
                endpoint,
                client: authentication(registration.client_auth, client, signer),
                scope,
                params,
            }),
            Flow::JwtBearer => Grant::JwtBearer(JwtBearer {
                endpoint,
                client_id: client.client_id.clone(),
                signer: signer(),
                scope,
                params,
            }),
            Flow::TokenExchange => Grant::TokenExchange(TokenExchange {
                endpoint,
                client: authentication(registration.client_auth, client, signer),
                exchange: settings
                    .exchange
                    .clone()
                    .expect("validation gives token_exchange its settings"),
                scope,
                params,
                subject_token: Secret::new(""),
            }),
        };
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
        let subject = settings.flow == Flow::TokenExchange;
        let signs = settings.flow == Flow::JwtBearer || registration.client_auth == ClientAuth::PrivateKeyJwt;
        let claims: Arc<[(String, Formula)]> = match (&client.jwt, signs) {
            (Some(jwt), true) => jwt.formulas.clone().into(),
            _ => Arc::new([]),
        };
        let source = if subject || scope_formula.is_some() || !claims.is_empty() {
            Source::Keyed {
                slots: Arc::new(KeyedSlots::new(key, tokens)),
                scope: scope_formula.map(Arc::new),
                subject,
                claims,
            }
        } else {
            Source::Slot(tokens.slot(key))
        };
        OAuth {
            source,
            refresh_on_status: settings.refresh_on_status.clone().into(),
            reject_refresh_interval: settings.reject_refresh_interval,
            set_header: true,
        }
    }

    /// The same token source, with no `Authorization` header set.
    pub fn without_header(&self) -> OAuth {
        OAuth {
            set_header: false,
            ..self.clone()
        }
    }

    pub fn takes_subject_token(&self) -> bool {
        matches!(self.source, Source::Keyed { subject: true, .. })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The slot of a request with `subject_token` (the caller's, for token exchange) and
    /// `fields` (what a scope formula reads).
    fn slot_for(
        &self,
        subject_token: Option<&HeaderValue>,
        fields: Option<&(dyn Fields + Sync)>,
    ) -> Result<Arc<TokenSlot<Grant>>, AuthError> {
        match &self.source {
            Source::Slot(slot) => Ok(slot.clone()),
            Source::Keyed {
                slots,
                scope,
                subject,
                claims,
            } => {
                let token = match subject {
                    true => Some(
                        subject_token
                            .and_then(|v| v.to_str().ok())
                            .filter(|t| !t.is_empty())
                            .ok_or(AuthError::SubjectTokenRequired)?,
                    ),
                    false => None,
                };
                let now = std::time::SystemTime::now();
                let fields: &dyn Fields = match fields {
                    Some(fields) => fields,
                    None => &NoFields,
                };
                let scope = match scope {
                    Some(formula) => Some(formula.render(fields, now)?),
                    None => None,
                };
                let mut rendered = Vec::with_capacity(claims.len());
                for (name, formula) in claims.iter() {
                    rendered.push((name.clone(), formula.render(fields, now)?.into_owned()));
                }
                let mut parts = vec![token, scope.as_deref()];
                parts.extend(rendered.iter().map(|(_, v)| Some(v.as_str())));
                Ok(slots.slot(&parts, |grant| {
                    if let Some(token) = token {
                        grant.set_subject_token(Secret::new(token));
                    }
                    if let Some(scope) = &scope {
                        grant.set_scope(scope);
                    }
                    if !rendered.is_empty() {
                        grant.set_claims(rendered.clone());
                    }
                }))
            }
        }
    }

    /// The token a request with `subject_token` would use.
    pub async fn token(
        &self,
        subject_token: Option<&HeaderValue>,
    ) -> Result<Arc<crate::token::Token>, AuthError> {
        Ok(self.slot_for(subject_token, None)?.get().await?.0)
    }

    pub(super) async fn apply(
        &self,
        headers: &mut HeaderMap,
        subject_token: Option<&HeaderValue>,
        fields: Option<&(dyn Fields + Sync)>,
    ) -> Result<Applied, AuthError> {
        // The common case, one slot per principal, keeps no second handle on it.
        let (token, cache, slot) = match &self.source {
            Source::Slot(slot) => {
                let (token, cache) = slot.get().await?;
                (token, cache, None)
            }
            Source::Keyed { .. } => {
                let slot = self.slot_for(subject_token, fields)?;
                let (token, cache) = slot.get().await?;
                (token, cache, Some(slot))
            }
        };
        if self.set_header {
            headers.insert(AUTHORIZATION, token.authorization().clone());
        }
        Ok(Applied {
            token: Some(token),
            cache: Some(cache),
            slot,
        })
    }

    pub(super) fn rejected(&self, applied: &Applied, status: u16) -> bool {
        if status != 401 && !self.refresh_on_status.contains(&status) {
            return false;
        }
        let slot = match (&self.source, &applied.slot) {
            (_, Some(slot)) | (Source::Slot(slot), None) => slot,
            (Source::Keyed { .. }, None) => return false,
        };
        applied
            .token
            .as_ref()
            .is_some_and(|token| slot.reject(token, self.reject_refresh_interval))
    }
}

/// How `client` authenticates with `mode` (not used by `jwt_bearer`).
fn authentication(
    mode: ClientAuth,
    client: &OAuthClient,
    signer: impl Fn() -> Signer,
) -> ClientAuthentication {
    let client_id = client.client_id.clone();
    match mode {
        ClientAuth::PrivateKeyJwt => ClientAuthentication::PrivateKeyJwt {
            client_id,
            jwt: signer(),
        },
        ClientAuth::TlsClientAuth => ClientAuthentication::Tls { client_id },
        ClientAuth::Header | ClientAuth::HeaderUnencoded | ClientAuth::Body => ClientAuthentication::Secret {
            client_id,
            mode,
            secret: StagedSecret::new(
                client
                    .client_secret
                    .clone()
                    .expect("validation gives secret clients a secret"),
                client.next_client_secret.clone(),
            ),
        },
    }
}

/// No request fields, as `callout token` has: a scope formula that needs one fails.
struct NoFields;

impl Fields for NoFields {
    fn get(&self, _: &Field) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}
