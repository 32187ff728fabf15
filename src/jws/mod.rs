//! JWS (RFC 7515) signing of JWT assertions (RFC 7523): a PEM private key read once, then
//! short-lived signed assertions for `private_key_jwt` client authentication and the
//! JWT bearer grant.
//!
//! A leaf: it knows nothing of config or of the grants that use it. ring does the
//! cryptography; this module reads the key formats ring does not (SEC1, and the key's type for
//! errors), builds the compact serialisation and hands assertions out as `Secret`s, since an
//! assertion is a credential.

mod der;
mod key;
mod parse;
mod sign;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use ring::rand::SystemRandom;

pub use key::{Algorithm, KeyError, SigningKey};
pub use sign::{AssertionClaims, Header, SignError, assertion, sign_compact};

/// ring's randomness for RSA blinding, ECDSA nonces and `jti`s: created once, as ring advises.
fn rng() -> &'static SystemRandom {
    static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);
    &RNG
}
