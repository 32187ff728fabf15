//! `protocol = "custom"` and header formulas: API keys from principal parameters, any
//! scheme built from the OAuth token, asserted users, HMAC signatures, scope formulas, and
//! merge fields that would smuggle CR, LF or NUL into a header.

use base64::Engine as _;
use http::StatusCode;
use proptest::prelude::*;

use crate::harness::Callout;
use crate::support::{TokenServer, Upstream, http_get};

fn api_key_config(upstream: &Upstream, extra_named: &str) -> String {
    format!(
        r#"
[external_credentials.Keys]
protocol = "custom"
headers = {{ "X-Api-Key" = "{{!$Credential.Keys.api_key}}" }}

[[external_credentials.Keys.principals]]
name = "Live"
sequence = 1
permission_sets = ["Live"]
parameters = {{ api_key = "live-key-0123", signing_secret = "key" }}

[[external_credentials.Keys.principals]]
name = "Test"
sequence = 2
permission_sets = ["Test"]
parameters = {{ api_key = "test-key-4567", signing_secret = "other" }}

[named_credentials.Api]
url = "{}"
external_credential = "Keys"
{extra_named}
"#,
        upstream.url()
    )
}

const LIVE: (&str, &str) = ("x-callout-permission-sets", "Live");

#[tokio::test]
async fn a_custom_credential_sends_only_what_its_header_formulas_build() {
    let upstream = Upstream::start().await;
    let callout = Callout::start(&api_key_config(&upstream, "")).await;
    for (set, key) in [("Live", "live-key-0123"), ("Test", "test-key-4567")] {
        // The caller's own header of the same name (any case) is replaced.
        let headers = [("x-callout-permission-sets", set), ("x-api-key", "forged")];
        let (status, _, _) = http_get(&callout.url("/Api/x"), &headers).await;
        assert_eq!(status, StatusCode::OK);
        let seen = upstream.last().unwrap();
        let values: Vec<_> = seen.headers.get_all("x-api-key").iter().collect();
        assert_eq!(values, [key], "{set}");
        assert!(seen.headers.get("authorization").is_none());
    }
    let (_, _, body) = http_get(&callout.url("/.callout/credentials"), &[]).await;
    assert!(!String::from_utf8_lossy(&body).contains("key-0123"));
}

#[tokio::test]
async fn an_hmac_signature_header_over_the_user_and_the_time() {
    let upstream = Upstream::start().await;
    let named = r#"headers = { "X-Signature" = "{!HEX(HMAC(\"hmacSHA256\", $User.Username & \":\" & UNIXTIME(), $Credential.Keys.signing_secret))}", "X-User" = "{!$User.Username}" }"#;
    let callout = Callout::start(&api_key_config(&upstream, named)).await;
    let before = std::time::SystemTime::now();
    let headers = [LIVE, ("x-callout-user", "ada@example.com")];
    let (status, _, body) = http_get(&callout.url("/Api/x"), &headers).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.headers["x-user"], "ada@example.com");
    assert!(seen.headers.get("x-callout-user").is_none());
    let signature = seen.headers["x-signature"].to_str().unwrap().to_owned();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
    let secs = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let matches = (secs..secs + 3).any(|t| {
        let tag = ring::hmac::sign(&key, format!("ada@example.com:{t}").as_bytes());
        tag.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            == signature
    });
    assert!(
        matches,
        "X-Signature {signature} is no HMAC-SHA256 of the user and the time"
    );

    // Without the user, the header cannot be built: 400, and the upstream is not called.
    let requests = upstream.requests();
    let (status, headers, body) = http_get(&callout.url("/Api/x"), &[LIVE]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["x-callout-error"], "bad_request");
    assert!(
        String::from_utf8_lossy(&body).contains("$User.Username"),
        "{body:?}"
    );
    assert_eq!(upstream.requests(), requests);
}

