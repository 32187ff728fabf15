//! `[named_credentials.NAME]`: where requests go, and which external credential
//! authenticates them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::names::suggestion;
use super::raw::{RawDuration, RawSecret};
use super::read::{Reader, Table};
use super::{ExternalCredential, NamedCredential, UpstreamUrl};

const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

const KEYS: &[&str] = &[
    "url",
    "external_credential",
    "generate_authorization_header",
    "timeout",
    "ca_file",
    "headers",
    "allow_plain_http",
    "max_upstream_connections",
    "methods",
    "client_certificate",
    "private_key",
];

impl Reader<'_> {
    /// One named credential. `externals` holds every external credential by name, `None`
    /// for one that was defined but has problems of its own (already reported).
    pub(super) fn named_credential(
        &mut self,
        name: &Spanned<String>,
        mut t: Table<'_>,
        externals: &HashMap<String, Option<Arc<ExternalCredential>>>,
    ) -> Option<NamedCredential> {
        let context = t.context.clone();
        let url_text = self.require::<String>(&mut t, "url");
        let ec_name = self.require::<String>(&mut t, "external_credential");
        let generate = self.take::<bool>(&mut t, "generate_authorization_header");
        let timeout = self.take::<RawDuration>(&mut t, "timeout");
        let ca_file = self.take::<String>(&mut t, "ca_file");
        let raw_headers = self.take::<BTreeMap<Spanned<String>, Spanned<String>>>(&mut t, "headers");
        let allow_plain_http = self
            .take::<bool>(&mut t, "allow_plain_http")
            .is_some_and(Spanned::into_inner);
        let max_upstream_connections = self.take::<usize>(&mut t, "max_upstream_connections");
        let methods = self.take::<Vec<Spanned<String>>>(&mut t, "methods");
        let certificate = self.take::<RawSecret>(&mut t, "client_certificate");
        let key = self.take::<RawSecret>(&mut t, "private_key");
        self.finish(t, KEYS, &|_| None);
        let client_identity = match (&certificate, &key) {
            (Some(cert), Some(key)) => self.tls_identity(&context, cert, key),
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                self.problem(
                    Some(one.span()),
                    format!("{context}: mutual TLS needs both client_certificate and private_key"),
                );
                None
            }
        };
        if let Some(n) = &max_upstream_connections
            && *n.get_ref() == 0
        {
            self.problem(
                Some(n.span()),
                format!("{context}: max_upstream_connections must be at least 1"),
            );
        }
        let methods = methods.map(|list| self.methods(&context, list.into_inner()));
        let generate_authorization_header = generate.is_none_or(Spanned::into_inner);

        let url = url_text.and_then(|text| self.upstream_url(&context, &text, allow_plain_http));

        let external = ec_name.and_then(|ec_name| match externals.get(ec_name.get_ref()) {
            Some(ec) => ec.clone(),
            None => {
                let known = externals.keys().map(String::as_str);
                self.problem(
                    Some(ec_name.span()),
                    format!(
                        "{context}: external credential `{}` is not defined{}",
                        ec_name.get_ref(),
                        suggestion(ec_name.get_ref(), known)
                    ),
                );
                None
            }
        });

        let own = self.headers(&context, raw_headers, generate_authorization_header);
        let (headers, header_templates) = match &external {
            Some(ec) => {
                let shared = self.ec_headers.remove(&*ec.name).unwrap_or_default();
                let resolved =
                    self.resolve_headers(&context, ec, &shared, own, generate_authorization_header);
                self.ec_headers.insert(ec.name.to_string(), shared);
                resolved
            }
            None => Default::default(),
        };

        let (ca_file, extra_roots) = match ca_file.and_then(|file| self.ca_file(&context, &file)) {
            Some((path, roots)) => (Some(path), roots),
            None => (None, Vec::new()),
        };

        Some(NamedCredential {
            name: name.get_ref().clone().into_boxed_str(),
            url: url?,
            external_credential: external?,
            generate_authorization_header,
            timeout: timeout.map_or(DEFAULT_UPSTREAM_TIMEOUT, |d| d.into_inner().0),
            max_upstream_connections: max_upstream_connections.map(Spanned::into_inner),
            methods,
            ca_file,
            extra_roots,
            client_identity,
            headers,
            header_templates,
        })
    }

    /// `methods`: upper-case HTTP method names. TRACE and CONNECT are never allowed.
    fn methods(&mut self, context: &str, list: Vec<Spanned<String>>) -> Vec<http::Method> {
        let mut out = Vec::new();
        for name in list {
            let text = name.get_ref();
            match http::Method::from_bytes(text.as_bytes()) {
                Ok(m) if m == http::Method::TRACE || m == http::Method::CONNECT => self.problem(
                    Some(name.span()),
                    format!("{context}: methods cannot allow {m}: callout never forwards it"),
                ),
                Ok(m) if text.bytes().all(|b| b.is_ascii_uppercase()) => out.push(m),
                _ => self.problem(
                    Some(name.span()),
                    format!("{context}: methods: `{text}` is not an upper-case HTTP method such as \"GET\""),
                ),
            }
        }
        out
    }

    /// A named credential's `url`: an endpoint URL without a query, split for joining.
    fn upstream_url(
        &mut self,
        context: &str,
        text: &Spanned<String>,
        allow_plain_http: bool,
    ) -> Option<UpstreamUrl> {
        let uri = self.endpoint_url(context, "url", text, allow_plain_http)?;
        if uri.query().is_some() {
            self.problem(
                Some(text.span()),
                format!("{context}: url must not have a query string"),
            );
            return None;
        }
        let parts = uri.into_parts();
        let base_path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Some(UpstreamUrl {
            scheme: parts.scheme.expect("endpoint_url checks the scheme"),
            authority: parts.authority.expect("endpoint_url checks the authority"),
            base_path,
        })
    }
}
