//! `protocol = "basic"`: `Authorization: Basic base64(username:password)` (RFC 7617, UTF-8,
//! never form-encoded).

use base64::Engine as _;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use zeroize::Zeroizing;

use crate::secret::Secret;

/// A principal's Basic credential, encoded once at config load.
#[derive(Clone)]
pub struct Basic {
    /// Marked sensitive, so hyper's HTTP/2 encoder never indexes it.
    header: HeaderValue,
    /// `false` when the value only feeds header formulas
    /// (`generate_authorization_header = false`).
    set_header: bool,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Basic([redacted])")
    }
}

impl Basic {
    pub fn new(username: &Secret, password: &Secret) -> Basic {
        Basic {
            header: basic_authorization(username.expose(), password.expose()),
            set_header: true,
        }
    }

    /// The same credential, with no `Authorization` header set.
    pub fn without_header(&self) -> Basic {
        Basic {
            set_header: false,
            ..self.clone()
        }
    }

    /// `Basic ...`, what `$Credential.AuthorizationHeaderValue` gives.
    pub fn authorization(&self) -> &HeaderValue {
        &self.header
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.set_header {
            headers.insert(AUTHORIZATION, self.header.clone());
        }
    }
}

/// `Basic base64(user:password)`, marked sensitive. Config validation refuses a user name
/// with `:`, which RFC 7617 cannot carry.
pub fn basic_authorization(user: &str, password: &str) -> HeaderValue {
    // The intermediate copies hold the secret too: wipe them when done. (The header value
    // itself is handed to hyper, which owns its memory from then on.)
    let pair = Zeroizing::new(format!("{user}:{password}"));
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("Basic {}", encoded.as_str())))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_utf8_per_rfc_7617() {
        // RFC 7617 §2.1's example, and its UTF-8 example (§2.1, "test" / "123£").
        let h = basic_authorization("Aladdin", "open sesame");
        assert_eq!(h, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_authorization("test", "123\u{a3}"), "Basic dGVzdDoxMjPCow==");
        assert!(h.is_sensitive());
    }

    #[test]
    fn debug_is_redacted() {
        let b = Basic::new(&Secret::new("user"), &Secret::new("hunter2"));
        assert_eq!(format!("{b:?}"), "Basic([redacted])");
    }
}
