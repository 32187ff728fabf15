//! Outbound TLS: rustls with the standard web roots (plus any `ca_file`), ALPN for HTTP/2
//! and HTTP/1.1. Token requests use hyper-util's pooled client; upstream requests use
//! `Upstream`, which keeps its own connections per origin.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub type Connector = HttpsConnector<HttpConnector>;

/// A client certificate chain (leaf first) and its key, for mutual TLS.
pub type Identity<'a> = (&'a [CertificateDer<'static>], &'a PrivateKeyDer<'static>);

/// Builds a pooled client for body type `B` that trusts the web roots and `extra_roots`,
/// presenting `identity` when the server asks for a client certificate.
pub fn pooled<B>(
    extra_roots: &[CertificateDer<'static>],
    identity: Option<Identity<'_>>,
) -> Result<Client<Connector, B>, rustls::Error>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector(extra_roots, identity)?))
}

/// A connector for http and https (rustls, ALPN h2 and http/1.1) that trusts the web roots
/// and `extra_roots`, with an optional client certificate.
pub fn connector(
    extra_roots: &[CertificateDer<'static>],
    identity: Option<Identity<'_>>,
) -> Result<Connector, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let tls = match identity {
        Some((chain, key)) => tls.with_client_auth_cert(chain.to_vec(), key.clone_key())?,
        None => tls.with_no_client_auth(),
    };

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}
