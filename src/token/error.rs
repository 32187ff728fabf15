//! What a token request gives: a token, or why there is none.

use std::time::Duration;

use crate::secret::AccessToken;

/// A freshly minted token.
#[derive(Debug)]
pub struct Fetched {
    pub token: AccessToken,
    /// `expires_in`, when the server sent one.
    pub lifetime: Option<Duration>,
}

/// Why no token could be had. Messages carry what the token endpoint said about the
/// failure, never what was sent to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("token endpoint answered HTTP {status}{}", content_hint(.content_type))]
    Status {
        status: u16,
        content_type: Option<String>,
    },
    #[error("token endpoint answered HTTP {status} and asked to retry after {retry_after:?}")]
    RetryLater { status: u16, retry_after: Duration },
    #[error("token endpoint refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        error: String,
        description: Option<String>,
    },
    #[error("token endpoint answer is not a usable token response: {0}")]
    Malformed(String),
}

fn content_hint(content_type: &Option<String>) -> String {
    content_type
        .as_deref()
        .map(|c| format!(" with content type `{c}`"))
        .unwrap_or_default()
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
}
