use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{key, verifies};
use crate::jws::{Algorithm, AssertionClaims, Header, SignError, SigningKey, assertion, sign_compact};
use crate::secret::Secret;

const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

/// The header and claims of a compact JWS, after checking that its signature verifies.
fn open(key: &SigningKey, jws: &Secret) -> (Value, Value) {
    let jws = jws.expose();
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "{jws}");
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
    let (signing_input, _) = jws.rsplit_once('.').unwrap();
    assert!(verifies(key, signing_input.as_bytes(), &decode(parts[2])));
    let json = |part: &str| serde_json::from_slice::<Value>(&decode(part)).unwrap();
    (json(parts[0]), json(parts[1]))
}

fn claims<'a>(extra: &'a [(String, Value)]) -> AssertionClaims<'a> {
    AssertionClaims {
        issuer: "client-id",
        subject: "user@example.com",
        audience: "https://login.example.com",
        lifetime: Duration::from_secs(180),
        extra,
    }
}

#[test]
fn assertion_has_the_rfc7523_claims_and_verifies() {
    let extra = [
        ("scope".to_owned(), json!("api refresh_token")),
        ("tenant".to_owned(), json!({"id": 7})),
        // Set by `assertion` itself; config refuses these names, and here they are ignored.
        ("iss".to_owned(), json!("someone else")),
        ("exp".to_owned(), json!(1)),
    ];
    for (pem, algorithm) in [
        (fixture!("rsa-2048-pkcs1.pem"), Algorithm::RS256),
        (fixture!("rsa-2048-pkcs8.pem"), Algorithm::RS384),
        (fixture!("rsa-2048-pkcs8.pem"), Algorithm::RS512),
        (fixture!("rsa-2048-pkcs1.pem"), Algorithm::PS256),
        (fixture!("ec-p256-sec1.pem"), Algorithm::ES256),
        (fixture!("ec-p384-sec1.pem"), Algorithm::ES384),
    ] {
        let key = key(pem, algorithm);
        let jws = assertion(&key, &kid("key-1"), &claims(&extra), now()).unwrap();
        let (header, body) = open(&key, &jws);
        assert_eq!(
            header,
            json!({"alg": algorithm.as_str(), "typ": "JWT", "kid": "key-1"})
        );
        assert_eq!(body["iss"], "client-id");
        assert_eq!(body["sub"], "user@example.com");
        assert_eq!(body["aud"], "https://login.example.com");
        assert_eq!(body["iat"], NOW);
        assert_eq!(body["nbf"], NOW);
        assert_eq!(body["exp"], NOW + 180);
        assert_eq!(body["scope"], "api refresh_token");
        assert_eq!(body["tenant"], json!({"id": 7}));
        assert_eq!(body.as_object().unwrap().len(), 9, "{body}");
    }
}

#[test]
fn jti_is_128_random_bits() {
    let key = key(fixture!("ec-p256-pkcs8.pem"), Algorithm::ES256);
    let jti = |jws: &Secret| open(&key, jws).1["jti"].as_str().unwrap().to_owned();
    let first = jti(&assertion(&key, &Header::default(), &claims(&[]), now()).unwrap());
    let second = jti(&assertion(&key, &Header::default(), &claims(&[]), now()).unwrap());
    assert_ne!(first, second);
    assert_eq!(first.len(), 22);
    assert_eq!(URL_SAFE_NO_PAD.decode(&first).unwrap().len(), 16);
}

#[test]
fn lifetime_is_whole_seconds() {
    let key = key(fixture!("ec-p256-sec1.pem"), Algorithm::ES256);
    let mut claims = claims(&[]);
    claims.lifetime = Duration::from_millis(90_900);
    let now = now() + Duration::from_millis(999);
    let (_, body) = open(&key, &assertion(&key, &Header::default(), &claims, now).unwrap());
    assert_eq!(
        (body["iat"].as_u64(), body["exp"].as_u64()),
        (Some(NOW), Some(NOW + 90))
    );
}

#[test]
fn sign_compact_signs_the_claims_as_given() {
    let key = key(fixture!("rfc7515-a2.pem"), Algorithm::RS256);
    let claims = json!({"iss": "joe", "exp": 1300819380, "http://example.com/is_root": true});
    let jws = sign_compact(&key, &Header::default(), claims.as_object().unwrap()).unwrap();
    let (header, body) = open(&key, &jws);
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
    assert_eq!(body, claims);
    // PKCS#1 v1.5 is deterministic: the same claims give the same JWS.
    let again = sign_compact(&key, &Header::default(), claims.as_object().unwrap()).unwrap();
    assert_eq!(jws, again);
    assert!(!jws.expose().contains('='), "no padding");
}

#[test]
fn assertions_are_redacted_secrets() {
    let key = key(fixture!("ec-p256-sec1.pem"), Algorithm::ES256);
    let jws = assertion(&key, &kid("kid"), &claims(&[]), now()).unwrap();
    assert_eq!(format!("{jws:?}"), "Secret([redacted])");
    assert!(jws.expose().starts_with("eyJ"));
}

#[test]
fn a_clock_before_1970_cannot_sign() {
    let key = key(fixture!("ec-p256-sec1.pem"), Algorithm::ES256);
    let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
    let result = assertion(&key, &Header::default(), &claims(&[]), before);
    assert!(matches!(result, Err(SignError::Failed)));
    assert_eq!(SignError::Failed.to_string(), "signing failed");
}

fn kid(key_id: &str) -> Header<'_> {
    Header {
        key_id: Some(key_id),
        ..Header::default()
    }
}

#[test]
fn certificate_thumbprints_go_in_the_header() {
    let key = key(fixture!("rsa-2048-pkcs1.pem"), Algorithm::RS256);
    let header = Header {
        key_id: None,
        x5t: Some("sha1-thumb"),
        x5t_s256: Some("sha256-thumb"),
    };
    let (fields, _) = open(&key, &assertion(&key, &header, &claims(&[]), now()).unwrap());
    assert_eq!(fields["x5t"], "sha1-thumb");
    assert_eq!(fields["x5t#S256"], "sha256-thumb");
    assert!(fields.get("kid").is_none());
}
