//! Values that several tables share: secrets, endpoint URLs, permission set names, CA files.

use std::net::IpAddr;
use std::path::Path;

use toml::Spanned;

use super::names::check_name;
use super::raw::RawSecret;
use super::read::Reader;
use crate::secret::Secret;

/// What a secret stands in for under `check --no-secrets`, which reads none.
const NOT_READ: &str = "(not read)";

impl Reader<'_> {
    /// Checked permission set names.
    pub fn permission_sets(&mut self, context: &str, sets: &[Spanned<String>]) -> Vec<Box<str>> {
        let mut out = Vec::with_capacity(sets.len());
        for set in sets {
            if let Err(why) = check_name(set.get_ref()) {
                self.problem(
                    Some(set.span()),
                    format!("{context}: permission set name `{}` {why}", set.get_ref()),
                );
            }
            out.push(set.get_ref().clone().into_boxed_str());
        }
        out
    }

    /// An absolute http(s) URL without fragment; plain http only to loopback unless allowed.
    pub fn endpoint_url(
        &mut self,
        context: &str,
        key: &str,
        text: &Spanned<String>,
        allow_plain_http: bool,
    ) -> Option<http::Uri> {
        let span = Some(text.span());
        let value = text.get_ref();
        if value.contains('#') {
            self.problem(
                span,
                format!("{context}: {key} `{value}` must not have a fragment"),
            );
            return None;
        }
        let uri: http::Uri = match value.parse() {
            Ok(uri) => uri,
            Err(e) => {
                self.problem(span, format!("{context}: {key} `{value}` is not a URL ({e})"));
                return None;
            }
        };
        let Some(host) = uri.host() else {
            self.problem(
                span,
                format!("{context}: {key} `{value}` must be an absolute http:// or https:// URL"),
            );
            return None;
        };
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if allow_plain_http || is_loopback_host(host) => {}
            Some("http") => {
                self.problem(
                    span,
                    format!(
                        "{context}: {key} `{value}` is plain http to a non-loopback host, which would send credentials in clear text; use https, or set `allow_plain_http = true` on this entry"
                    ),
                );
                return None;
            }
            _ => {
                self.problem(
                    span,
                    format!("{context}: {key} `{value}` must be an http:// or https:// URL"),
                );
                return None;
            }
        }
        Some(uri)
    }

    /// A secret from the file itself, the environment or a file. An empty one is refused:
    /// it is always a mistake (an unset variable exported as empty, a truncated file).
    pub fn secret(&mut self, context: &str, raw: &Spanned<RawSecret>) -> Option<Secret> {
        let span = Some(raw.span());
        let value = match raw.get_ref() {
            RawSecret::Literal(secret) => {
                self.literal_secrets = true;
                secret.clone()
            }
            RawSecret::Env(_) | RawSecret::File(_) if !self.read_secrets => Secret::new(NOT_READ),
            RawSecret::Env(var) => match (self.env)(var) {
                Some(value) => Secret::new(value),
                None => {
                    self.problem(
                        span,
                        format!("{context}: environment variable `{var}` is not set"),
                    );
                    return None;
                }
            },
            RawSecret::File(file) => {
                let path = self.base_dir.join(file);
                self.files.push(path.clone());
                self.secret_files.push(path.clone());
                match std::fs::read_to_string(&path) {
                    Ok(mut text) => {
                        if text.ends_with('\n') {
                            text.pop();
                            if text.ends_with('\r') {
                                text.pop();
                            }
                        }
                        Secret::new(text)
                    }
                    Err(e) => {
                        self.problem(span, format!("{context}: cannot read `{}`: {e}", path.display()));
                        return None;
                    }
                }
            }
        };
        if value.expose().is_empty() {
            let source = match raw.get_ref() {
                RawSecret::Literal(_) => "is empty".to_owned(),
                RawSecret::Env(var) => format!("comes from environment variable `{var}`, which is empty"),
                RawSecret::File(file) => format!("comes from `{file}`, which is empty"),
            };
            self.problem(span, format!("{context} {source}"));
            return None;
        }
        Some(value)
    }

    /// Extra trust anchors from a PEM file, resolved against the config's folder.
    pub fn ca_file(
        &mut self,
        context: &str,
        file: &Spanned<String>,
    ) -> Option<(std::path::PathBuf, Vec<rustls_pki_types::CertificateDer<'static>>)> {
        let path = self.base_dir.join(file.get_ref());
        self.files.push(path.clone());
        match read_certificates(&path) {
            Ok(certs) => Some((path, certs)),
            Err(why) => {
                self.problem(
                    Some(file.span()),
                    format!("{context}: ca_file `{}`: {why}", path.display()),
                );
                None
            }
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_certificates(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    pem_certificates(&text)
}

/// Every certificate of a PEM text; an error when it holds none or a broken one.
pub(super) fn pem_certificates(
    text: &[u8],
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls_pki_types::CertificateDer::pem_slice_iter(text).collect();
    let certs = certs.map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}
