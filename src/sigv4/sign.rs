//! From the canonical request to the `Authorization` value: string to sign, signing key,
//! signature.

use ring::{digest, hmac};

/// The one algorithm callout signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// `DATE/REGION/SERVICE/aws4_request`: what a signature is valid for. `date` is the
/// `YYYYMMDD` part of the request's `x-amz-date`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// `AWS4-HMAC-SHA256\nDATETIME\nSCOPE\nhex(SHA-256(canonical request))`.
pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{datetime}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `string_to_sign` with the key derived from `secret` for
/// `date`/`region`/`service` (`date` as `YYYYMMDD`).
pub fn signature(secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let key = signing_key(secret, date, region, service);
    hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
/// The key lasts a day for one region and service; callout derives it per request, which
/// costs four HMACs, far below a request's network time.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    // The seed holds the secret: built, used and dropped here, wiped with it.
    let seed = zeroize::Zeroizing::new(format!("AWS4{secret}"));
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes());
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

/// `AWS4-HMAC-SHA256 Credential=AKID/SCOPE, SignedHeaders=..., Signature=...`.
pub fn authorization(access_key_id: &str, scope: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// Lower-case hex SHA-256, as the payload hash and the string to sign want it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}
