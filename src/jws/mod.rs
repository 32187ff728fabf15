//! STUB (replaced by the real module on merge).
#![allow(dead_code, unused_variables)]
use crate::secret::Secret;
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
    pub fn as_str(self) -> &'static str {
        "RS256"
    }
}
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SigningKey;
impl SigningKey {
    pub fn from_pem(pem: &[u8], algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        todo!()
    }
    pub fn algorithm(&self) -> Algorithm {
        todo!()
    }
    pub fn description(&self) -> String {
        todo!()
    }
    pub fn fingerprint(&self) -> String {
        todo!()
    }
    pub fn public_jwk(&self, key_id: Option<&str>) -> serde_json::Value {
        todo!()
    }
}
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("x")]
    NoKey,
}
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing failed")]
    Failed,
}
pub struct AssertionClaims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub lifetime: std::time::Duration,
    pub extra: &'a [(String, serde_json::Value)],
}
pub fn assertion(
    key: &SigningKey,
    key_id: Option<&str>,
    claims: &AssertionClaims<'_>,
    now: std::time::SystemTime,
) -> Result<Secret, SignError> {
    todo!()
}
