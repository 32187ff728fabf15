//! One token request of any grant: the grant's form fields plus the client's
//! authentication, posted to the token endpoint; and the switch to a staged client secret
//! when the current one is refused.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::Full;

use super::client_auth::{Authenticated, ClientAuthentication};
use super::endpoint::{TokenClients, TokenTls};
use crate::token::{Fetched, TokenError};

/// Where a grant's token requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub url: http::Uri,
    pub tls: TokenTls,
}

/// Posts `fields` with `client`'s authentication. When the token endpoint answers
/// `invalid_client` and a staged secret exists, tries that once, and keeps it when it works.
pub async fn request_token(
    clients: &TokenClients,
    endpoint: &Endpoint,
    fields: &[(&str, &str)],
    client: &ClientAuthentication,
) -> Result<Fetched, TokenError> {
    let first = send(clients, endpoint, fields, client, false).await;
    match &first {
        Err(TokenError::OAuth { error, .. }) if error == "invalid_client" && client.has_staged() => {
            let staged = send(clients, endpoint, fields, client, true).await;
            if staged.is_ok() {
                tracing::warn!(
                    token_url = %endpoint.url,
                    "client_secret refused (invalid_client); next_client_secret worked and is used from now on"
                );
                client.switch_to_staged();
                return staged;
            }
            first
        }
        _ => first,
    }
}

async fn send(
    clients: &TokenClients,
    endpoint: &Endpoint,
    fields: &[(&str, &str)],
    client: &ClientAuthentication,
    staged: bool,
) -> Result<Fetched, TokenError> {
    let auth = client.authenticate(&endpoint.url, staged)?;
    let mut result = clients
        .send(&endpoint.tls, build(&endpoint.url, fields, &auth))
        .await;
    if let (Err(err), Some(assertion)) = (&mut result, &auth.assertion) {
        // An endpoint that echoes its input must not put a usable assertion in a log.
        err.sanitize(&[assertion.expose()]);
    }
    result
}

/// The token request, ready to send.
pub fn build(url: &http::Uri, fields: &[(&str, &str)], auth: &Authenticated) -> http::Request<Full<Bytes>> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    for (k, v) in &auth.fields {
        form.append_pair(k, v);
    }
    let mut builder = http::Request::post(url.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    if let Some(value) = &auth.header {
        builder = builder.header(AUTHORIZATION, value.clone());
    }
    builder
        .body(Full::new(Bytes::from(form.finish())))
        .expect("token_url is a valid URI and the headers are valid")
}
