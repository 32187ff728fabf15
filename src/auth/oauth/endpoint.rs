//! Sending a token request: the HTTP clients token requests go out on (one per set of
//! trust anchors and client certificate), and reading the answer.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use rustls_pki_types::CertificateDer;

use super::response::parse_token_response;
use crate::cause::cause_chain;
use crate::config::TlsIdentity;
use crate::token::{Fetched, TokenError};

/// Token responses larger than this are not tokens.
const MAX_RESPONSE: usize = 64 * 1024;

type Http = hyper_util::client::legacy::Client<crate::upstream::Connector, Full<Bytes>>;

/// How a token endpoint's TLS is set up: whom it trusts beyond the web roots, and the
/// client certificate it presents (`tls_client_auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TokenTls {
    pub roots: Vec<CertificateDer<'static>>,
    pub identity: Option<TlsIdentity>,
}

/// The HTTP clients of token requests, shared by every config a process loads, so that
/// their pooled connections survive reloads.
#[derive(Default)]
pub struct TokenClients {
    clients: Mutex<HashMap<TokenTls, Http>>,
}

impl TokenClients {
    fn client(&self, tls: &TokenTls) -> Result<Http, TokenError> {
        let mut clients = self.clients.lock().expect("token client map poisoned");
        if let Some(client) = clients.get(tls) {
            return Ok(client.clone());
        }
        let identity = tls.identity.as_ref().map(|i| (i.chain.as_slice(), &*i.key));
        let client = crate::upstream::pooled(&tls.roots, identity)
            .map_err(|e| TokenError::Unreachable(format!("cannot set up TLS for the token endpoint: {e}")))?;
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    /// Sends `request` with the client for `tls` and reads the token response.
    pub async fn send(
        &self,
        tls: &TokenTls,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Fetched, TokenError> {
        let response = self
            .client(tls)?
            .request(request)
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
    use super::*;

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
}
