//! The OAuth 2.0 client credentials grant (RFC 6749 §4.4).

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full, Limited};

use zeroize::Zeroizing;

use super::TokenHttp;
use super::response::parse_token_response;
use crate::auth::basic_authorization as basic;
use crate::cause::cause_chain;
use crate::config::ClientAuth;
use crate::secret::Secret;
use crate::token::{Fetched, TokenError};

/// Token responses larger than this are not tokens.
const MAX_RESPONSE: usize = 64 * 1024;

/// Everything that goes into one client credentials token request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCredentials {
    pub token_url: http::Uri,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
}

impl ClientCredentials {
    /// The token request, ready to send.
    pub fn request(&self) -> http::Request<Full<Bytes>> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        for (k, v) in &self.params {
            form.append_pair(k, v);
        }
        let mut builder = http::Request::post(self.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match self.client_auth {
            ClientAuth::Header => {
                // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic.
                let id: String = form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
                let secret: Zeroizing<String> = Zeroizing::new(
                    form_urlencoded::byte_serialize(self.client_secret.expose().as_bytes()).collect(),
                );
                builder = builder.header(AUTHORIZATION, basic(&id, &secret));
            }
            ClientAuth::HeaderUnencoded => {
                builder = builder.header(AUTHORIZATION, basic(&self.client_id, self.client_secret.expose()));
            }
            ClientAuth::Body => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
        }
        builder
            .body(Full::new(Bytes::from(form.finish())))
            .expect("token_url is a valid URI and the headers are valid")
    }

    pub async fn fetch(&self, http: &TokenHttp) -> Result<Fetched, TokenError> {
        let response = http
            .request(self.request())
            .await
            .map_err(|e| TokenError::Unreachable(without_peer_bytes(cause_chain(&e))))?;
        let status = response.status().as_u16();
        // RFC 9110 §10.2.3: a 429 or 503 may say when to come back (only the seconds form
        // is honoured; an HTTP date falls back to our own backoff).
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| status == 429 || status == 503);
        if let Some(seconds) = retry_after {
            return Err(TokenError::RetryLater {
                status,
                retry_after: std::time::Duration::from_secs(seconds),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // hyper's `Display` is its own description only ("error reading a body from
        // connection"), without the source that could hold a GOAWAY's debug data.
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| TokenError::Malformed(format!("reading the response failed: {e}")))?
            .to_bytes();
        parse_token_response(status, content_type.as_deref(), &body)
    }
}

/// `chain` (a failed exchange as hyper, rustls and the OS tell it, shown to callers) without
/// what the peer put in it. Their messages are their own words, with one exception: h2
/// appends the debug data of a GOAWAY frame the token endpoint sent, as ` (b"...")`, and
/// that can come after the request went out, so it can echo the secret. Everything from
/// there on goes. (rustls' certificate errors name the certificate's DNS names; they come
/// before any request is sent.)
fn without_peer_bytes(mut chain: String) -> String {
    if let Some(at) = chain.find(" (b\"") {
        chain.truncate(at);
        chain.push_str(" (debug data withheld)");
    }
    chain
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn grant(auth: ClientAuth) -> ClientCredentials {
        ClientCredentials {
            token_url: "https://idp.example/token".parse().unwrap(),
            client_id: "my id".into(),
            client_secret: Secret::new("s:%+/=&ü"),
            client_auth: auth,
            scope: Some("api refresh".into()),
            params: vec![("audience".into(), "https://api.example".into())],
        }
    }

    fn decode_basic(req: &http::Request<Full<Bytes>>) -> String {
        let value = req.headers()[AUTHORIZATION].to_str().unwrap();
        let b64 = value.strip_prefix("Basic ").unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    async fn body(req: http::Request<Full<Bytes>>) -> String {
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn goaway_debug_data_is_not_passed_on() {
        // As h2 0.4 prints a GOAWAY the peer sent, behind hyper and hyper-util.
        let chain = r#"client error (SendRequest): http2 error: connection error received: not a result of an error (b"grant_type=client_credentials&client_secret=hunter2")"#;
        assert_eq!(
            without_peer_bytes(chain.into()),
            "client error (SendRequest): http2 error: connection error received: not a result of an error (debug data withheld)"
        );
        let refused = "client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(without_peer_bytes(refused.into()), refused);
    }

    #[tokio::test]
    async fn header_auth_form_encodes_before_base64() {
        let req = grant(ClientAuth::Header).request();
        assert_eq!(decode_basic(&req), "my+id:s%3A%25%2B%2F%3D%26%C3%BC");
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(
            body(req).await,
            "grant_type=client_credentials&scope=api+refresh&audience=https%3A%2F%2Fapi.example"
        );
    }

    #[tokio::test]
    async fn unencoded_header_auth_sends_raw_values() {
        let req = grant(ClientAuth::HeaderUnencoded).request();
        assert_eq!(decode_basic(&req), "my id:s:%+/=&ü");
    }

    #[tokio::test]
    async fn body_auth_puts_credentials_in_the_form() {
        let req = grant(ClientAuth::Body).request();
        assert!(req.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            body(req).await,
            "grant_type=client_credentials&scope=api+refresh&audience=https%3A%2F%2Fapi.example&client_id=my+id&client_secret=s%3A%25%2B%2F%3D%26%C3%BC"
        );
    }
}
