//! The JWT bearer grant (RFC 7523 §2.1): a fresh signed assertion is the grant, and no
//! client authentication goes with it.

use super::client_auth::{ClientAuthentication, Signer};
use super::endpoint::TokenClients;
use super::token_request::{Endpoint, request_token};
use crate::token::{Fetched, TokenError};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtBearer {
    pub endpoint: Endpoint,
    /// `iss` unless `jwt_issuer` is set: the client id (Salesforce's consumer key).
    pub client_id: String,
    pub signer: Signer,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
}

impl JwtBearer {
    pub async fn fetch(&self, clients: &TokenClients) -> Result<Fetched, TokenError> {
        let subject = self.signer.0.subject.as_deref().unwrap_or_default();
        let assertion = self
            .signer
            .assertion(&self.client_id, subject, &self.endpoint.url.to_string())?;
        let mut fields = vec![("grant_type", GRANT_TYPE), ("assertion", assertion.expose())];
        fields.extend(self.scope.as_deref().map(|s| ("scope", s)));
        fields.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut result = request_token(clients, &self.endpoint, &fields, &ClientAuthentication::None).await;
        if let Err(err) = &mut result {
            err.sanitize(&[assertion.expose()]);
        }
        result
    }
}
