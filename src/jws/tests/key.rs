use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls_pki_types::pem::{PemObject, SectionKind};

use super::{key, verifies};
use crate::jws::der::{self, Reader};
use crate::jws::{Algorithm, KeyError, SigningKey};

/// RFC 7515 A.2 and A.3: the JWS Signing Input over the same payload, and the signatures.
const A2_SIGNING_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A2_SIGNATURE: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A3_SIGNING_INPUT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A3_SIGNATURE: &str =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn error(pem: &[u8], algorithm: Algorithm) -> KeyError {
    match SigningKey::from_pem(pem, algorithm) {
        Ok(key) => panic!("{algorithm}: accepted {key:?}"),
        Err(error) => error,
    }
}

#[test]
fn rfc7515_a2_rs256_signature_is_the_rfcs() {
    let key = key(fixture!("rfc7515-a2.pem"), Algorithm::RS256);
    let signature = key.sign(A2_SIGNING_INPUT.as_bytes()).unwrap();
    // RSASSA-PKCS1-v1_5 is deterministic, so this is the RFC's exact signature.
    assert_eq!(URL_SAFE_NO_PAD.encode(signature), A2_SIGNATURE);
    let jwk = key.public_jwk(Some("2011-04-29"));
    assert_eq!(jwk["n"], A2_N);
    assert_eq!(jwk["e"], "AQAB");
}

#[test]
fn rfc7515_a3_es256_signatures_verify_with_the_rfcs_key() {
    let key = key(fixture!("rfc7515-a3.pem"), Algorithm::ES256);
    let jwk = key.public_jwk(None);
    assert_eq!(
        (&jwk["x"], &jwk["y"], &jwk["crv"]),
        (&A3_X.into(), &A3_Y.into(), &"P-256".into())
    );
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key_der());
    // The RFC's own signature verifies, so the public key and the r||s form match the RFC's.
    let rfc = URL_SAFE_NO_PAD.decode(A3_SIGNATURE).unwrap();
    public.verify(A3_SIGNING_INPUT.as_bytes(), &rfc).unwrap();
    let ours = key.sign(A3_SIGNING_INPUT.as_bytes()).unwrap();
    assert_eq!(ours.len(), 64);
    public.verify(A3_SIGNING_INPUT.as_bytes(), &ours).unwrap();
}

#[test]
fn every_algorithm_round_trips_with_every_fixture_format() {
    let rsa = [fixture!("rsa-2048-pkcs1.pem"), fixture!("rsa-2048-pkcs8.pem")];
    let cases = [
        (&rsa[..], Algorithm::RS256, 256),
        (&rsa, Algorithm::RS384, 256),
        (&rsa, Algorithm::RS512, 256),
        (&rsa, Algorithm::PS256, 256),
        (
            &[fixture!("ec-p256-sec1.pem"), fixture!("ec-p256-pkcs8.pem")],
            Algorithm::ES256,
            64,
        ),
        (&[fixture!("ec-p384-sec1.pem")], Algorithm::ES384, 96),
    ];
    let mut covered = HashSet::new();
    for (pems, algorithm, len) in cases {
        for pem in pems {
            let key = key(pem, algorithm);
            let message = format!("signing input for {algorithm}");
            let signature = key.sign(message.as_bytes()).unwrap();
            assert_eq!(signature.len(), len, "{algorithm}");
            assert!(verifies(&key, message.as_bytes(), &signature), "{algorithm}");
            assert!(!verifies(&key, b"another input", &signature), "{algorithm}");
            covered.insert(algorithm);
        }
    }
    assert_eq!(covered, HashSet::from(Algorithm::ALL));
}

#[test]
fn descriptions_and_fingerprints_match_openssl() {
    // `openssl pkey -in F -pubout -outform DER | openssl dgst -sha256`, first 16 digits.
    for (pem, algorithm, description, fingerprint) in [
        (
            fixture!("rsa-2048-pkcs1.pem"),
            Algorithm::RS256,
            "RSA 2048-bit",
            "8c4a4b0bb2457ed4",
        ),
        (
            fixture!("rsa-2048-pkcs8.pem"),
            Algorithm::PS256,
            "RSA 2048-bit",
            "8c4a4b0bb2457ed4",
        ),
        (
            fixture!("rfc7515-a2.pem"),
            Algorithm::RS256,
            "RSA 2048-bit",
            "6fd13c2435a361e7",
        ),
        (
            fixture!("ec-p256-sec1.pem"),
            Algorithm::ES256,
            "EC P-256",
            "c82c3e0d07796ea5",
        ),
        (
            fixture!("ec-p256-pkcs8.pem"),
            Algorithm::ES256,
            "EC P-256",
            "c82c3e0d07796ea5",
        ),
        (
            fixture!("rfc7515-a3.pem"),
            Algorithm::ES256,
            "EC P-256",
            "2bd1bb0c44a897c3",
        ),
        (
            fixture!("ec-p384-sec1.pem"),
            Algorithm::ES384,
            "EC P-384",
            "21918058d47308b2",
        ),
    ] {
        let key = key(pem, algorithm);
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.description(), description);
        assert_eq!(key.fingerprint(), format!("sha256:{fingerprint}"));
    }
}

