//! Keys and certificates: a JWS signing key from `private_key`, a TLS client identity from
//! `client_certificate` + `private_key`. Both are checked at load, so a key that cannot sign
//! is a `check` error with its line, not a failed token request later.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::TlsIdentity;
use super::raw::RawSecret;
use super::read::Reader;
use super::values::pem_certificates;
use crate::jws::{Algorithm, SigningKey};

impl Reader<'_> {
    /// The signing key of `raw` for `algorithm`; `Ok(None)` when secrets are not read.
    /// `Err` means a problem was reported.
    pub(super) fn signing_key(
        &mut self,
        context: &str,
        raw: &Spanned<RawSecret>,
        algorithm: Algorithm,
    ) -> Result<Option<SigningKey>, ()> {
        let pem = self.secret(&format!("{context}: private_key"), raw).ok_or(())?;
        if !self.read_secrets {
            return Ok(None);
        }
        SigningKey::from_pem(pem.expose().as_bytes(), algorithm)
            .map(Some)
            .map_err(|why| {
                self.problem(
                    Some(raw.span()),
                    format!("{context}: private_key {}: {why}", describe_source(raw.get_ref())),
                );
            })
    }

    /// A TLS client identity; `None` when a problem was reported, or when secrets are not
    /// read (the certificate is still checked then).
    pub(super) fn tls_identity(
        &mut self,
        context: &str,
        certificate: &Spanned<RawSecret>,
        key: &Spanned<RawSecret>,
    ) -> Option<TlsIdentity> {
        let chain = self.certificates(context, certificate)?;
        let pem = self.secret(&format!("{context}: private_key"), key)?;
        if !self.read_secrets {
            return None;
        }
        let source = describe_source(key.get_ref());
        let der = match PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()) {
            Ok(der) => der,
            Err(_) => {
                let why = if pem.expose().contains("ENCRYPTED") {
                    "is an encrypted private key; callout needs it unencrypted"
                } else {
                    "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
                };
                self.problem(Some(key.span()), format!("{context}: private_key {source} {why}"));
                return None;
            }
        };
        // rustls would refuse a mismatched or unusable key only when the first connection
        // is made; here it is a config error.
        let provider = rustls::crypto::ring::default_provider();
        let certified = match provider.key_provider.load_private_key(der.clone_key()) {
            Ok(signer) => rustls::sign::CertifiedKey::new(chain.clone(), signer),
            Err(e) => {
                self.problem(
                    Some(key.span()),
                    format!("{context}: private_key {source} cannot be used for TLS: {e}"),
                );
                return None;
            }
        };
        if let Err(e) = certified.keys_match() {
            self.problem(
                Some(key.span()),
                format!("{context}: private_key {source} does not belong to client_certificate ({e})"),
            );
            return None;
        }
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
        Some(TlsIdentity {
            chain,
            key: std::sync::Arc::new(der),
            fingerprint: fingerprint.as_ref().try_into().expect("SHA-256 is 32 bytes"),
        })
    }

    /// A PEM certificate chain, leaf first. Certificates are public: they are read even
    /// under `check --no-secrets`, and a file of them gets no permission warning.
    pub(super) fn certificates(
        &mut self,
        context: &str,
        raw: &Spanned<RawSecret>,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let what = format!("{context}: client_certificate");
        let text = match raw.get_ref() {
            RawSecret::Literal(text) => text.expose().to_owned(),
            RawSecret::Env(var) => match (self.env)(var) {
                Some(text) => text,
                None => {
                    self.problem(
                        Some(raw.span()),
                        format!("{what}: environment variable `{var}` is not set"),
                    );
                    return None;
                }
            },
            RawSecret::File(file) => {
                let path = self.base_dir.join(file);
                self.files.push(path.clone());
                match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(e) => {
                        self.problem(
                            Some(raw.span()),
                            format!("{what}: cannot read `{}`: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
        };
        match pem_certificates(text.as_bytes()) {
            Ok(chain) => Some(chain),
            Err(_) => {
                self.problem(
                    Some(raw.span()),
                    format!(
                        "{what} {} holds no PEM certificate",
                        describe_source(raw.get_ref())
                    ),
                );
                None
            }
        }
    }
}

/// Where a value came from, for messages: never the value.
fn describe_source(raw: &RawSecret) -> String {
    match raw {
        RawSecret::Literal(_) => "(written in the file)".to_owned(),
        RawSecret::Env(var) => format!("from environment variable `{var}`"),
        RawSecret::File(file) => format!("`{file}`"),
    }
}
