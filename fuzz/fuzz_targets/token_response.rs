//! Token endpoint answers (RFC 6749 §5.1/§5.2, SPEC "Request handling" 4 and 7): whatever
//! the token endpoint sends, parsing never panics, a token it yields can go in a header,
//! and an error message never carries the access token.
//!
//! Input: byte 0 picks the status, byte 1 the content type, the rest is the body.

#![no_main]

use callout::auth::oauth::parse_token_response;
use callout::token::TokenError;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 201, 203, 204, 299, 100, 302, 400, 401, 403, 429, 500, 503,
];

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/json;charset=UTF-8"),
    None,
    Some("text/html; charset=utf-8"),
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some(""),
    Some("application/problem+json"),
];

/// Already reported findings to step over, so that a run can go on past them: `FUZZ_KNOWN`
/// is a comma-separated list of ids (see run.sh). Unset, every invariant is checked.
static KNOWN: LazyLock<Vec<String>> = LazyLock::new(|| {
    let known = std::env::var("FUZZ_KNOWN").unwrap_or_default();
    known
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
});

/// seeds/token_response/crash-string-body-*: a 2xx body that is a bare JSON string is
/// echoed whole (serde's "invalid type: string ..." message) into the error.
fn known_string_body(status: u16, body: &[u8]) -> bool {
    KNOWN.iter().any(|k| k == "token-string-body")
        && (200..300).contains(&status)
        && matches!(serde_json::from_slice::<Value>(body), Ok(Value::String(_)))
}

/// Every string (keys and values) in a JSON document.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => {
            for (k, v) in o {
                out.push(k);
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// The access token of a body, when it is distinctive enough that seeing it in an error
/// message can only mean it leaked: at least 8 characters from [A-Za-z0-9._-], and no other
/// string in the document contains it. A body that is a bare JSON string counts as a token
/// too: that is how some endpoints answer.
fn distinctive_token(body: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let token = match &doc {
        Value::String(s) => s.as_str(),
        _ => doc.get("access_token")?.as_str()?,
    };
    if token.len() < 8
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return None;
    }
    let mut all = Vec::new();
    strings(&doc, &mut all);
    let holders = all.iter().filter(|s| s.contains(token)).count();
    (holders == 1).then(|| token.to_owned())
}

fuzz_target!(|data: &[u8]| {
    let (status, content_type, body) = match data {
        [s, c, body @ ..] => (
            STATUSES[usize::from(s & 0x0f)],
            CONTENT_TYPES[usize::from(c & 0x07)],
            body,
        ),
        _ => return,
    };
    if known_string_body(status, body) {
        return;
    }

    match parse_token_response(status, content_type, body) {
        Ok(fetched) => {
            assert!((200..300).contains(&status), "a token from HTTP {status}");
            let token = fetched.token.expose();
            assert!(!token.is_empty());
            assert!(
                http::HeaderValue::from_str(&format!("Bearer {token}")).is_ok(),
                "token cannot go in a header"
            );
            if let Some(lifetime) = fetched.lifetime {
                assert!(lifetime.as_secs() >= 1 && lifetime.as_secs() <= 10 * 365 * 86_400);
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.len() < 2048,
                "unbounded error message ({} bytes)",
                message.len()
            );
            assert!(
                !message.chars().any(char::is_control),
                "control character in {message:?}"
            );
            if let TokenError::Status { status: s, .. } | TokenError::RetryLater { status: s, .. } = &err {
                assert_eq!(*s, status);
            }
            if let Some(token) = distinctive_token(body) {
                assert!(
                    !message.contains(&token),
                    "the access token leaked into {message:?}"
                );
                // The Debug form is what a `{:?}` in a log line would print.
                assert!(
                    !format!("{err:?}").contains(&token),
                    "the access token leaked into Debug"
                );
            }
        }
    }
});