#[tokio::test]
async fn users_are_asserted_only_by_callers_allowed_to() {
    let upstream = Upstream::start().await;
    let named = r#"headers = { "X-Department" = "{!$User.Department}" }"#;
    let callers = r#"
[callers.Portal]
token = "portal-caller-token-0123456789"
permission_sets = ["Live"]
assert_users = true

[callers.Batch]
token = "batch-caller-token-0123456789"
permission_sets = ["Live"]
"#;
    let toml = format!("{callers}{}", api_key_config(&upstream, named));
    let callout = Callout::start(&toml).await;
    let as_caller = |token: &'static str| {
        [
            LIVE,
            ("proxy-authorization", token),
            ("x-callout-user-department", "Finance"),
        ]
    };
    let (status, _, _) = http_get(
        &callout.url("/Api/x"),
        &as_caller("Bearer portal-caller-token-0123456789"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.last().unwrap().headers["x-department"], "Finance");
    let requests = upstream.requests();
    let (status, headers, _) = http_get(
        &callout.url("/Api/x"),
        &as_caller("Bearer batch-caller-token-0123456789"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-callout-error"], "user_assertion_not_allowed");
    assert_eq!(upstream.requests(), requests);
}

#[tokio::test]
async fn generate_authorization_header_false_and_a_formula_build_any_scheme() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Live"]
client_id = "svc"
client_secret = "svc-secret"

[named_credentials.Legacy]
url = "{}"
external_credential = "Idp"
generate_authorization_header = false
headers = {{ Authorization = "Token {{!$Credential.OAuthToken}}", "X-Whole" = "{{!$Credential.AuthorizationHeaderValue}}" }}
"#,
        token.url(),
        upstream.url()
    );
    let callout = Callout::start(&toml).await;
    let (status, _, _) = http_get(&callout.url("/Legacy/x"), &[LIVE]).await;
    assert_eq!(status, StatusCode::OK);
    let issued = token.issued();
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.headers["authorization"],
        format!("Token {}", issued[0]).as_str()
    );
    assert_eq!(seen.headers["x-whole"], format!("Bearer {}", issued[0]).as_str());
}

#[tokio::test]
async fn a_scope_formula_gives_each_department_its_own_token() {
    let token = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"
scope = '{{!"session:role:" & $User.Department}}'

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Live"]
client_id = "svc"
client_secret = "svc-secret"

[named_credentials.Api]
url = "{}"
external_credential = "Idp"
"#,
        token.url(),
        upstream.url()
    );
    let callout = Callout::start(&toml).await;
    for department in ["Finance", "Sales", "Finance", "Sales", "Finance"] {
        let headers = [LIVE, ("x-callout-user-department", department)];
        let (status, _, _) = http_get(&callout.url("/Api/x"), &headers).await;
        assert_eq!(status, StatusCode::OK);
    }
    let scopes: Vec<_> = token
        .requests_log()
        .iter()
        .map(|r| r.form_value("scope").unwrap())
        .collect();
    assert_eq!(scopes, ["session:role:Finance", "session:role:Sales"]);
    let issued = token.issued();
    let sent: Vec<String> = upstream
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    let finance = format!("Bearer {}", issued[0]);
    let sales = format!("Bearer {}", issued[1]);
    assert_eq!(
        sent,
        [&finance, &sales, &finance, &sales, &finance].map(String::as_str)
    );
}

fn smuggling_config(upstream: &Upstream) -> String {
    let named = r#"headers = { "X-Note" = "{!TEXT(BASE64DECODE($User.Note))}" }"#;
    api_key_config(upstream, named)
}

/// A merge field can carry any bytes (here through BASE64DECODE): a header that would hold
/// CR, LF or NUL is never sent.
#[tokio::test]
async fn a_merge_field_cannot_put_cr_lf_or_nul_in_a_header() {
    let upstream = Upstream::start().await;
    let callout = Callout::start(&smuggling_config(&upstream)).await;
    for smuggled in ["a\r\nX-Injected: 1", "a\nb", "nul\0", "ok"] {
        let note = base64::engine::general_purpose::STANDARD.encode(smuggled);
        let requests = upstream.requests();
        let (status, headers, _) =
            http_get(&callout.url("/Api/x"), &[LIVE, ("x-callout-user-note", &note)]).await;
        if smuggled == "ok" {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(upstream.last().unwrap().headers["x-note"], "ok");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{smuggled:?}");
            assert_eq!(headers["x-callout-error"], "bad_header_value");
            assert_eq!(upstream.requests(), requests, "{smuggled:?} reached the upstream");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever bytes a merge field holds, the upstream either gets them in a header without
    /// control characters, or is not called and the caller gets 400 `bad_header_value`.
    #[test]
    fn no_merge_field_value_gets_a_control_character_into_a_header(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let upstream = Upstream::start().await;
            let callout = Callout::start(&smuggling_config(&upstream)).await;
            let note = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let (status, headers, _) =
                http_get(&callout.url("/Api/x"), &[LIVE, ("x-callout-user-note", &note)]).await;
            let text = std::str::from_utf8(&bytes);
            let safe = text.is_ok_and(|t| t.chars().all(|c| c == '\t' || !c.is_control()));
            match (text, safe) {
                (Ok(t), true) => {
                    assert_eq!(status, StatusCode::OK);
                    let seen = upstream.last().unwrap();
                    assert_eq!(seen.headers["x-note"].as_bytes(), t.trim_matches([' ', '\t']).as_bytes());
                }
                (Ok(_), false) => {
                    assert_eq!(status, StatusCode::BAD_REQUEST);
                    assert_eq!(&headers["x-callout-error"], "bad_header_value");
                    assert_eq!(upstream.requests(), 0);
                }
                (Err(_), _) => {
                    // Not UTF-8: TEXT refuses it, and nothing is sent either.
                    assert_eq!(status, StatusCode::BAD_REQUEST);
                    assert_eq!(upstream.requests(), 0);
                }
            }
        });
    }
}