#[test]
fn equality_is_the_algorithm_and_the_public_key() {
    let pkcs1 = key(fixture!("rsa-2048-pkcs1.pem"), Algorithm::RS256);
    let pkcs8 = key(fixture!("rsa-2048-pkcs8.pem"), Algorithm::RS256);
    let other_algorithm = key(fixture!("rsa-2048-pkcs1.pem"), Algorithm::PS256);
    let other_key = key(fixture!("rfc7515-a2.pem"), Algorithm::RS256);
    assert_eq!(pkcs1, pkcs8);
    assert_eq!(pkcs1, pkcs1.clone());
    assert_ne!(pkcs1, other_algorithm);
    assert_ne!(pkcs1, other_key);
    let set = HashSet::from([pkcs1, pkcs8, other_algorithm, other_key]);
    assert_eq!(set.len(), 3);
}

#[test]
fn public_jwk_has_the_fields_servers_register() {
    let rsa = key(fixture!("rsa-2048-pkcs1.pem"), Algorithm::PS256).public_jwk(Some("k1"));
    assert_eq!(
        (&rsa["kty"], &rsa["alg"], &rsa["use"], &rsa["kid"]),
        (&"RSA".into(), &"PS256".into(), &"sig".into(), &"k1".into())
    );
    assert_eq!(
        URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap().len(),
        256
    );
    let ec = key(fixture!("ec-p384-sec1.pem"), Algorithm::ES384).public_jwk(None);
    assert_eq!(
        (&ec["kty"], &ec["crv"], &ec["alg"]),
        (&"EC".into(), &"P-384".into(), &"ES384".into())
    );
    assert!(ec.get("kid").is_none());
    for coordinate in ["x", "y"] {
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(ec[coordinate].as_str().unwrap())
                .unwrap()
                .len(),
            48
        );
    }
}

#[test]
fn wrong_type_names_the_key_and_what_would_fit() {
    assert_eq!(
        error(fixture!("ec-p256-sec1.pem"), Algorithm::RS256).to_string(),
        "is an EC P-256 key, which cannot sign RS256; use an RSA key or signing_algorithm = \"ES256\""
    );
    assert_eq!(
        error(fixture!("rsa-2048-pkcs8.pem"), Algorithm::ES256).to_string(),
        "is an RSA 2048-bit key, which cannot sign ES256; use an EC P-256 key or \
         signing_algorithm = \"RS256\" (or \"RS384\", \"RS512\", \"PS256\")"
    );
    let p384 = error(fixture!("ec-p384-sec1.pem"), Algorithm::ES256);
    assert!(matches!(&p384, KeyError::WrongType { key, algorithm: Algorithm::ES256 } if key == "EC P-384"));
    assert!(
        p384.to_string()
            .ends_with("use an EC P-256 key or signing_algorithm = \"ES384\"")
    );
}

#[test]
fn unusable_keys_say_why() {
    let small = error(fixture!("rsa-1024-pkcs1.pem"), Algorithm::RS256);
    assert!(matches!(small, KeyError::Unsupported(_)));
    assert_eq!(
        small.to_string(),
        "is an RSA 1024-bit key; callout needs at least 2048 bits (ring refuses smaller RSA keys)"
    );
    // Too small is what matters even when the algorithm does not fit either.
    assert!(matches!(
        error(fixture!("rsa-1024-pkcs1.pem"), Algorithm::ES256),
        KeyError::Unsupported(_)
    ));
    let ed25519 = error(fixture!("ed25519-pkcs8.pem"), Algorithm::RS256).to_string();
    assert!(
        ed25519.starts_with("is an Ed25519 key; callout signs with RSA keys"),
        "{ed25519}"
    );
    let p521 = error(fixture!("ec-p521-sec1.pem"), Algorithm::ES256).to_string();
    assert!(p521.starts_with("is an EC P-521 key;"), "{p521}");
    let pss = error(fixture!("rsa-pss-2048-pkcs8.pem"), Algorithm::PS256).to_string();
    assert!(pss.starts_with("is an RSA-PSS-only key"), "{pss}");
    let no_public = error(fixture!("ec-p256-sec1-no-public.pem"), Algorithm::ES256).to_string();
    assert!(no_public.contains("without its public key"), "{no_public}");
}

#[test]
fn ec_keys_must_name_their_curve() {
    let sec1 = der_of(fixture!("ec-p256-sec1.pem"));
    let mut body = Reader::new(der::single(&sec1, der::SEQUENCE).unwrap());
    let version = der::tlv(der::INTEGER, &[body.expect(der::INTEGER).unwrap()]);
    let private = der::tlv(der::OCTET_STRING, &[body.expect(der::OCTET_STRING).unwrap()]);
    body.expect(der::CONTEXT_0).unwrap();
    let public = der::tlv(der::CONTEXT_1, &[body.expect(der::CONTEXT_1).unwrap()]);

    let unnamed = der::tlv(der::SEQUENCE, &[&version, &private, &public]);
    let message = error(&pem("EC PRIVATE KEY", &unnamed), Algorithm::ES256).to_string();
    assert!(message.contains("does not name its curve"), "{message}");

    let parameters = der::tlv(der::CONTEXT_0, &[&der::tlv(der::SEQUENCE, &[])]);
    let explicit = der::tlv(der::SEQUENCE, &[&version, &private, &parameters, &public]);
    let message = error(&pem("EC PRIVATE KEY", &explicit), Algorithm::ES256).to_string();
    assert!(message.contains("explicit curve parameters"), "{message}");
}

