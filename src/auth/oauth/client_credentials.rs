//! The OAuth 2.0 client credentials grant (RFC 6749 §4.4), with any client authentication.

use super::client_auth::ClientAuthentication;
use super::endpoint::TokenClients;
use super::token_request::{Endpoint, request_token};
use crate::token::{Fetched, TokenError};

/// Everything that goes into one client credentials token request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCredentials {
    pub endpoint: Endpoint,
    pub client: ClientAuthentication,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
}

impl ClientCredentials {
    pub fn fields(&self) -> Vec<(&str, &str)> {
        let mut fields = vec![("grant_type", "client_credentials")];
        fields.extend(self.scope.as_deref().map(|s| ("scope", s)));
        fields.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        fields
    }

    pub async fn fetch(&self, clients: &TokenClients) -> Result<Fetched, TokenError> {
        request_token(clients, &self.endpoint, &self.fields(), &self.client).await
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use bytes::Bytes;
    use http::header::AUTHORIZATION;
    use http_body_util::{BodyExt, Full};

    use super::super::client_auth::StagedSecret;
    use super::super::token_request::build;
    use super::*;
    use crate::config::ClientAuth;
    use crate::secret::Secret;

    fn grant(auth: ClientAuth) -> ClientCredentials {
        ClientCredentials {
            endpoint: Endpoint {
                url: "https://idp.example/token".parse().unwrap(),
                tls: Default::default(),
            },
            client: ClientAuthentication::Secret {
                client_id: "my id".into(),
                mode: auth,
                secret: StagedSecret::new(Secret::new("s:%+/=&ü"), None),
            },
            scope: Some("api refresh".into()),
            params: vec![("audience".into(), "https://api.example".into())],
        }
    }

    fn request(g: &ClientCredentials) -> http::Request<Full<Bytes>> {
        let auth = g.client.authenticate(&g.endpoint.url, false).unwrap();
        build(&g.endpoint.url, &g.fields(), &auth)
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

    #[tokio::test]
    async fn header_auth_form_encodes_before_base64() {
        let req = request(&grant(ClientAuth::Header));
        assert_eq!(decode_basic(&req), "my+id:s%3A%25%2B%2F%3D%26%C3%BC");
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(
            body(req).await,
            "grant_type=client_credentials&scope=api+refresh&audience=https%3A%2F%2Fapi.example"
        );
    }

    #[tokio::test]
    async fn unencoded_header_auth_sends_raw_values() {
        let req = request(&grant(ClientAuth::HeaderUnencoded));
        assert_eq!(decode_basic(&req), "my id:s:%+/=&ü");
    }

    #[tokio::test]
    async fn body_auth_puts_credentials_in_the_form() {
        let req = request(&grant(ClientAuth::Body));
        assert!(req.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            body(req).await,
            "grant_type=client_credentials&scope=api+refresh&audience=https%3A%2F%2Fapi.example&client_id=my+id&client_secret=s%3A%25%2B%2F%3D%26%C3%BC"
        );
    }

    #[tokio::test]
    async fn the_staged_secret_goes_out_only_when_asked_for_or_switched_to() {
        let mut g = grant(ClientAuth::Body);
        g.client = ClientAuthentication::Secret {
            client_id: "id".into(),
            mode: ClientAuth::Body,
            secret: StagedSecret::new(Secret::new("old"), Some(Secret::new("new"))),
        };
        let form = |staged| {
            let auth = g.client.authenticate(&g.endpoint.url, staged).unwrap();
            auth.fields
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str()))
                .collect::<Vec<_>>()
        };
        assert!(form(false).contains(&"client_secret=old".to_owned()));
        assert!(form(true).contains(&"client_secret=new".to_owned()));
        assert!(g.client.has_staged());
        assert_eq!(g.client.secret_in_use(), Some("client_secret"));
        g.client.switch_to_staged();
        assert!(form(false).contains(&"client_secret=new".to_owned()));
        assert!(!g.client.has_staged());
        assert_eq!(g.client.secret_in_use(), Some("next_client_secret"));
    }
}
