//! AWS Signature Version 4 in the header form: signs an outgoing request for an AWS service
//! (or any service speaking SigV4) with an access key, for `protocol = "aws_sigv4"`.
//!
//! `sign` is what the request path calls; the pieces it is made of (`canonical_request`,
//! `string_to_sign`, `signature`, `authorization`) are public for tests and debugging.
//! A leaf module: it uses nothing of the crate but `secret`, so config and auth can both
//! import it.
//!
//! What is signed is what goes on the wire: the path and query as sent, `host` as the
//! Host header or, without one (HTTP/2), the authority callout sends as `:authority`.

mod canonical;
mod sign;
mod time;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::secret::Secret;

pub use canonical::{
    Parts, PathRules, canonical_headers, canonical_query, canonical_request, canonical_uri, signed_headers,
    trim_all,
};
pub use sign::{ALGORITHM, authorization, credential_scope, sha256_hex, signature, string_to_sign};
pub use time::amz_datetime;

/// The payload hash of a body that is not signed (S3 only).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

/// An AWS access key, with the session token of temporary credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// What is signed about the body.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    /// S3 only: the body streams and is not signed.
    Unsigned,
}

/// Where a signature is valid: the `REGION/SERVICE` of the credential scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    /// The signing name (`s3`, `execute-api`, `sts`, ...); `s3` selects S3's URI rules.
    pub service: &'a str,
}

/// Why a request cannot be signed. No variant holds a header value: one may be a secret.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("header `{name}` has a value that is not visible ASCII, so it cannot be signed")]
    HeaderValue { name: String },
    #[error("header `{name}` is to be signed but the request has none")]
    MissingHeader { name: String },
    #[error("the request has neither a Host header nor an authority to sign as `host`")]
    NoHost,
    #[error("the session token is not a valid header value")]
    SessionToken,
    #[error("the access key id, region or service cannot go in an Authorization header")]
    Credential,
}

/// Signs a request in place: adds `x-amz-date`, `x-amz-content-sha256` (always; the hex
/// SHA-256 of the payload or `UNSIGNED-PAYLOAD`), `x-amz-security-token` when there is a
/// session token (signed), and `Authorization: AWS4-HMAC-SHA256
/// Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...`
/// (marked sensitive). Signs `host` (taken from `uri`'s authority when `headers` has no
/// Host — HTTP/2 has none: callout passes the upstream's authority), every `x-amz-*`
/// header, `content-type` and `content-md5` when present; SignedHeaders sorted. Existing
/// `authorization`/`x-amz-date`/`x-amz-security-token`/`x-amz-content-sha256` headers are
/// replaced (a caller's `x-amz-security-token` is dropped when there is no session token).
///
/// On an error `headers` has no Authorization and the request must not be sent.
pub fn sign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    payload: Payload<'_>,
    credentials: &Credentials,
    scope: &Scope<'_>,
    now: SystemTime,
) -> Result<(), SignError> {
    // Never send a caller's signature or token along with ours.
    for name in [
        AUTHORIZATION,
        X_AMZ_DATE,
        X_AMZ_CONTENT_SHA256,
        X_AMZ_SECURITY_TOKEN,
    ] {
        headers.remove(name);
    }
    let host = match headers.contains_key(HOST) {
        true => None,
        // Userinfo is never sent in `:authority`, so it is not signed either.
        false => match uri.authority() {
            Some(authority) => Some(authority.as_str().rsplit('@').next().unwrap_or_default()),
            None => return Err(SignError::NoHost),
        },
    };

    let datetime = amz_datetime(now);
    let payload_hash = match payload {
        Payload::Bytes(bytes) => sha256_hex(bytes),
        Payload::Unsigned => UNSIGNED_PAYLOAD.to_owned(),
    };
    headers.insert(
        X_AMZ_DATE,
        HeaderValue::from_str(&datetime).expect("digits and letters"),
    );
    headers.insert(
        X_AMZ_CONTENT_SHA256,
        HeaderValue::from_str(&payload_hash).expect("hex or a name"),
    );
    if let Some(token) = &credentials.session_token {
        let mut value = HeaderValue::from_str(token.expose()).map_err(|_| SignError::SessionToken)?;
        value.set_sensitive(true);
        headers.insert(X_AMZ_SECURITY_TOKEN, value);
    }

    let mut signed = vec!["host"];
    signed.extend(
        headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("x-amz-") || *name == CONTENT_TYPE || *name == CONTENT_MD5),
    );
    let parts = Parts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers,
        host,
        signed: &signed,
        payload_hash: &payload_hash,
        rules: PathRules::for_service(scope.service),
    };
    let canonical = canonical_request(&parts)?;
    let date = &datetime[..8];
    let credential_scope = credential_scope(date, scope.region, scope.service);
    let string_to_sign = string_to_sign(&datetime, &credential_scope, &canonical);
    let signature = signature(
        credentials.secret_access_key.expose(),
        date,
        scope.region,
        scope.service,
        &string_to_sign,
    );
    let value = authorization(
        &credentials.access_key_id,
        &credential_scope,
        &signed_headers(&signed),
        &signature,
    );
    let mut value = HeaderValue::from_str(&value).map_err(|_| SignError::Credential)?;
    value.set_sensitive(true);
    headers.insert(AUTHORIZATION, value);
    Ok(())
}
