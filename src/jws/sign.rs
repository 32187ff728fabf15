//! The compact serialisation and the claims of an RFC 7523 assertion.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{SigningKey, rng};
use crate::secret::Secret;

/// Why a signature could not be made. ring gives no reason, and none would help a user.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing failed")]
    Failed,
}

/// The claims of one RFC 7523 assertion.
#[derive(Debug, Clone, Copy)]
pub struct AssertionClaims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub lifetime: Duration,
    /// Extra body claims (`jwt_claims`); names among iss, sub, aud, exp, nbf, iat, jti are
    /// ignored here (config refuses them).
    pub extra: &'a [(String, Value)],
}

/// What the JWS header carries besides `alg` and `typ`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header<'a> {
    /// `kid`: which of the client's registered keys signed.
    pub key_id: Option<&'a str>,
    /// `x5t` and `x5t#S256` (RFC 7515 §4.1.7-8): the thumbprints of the certificate the
    /// key belongs to, which servers such as Entra ID find the key by.
    pub x5t: Option<&'a str>,
    pub x5t_s256: Option<&'a str>,
}

/// The claims `assertion` sets itself.
const RESERVED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Header {"alg","typ":"JWT","kid"?,"x5t"?,"x5t#S256"?} . claims . signature, base64url
/// without padding.
pub fn sign_compact(
    key: &SigningKey,
    header: &Header<'_>,
    claims: &Map<String, Value>,
) -> Result<Secret, SignError> {
    let mut fields = Map::new();
    fields.insert("alg".into(), key.algorithm().as_str().into());
    fields.insert("typ".into(), "JWT".into());
    let optional = [
        ("kid", header.key_id),
        ("x5t", header.x5t),
        ("x5t#S256", header.x5t_s256),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.insert(name.into(), value.into());
        }
    }
    let header = serde_json::to_vec(&fields).map_err(|_| SignError::Failed)?;
    let claims = Zeroizing::new(serde_json::to_vec(claims).map_err(|_| SignError::Failed)?);

    // Sized once, so that growing it leaves no copy of the credential in freed memory.
    let len = [header.len(), claims.len(), key.signature_len()]
        .into_iter()
        .map(|n| base64::encoded_len(n, false))
        .try_fold(2usize, |sum, n| sum.checked_add(n?))
        .ok_or(SignError::Failed)?;
    let mut out = Zeroizing::new(String::with_capacity(len));
    URL_SAFE_NO_PAD.encode_string(&header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&*claims, &mut out);
    let signature = Zeroizing::new(key.sign(out.as_bytes())?);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&*signature, &mut out);
    Ok(Secret::new(std::mem::take(&mut *out)))
}

/// A fresh assertion: iss, sub, aud, iat = now, nbf = now, exp = now + lifetime (whole seconds
/// since the epoch), jti = 128 random bits as 22 base64url characters, plus `extra`.
/// Returned as a Secret: an assertion is a credential and must never be logged.
pub fn assertion(
    key: &SigningKey,
    header: &Header<'_>,
    claims: &AssertionClaims<'_>,
    now: SystemTime,
) -> Result<Secret, SignError> {
    // A clock before 1970 cannot make an assertion any server accepts.
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| SignError::Failed)?
        .as_secs();
    let mut jti = [0u8; 16];
    rng().fill(&mut jti).map_err(|_| SignError::Failed)?;

    let mut body = Map::new();
    for (name, value) in claims.extra {
        if !RESERVED.contains(&name.as_str()) {
            body.insert(name.clone(), value.clone());
        }
    }
    body.insert("iss".into(), claims.issuer.into());
    body.insert("sub".into(), claims.subject.into());
    body.insert("aud".into(), claims.audience.into());
    body.insert("iat".into(), now.into());
    body.insert("nbf".into(), now.into());
    body.insert("exp".into(), now.saturating_add(claims.lifetime.as_secs()).into());
    body.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
    sign_compact(key, header, &body)
}
