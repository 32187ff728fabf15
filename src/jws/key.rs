//! The signing key and its algorithm; `parse` turns PEM text into the ring key pair inside.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _, RsaKeyPair};

use super::{SignError, der, parse, rng};

/// `signing_algorithm` values. Deserialize from "RS256" etc. (serde, exact upper-case names);
/// Default is RS256 (Salesforce's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
pub enum Algorithm {
    #[default]
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
    ];

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
        }
    }

    fn curve(self) -> Option<Curve> {
        match self {
            Algorithm::ES256 => Some(Curve::P256),
            Algorithm::ES384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// The start of the `description()` of every key that can sign with this algorithm.
    fn key_family(self) -> &'static str {
        match self.curve() {
            None => "RSA",
            Some(Curve::P256) => "EC P-256",
            Some(Curve::P384) => "EC P-384",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    pub(super) fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    pub(super) fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => der::OID_P256,
            Curve::P384 => der::OID_P384,
        }
    }

    pub(super) fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }
}

/// Why a key cannot sign. Each message is the end of a sentence about the key file ("the
/// private_key_file /etc/key.pem …") and never contains key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "holds no PEM private key (expected BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"
    )]
    NoKey,
    #[error(
        "is an encrypted private key; callout needs it unencrypted \
         (openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-unencrypted.pem)"
    )]
    Encrypted,
    #[error(
        "is an {key} key, which cannot sign {algorithm}; use an {} key or {}",
        .algorithm.key_family(),
        suggestion(.key)
    )]
    WrongType { key: String, algorithm: Algorithm },
    #[error("{0}")]
    Unsupported(String),
}

/// The `signing_algorithm` values a key described as `key` can sign with.
fn suggestion(key: &str) -> String {
    let mut fits = Algorithm::ALL
        .into_iter()
        .filter(|algorithm| key.starts_with(algorithm.key_family()))
        .map(|algorithm| format!("\"{algorithm}\""));
    let Some(first) = fits.next() else {
        return "another key".to_owned();
    };
    let others: Vec<String> = fits.collect();
    if others.is_empty() {
        format!("signing_algorithm = {first}")
    } else {
        format!("signing_algorithm = {first} (or {})", others.join(", "))
    }
}

/// A private key that can sign with one algorithm. Debug never shows key material.
///
/// Equality and hashing use the algorithm and the SHA-256 of the public key, so a
/// `SigningKey` can be part of a token cache key: a changed key is a different key, while
/// the same key in PKCS#1 and PKCS#8 form is the same key.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    inner: Arc<Inner>,
}

struct Inner {
    pair: Pair,
    /// SHA-256 of the SubjectPublicKeyInfo DER, the same bytes as
    /// `openssl pkey -pubout -outform DER`, so a fingerprint can be checked with openssl.
    spki_sha256: [u8; 32],
}

pub(super) enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, Curve),
}

