//! Secret values: client secrets, caller tokens and access tokens.
//!
//! Each is a newtype whose `Debug` prints `[redacted]`, with no `Display` and no `Serialize`,
//! so a secret cannot reach a log line, an error message or a metric by accident: the only
//! way to the bytes is an explicit `expose()`. The memory is wiped on drop.

use std::fmt;

use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(Zeroizing::new(value.into()))
            }

            /// The secret itself.
            ///
            /// # Security warning
            /// Only for the one place that must send it over the wire; never log or format it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.as_str().hash(state)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// A client secret (or any configured secret value) as loaded from config, env or file.
    Secret
);
secret_type!(
    /// An OAuth 2.0 access token.
    AccessToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("top_secret");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        let token = AccessToken::new("tok");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(token.expose(), "tok");
    }
}
