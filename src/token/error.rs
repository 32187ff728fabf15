//! What a token request gives: a token, or why there is none.
//!
//! A `TokenError` says two things. Its `Display` is what callers see (in a 502's `detail`):
//! our own words, the token endpoint's HTTP status and its RFC 6749 §5.2 `error` code,
//! never any text of the answer. `detail_for_operators` adds that text (`error_description`,
//! the content type) for the log and `/.callout/credentials`, once `sanitize` has taken
//! every secret and token out of it.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use super::redact;
use crate::secret::AccessToken;

/// A freshly minted token.
#[derive(Debug)]
pub struct Fetched {
    pub token: AccessToken,
    /// `expires_in`, when the server sent one.
    pub lifetime: Option<Duration>,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The connector's account (hyper, rustls, the OS), with nothing of the peer's bytes.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// An error status without an RFC 6749 §5.2 body.
    #[error("token endpoint answered HTTP {status}")]
    Status {
        status: u16,
        content_type: Option<IdpText>,
    },
    #[error("token endpoint answered HTTP {status} and asked to retry after {retry_after:?}")]
    RetryLater { status: u16, retry_after: Duration },
    /// An RFC 6749 §5.2 error. `error` has passed `redact::error_code`.
    #[error("token endpoint answered HTTP {status}: {error}")]
    OAuth {
        status: u16,
        error: String,
        description: Option<IdpText>,
    },
    /// A success status whose content type says the body is not JSON (a login page).
    #[error("token endpoint answered HTTP {status} with a body that is not JSON")]
    NotJson {
        status: u16,
        content_type: Option<IdpText>,
    },
    /// What is wrong with a success answer, in our own words only (and positions): never a
    /// value from it, since `token_type` or `expires_in` could hold anything, the token too.
    #[error("token endpoint answer is not a usable token response: {0}")]
    Malformed(String),
}

impl TokenError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, TokenError::Timeout(_))
    }

    /// How long the token endpoint asked us to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::RetryLater { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Takes `secrets` (and their encoded forms) out of the token endpoint's text. An
    /// `error` code that holds one is no code: it becomes `invalid_response`, since callers
    /// see it.
    pub fn sanitize(&mut self, secrets: &[&str]) {
        match self {
            TokenError::OAuth {
                error, description, ..
            } => {
                if redact::sanitize(error, secrets) != *error {
                    *error = redact::INVALID_RESPONSE.to_owned();
                }
                if let Some(d) = description {
                    d.sanitize(secrets);
                }
            }
            TokenError::Status { content_type, .. } | TokenError::NotJson { content_type, .. } => {
                if let Some(c) = content_type {
                    c.sanitize(secrets);
                }
            }
            TokenError::Unreachable(_)
            | TokenError::Timeout(_)
            | TokenError::RetryLater { .. }
            | TokenError::Malformed(_) => {}
        }
    }

    /// What the log and `/.callout/credentials` show: what callers see, and the token
    /// endpoint's own text as `sanitize` left it.
    pub fn detail_for_operators(&self) -> String {
        let mut out = self.to_string();
        match self {
            TokenError::OAuth {
                description: Some(d), ..
            } if !d.is_empty() => {
                out.push_str(&format!(" ({d})"));
            }
            TokenError::Status {
                content_type: Some(c),
                ..
            }
            | TokenError::NotJson {
                content_type: Some(c),
                ..
            } if !c.is_empty() => {
                out.push_str(&format!(", content type `{c}`"));
            }
            _ => {}
        }
        out
    }
}

/// Text of the token endpoint's answer that only operators may see, and only sanitised.
///
/// Sanitising needs what callout holds (every configured secret, every current token),
/// which the code that reads the answer does not have: the token cache does, and every
/// token request ends there (`TokenSlot::fetch`). Until then the text is kept wiped on drop
/// and shown by nothing; `Display` and `Debug` show the sanitised text, or a placeholder.
#[derive(Clone)]
pub struct IdpText(Text);

#[derive(Clone)]
enum Text {
    Raw(Zeroizing<String>),
    Sanitized(String),
}

impl IdpText {
    pub fn new(raw: impl Into<String>) -> IdpText {
        IdpText(Text::Raw(Zeroizing::new(raw.into())))
    }

    pub fn sanitize(&mut self, secrets: &[&str]) {
        if let Text::Raw(raw) = &self.0 {
            self.0 = Text::Sanitized(redact::sanitize(raw, secrets));
        }
    }

    /// The sanitised text; `None` until `sanitize` ran.
    pub fn sanitized(&self) -> Option<&str> {
        match &self.0 {
            Text::Raw(_) => None,
            Text::Sanitized(s) => Some(s),
        }
    }

    fn is_empty(&self) -> bool {
        self.sanitized().is_some_and(str::is_empty)
    }
}

impl fmt::Display for IdpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sanitized().unwrap_or("[not sanitised]"))
    }
}

impl fmt::Debug for IdpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdpText({:?})", self.sanitized().unwrap_or("[not sanitised]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(error: &str, description: &str) -> TokenError {
        TokenError::OAuth {
            status: 401,
            error: redact::error_code(error).to_owned(),
            description: Some(IdpText::new(description)),
        }
    }

    #[test]
    fn callers_see_the_status_and_the_code_only() {
        let mut err = oauth("invalid_client", "secret hunter2x is wrong");
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 401: invalid_client"
        );
        assert!(!format!("{err:?}").contains("hunter2x"), "{err:?}");
        assert!(err.detail_for_operators().contains("[not sanitised]"));
        err.sanitize(&["hunter2x"]);
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 401: invalid_client"
        );
        assert_eq!(
            err.detail_for_operators(),
            "token endpoint answered HTTP 401: invalid_client (secret [redacted] is wrong)"
        );
        assert!(!format!("{err:?}").contains("hunter2x"), "{err:?}");
    }

    #[test]
    fn an_error_code_that_holds_a_secret_is_no_code() {
        let mut err = oauth("hunter2x_wrong", "");
        err.sanitize(&["hunter2x"]);
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 401: invalid_response"
        );
        assert_eq!(
            err.detail_for_operators(),
            err.to_string(),
            "an empty description is left out"
        );
    }

    #[test]
    fn content_types_are_for_operators() {
        let mut err = TokenError::Status {
            status: 500,
            content_type: Some(IdpText::new("text/html; a=\u{1}hunter2x")),
        };
        err.sanitize(&["hunter2x"]);
        assert_eq!(err.to_string(), "token endpoint answered HTTP 500");
        assert_eq!(
            err.detail_for_operators(),
            "token endpoint answered HTTP 500, content type `text/html; a=?[redacted]`"
        );
    }
}