impl SigningKey {
    /// Parses a PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1
    /// ("EC PRIVATE KEY"). The first private key in the text is used; certificates around it
    /// are ignored.
    pub fn from_pem(pem: &[u8], algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        // The key is read for what it is before it is matched with the algorithm, so that an
        // unusable key is reported as such rather than as the wrong type.
        let pair = parse::key_pair(pem)?;
        let fits = match &pair {
            Pair::Rsa(_) => algorithm.curve().is_none(),
            Pair::Ec(_, curve) => algorithm.curve() == Some(*curve),
        };
        let spki_sha256 = spki_sha256(&pair);
        let key = SigningKey {
            algorithm,
            inner: Arc::new(Inner { pair, spki_sha256 }),
        };
        if !fits {
            return Err(KeyError::WrongType {
                key: key.description(),
                algorithm,
            });
        }
        Ok(key)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// What kind of key, for `callout check`: "RSA 2048-bit", "EC P-256", "EC P-384".
    pub fn description(&self) -> String {
        match &self.inner.pair {
            Pair::Rsa(pair) => format!("RSA {}-bit", pair.public().modulus_len() * 8),
            Pair::Ec(_, curve) => format!("EC {}", curve.name()),
        }
    }

    /// "sha256:" and the first 8 bytes, in hex, of the SHA-256 of the SubjectPublicKeyInfo
    /// DER: `openssl pkey -in key.pem -pubout -outform DER | openssl dgst -sha256` starts
    /// with the same 16 digits.
    pub fn fingerprint(&self) -> String {
        let mut out = String::from("sha256:");
        for byte in &self.inner.spki_sha256[..8] {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// The raw signature of `signing_input`: RSASSA-PKCS1-v1_5, RSASSA-PSS with SHA-256 and
    /// a 32-byte salt, or ECDSA in the JWS fixed r||s form.
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.inner.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.algorithm {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::ES256 | Algorithm::ES384 => return Err(SignError::Failed),
                };
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, rng(), signing_input, &mut out)
                    .map_err(|_| SignError::Failed)?;
                Ok(out)
            }
            Pair::Ec(pair, _) => pair
                .sign(rng(), signing_input)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignError::Failed),
        }
    }

    /// The length of `sign`'s output, to size the compact serialisation once.
    pub(super) fn signature_len(&self) -> usize {
        match &self.inner.pair {
            Pair::Rsa(pair) => pair.public().modulus_len(),
            Pair::Ec(_, Curve::P256) => 64,
            Pair::Ec(_, Curve::P384) => 96,
        }
    }

    /// ring's public key bytes: for RSA a PKCS#1 RSAPublicKey DER, for EC the uncompressed
    /// point.
    pub fn public_key_der(&self) -> Vec<u8> {
        match &self.inner.pair {
            Pair::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ec(pair, _) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// The public key as a JWK (RFC 7517) object, with `alg`, `use` "sig" and `kid` when
    /// given.
    pub fn public_jwk(&self, key_id: Option<&str>) -> serde_json::Value {
        let b64 = |bytes: &[u8]| serde_json::Value::from(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = serde_json::Map::new();
        match &self.inner.pair {
            Pair::Rsa(pair) => {
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64(&parts.n));
                jwk.insert("e".into(), b64(&parts.e));
            }
            Pair::Ec(pair, curve) => {
                // ring's point is 0x04 || x || y with both coordinates of the curve's size.
                let point = &pair.public_key().as_ref()[1..];
                let (x, y) = point.split_at(point.len() / 2);
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), curve.name().into());
                jwk.insert("x".into(), b64(x));
                jwk.insert("y".into(), b64(y));
            }
        }
        jwk.insert("alg".into(), self.algorithm.as_str().into());
        jwk.insert("use".into(), "sig".into());
        if let Some(kid) = key_id {
            jwk.insert("kid".into(), kid.into());
        }
        serde_json::Value::Object(jwk)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key", &self.description())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.inner.spki_sha256 == other.inner.spki_sha256
    }
}

impl Eq for SigningKey {}

impl std::hash::Hash for SigningKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.algorithm.hash(state);
        self.inner.spki_sha256.hash(state);
    }
}

/// SHA-256 of the SubjectPublicKeyInfo DER of `pair`'s public key.
fn spki_sha256(pair: &Pair) -> [u8; 32] {
    let (algorithm, public_key) = match pair {
        Pair::Rsa(pair) => (
            der::tlv(
                der::SEQUENCE,
                &[&der::tlv(der::OID, &[der::OID_RSA_ENCRYPTION]), &[der::NULL, 0]],
            ),
            pair.public_key().as_ref(),
        ),
        Pair::Ec(pair, curve) => (
            der::tlv(
                der::SEQUENCE,
                &[
                    &der::tlv(der::OID, &[der::OID_EC_PUBLIC_KEY]),
                    &der::tlv(der::OID, &[curve.oid()]),
                ],
            ),
            pair.public_key().as_ref(),
        ),
    };
    let spki = der::tlv(
        der::SEQUENCE,
        &[&algorithm, &der::tlv(der::BIT_STRING, &[&[0], public_key])],
    );
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
    out
}