#[test]
fn encrypted_keys_are_recognised() {
    for pem in [
        fixture!("rsa-2048-encrypted-pkcs8.pem"),
        fixture!("ec-p256-encrypted-sec1.pem"),
    ] {
        let error = error(pem, Algorithm::RS256);
        assert!(matches!(error, KeyError::Encrypted));
        assert!(error.to_string().contains("openssl pkcs8 -topk8 -nocrypt"));
    }
}

#[test]
fn certificates_are_skipped_and_are_not_keys() {
    let only = error(fixture!("certificate-only.pem"), Algorithm::ES256);
    assert!(matches!(only, KeyError::NoKey));
    assert!(
        only.to_string()
            .starts_with("holds no PEM private key (expected BEGIN PRIVATE KEY")
    );
    let after = key(fixture!("certificate-then-key.pem"), Algorithm::ES256);
    assert_eq!(after, key(fixture!("ec-p256-sec1.pem"), Algorithm::ES256));
    assert!(matches!(error(b"", Algorithm::RS256), KeyError::NoKey));
    assert!(matches!(
        error(b"not a key at all", Algorithm::RS256),
        KeyError::NoKey
    ));
}

#[test]
fn other_private_key_blocks_are_named() {
    let pem = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n";
    let message = error(pem, Algorithm::RS256).to_string();
    assert!(
        message.starts_with("holds a BEGIN OPENSSH PRIVATE KEY block"),
        "{message}"
    );
}

#[test]
fn debug_shows_no_key_material() {
    let ec = key(fixture!("ec-p256-sec1.pem"), Algorithm::ES256);
    assert_eq!(
        format!("{ec:?}"),
        "SigningKey { algorithm: ES256, key: \"EC P-256\", fingerprint: \"sha256:c82c3e0d07796ea5\" }"
    );
    let rsa = key(fixture!("rsa-2048-pkcs1.pem"), Algorithm::RS256);
    assert_eq!(
        format!("{rsa:?}"),
        "SigningKey { algorithm: RS256, key: \"RSA 2048-bit\", fingerprint: \"sha256:8c4a4b0bb2457ed4\" }"
    );
}

#[test]
fn algorithm_names() {
    for algorithm in Algorithm::ALL {
        let json = format!("\"{}\"", algorithm.as_str());
        assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), algorithm);
        assert_eq!(algorithm.to_string(), algorithm.as_str());
    }
    assert!(serde_json::from_str::<Algorithm>("\"rs256\"").is_err());
    assert!(serde_json::from_str::<Algorithm>("\"HS256\"").is_err());
    assert_eq!(Algorithm::default(), Algorithm::RS256);
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
    .into_bytes()
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    let (_, der) = <(SectionKind, Vec<u8>)>::from_pem_slice(pem).unwrap();
    der
}

/// Every truncation of every fixture's DER, and of its PEM text, is refused without a panic.
#[test]
fn truncated_keys_are_refused_without_panicking() {
    for (label, text) in [
        ("RSA PRIVATE KEY", fixture!("rsa-2048-pkcs1.pem")),
        ("PRIVATE KEY", fixture!("rsa-2048-pkcs8.pem")),
        ("EC PRIVATE KEY", fixture!("ec-p256-sec1.pem")),
        ("PRIVATE KEY", fixture!("ec-p256-pkcs8.pem")),
        ("EC PRIVATE KEY", fixture!("ec-p384-sec1.pem")),
    ] {
        let der = der_of(text);
        for len in 0..der.len() {
            for algorithm in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
                assert!(SigningKey::from_pem(&pem(label, &der[..len]), algorithm).is_err());
            }
        }
        for len in 0..text.len() {
            let _ = SigningKey::from_pem(&text[..len], Algorithm::ES256);
        }
    }
}

/// A flipped byte anywhere in an EC key never panics (RSA keys go through the same reader
/// and would be slow to parse this often).
#[test]
fn corrupted_ec_keys_never_panic() {
    for (label, text) in [
        ("EC PRIVATE KEY", fixture!("ec-p256-sec1.pem")),
        ("PRIVATE KEY", fixture!("ec-p256-pkcs8.pem")),
    ] {
        let der = der_of(text);
        for at in 0..der.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[at] ^= flip;
                let _ = SigningKey::from_pem(&pem(label, &bad), Algorithm::ES256);
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SigningKey::from_pem(&bytes, Algorithm::RS256);
        for label in ["EC PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY"] {
            let _ = SigningKey::from_pem(&pem(label, &bytes), Algorithm::ES256);
        }
    }
}
