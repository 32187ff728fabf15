//! The keys of an OAuth client, on a principal or an `[auth_providers]` entry: its id and
//! what it proves itself with. Which keys are needed follows from the flow and
//! `client_auth`; one that would be ignored is an error rather than silently unused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::raw::{ClientAuth, Flow, RawDuration, RawSecret};
use super::read::{Reader, Table};
use super::{JwtSigning, OAuthClient};
use crate::jws::Algorithm;

/// Every key an OAuth client may have.
pub(super) const CLIENT_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "next_client_secret",
    "private_key",
    "signing_algorithm",
    "key_id",
    "jwt_subject",
    "jwt_issuer",
    "jwt_audience",
    "jwt_lifetime",
    "jwt_claims",
    "client_certificate",
];

const DEFAULT_JWT_LIFETIME: Duration = Duration::from_secs(120);
const MAX_JWT_LIFETIME: Duration = Duration::from_secs(600);
/// Claims callout sets itself on every assertion.
const RESERVED_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];
/// Keys that only shape a JWT assertion.
const JWT_KEYS: &[&str] = &[
    "signing_algorithm",
    "key_id",
    "jwt_issuer",
    "jwt_audience",
    "jwt_lifetime",
    "jwt_claims",
];

/// What a client of `flow` with `client_auth` needs.
struct Needs {
    secret: bool,
    jwt: bool,
    tls: bool,
    subject: bool,
}

impl Needs {
    fn of(flow: Flow, client_auth: ClientAuth) -> Needs {
        // RFC 7523 §2.1: the assertion is the grant; callout sends no client authentication.
        let bearer = flow == Flow::JwtBearer;
        Needs {
            secret: !bearer && client_auth.uses_secret(),
            jwt: bearer || client_auth == ClientAuth::PrivateKeyJwt,
            tls: !bearer && client_auth == ClientAuth::TlsClientAuth,
            subject: bearer,
        }
    }

    /// Why `key` is not used by such a client, or `None` when it is.
    fn unused(&self, key: &str, flow: Flow, client_auth: ClientAuth) -> Option<String> {
        let used = match key {
            "client_secret" | "next_client_secret" => self.secret,
            "private_key" => self.jwt || self.tls,
            // With a signing key, its certificate's thumbprints go in the JWS header.
            "client_certificate" => self.tls || self.jwt,
            "jwt_subject" => self.subject,
            k if JWT_KEYS.contains(&k) => self.jwt,
            _ => true,
        };
        if used {
            return None;
        }
        Some(if flow == Flow::JwtBearer {
            "is not used by flow = \"jwt_bearer\", which authenticates with the signed assertion alone (RFC 7523 §2.1)".to_owned()
        } else if key == "jwt_subject" {
            "is used only by flow = \"jwt_bearer\"".to_owned()
        } else {
            format!("is not used with client_auth = \"{}\"", client_auth.as_str())
        })
    }
}

