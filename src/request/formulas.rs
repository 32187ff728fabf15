//! Header formulas at request time: the values of their merge fields (the principal's
//! secrets, the token just applied, the asserted user), and the rule that a rendered value
//! holding CR, LF or NUL is never sent.

use std::borrow::Cow;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};

use super::error::ProxyError;
use crate::config::{Caller, HeaderTemplate, Listen, Principal, PrincipalKeys};
use crate::formula::{Field, Fields, is_header_safe};
use crate::token::Token;

/// `x-callout-user` names the user; `x-callout-user-FIELD` gives `$User.FIELD`.
const USER_HEADER: &str = "x-callout-user";

/// The user a request asserts: `(field in lower case, value)`, `username` for the user
/// header itself. Empty when none is asserted, which is the usual case and allocates nothing.
#[derive(Default)]
pub struct User(Vec<(String, HeaderValue)>);

impl User {
    /// The user `headers` assert, refused unless `caller` may assert users: a caller whose
    /// entry has `assert_users = true`, or anyone when no callers are configured and the
    /// listener is local.
    pub fn asserted(
        headers: &HeaderMap,
        caller: Option<&Caller>,
        callers: bool,
        listen: &Listen,
    ) -> Result<User, ProxyError> {
        let mut found = Vec::new();
        for (name, value) in headers {
            let name = name.as_str();
            let Some(rest) = name.strip_prefix(USER_HEADER) else {
                continue;
            };
            let field = match rest.strip_prefix('-') {
                None if rest.is_empty() => "username",
                Some(field) if !field.is_empty() => field,
                _ => continue,
            };
            found.push((field.to_owned(), value.clone()));
        }
        if found.is_empty() {
            return Ok(User::default());
        }
        let local = match listen {
            Listen::Tcp(addr) => addr.ip().is_loopback(),
            Listen::Unix { .. } => true,
        };
        let allowed = match caller {
            Some(caller) => caller.assert_users,
            None => !callers && local,
        };
        if !allowed {
            return Err(ProxyError::UserAssertionNotAllowed);
        }
        Ok(User(found))
    }

    fn get(&self, field: &str) -> Option<&str> {
        let field = field.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, v)| v.to_str().ok())
    }
}

/// Where a request's merge fields come from.
pub struct RequestFields<'a> {
    pub principal: &'a Principal,
    /// The OAuth token applied to this attempt, if any.
    pub token: Option<&'a Token>,
    /// The Basic credential's `Authorization` value, encoded at load.
    pub basic: Option<&'a HeaderValue>,
    pub user: &'a User,
}

impl Fields for RequestFields<'_> {
    fn get(&self, field: &Field) -> Option<Cow<'_, str>> {
        let keys = &self.principal.keys;
        match (field, keys) {
            (Field::Parameter { name, .. }, PrincipalKeys::Custom { parameters }) => parameters
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| Cow::Borrowed(v.expose())),
            (Field::OAuthToken, _) => self.token.map(|t| Cow::Borrowed(t.access_token().expose())),
            (Field::AuthorizationHeaderValue, _) => self
                .token
                .map(Token::authorization)
                .or(self.basic)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            (Field::Username, PrincipalKeys::Basic { username, .. }) => {
                Some(Cow::Borrowed(username.expose()))
            }
            (Field::Password, PrincipalKeys::Basic { password, .. }) => {
                Some(Cow::Borrowed(password.expose()))
            }
            (Field::User(name), _) => self.user.get(name).map(Cow::Borrowed),
            _ => None,
        }
    }
}

/// Renders `templates` into `headers`, replacing any header of the same name.
pub fn render(
    templates: &[HeaderTemplate],
    fields: &RequestFields<'_>,
    headers: &mut HeaderMap,
) -> Result<(), ProxyError> {
    let now = SystemTime::now();
    for template in templates {
        let value = template.value.render(fields, now).map_err(|e| {
            ProxyError::BadRequest(format!("header `{}` cannot be built: {e}", template.name))
        })?;
        if !is_header_safe(&value) {
            return Err(ProxyError::BadHeaderValue(template.name.clone()));
        }
        let mut value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| ProxyError::BadHeaderValue(template.name.clone()))?;
        value.set_sensitive(template.secret);
        headers.insert(template.name.clone(), value);
    }
    Ok(())
}
