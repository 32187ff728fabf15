//! Tests of the jws module against RFC 7515's examples and the keys in tests/fixtures/keys.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use super::{Algorithm, SigningKey};

/// A fixture's bytes, compiled in so that the tests do not depend on the working directory.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keys/",
            $name
        ))
        .as_slice()
    };
}

mod key;
mod sign;

fn key(pem: &[u8], algorithm: Algorithm) -> SigningKey {
    match SigningKey::from_pem(pem, algorithm) {
        Ok(key) => key,
        Err(error) => panic!("{algorithm}: {error}"),
    }
}

/// ring's verifier for what `algorithm` signs, independent of the signing code.
fn verifier(algorithm: Algorithm) -> &'static dyn VerificationAlgorithm {
    match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
    }
}

fn verifies(key: &SigningKey, message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(verifier(key.algorithm()), key.public_key_der())
        .verify(message, signature)
        .is_ok()
}