fn sigv4_config(upstream: &Upstream, service: &str) -> String {
    format!(
        r#"
[server]
retry_body_limit = 1024
max_request_body = 65536

[external_credentials.Aws]
protocol = "aws_sigv4"
aws_region = "eu-west-1"
aws_service = "{service}"

[[external_credentials.Aws.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Live"]
access_key_id = "AKIDEXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
session_token = "session-token-value"

[named_credentials.Aws_Api]
url = "{}"
external_credential = "Aws"
"#,
        upstream.url()
    )
}

#[tokio::test]
async fn sigv4_signs_the_body_hash_or_streams_unsigned_to_s3_only() {
    use crate::support::http_request;
    let sha256 = |b: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let upstream = Upstream::start().await;
    let api = Callout::start(&sigv4_config(&upstream, "execute-api")).await;
    let body = b"{\"hello\":\"world\"}".to_vec();
    let (status, _, _) = http_request(
        "POST",
        &api.url("/Aws_Api/v1/items?b=2&a=1"),
        &[LIVE],
        body.clone().into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.last().unwrap();
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="),
        "{auth}"
    );
    assert_eq!(seen.headers["x-amz-content-sha256"], sha256(&body).as_str());
    assert_eq!(seen.headers["x-amz-security-token"], "session-token-value");
    // Beyond max_request_body, a service that needs the hash gets no request: 413.
    let big = vec![b'x'; 70_000];
    let (status, headers, _) =
        http_request("PUT", &api.url("/Aws_Api/v1/blob"), &[LIVE], big.clone().into()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["x-callout-error"], "body_too_large");

    // S3 takes a streamed body as UNSIGNED-PAYLOAD; a small one is still hashed.
    let s3 = Callout::start(&sigv4_config(&upstream, "s3").replace("max_request_body = 65536", "")).await;
    let (status, _, _) = http_request("PUT", &s3.url("/Aws_Api/bucket/big.bin"), &[LIVE], big.into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        upstream.last().unwrap().headers["x-amz-content-sha256"],
        "UNSIGNED-PAYLOAD"
    );
    let (status, _, _) = http_request(
        "PUT",
        &s3.url("/Aws_Api/bucket/small.txt"),
        &[LIVE],
        body.clone().into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        upstream.last().unwrap().headers["x-amz-content-sha256"],
        sha256(&body).as_str()
    );
}

#[tokio::test]
async fn basic_merge_fields_without_the_authorization_header() {
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[external_credentials.Legacy]
protocol = "basic"

[[external_credentials.Legacy.principals]]
name = "Batch"
sequence = 1
permission_sets = ["Live"]
username = "batch"
password = "pw"

[named_credentials.Old]
url = "{}"
external_credential = "Legacy"
generate_authorization_header = false
headers = {{ "X-Auth" = "{{!$Credential.AuthorizationHeaderValue}}", "X-User" = "{{!$Credential.Username}}" }}
"#,
        upstream.url()
    );
    let callout = Callout::start(&toml).await;
    let (status, _, _) = http_get(&callout.url("/Old/x"), &[LIVE]).await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.last().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("batch:pw")
    );
    assert_eq!(seen.headers["x-auth"], basic.as_str());
    assert_eq!(seen.headers["x-user"], "batch");
    assert!(seen.headers.get("authorization").is_none());
}