impl Reader<'_> {
    /// The client described by `t`'s keys, for `flow` and `client_auth` (`None` when they
    /// are unknown: the keys are then only taken, not checked).
    pub(super) fn oauth_client(
        &mut self,
        t: &mut Table<'_>,
        flow: Option<Flow>,
        client_auth: ClientAuth,
    ) -> Option<OAuthClient> {
        let context = t.context.clone();
        let Some(flow) = flow else {
            for key in CLIENT_KEYS {
                t.raw(key);
            }
            return None;
        };
        let needs = Needs::of(flow, client_auth);
        for key in CLIENT_KEYS {
            if t.has(key)
                && let Some(why) = needs.unused(key, flow, client_auth)
            {
                let value = t.raw(key).expect("the key is there");
                self.problem(Some(value.span()), format!("{context}: {key} {why}"));
            }
        }

        let issuer = self.take::<String>(t, "jwt_issuer").map(Spanned::into_inner);
        let client_id = if flow == Flow::JwtBearer && issuer.is_some() {
            self.take::<String>(t, "client_id")
        } else {
            self.require::<String>(t, "client_id")
        };
        let client_secret = self.keyed_secret(t, "client_secret", needs.secret);
        let next_client_secret = self
            .take::<RawSecret>(t, "next_client_secret")
            .and_then(|s| self.secret(&format!("{context}: next_client_secret"), &s));
        let private_key = if needs.jwt || needs.tls {
            self.require::<RawSecret>(t, "private_key")
        } else {
            None
        };
        let certificate = if needs.tls {
            self.require::<RawSecret>(t, "client_certificate")
        } else {
            self.take::<RawSecret>(t, "client_certificate")
        };
        let jwt = if needs.jwt {
            let thumbprints = certificate
                .as_ref()
                .and_then(|c| self.certificates(&context, c))
                .map(|chain| thumbprints(&chain[0]));
            self.jwt_signing(t, private_key.as_ref(), issuer, needs.subject)
                .map(|jwt| Arc::new(JwtSigning { thumbprints, ..jwt }))
        } else {
            None
        };
        let tls = match (needs.tls, &certificate, &private_key) {
            (true, Some(cert), Some(key)) => self.tls_identity(&context, cert, key),
            _ => None,
        };
        let failed = (needs.secret && client_secret.is_none())
            || (needs.jwt && jwt.is_none())
            || (needs.tls && tls.is_none() && self.read_secrets);
        if failed {
            return None;
        }
        Some(OAuthClient {
            client_id: client_id.map(Spanned::into_inner).unwrap_or_default(),
            client_secret,
            next_client_secret,
            jwt,
            tls,
        })
    }

    fn require_if<T: for<'de> serde::Deserialize<'de>>(
        &mut self,
        t: &mut Table<'_>,
        key: &str,
        needed: bool,
    ) -> Option<Spanned<T>> {
        if needed { self.require(t, key) } else { None }
    }

    fn keyed_secret(&mut self, t: &mut Table<'_>, key: &str, needed: bool) -> Option<crate::secret::Secret> {
        let context = t.context.clone();
        let raw = self.require_if::<RawSecret>(t, key, needed)?;
        self.secret(&format!("{context}: {key}"), &raw)
    }

    fn jwt_signing(
        &mut self,
        t: &mut Table<'_>,
        private_key: Option<&Spanned<RawSecret>>,
        issuer: Option<String>,
        needs_subject: bool,
    ) -> Option<JwtSigning> {
        let context = t.context.clone();
        let algorithm = self.take::<Algorithm>(t, "signing_algorithm");
        let key_id = self.take::<String>(t, "key_id").map(Spanned::into_inner);
        let subject = self.require_if::<String>(t, "jwt_subject", needs_subject);
        // A formula subject (`{!$User.Username}`) makes the principal per user.
        let mut formulas = Vec::new();
        let subject = match subject {
            Some(s) => match self.user_formula(&context, "jwt_subject", &s) {
                Some(f) if f.constant().is_none() => {
                    formulas.push(("sub".to_owned(), f));
                    Some(String::new())
                }
                _ => Some(s.into_inner()),
            },
            None => None,
        };
        let audience = self.take::<String>(t, "jwt_audience").map(Spanned::into_inner);
        let lifetime = self.take::<RawDuration>(t, "jwt_lifetime");
        let claims = self.take::<BTreeMap<String, toml::Value>>(t, "jwt_claims");

        let lifetime = match lifetime {
            None => Some(DEFAULT_JWT_LIFETIME),
            Some(l) if l.get_ref().0.is_zero() || l.get_ref().0 > MAX_JWT_LIFETIME => {
                self.problem(
                    Some(l.span()),
                    format!("{context}: jwt_lifetime must be more than 0s and at most 10m (an assertion is used once, at once)"),
                );
                None
            }
            Some(l) => Some(l.into_inner().0),
        };
        let mut extra = Vec::new();
        if let Some(claims) = claims {
            let span = claims.span();
            for (name, value) in claims.into_inner() {
                if RESERVED_CLAIMS.contains(&name.as_str()) {
                    self.problem(
                        Some(span.clone()),
                        format!(
                            "{context}: jwt_claims cannot set `{name}`: callout sets it on every assertion"
                        ),
                    );
                    continue;
                }
                if let toml::Value::String(text) = &value {
                    let spanned = Spanned::new(span.clone(), text.clone());
                    match self.user_formula(&context, "jwt_claims", &spanned) {
                        Some(f) if f.constant().is_none() => {
                            formulas.push((name, f));
                            continue;
                        }
                        Some(f) => {
                            let text = f.constant().expect("constant").to_owned();
                            extra.push((name, serde_json::Value::String(text)));
                            continue;
                        }
                        None => continue,
                    }
                }
                match serde_json::to_value(&value) {
                    Ok(json) => extra.push((name, json)),
                    Err(e) => self.problem(
                        Some(span.clone()),
                        format!("{context}: jwt_claims `{name}` cannot be a JSON value: {e}"),
                    ),
                }
            }
        }
        let algorithm = algorithm.map(Spanned::into_inner).unwrap_or_default();
        let key = match private_key {
            Some(raw) => self.signing_key(&context, raw, algorithm).ok()?,
            None => return None,
        };
        if needs_subject && subject.is_none() {
            return None;
        }
        Some(JwtSigning {
            key,
            algorithm,
            key_id,
            thumbprints: None,
            issuer,
            subject,
            audience,
            lifetime: lifetime?,
            claims: extra,
            formulas,
        })
    }
}

/// `x5t` (SHA-1, still what many servers look up) and `x5t#S256` of a DER certificate.
fn thumbprints(certificate: &[u8]) -> (String, String) {
    use base64::Engine as _;
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
    let b64 = |d: ring::digest::Digest| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref());
    (
        b64(digest(&SHA1_FOR_LEGACY_USE_ONLY, certificate)),
        b64(digest(&SHA256, certificate)),
    )
}
