//! Reading a token endpoint's answer (RFC 6749 §5.1 success, §5.2 error).

use std::time::Duration;

use serde::Deserialize;

use crate::secret::AccessToken;
use crate::token::redact::error_code;
use crate::token::{Fetched, IdpText, TokenError};

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
///
/// Nothing of the answer goes into an error's message: the `error` code only once checked,
/// and the description and content type as `IdpText`, for the token cache to sanitise.
pub fn parse_token_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Fetched, TokenError> {
    if !(200..300).contains(&status) {
        if let Ok(err) = serde_json::from_slice::<ErrorBody>(body) {
            return Err(TokenError::OAuth {
                status,
                error: error_code(&err.error).to_owned(),
                description: err.error_description.map(IdpText::new),
            });
        }
        return Err(TokenError::Status {
            status,
            content_type: content_type.map(IdpText::new),
        });
    }
    let parsed: SuccessBody = serde_json::from_slice(body).map_err(|e| {
        if content_type.is_some_and(|c| !c.contains("json")) {
            return TokenError::NotJson {
                status,
                content_type: content_type.map(IdpText::new),
            };
        }
        // Only the kind and the place: serde_json's own message can quote the input,
        // which may be the token itself (some servers answer with a bare JSON string).
        let kind = match e.classify() {
            serde_json::error::Category::Data => "JSON of the wrong shape",
            _ => "invalid JSON",
        };
        TokenError::Malformed(format!("{kind} (at line {} column {})", e.line(), e.column()))
    })?;
    let token = match parsed.access_token {
        Some(t) if !t.is_empty() => AccessToken::new(t),
        _ => return Err(TokenError::Malformed("no `access_token`".into())),
    };
    if let Some(kind) = parsed.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::Malformed(
            "`token_type` is not Bearer, and only Bearer tokens can be forwarded".into(),
        ));
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
            let n: f64 = s
                .trim()
                .parse()
                .map_err(|_| TokenError::Malformed("`expires_in` is not a number".into()))?;
            Some(seconds(n)?)
        }
    };
    Ok(Fetched { token, lifetime })
}

fn seconds(n: f64) -> Result<Duration, TokenError> {
    if n.is_finite() && (1.0..=10.0 * 365.0 * 86_400.0).contains(&n) {
        Ok(Duration::from_secs(n as u64))
    } else {
        Err(TokenError::Malformed(
            "`expires_in` is not a lifetime in seconds (1 s to 10 years)".into(),
        ))
    }
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
        let mac = bad(
            200,
            "application/json",
            r#"{"access_token":"a","token_type":"mac"}"#,
        );
        assert!(mac.contains("not Bearer") && !mac.contains("mac"), "{mac}");
        let html = bad(200, "text/html", "<html>");
        assert!(html.contains("not JSON") && !html.contains("html"), "{html}");
        assert!(bad(200, "application/json", r#"{"access_token":"#).contains("invalid JSON"));
        let bare = bad(200, "application/json", r#""eyJhbGciOiJSUzI1NiJ9.e30.c2ln""#);
        assert!(bare.contains("wrong shape") && !bare.contains("eyJ"), "{bare}");
        let soon = bad(
            200,
            "application/json",
            r#"{"access_token":"a","expires_in":"soon"}"#,
        );
        assert!(soon.contains("not a number") && !soon.contains("soon"), "{soon}");
        let zero = bad(
            200,
            "application/json",
            r#"{"access_token":"a","expires_in":1e-9}"#,
        );
        assert!(zero.contains("expires_in") && !zero.contains("1e"), "{zero}");
        assert!(bad(200, "application/json", r#"{"access_token":"a b"}"#).contains("header"));
        assert!(bad(503, "text/plain", "down").contains("HTTP 503"));
    }

    #[test]
    fn oauth_errors_show_the_status_and_the_code_and_the_description_only_sanitised() {
        let body = r#"{"error":"invalid_client","error_description":"bad secret hunter22"}"#;
        let mut err = parse_token_response(401, Some("application/json"), body.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 401: invalid_client"
        );
        err.sanitize(&["hunter22"]);
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 401: invalid_client"
        );
        assert_eq!(
            err.detail_for_operators(),
            "token endpoint answered HTTP 401: invalid_client (bad secret [redacted])"
        );

        let mut err = parse_token_response(500, Some("text/html"), b"<html>").unwrap_err();
        err.sanitize(&[]);
        assert_eq!(err.to_string(), "token endpoint answered HTTP 500");
        assert!(err.detail_for_operators().ends_with("content type `text/html`"));
    }

    #[test]
    fn error_text_from_the_server_is_tamed() {
        let long = "x".repeat(1000);
        let body = format!(r#"{{"error":"e\n\r{long}","error_description":"{long}\u0007"}}"#);
        let mut err = parse_token_response(400, None, body.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token endpoint answered HTTP 400: invalid_response"
        );
        err.sanitize(&[]);
        let shown = err.detail_for_operators();
        assert!(
            shown.len() < 300 && shown.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{shown}"
        );
    }
}
