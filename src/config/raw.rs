//! Values as written in the TOML file: the serde types of keys whose values are more than a
//! string or a number (secrets, durations, the enumerated choices).
//!
//! Nothing here decides whether a value makes sense in its place; the per-table files do.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// `protocol` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolName {
    Oauth2,
    Basic,
    Custom,
    AwsSigv4,
    None,
}

impl ProtocolName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolName::Oauth2 => "oauth2",
            ProtocolName::Basic => "basic",
            ProtocolName::Custom => "custom",
            ProtocolName::AwsSigv4 => "aws_sigv4",
            ProtocolName::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    ClientCredentials,
    /// RFC 7523 §2.1: a signed assertion is the grant.
    JwtBearer,
    /// RFC 8693: the caller's token is exchanged for one for the upstream.
    TokenExchange,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::ClientCredentials => "client_credentials",
            Flow::JwtBearer => "jwt_bearer",
            Flow::TokenExchange => "token_exchange",
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic of the form-urlencoded id and secret (RFC 6749 §2.3.1).
    #[default]
    Header,
    /// HTTP Basic of the raw id and secret, for servers that do not decode.
    HeaderUnencoded,
    /// `client_id` and `client_secret` form fields.
    Body,
    /// A signed JWT assertion (RFC 7523 §2.2); no secret is sent.
    PrivateKeyJwt,
    /// The TLS client certificate (RFC 8705 §2); the form carries only `client_id`.
    TlsClientAuth,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Header => "header",
            ClientAuth::HeaderUnencoded => "header_unencoded",
            ClientAuth::Body => "body",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            ClientAuth::TlsClientAuth => "tls_client_auth",
        }
    }

    /// Whether the client authenticates with a client secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            ClientAuth::Header | ClientAuth::HeaderUnencoded | ClientAuth::Body
        )
    }
}

/// A secret as written: the value itself, `{ env = "VAR" }` or `{ file = "PATH" }`.
#[derive(Debug)]
pub enum RawSecret {
    Literal(crate::secret::Secret),
    Env(String),
    File(String),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = RawSecret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a string, { env = "VAR" } or { file = "PATH" }"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal(crate::secret::Secret::new(v)))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        r#"expected { env = "VAR" } or { file = "PATH" }"#,
                    ));
                };
                let value: String = map.next_value()?;
                let secret = match key.as_str() {
                    "env" => RawSecret::Env(value),
                    "file" => RawSecret::File(value),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a secret takes exactly one of `env` or `file`"));
                }
                Ok(secret)
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

/// A duration written with a unit: `"500ms"`, `"30s"`, `"5m"`, `"2h"`.
#[derive(Debug, Clone, Copy)]
pub struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration with a unit, e.g. "30s" or "500ms""#)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "a duration is a string with a unit: did you mean \"{n}s\"?"
                )))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawDuration, E> {
                self.visit_i64(n.try_into().unwrap_or(i64::MAX))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawDuration, E> {
                if !text.is_empty() && text.trim().bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "`{text}` has no unit: did you mean \"{}s\"?",
                        text.trim()
                    )));
                }
                humantime::parse_duration(text).map(RawDuration).map_err(|e| {
                    E::custom(format!(
                        "`{text}` is not a duration ({e}); write e.g. \"30s\" or \"500ms\""
                    ))
                })
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}
