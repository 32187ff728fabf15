//! Token endpoint error text (SPEC "Hostile peers and limits"): whatever the token endpoint
//! says and whatever the secrets are, `redact::sanitize` leaves no secret in any spelling
//! (as is, form-urlencoded, base64), and its output is printable ASCII of at most 200
//! characters; an `error` code callers see is a checked code without a secret in it.
//!
//! Input: byte 0 picks how many secrets (1–4); the rest is split on 0xFF, the first pieces
//! being the secrets and the remainder (0xFF kept) the token endpoint's text.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callout::auth::oauth::parse_token_response;
use callout::token::TokenError;
use callout::token::redact::{self, REDACTED};
use libfuzzer_sys::fuzz_target;

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The spellings of a secret that must not be shown; none for a secret too short to be
/// looked for, or one that is part of the marker itself (a documented limit).
fn spellings(secret: &str) -> Vec<String> {
    let all = vec![
        secret.to_owned(),
        form(secret),
        STANDARD.encode(secret),
        STANDARD.encode(form(secret)),
    ];
    if secret.len() < redact::MIN_SECRET || all.iter().any(|s| REDACTED.contains(s.as_str())) {
        return Vec::new();
    }
    all
}

fn assert_clean(shown: &str, forbidden: &[String]) {
    assert!(shown.len() <= redact::MAX_TEXT, "{} characters", shown.len());
    assert!(
        shown.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "not printable ASCII: {shown:?}"
    );
    for f in forbidden {
        assert!(!shown.contains(f.as_str()), "{f:?} survived in {shown:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(first % 4) + 1;
    let mut pieces = rest.splitn(n + 1, |&b| b == 0xFF);
    let secrets: Vec<String> = pieces
        .by_ref()
        .take(n)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let text = String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let forbidden: Vec<String> = secrets.iter().flat_map(|s| spellings(s)).collect();

    assert_clean(&redact::sanitize(&text, &refs), &forbidden);

    // The same text as a §5.2 answer, its first line as the `error` code.
    let code = text.lines().next().unwrap_or_default();
    let body = serde_json::json!({ "error": code, "error_description": text }).to_string();
    let mut err = parse_token_response(401, Some("application/json"), body.as_bytes()).unwrap_err();
    err.sanitize(&refs);
    let TokenError::OAuth {
        error, description, ..
    } = &err
    else {
        panic!("not an OAuth error: {err:?}");
    };
    if error != redact::INVALID_RESPONSE {
        assert_eq!(error, code);
        assert!((1..=64).contains(&error.len()));
        assert!(error.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_clean(error, &forbidden);
    }
    let description = description
        .as_ref()
        .and_then(|d| d.sanitized())
        .expect("sanitised");
    assert_clean(description, &forbidden);
});
