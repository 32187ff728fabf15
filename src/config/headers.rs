//! `headers` on external and named credentials: values that are literals or formulas,
//! parsed at load, with their merge fields checked against the credential they serve.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use toml::Spanned;

use super::read::Reader;
use super::{ExternalCredential, HeaderTemplate, PrincipalKeys, Protocol};
use crate::formula::{Field, Formula};

/// Headers a `headers` table may not set: callout owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// One `headers` table as read: each name with its parsed value and where it was.
pub(super) type RawHeaders = Vec<(HeaderName, Formula, std::ops::Range<usize>)>;

impl Reader<'_> {
    /// The entries of a `headers` table. `sets_authorization` is whether callout sets
    /// `Authorization` itself (then it cannot be configured).
    pub(super) fn headers(
        &mut self,
        context: &str,
        raw: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
        sets_authorization: bool,
    ) -> RawHeaders {
        let mut out: RawHeaders = Vec::new();
        for (key, value) in raw.map(Spanned::into_inner).unwrap_or_default() {
            let Ok(header) = HeaderName::from_bytes(key.get_ref().as_bytes()) else {
                self.problem(
                    Some(key.span()),
                    format!("{context}: `{}` is not a valid header name", key.get_ref()),
                );
                continue;
            };
            if RESERVED_HEADERS.contains(&header.as_str())
                || header.as_str().starts_with("x-callout-")
                || (header == http::header::AUTHORIZATION && sets_authorization)
            {
                self.problem(
                    Some(key.span()),
                    format!("{context}: header `{header}` is set by callout and cannot be configured"),
                );
                continue;
            }
            if out.iter().any(|(h, _, _)| *h == header) {
                self.problem(
                    Some(key.span()),
                    format!("{context}: header `{header}` is configured twice (names are case-insensitive)"),
                );
                continue;
            }
            let formula = match Formula::parse(value.get_ref()) {
                Ok(f) => f,
                Err(e) => {
                    // The value's text starts after its opening quote.
                    let at = value.span().start + 1 + e.offset;
                    self.problem(Some(at..at + 1), format!("{context}: header `{header}`: {e}"));
                    continue;
                }
            };
            if let Some(constant) = formula.constant()
                && HeaderValue::from_str(constant).is_err()
            {
                self.problem(
                    Some(value.span()),
                    format!("{context}: header `{header}` has a value that is not valid in HTTP"),
                );
                continue;
            }
            out.push((header, formula, value.span()));
        }
        out
    }

    /// Splits the headers of an external credential (`shared`) and a named credential
    /// (`own`) into constant values and formulas, checking each formula's merge fields
    /// against `ec`. A header in both is an error: which one wins would be a guess.
    pub(super) fn resolve_headers(
        &mut self,
        context: &str,
        ec: &ExternalCredential,
        shared: &RawHeaders,
        own: RawHeaders,
        sets_authorization: bool,
    ) -> (http::HeaderMap, Vec<HeaderTemplate>) {
        let mut constant = http::HeaderMap::new();
        let mut templates = Vec::new();
        let shared_authorization = shared.iter().find(|(h, _, _)| h == http::header::AUTHORIZATION);
        if sets_authorization && let Some((_, _, span)) = shared_authorization {
            // At the external credential's header: the fix is there or on this named credential.
            self.problem(
                Some(span.clone()),
                format!(
                    "{context}: external credential `{}` sets an `authorization` header, so this named credential needs generate_authorization_header = false",
                    ec.name
                ),
            );
        }
        for (header, _, span) in &own {
            if shared.iter().any(|(h, _, _)| h == header) {
                self.problem(
                    Some(span.clone()),
                    format!(
                        "{context}: header `{header}` is also set by external credential `{}`",
                        ec.name
                    ),
                );
            }
        }
        for (header, formula, span) in shared.iter().cloned().chain(own) {
            for field in formula.fields() {
                if let Some(why) = field_problem(ec, field) {
                    self.problem(Some(span.clone()), format!("{context}: header `{header}`: {why}"));
                }
            }
            match formula.constant() {
                Some(value) => {
                    let value = HeaderValue::from_str(value).expect("checked when read");
                    constant.insert(header, value);
                }
                None => {
                    let needs_token = formula
                        .fields()
                        .any(|f| matches!(f, Field::OAuthToken | Field::AuthorizationHeaderValue));
                    templates.push(HeaderTemplate {
                        secret: formula.holds_secret(),
                        needs_token,
                        name: header,
                        value: formula,
                    });
                }
            }
        }
        // Those that need the token last (`NamedCredential::header_templates` splits there).
        templates.sort_by_key(|t| t.needs_token);
        (constant, templates)
    }
}

/// Why `field` has no value for requests through `ec`, if it has none.
pub(super) fn field_problem(ec: &ExternalCredential, field: &Field) -> Option<String> {
    let protocol = match &ec.protocol {
        Protocol::OAuth2(_) => "oauth2",
        Protocol::Basic => "basic",
        Protocol::Custom => "custom",
        Protocol::None => "none",
        Protocol::AwsSigV4(_) => "aws_sigv4",
    };
    match field {
        Field::Parameter {
            external_credential,
            name,
        } => {
            if **external_credential != *ec.name {
                return Some(format!(
                    "`{field}` names external credential `{external_credential}`, but this one uses `{}`",
                    ec.name
                ));
            }
            let missing: Vec<&str> = ec
                .principals
                .iter()
                .filter(|p| match &p.keys {
                    PrincipalKeys::Custom { parameters } => !parameters.iter().any(|(n, _)| n == name),
                    _ => true,
                })
                .map(|p| &*p.name)
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "`{field}`: principal(s) {} have no parameter `{name}` (parameters are for protocol = \"custom\")",
                    missing.join(", ")
                )
            })
        }
        Field::OAuthToken => (protocol != "oauth2")
            .then(|| format!("`{field}` needs protocol = \"oauth2\", not \"{protocol}\"")),
        Field::AuthorizationHeaderValue => (protocol != "oauth2" && protocol != "basic")
            .then(|| format!("`{field}` needs protocol = \"oauth2\" or \"basic\", not \"{protocol}\"")),
        Field::Username | Field::Password => {
            (protocol != "basic").then(|| format!("`{field}` needs protocol = \"basic\", not \"{protocol}\""))
        }
        Field::User(_) => None,
    }
}

impl Reader<'_> {
    /// Checks a `scope`, which may be a formula over `$User` fields (the evaluated scope is
    /// part of the token's cache key, so each user's token is cached apart).
    pub(super) fn check_scope(&mut self, context: &str, scope: &Spanned<String>) {
        self.user_formula(context, "scope", scope);
    }

    /// A value (`scope`, `jwt_subject`, a `jwt_claims` string) that may be a formula over
    /// `$User` fields only; `None` when a problem was reported.
    pub(super) fn user_formula(
        &mut self,
        context: &str,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<Formula> {
        match Formula::parse(value.get_ref()) {
            Err(e) => {
                let at = value.span().start + 1 + e.offset;
                self.problem(Some(at..at + 1), format!("{context}: {key}: {e}"));
                None
            }
            Ok(formula) => {
                if let Some(field) = formula.fields().find(|f| !matches!(f, Field::User(_))) {
                    self.problem(
                        Some(value.span()),
                        format!("{context}: {key} can use only $User fields, not `{field}`"),
                    );
                    return None;
                }
                Some(formula)
            }
        }
    }
}
