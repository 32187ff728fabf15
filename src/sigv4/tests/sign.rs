//! `sign` itself: which headers it adds, replaces and signs. That its signatures are what
//! AWS computes is shown against botocore by the integration test `tests/it/sigv4.rs`.

use std::time::{Duration, UNIX_EPOCH};

use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::secret::Secret;
use crate::sigv4::{
    Credentials, Parts, PathRules, Payload, Scope, SignError, authorization, canonical_request,
    credential_scope, sha256_hex, sign, signature, string_to_sign,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn credentials(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: Secret::new(SECRET),
        session_token: token.map(Secret::new),
    }
}

fn suite_time() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

fn signed_headers_of(headers: &HeaderMap) -> &str {
    let value = header(headers, "authorization");
    let start = value.find("SignedHeaders=").unwrap() + "SignedHeaders=".len();
    let end = value[start..].find(',').unwrap() + start;
    &value[start..end]
}

#[test]
fn signs_host_x_amz_content_type_and_content_md5_only() {
    let uri: Uri = "https://example.amazonaws.com/path?b=2&a=1".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "content-md5",
        HeaderValue::from_static("1B2M2Y8AsgTpgAmY7PhCfg=="),
    );
    headers.insert("x-amz-target", HeaderValue::from_static("Service.Op"));
    headers.insert("user-agent", HeaderValue::from_static("agent"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    let scope = Scope {
        region: "eu-west-1",
        service: "execute-api",
    };
    sign(
        &Method::POST,
        &uri,
        &mut headers,
        Payload::Bytes(b"{}"),
        &credentials(None),
        &scope,
        suite_time(),
    )
    .unwrap();

    assert_eq!(
        signed_headers_of(&headers),
        "content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target"
    );
    assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
    assert_eq!(header(&headers, "x-amz-content-sha256"), sha256_hex(b"{}"));
    assert!(headers.get("x-amz-security-token").is_none());
    // `sign` adds no Host of its own: the authority is signed as what goes out.
    assert!(headers.get("host").is_none());
    assert!(headers.get(AUTHORIZATION).unwrap().is_sensitive());

    // The same value rebuilt from the pieces.
    let names = [
        "content-md5",
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-target",
    ];
    let hash = sha256_hex(b"{}");
    let parts = Parts {
        method: "POST",
        path: "/path",
        query: "b=2&a=1",
        headers: &headers,
        host: Some("example.amazonaws.com"),
        signed: &names,
        payload_hash: &hash,
        rules: PathRules::Normalized,
    };
    let scope_text = credential_scope("20150830", "eu-west-1", "execute-api");
    let sts = string_to_sign(
        "20150830T123600Z",
        &scope_text,
        &canonical_request(&parts).unwrap(),
    );
    let want = authorization(
        "AKIDEXAMPLE",
        &scope_text,
        &names.join(";"),
        &signature(SECRET, "20150830", "eu-west-1", "execute-api", &sts),
    );
    assert_eq!(header(&headers, "authorization"), want);
    assert!(want.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/execute-api/aws4_request, SignedHeaders="
    ));
}

#[test]
fn replaces_what_a_caller_sent() {
    let uri: Uri = "https://bucket.s3.amazonaws.com/key".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("bucket.s3.amazonaws.com"));
    headers.insert("authorization", HeaderValue::from_static("Bearer caller"));
    headers.insert("x-amz-date", HeaderValue::from_static("19990101T000000Z"));
    headers.append("x-amz-security-token", HeaderValue::from_static("caller-token"));
    headers.append("x-amz-security-token", HeaderValue::from_static("another"));
    headers.insert("x-amz-content-sha256", HeaderValue::from_static("caller-hash"));
    let scope = Scope {
        region: "us-east-1",
        service: "s3",
    };
    let now = suite_time() + Duration::from_secs(86_400);

    let mut without = headers.clone();
    sign(
        &Method::GET,
        &uri,
        &mut without,
        Payload::Unsigned,
        &credentials(None),
        &scope,
        now,
    )
    .unwrap();
    assert_eq!(header(&without, "x-amz-date"), "20150831T123600Z");
    assert_eq!(header(&without, "x-amz-content-sha256"), "UNSIGNED-PAYLOAD");
    assert!(
        without.get("x-amz-security-token").is_none(),
        "a caller's token never goes out"
    );
    assert_eq!(without.get_all("authorization").iter().count(), 1);
    assert!(
        header(&without, "authorization").starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150831/")
    );
    assert_eq!(
        signed_headers_of(&without),
        "host;x-amz-content-sha256;x-amz-date"
    );

    let mut with = headers;
    sign(
        &Method::GET,
        &uri,
        &mut with,
        Payload::Unsigned,
        &credentials(Some("session/token+=")),
        &scope,
        now,
    )
    .unwrap();
    let tokens: Vec<_> = with.get_all("x-amz-security-token").iter().collect();
    assert_eq!(tokens, ["session/token+="]);
    assert!(tokens[0].is_sensitive());
    assert_eq!(
        signed_headers_of(&with),
        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    );
}

#[test]
fn host_comes_from_the_authority_without_userinfo() {
    let scope = Scope {
        region: "us-east-1",
        service: "sts",
    };
    let sign_at = |uri: &str| {
        let mut headers = HeaderMap::new();
        let uri: Uri = uri.parse().unwrap();
        sign(
            &Method::GET,
            &uri,
            &mut headers,
            Payload::Bytes(b""),
            &credentials(None),
            &scope,
            suite_time(),
        )
        .unwrap();
        header(&headers, "authorization").to_owned()
    };
    assert_eq!(
        sign_at("https://user@sts.amazonaws.com:8443/"),
        sign_at("https://sts.amazonaws.com:8443/")
    );
    assert_ne!(
        sign_at("https://sts.amazonaws.com:8443/"),
        sign_at("https://sts.amazonaws.com/")
    );

    let mut headers = HeaderMap::new();
    let err = sign(
        &Method::GET,
        &"/relative".parse().unwrap(),
        &mut headers,
        Payload::Bytes(b""),
        &credentials(None),
        &scope,
        suite_time(),
    )
    .unwrap_err();
    assert!(matches!(err, SignError::NoHost), "{err:?}");
}

#[test]
fn a_signed_header_that_cannot_be_read_back_is_an_error() {
    let uri: Uri = "https://example.amazonaws.com/".parse().unwrap();
    let scope = Scope {
        region: "us-east-1",
        service: "s3",
    };
    let mut headers = HeaderMap::new();
    // Not signed: its bytes do not matter.
    headers.insert("user-agent", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    sign(
        &Method::GET,
        &uri,
        &mut headers,
        Payload::Bytes(b""),
        &credentials(None),
        &scope,
        suite_time(),
    )
    .unwrap();

    headers.insert(
        "x-amz-meta-name",
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    );
    let err = sign(
        &Method::GET,
        &uri,
        &mut headers,
        Payload::Bytes(b""),
        &credentials(None),
        &scope,
        suite_time(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, SignError::HeaderValue { name } if name == "x-amz-meta-name"),
        "{err:?}"
    );
    assert!(
        headers.get("authorization").is_none(),
        "nothing half-signed is left to send"
    );

    let mut headers = HeaderMap::new();
    let err = sign(
        &Method::GET,
        &uri,
        &mut headers,
        Payload::Bytes(b""),
        &credentials(Some("line\nbreak")),
        &scope,
        suite_time(),
    )
    .unwrap_err();
    assert!(matches!(err, SignError::SessionToken), "{err:?}");
}
