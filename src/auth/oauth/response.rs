//! Reading a token endpoint's answer (RFC 6749 §5.1 success, §5.2 error).

use std::time::Duration;

use serde::Deserialize;

use crate::secret::AccessToken;
use crate::token::{Fetched, TokenError};

#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<String>,
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    error_description: Option<String>,
}

/// Interprets the status, content type and body of a token endpoint response.
pub fn parse_token_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Fetched, TokenError> {
    if !(200..300).contains(&status) {
        if let Ok(err) = serde_json::from_slice::<ErrorBody>(body) {
            return Err(TokenError::OAuth {
                error: printable(&err.error, 64),
                description: err.error_description.map(|d| printable(&d, 256)),
            });
        }
        return Err(TokenError::Status {
            status,
            content_type: content_type.map(|c| printable(c, 64)),
        });
    }
    let parsed: SuccessBody = serde_json::from_slice(body).map_err(|e| {
        let what = if content_type.is_some_and(|c| !c.contains("json")) {
            format!(
                "content type is `{}`, not JSON",
                printable(content_type.unwrap_or_default(), 64)
            )
        } else {
            // Only the kind and the place: serde_json's own message can quote the input,
            // which may be the token itself (some servers answer with a bare JSON string).
            let kind = match e.classify() {
                serde_json::error::Category::Data => "JSON of the wrong shape",
                _ => "invalid JSON",
            };
            format!("{kind} (at line {} column {})", e.line(), e.column())
        };
        TokenError::Malformed(what)
    })?;
    let token = match parsed.access_token {
        Some(t) if !t.is_empty() => AccessToken::new(t),
        _ => return Err(TokenError::Malformed("no `access_token`".into())),
    };
    if let Some(kind) = parsed.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::Malformed(format!(
            "token_type is `{}`, only Bearer tokens can be forwarded",
            printable(&kind, 32)
        )));
    }
    if token.expose().bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(TokenError::Malformed(
            "access_token has characters that cannot go in a header".into(),
        ));
    }
    let lifetime = match parsed.expires_in {
        None => None,
        Some(ExpiresIn::Number(n)) => Some(seconds(n)?),
        Some(ExpiresIn::Text(s)) => {
            let n: f64 = s.trim().parse().map_err(|_| {
                TokenError::Malformed(format!("expires_in `{}` is not a number", printable(&s, 32)))
            })?;
            Some(seconds(n)?)
        }
    };
    Ok(Fetched { token, lifetime })
}

fn seconds(n: f64) -> Result<Duration, TokenError> {
    if n.is_finite() && (1.0..=10.0 * 365.0 * 86_400.0).contains(&n) {
        Ok(Duration::from_secs(n as u64))
    } else {
        Err(TokenError::Malformed(format!(
            "expires_in {n} is not a lifetime in seconds"
        )))
    }
}

/// Server-provided text made safe for a log line or an error body: bounded, no control
/// characters.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Fetched {
        parse_token_response(200, Some("application/json"), body.as_bytes()).expect("a token")
    }

    #[test]
    fn expires_in_forms() {
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":3600}"#).lifetime,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":"120"}"#).lifetime,
            Some(Duration::from_secs(120))
        );
        assert_eq!(ok(r#"{"access_token":"a","token_type":"bearer"}"#).lifetime, None);
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":null,"extra":[1]}"#).lifetime,
            None
        );
    }

    #[test]
    fn rejects_what_cannot_be_forwarded() {
        let bad = |status, ct: &str, body: &str| {
            parse_token_response(status, Some(ct), body.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(200, "application/json", r#"{"token_type":"Bearer"}"#).contains("no `access_token`"));
        assert!(
            bad(
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"mac"}"#
            )
            .contains("mac")
        );
        assert!(bad(200, "text/html", "<html>").contains("text/html"));
        assert!(bad(200, "application/json", r#"{"access_token":"#).contains("invalid JSON"));
        let bare = bad(200, "application/json", r#""eyJhbGciOiJSUzI1NiJ9.e30.c2ln""#);
        assert!(bare.contains("wrong shape") && !bare.contains("eyJ"), "{bare}");
        assert!(
            bad(
                200,
                "application/json",
                r#"{"access_token":"a","expires_in":"soon"}"#
            )
            .contains("soon")
        );
        assert!(
            bad(200, "application/json", r#"{"access_token":"a","expires_in":0}"#).contains("expires_in")
        );
        assert!(bad(200, "application/json", r#"{"access_token":"a b"}"#).contains("header"));
        let oauth = bad(
            401,
            "application/json",
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
        );
        assert_eq!(oauth, "token endpoint refused: invalid_client (bad secret)");
        assert!(bad(503, "text/plain", "down").contains("HTTP 503"));
    }

    #[test]
    fn error_text_from_the_server_is_tamed() {
        let long = "x".repeat(1000);
        let body = format!(r#"{{"error":"e\n\r{long}"}}"#);
        let msg = parse_token_response(400, None, body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n') && msg.len() < 200);
    }
}
