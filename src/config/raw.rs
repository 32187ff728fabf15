//! The TOML file as written: serde types that mirror SPEC "Configuration" key for key.
//!
//! Nothing here decides whether a value makes sense; `config::validate` does that, with the
//! spans kept here, so every problem can be reported with its line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub default_permission_sets: Vec<Spanned<String>>,
    pub retry_body_limit: Option<u64>,
    pub max_request_body: Option<u64>,
    pub shutdown_grace: Option<RawDuration>,
    #[serde(default)]
    pub allow_remote_callers: bool,
    pub unix_socket_mode: Option<Spanned<String>>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    pub token: Option<Spanned<RawSecret>>,
    pub uid: Option<u32>,
    #[serde(default)]
    pub permission_sets: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalCredential {
    pub protocol: Protocol,
    pub flow: Flow,
    pub token_url: Spanned<String>,
    pub scope: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    #[serde(default)]
    pub refresh_on_status: Vec<Spanned<i64>>,
    pub refresh_before_expiry: Option<RawDuration>,
    pub default_token_ttl: Option<RawDuration>,
    pub token_timeout: Option<RawDuration>,
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default)]
    pub principals: Vec<Spanned<RawPrincipal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrincipal {
    pub name: Spanned<String>,
    pub sequence: Spanned<i64>,
    #[serde(default)]
    pub permission_sets: Vec<Spanned<String>>,
    pub client_id: String,
    pub client_secret: Spanned<RawSecret>,
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedCredential {
    pub url: Spanned<String>,
    pub external_credential: Spanned<String>,
    #[serde(default = "yes")]
    pub generate_authorization_header: bool,
    pub timeout: Option<RawDuration>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub allow_plain_http: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Oauth2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    ClientCredentials,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::ClientCredentials => "client_credentials",
        }
    }
}

/// Where the client id and secret go in a token request.
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
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(RawDuration).map_err(|e| {
            de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write e.g. \"30s\" or \"500ms\""
            ))
        })
    }
}
