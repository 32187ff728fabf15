//! HTTPS upstreams: rustls with an extra trust anchor from `ca_file`, and HTTP/2 by ALPN.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::harness::Callout;
use crate::support::{TokenServer, http_get};

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/certs");

/// An HTTPS server for `localhost`/127.0.0.1 offering h2 and http/1.1, answering with the
/// HTTP version and the Authorization header it received.
async fn tls_upstream() -> std::net::SocketAddr {
    tls_upstream_with(None).await
}

/// Like `tls_upstream`; with `client_ca`, it requires a client certificate issued by it and
/// also answers with the certificate's subject common name.
async fn tls_upstream_with(client_ca: Option<CertificateDer<'static>>) -> std::net::SocketAddr {
    let certs = CertificateDer::pem_file_iter(format!("{CERTS}/server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{CERTS}/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let client = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let mut body = format!("{:?} {auth} {}", req.version(), req.uri().path());
                    if client > 0 {
                        body.push_str(&format!(" client-certificates={client}"));
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn config(token: &TokenServer, upstream: std::net::SocketAddr, ca_file: Option<&str>) -> String {
    let ca = ca_file.map(|f| format!("ca_file = \"{f}\"")).unwrap_or_default();
    format!(
        r#"
[external_credentials.Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "{}"

[[external_credentials.Idp.principals]]
name = "Svc"
sequence = 1
permission_sets = ["Svc"]
client_id = "svc"
client_secret = "svc-secret"

[named_credentials.Secure]
url = "https://localhost:{}/base"
external_credential = "Idp"
{ca}
"#,
        token.url(),
        upstream.port()
    )
}

#[tokio::test]
async fn https_upstream_with_ca_file_speaks_http2() {
    let token = TokenServer::start().await;
    let upstream = tls_upstream().await;
    let callout = Callout::start(&config(&token, upstream, Some(&format!("{CERTS}/ca.pem")))).await;
    let (status, _, body) =
        http_get(&callout.url("/Secure/x"), &[("x-callout-permission-sets", "Svc")]).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    let issued = token.issued();
    assert_eq!(body, format!("HTTP/2.0 Bearer {} /base/x", issued[0]));
}

#[tokio::test]
async fn an_untrusted_certificate_is_upstream_unreachable() {
    let token = TokenServer::start().await;
    let upstream = tls_upstream().await;
    let callout = Callout::start(&config(&token, upstream, None)).await;
    let (status, headers, body) =
        http_get(&callout.url("/Secure/x"), &[("x-callout-permission-sets", "Svc")]).await;
    assert_eq!(status, 502, "{body:?}");
    assert_eq!(headers["x-callout-error"], "upstream_unreachable");
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("certificate"),
        "the detail names the TLS failure: {body}"
    );
}

/// A CA and a client certificate it issued, made here: (CA DER, certificate PEM, key PEM).
fn client_pki() -> (CertificateDer<'static>, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = client.signed_by(&key, &issuer).unwrap();
    (ca_cert.der().clone(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_named_credential_with_a_client_certificate_speaks_mutual_tls() {
    let token = TokenServer::start().await;
    let (ca, cert, key) = client_pki();
    let upstream = tls_upstream_with(Some(ca)).await;
    let ca_file = format!("{CERTS}/ca.pem");
    // The named credential is the config's last table: its keys go at the end.
    let toml = format!(
        "{}\nca_file = \"{ca_file}\"\nclient_certificate = {{ file = \"client.pem\" }}\nprivate_key = {{ file = \"client.key\" }}\n",
        config(&token, upstream, None).trim_end()
    );
    let files = [("client.pem", cert.as_str()), ("client.key", key.as_str())];
    let callout = Callout::start_with_files(&toml, &files).await;
    let (status, _, body) =
        http_get(&callout.url("/Secure/x"), &[("x-callout-permission-sets", "Svc")]).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("/base/x client-certificates=1"), "{body}");

    // Without the certificate, the upstream refuses the handshake.
    let plain = Callout::start(&config(&token, upstream, Some(&ca_file))).await;
    let (status, headers, _) =
        http_get(&plain.url("/Secure/x"), &[("x-callout-permission-sets", "Svc")]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-callout-error"], "upstream_unreachable");
}
