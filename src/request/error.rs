//! Errors that callout itself answers with, as RFC 9457 problem+json.
//!
//! Each variant maps to one `code` and one status in `ProxyError::code`, the single place
//! where that decision is made. Messages never carry a secret, a token or a header value.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::auth::AuthError;
use crate::token::TokenError;

pub const ERROR_HEADER: HeaderName = HeaderName::from_static("x-callout-error");

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    CallerUnauthorized(String),
    #[error(
        "no principal of external credential `{external_credential}` is granted any of the asserted permission sets"
    )]
    NoPrincipal { external_credential: Box<str> },
    #[error("no named credential is called `{name}`{suggestion}")]
    UnknownNamedCredential { name: String, suggestion: String },
    #[error("{method} is not allowed here")]
    MethodNotAllowed {
        method: http::Method,
        /// The `Allow` header: what is allowed instead.
        allow: HeaderValue,
    },
    #[error(
        "no admin endpoint is called `{0}`; try /.callout/health, /.callout/ready, /.callout/metrics or /.callout/credentials"
    )]
    UnknownAdminPath(String),
    #[error("{0} needs a caller whose entry has `admin = true`")]
    AdminRequired(&'static str),
    #[error("all {limit} upstream connections of this named credential stayed busy for {waited:?}")]
    UpstreamBusy { limit: usize, waited: Duration },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    SubjectTokenRequired(AuthError),
    #[error("x-callout-user headers need a caller whose entry has `assert_users = true`")]
    UserAssertionNotAllowed,
    #[error(
        "header `{0}` would hold a control character (CR, LF or NUL) from a merge field; the request was not sent"
    )]
    BadHeaderValue(http::HeaderName),
    #[error("{0}")]
    CannotApply(AuthError),
    #[error("{0}")]
    TokenRequestFailed(TokenError),
    #[error("{0}")]
    TokenRequestTimeout(TokenError),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
}

impl From<AuthError> for ProxyError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Token(err) => err.into(),
            err @ AuthError::SubjectTokenRequired => ProxyError::SubjectTokenRequired(err),
            err @ (AuthError::Sign(_) | AuthError::Scope(_)) => ProxyError::CannotApply(err),
        }
    }
}

impl From<TokenError> for ProxyError {
    fn from(err: TokenError) -> Self {
        if err.is_timeout() {
            ProxyError::TokenRequestTimeout(err)
        } else {
            ProxyError::TokenRequestFailed(err)
        }
    }
}

/// What a named credential without a `methods` list allows: everything but TRACE and CONNECT.
pub const ALLOW_DEFAULT: HeaderValue =
    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");

impl ProxyError {
    /// The stable `code` and the HTTP status that goes with it.
    pub fn code(&self) -> (&'static str, StatusCode) {
        match self {
            ProxyError::BadRequest(_) => ("bad_request", StatusCode::BAD_REQUEST),
            ProxyError::CallerUnauthorized(_) => ("caller_unauthorized", StatusCode::UNAUTHORIZED),
            ProxyError::NoPrincipal { .. } => ("no_principal", StatusCode::FORBIDDEN),
            ProxyError::UnknownNamedCredential { .. } => ("unknown_named_credential", StatusCode::NOT_FOUND),
            ProxyError::MethodNotAllowed { .. } => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            ProxyError::UnknownAdminPath(_) => ("not_found", StatusCode::NOT_FOUND),
            ProxyError::AdminRequired(_) => ("admin_required", StatusCode::FORBIDDEN),
            ProxyError::UpstreamBusy { .. } => ("upstream_busy", StatusCode::SERVICE_UNAVAILABLE),
            ProxyError::BodyTooLarge { .. } => ("body_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            ProxyError::SubjectTokenRequired(_) => ("subject_token_required", StatusCode::UNAUTHORIZED),
            ProxyError::UserAssertionNotAllowed => ("user_assertion_not_allowed", StatusCode::FORBIDDEN),
            ProxyError::BadHeaderValue(_) => ("bad_header_value", StatusCode::BAD_REQUEST),
            ProxyError::CannotApply(_) => ("bad_request", StatusCode::BAD_REQUEST),
            ProxyError::TokenRequestFailed(_) => ("token_request_failed", StatusCode::BAD_GATEWAY),
            ProxyError::UpstreamUnreachable(_) => ("upstream_unreachable", StatusCode::BAD_GATEWAY),
            ProxyError::TokenRequestTimeout(_) => ("token_request_timeout", StatusCode::GATEWAY_TIMEOUT),
            ProxyError::UpstreamTimeout(_) => ("upstream_timeout", StatusCode::GATEWAY_TIMEOUT),
        }
    }

    /// The problem+json response for this error.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let (code, status) = self.code();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "code": code,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        headers.insert(ERROR_HEADER, HeaderValue::from_static(code));
        if let ProxyError::MethodNotAllowed { allow, .. } = self {
            headers.insert(http::header::ALLOW, allow.clone());
        }
        response
    }
}
