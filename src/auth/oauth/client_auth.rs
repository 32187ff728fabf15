//! How an OAuth client proves itself in a token request (RFC 6749 §2.3): a client secret
//! (with a staged successor), a signed assertion (RFC 7523 §2.2), its TLS certificate
//! (RFC 8705 §2), or nothing (the JWT bearer grant, RFC 7523 §2.1).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::auth::basic_authorization as basic;
use crate::config::{ClientAuth, JwtSigning};
use crate::jws::{AssertionClaims, Header};
use crate::secret::Secret;
use crate::token::TokenError;

/// RFC 7523 §2.2's `client_assertion_type`.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientAuthentication {
    /// `client_auth = "header"`, `"header_unencoded"` or `"body"`.
    Secret {
        client_id: String,
        mode: ClientAuth,
        secret: StagedSecret,
    },
    PrivateKeyJwt {
        client_id: String,
        jwt: Signer,
    },
    /// The certificate is in the connection; the form names the client.
    Tls {
        client_id: String,
    },
    None,
}

/// A client secret and the one staged to replace it. Which is in use is state shared by
/// every request of the slot, not part of the cache key.
#[derive(Debug, Clone)]
pub struct StagedSecret {
    pub current: Secret,
    pub next: Option<Secret>,
    using_next: Arc<AtomicBool>,
}

impl StagedSecret {
    pub fn new(current: Secret, next: Option<Secret>) -> StagedSecret {
        StagedSecret {
            current,
            next,
            using_next: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn using_next(&self) -> bool {
        self.using_next.load(Ordering::Relaxed)
    }

    fn in_use(&self) -> &Secret {
        match &self.next {
            Some(next) if self.using_next() => next,
            _ => &self.current,
        }
    }
}

impl PartialEq for StagedSecret {
    fn eq(&self, other: &Self) -> bool {
        self.current == other.current && self.next == other.next
    }
}

impl Eq for StagedSecret {}

impl Hash for StagedSecret {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.current.hash(state);
        self.next.hash(state);
    }
}

/// Signs assertions; compared by what shapes them (the key, every claim setting).
#[derive(Debug, Clone)]
pub struct Signer(pub Arc<JwtSigning>);

impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        a.key == b.key
            && a.algorithm == b.algorithm
            && a.key_id == b.key_id
            && a.thumbprints == b.thumbprints
            && a.issuer == b.issuer
            && a.subject == b.subject
            && a.audience == b.audience
            && a.lifetime == b.lifetime
            && a.claims == b.claims
            && a.formulas == b.formulas
    }
}

impl Eq for Signer {}

impl Hash for Signer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let s = &*self.0;
        (
            &s.key,
            &s.key_id,
            &s.thumbprints,
            &s.issuer,
            &s.subject,
            &s.audience,
            s.lifetime,
        )
            .hash(state);
        for (name, value) in &s.claims {
            (name, value.to_string()).hash(state);
        }
        s.formulas.hash(state);
    }
}

impl Signer {
    /// A fresh assertion (new `jti`, `iat` now) by `issuer` about `subject` for `audience`.
    pub fn assertion(&self, issuer: &str, subject: &str, audience: &str) -> Result<Secret, TokenError> {
        let jwt = &*self.0;
        let key = jwt
            .key
            .as_ref()
            .ok_or_else(|| TokenError::Malformed("the signing key was not read".into()))?;
        let claims = AssertionClaims {
            issuer: jwt.issuer.as_deref().unwrap_or(issuer),
            subject,
            audience: jwt.audience.as_deref().unwrap_or(audience),
            lifetime: jwt.lifetime,
            extra: &jwt.claims,
        };
        let header = Header {
            key_id: jwt.key_id.as_deref(),
            x5t: jwt.thumbprints.as_ref().map(|t| t.0.as_str()),
            x5t_s256: jwt.thumbprints.as_ref().map(|t| t.1.as_str()),
        };
        crate::jws::assertion(key, &header, &claims, SystemTime::now())
            .map_err(|e| TokenError::Malformed(format!("cannot sign the assertion: {e}")))
    }
}

/// What a token request carries to authenticate its client.
pub struct Authenticated {
    pub header: Option<http::HeaderValue>,
    pub fields: Vec<(&'static str, Zeroizing<String>)>,
    /// The assertion sent, to be kept out of the token endpoint's text.
    pub assertion: Option<Secret>,
}

impl ClientAuthentication {
    /// The client's part of one token request to `token_url`. `staged` sends the staged
    /// secret instead of the one in use.
    pub fn authenticate(&self, token_url: &http::Uri, staged: bool) -> Result<Authenticated, TokenError> {
        let mut out = Authenticated {
            header: None,
            fields: Vec::new(),
            assertion: None,
        };
        match self {
            ClientAuthentication::Secret {
                client_id,
                mode,
                secret,
            } => {
                let secret = match (&secret.next, staged) {
                    (Some(next), true) => next,
                    _ => secret.in_use(),
                };
                match mode {
                    ClientAuth::Body => {
                        out.fields.push(("client_id", Zeroizing::new(client_id.clone())));
                        out.fields
                            .push(("client_secret", Zeroizing::new(secret.expose().to_owned())));
                    }
                    ClientAuth::HeaderUnencoded => out.header = Some(basic(client_id, secret.expose())),
                    _ => {
                        // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic.
                        let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
                        let secret: Zeroizing<String> = Zeroizing::new(
                            form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect(),
                        );
                        out.header = Some(basic(&id, &secret));
                    }
                }
            }
            ClientAuthentication::PrivateKeyJwt { client_id, jwt } => {
                // RFC 7523 §3: iss and sub are the client id; aud identifies the server.
                let assertion = jwt.assertion(client_id, client_id, &token_url.to_string())?;
                out.fields.push(("client_id", Zeroizing::new(client_id.clone())));
                out.fields.push((
                    "client_assertion_type",
                    Zeroizing::new(JWT_BEARER_ASSERTION.to_owned()),
                ));
                out.fields
                    .push(("client_assertion", Zeroizing::new(assertion.expose().to_owned())));
                out.assertion = Some(assertion);
            }
            ClientAuthentication::Tls { client_id } => {
                out.fields.push(("client_id", Zeroizing::new(client_id.clone())));
            }
            ClientAuthentication::None => {}
        }
        Ok(out)
    }

    /// Whether an `invalid_client` answer is worth one more try with the staged secret.
    pub fn has_staged(&self) -> bool {
        matches!(self, ClientAuthentication::Secret { secret, .. } if secret.next.is_some() && !secret.using_next())
    }

    /// From now on, the staged secret is the one in use.
    pub fn switch_to_staged(&self) {
        if let ClientAuthentication::Secret { secret, .. } = self {
            secret.using_next.store(true, Ordering::Relaxed);
        }
    }

    /// `"next_client_secret"` when the staged secret is in use, else `"client_secret"`;
    /// `None` for clients without a secret.
    pub fn secret_in_use(&self) -> Option<&'static str> {
        match self {
            ClientAuthentication::Secret { secret, .. } if secret.using_next() => Some("next_client_secret"),
            ClientAuthentication::Secret { .. } => Some("client_secret"),
            _ => None,
        }
    }
}
