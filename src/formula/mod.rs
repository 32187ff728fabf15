//! Salesforce-style formulas in header values, scopes and JWT claims: text with `{!...}`
//! parts, parsed once at config load and rendered per request.
//!
//! A leaf: it knows nothing of config, credentials or requests. Config parses each value with
//! [`Formula::parse`] and checks the merge fields it names ([`Formula::fields`]); the request
//! path supplies their values through [`Fields`] and calls [`Formula::render`].
//!
//! The grammar (whitespace between tokens inside `{!...}` is insignificant):
//!
//! ```text
//! value   = { text | "{!" expr "}" } ;       text: anything; only "{!" opens a formula
//! expr    = term { ( "&" | "+" ) term } ;     both concatenate
//! term    = string | field | call | "(" expr ")" ;
//! string  = '"' { char | '\"' | '\\' } '"' ;   "}" and "{!" inside are text
//! field   = "$" segment { "." segment } ;     one token, no whitespace inside
//! call    = name "(" [ expr { "," expr } ] ")" ;
//! name    = ( letter | "_" ) { letter | digit | "_" } ;
//! segment = ( letter | digit | "_" ) { letter | digit | "_" } ;
//! ```
//!
//! Fields are `$Credential.EC.PARAM`, `$Credential.OAuthToken`,
//! `$Credential.AuthorizationHeaderValue`, `$Credential.Username`, `$Credential.Password` and
//! `$User.FIELD`; functions `BASE64ENCODE`, `BASE64DECODE` (padded or unpadded),
//! `HMAC(alg, value, key)`, `HASH(alg, value)` (alg a string literal), `HEX`, `TEXT` and
//! `UNIXTIME()`. Function names, `$Credential`, `$User`, the four built-in credential fields
//! and algorithm names match in any case. Values are bytes inside; each `{!...}` part must
//! give UTF-8 text, and one whose value is a raw `HMAC` or `HASH` is refused at parse.
//!
//! Everything that does not depend on the request is computed at parse time: a value without
//! merge fields or `UNIXTIME()` renders without work or allocation, and errors in constant
//! parts (`BASE64DECODE("not base64")`) are config errors, not request errors.
//!
//! What it deliberately does not do: check header safety while rendering (a value holding CR
//! or LF renders; the request path refuses it with [`is_header_safe`]), or show values in any
//! error or `Debug` output: errors name fields and functions, never what they held.

mod eval;
mod names;
mod parse;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use eval::Part;

/// A parsed value: literal text and formula parts.
///
/// `Debug` shows the literal text and the parsed tree: both come from config, never from a
/// merge field's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Formula {
    body: Body,
    /// Each merge field once, in order of first use, so config can check them at load.
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Body {
    /// Nothing varies per request: the value itself, computed at parse time.
    Constant(String),
    /// Text and formula parts, at least one of which varies per request.
    Parts(Vec<Part>),
}

/// A merge field: a value supplied at request time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// `$Credential.EC_NAME.PARAM`: a principal parameter of an external credential.
    Parameter {
        external_credential: String,
        name: String,
    },
    /// `$Credential.OAuthToken`: the access token alone.
    OAuthToken,
    /// `$Credential.AuthorizationHeaderValue`: the whole `Authorization` value, scheme included.
    AuthorizationHeaderValue,
    /// `$Credential.Username`.
    Username,
    /// `$Credential.Password`.
    Password,
    /// `$User.FIELD`, with FIELD as written in the formula (matching is the caller's business).
    User(String),
}

/// Where merge field values come from at request time.
pub trait Fields {
    /// The value of `field`, or `None` when it has none (an error at render).
    fn get(&self, field: &Field) -> Option<Cow<'_, str>>;
}

/// A formula that does not parse: where in the text, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormulaError {
    /// Byte offset inside the parsed text, always on a character boundary.
    pub offset: usize,
    pub message: String,
}

/// A formula that parsed but cannot be rendered with these field values.
///
/// Messages name the field or the function, never a value: values may be secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no value for `{0}`")]
    MissingField(Field),
    /// Which function (`TEXT`) or `{!...}` when a formula part as a whole is not text.
    #[error("`{0}` gave bytes that are not UTF-8 text")]
    NotUtf8(&'static str),
    #[error("`BASE64DECODE` was given text that is not base64")]
    BadBase64,
    #[error("`UNIXTIME()` has no value: the clock is before 1970")]
    ClockBeforeEpoch,
}

// === impl Formula ===

impl Formula {
    /// Parses `text`. Errors carry the byte offset inside `text` where the problem is, and a
    /// message.
    pub fn parse(text: &str) -> Result<Formula, FormulaError> {
        let parse::Parsed { mut parts, fields } = parse::parse(text)?;
        let body = match parts.as_mut_slice() {
            [] => Body::Constant(String::new()),
            [Part::Text(text)] => Body::Constant(std::mem::take(text)),
            _ => Body::Parts(parts),
        };
        Ok(Formula { body, fields })
    }

    /// The value, when nothing in it varies per request (no merge field, no `UNIXTIME()`):
    /// plain text, or formulas over literals only such as `{!"a" & "b"}`.
    pub fn constant(&self) -> Option<&str> {
        match &self.body {
            Body::Constant(text) => Some(text),
            Body::Parts(_) => None,
        }
    }

    /// The merge fields it uses, each once, so config can check them at load.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter()
    }

    /// Whether its value depends on a secret (any `$Credential` field): such values are
    /// redacted in logs and in `callout check`.
    pub fn holds_secret(&self) -> bool {
        self.fields.iter().any(|field| !matches!(field, Field::User(_)))
    }

    /// Whether it uses `$User` fields.
    pub fn uses_user(&self) -> bool {
        self.fields.iter().any(|field| matches!(field, Field::User(_)))
    }

    /// Evaluates with `fields` supplying merge field values and `now` for `UNIXTIME()`.
    /// A constant value is borrowed: no work and no allocation.
    pub fn render(&self, fields: &dyn Fields, now: SystemTime) -> Result<Cow<'_, str>, EvalError> {
        match &self.body {
            Body::Constant(text) => Ok(Cow::Borrowed(text)),
            Body::Parts(parts) => eval::render(parts, fields, now).map(Cow::Owned),
        }
    }
}

// === impl Field ===

/// The field as a formula names it: `$Credential.Api.key`, `$User.Department`.
impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Parameter {
                external_credential,
                name,
            } => {
                write!(f, "$Credential.{external_credential}.{name}")
            }
            Field::OAuthToken => f.write_str("$Credential.OAuthToken"),
            Field::AuthorizationHeaderValue => f.write_str("$Credential.AuthorizationHeaderValue"),
            Field::Username => f.write_str("$Credential.Username"),
            Field::Password => f.write_str("$Credential.Password"),
            Field::User(name) => write!(f, "$User.{name}"),
        }
    }
}

/// Whether `value` may go out as an HTTP header value: false when it holds CR, LF, NUL or any
/// other control character except tab (Unicode category Cc, so C1 controls too).
///
/// Rendering does not check this, so that the request path can tell the caller why
/// (400 `bad_header_value`) instead of a value being altered or dropped silently.
pub fn is_header_safe(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || !c.is_control())
}
