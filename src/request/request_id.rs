//! Request ids: the caller's `x-request-id` when it is usable, else a new one, so that one
//! request can be followed from the caller's log through callout's to the upstream's.

use std::hash::BuildHasher;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// 64 random bits per process, so that ids from replicas and restarts do not collide.
static PREFIX: LazyLock<u64> =
    LazyLock::new(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()));
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The request's id: the caller's when it is 1 to 128 visible ASCII characters (and only
/// one was sent), otherwise a fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(REQUEST_ID).iter();
    if let (Some(value), None) = (sent.next(), sent.next())
        && (1..=128).contains(&value.len())
        && value.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return value.clone();
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // By hand rather than `format!`: this runs for most requests, and the formatting
    // machinery costs ten times as much.
    let mut id = [0u8; 24];
    let digits = (u128::from(*PREFIX) << 32) | u128::from(n as u32);
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[((digits >> (4 * (23 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    #[test]
    fn keeps_a_good_caller_id_and_replaces_a_bad_one() {
        assert_eq!(request_id(&with(&[b"abc-123"])), "abc-123");
        let long = [b'x'; 129];
        for bad in [&[][..], b"has space", b"tab\there", &long[..], "é".as_bytes()] {
            let id = request_id(&with(&[bad]));
            assert_eq!(id.len(), 24, "{bad:?}");
            assert_ne!(id.as_bytes(), bad);
        }
        assert_eq!(
            request_id(&with(&[b"a", b"b"])).len(),
            24,
            "two ids: neither is the one"
        );
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b);
    }
}
