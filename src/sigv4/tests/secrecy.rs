//! Neither the secret access key nor the session token reaches any text `sign` or its
//! types produce, bar the one header the token must go out in.

use std::time::{Duration, UNIX_EPOCH};

use http::header::HeaderValue;
use http::{HeaderMap, Method, Uri};

use crate::secret::Secret;
use crate::sigv4::{Credentials, Payload, Scope, SignError, sign};

const SECRET: &str = "SECRETsecretSECRETsecret0123456789abcdef";
const TOKEN: &str = "TOKENtokenTOKENtoken0123456789";

#[test]
fn secrets_stay_out_of_debug_errors_and_headers() {
    let credentials = Credentials {
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new(TOKEN)),
    };
    let debug = format!("{credentials:?}");
    assert!(!debug.contains(SECRET) && !debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("AKIDEXAMPLE"), "{debug}");

    let uri: Uri = "https://example.amazonaws.com/a?b=c".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-meta-a", HeaderValue::from_static("value"));
    let scope = Scope {
        region: "us-east-1",
        service: "s3",
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    sign(
        &Method::PUT,
        &uri,
        &mut headers,
        Payload::Bytes(b"body"),
        &credentials,
        &scope,
        now,
    )
    .unwrap();

    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(SECRET), "{name} holds the secret");
        if name != "x-amz-security-token" {
            assert!(!value.contains(TOKEN), "{name} holds the token");
        }
    }
    // Sensitive values print as `Sensitive`.
    let debug = format!("{headers:?}");
    assert!(!debug.contains(TOKEN) && !debug.contains("Signature="), "{debug}");

    // An error names the header, never its value.
    headers.insert(
        "x-amz-meta-b",
        HeaderValue::from_bytes(format!("{SECRET}\u{e9}").as_bytes()).unwrap(),
    );
    let err = sign(
        &Method::PUT,
        &uri,
        &mut headers,
        Payload::Bytes(b"body"),
        &credentials,
        &scope,
        now,
    )
    .unwrap_err();
    for text in [format!("{err}"), format!("{err:?}")] {
        assert!(!text.contains(SECRET) && !text.contains(TOKEN), "{text}");
        assert!(text.contains("x-amz-meta-b"), "{text}");
    }
    assert!(matches!(err, SignError::HeaderValue { .. }));
}
