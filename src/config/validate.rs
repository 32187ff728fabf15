//! From TOML text to a validated `Config`, collecting every problem on the way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::{
    Protocol, RawCaller, RawExternalCredential, RawNamedCredential, RawPrincipal, RawSecret, RawServer,
};
use super::{
    Caller, Config, ExternalCredential, Listen, NamedCredential, Principal, Problem, Server, UpstreamUrl,
};
use crate::secret::Secret;

const DEFAULT_LISTEN: &str = "127.0.0.1:7575";
const DEFAULT_RETRY_BODY_LIMIT: u64 = 1024 * 1024;
const DEFAULT_MAX_REQUEST_BODY: u64 = 10 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Token request fields callout fills in itself; a duplicate would be refused by servers.
const RESERVED_TOKEN_PARAMS: &[&str] = &["grant_type", "scope", "client_id", "client_secret"];
/// Caller tokens are bearer secrets: anything shorter is guessable.
const MIN_CALLER_TOKEN: usize = 16;

/// Headers a named credential's `headers` table may not set: callout owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

pub(super) fn default_server() -> Server {
    Server {
        listen: Listen::Tcp(DEFAULT_LISTEN.parse().expect("the default listen address parses")),
        default_permission_sets: Vec::new(),
        retry_body_limit: DEFAULT_RETRY_BODY_LIMIT,
        max_request_body: DEFAULT_MAX_REQUEST_BODY,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        allow_remote_callers: false,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
    }
}

pub(super) fn validate(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut v = Validator {
        literal_secrets: false,
        text,
        base_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
        env,
        problems: Vec::new(),
    };
    let config = v.document(path);
    if v.problems.is_empty() {
        Ok(config.expect("a config is built whenever there are no problems"))
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(v.problems)
    }
}

struct Validator<'a> {
    literal_secrets: bool,
    text: &'a str,
    base_dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = span.map_or((0, 0), |s| line_column(self.text, s.start));
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn toml_error(&mut self, context: &str, err: toml::de::Error) {
        let message = err.message().trim_end().to_owned();
        let message = if context.is_empty() {
            message
        } else {
            format!("{context}: {message}")
        };
        // A few parser errors (e.g. the nesting limit) have no span: point at the start.
        self.problem(Some(err.span().unwrap_or(0..0)), message);
    }

    /// Deserializes one section on its own, so one bad entry does not hide the others.
    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        context: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(e) => {
                self.toml_error(context, e);
                None
            }
        }
    }

    fn document(&mut self, path: &Path) -> Option<Config> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                self.toml_error("", e);
            }
            return None;
        }
        let mut server_value = None;
        let mut externals_value = None;
        let mut nameds_value = None;
        let mut callers_value = None;
        for (key, value) in root.into_inner() {
            match key.get_ref().as_ref() {
                "server" => server_value = Some(value),
                "external_credentials" => externals_value = Some(value),
                "named_credentials" => nameds_value = Some(value),
                "callers" => callers_value = Some(value),
                other => self.problem(
                    Some(key.span()),
                    format!(
                        "unknown key `{other}`; expected `server`, `callers`, `external_credentials` or `named_credentials`"
                    ),
                ),
            }
        }

        let mut callers = Vec::new();
        let mut caller_tokens = Vec::new();
        for (name, value) in self.entries("callers", callers_value) {
            let context = format!("caller `{}`", name.get_ref());
            if let Some(raw) = self.section::<RawCaller>(&context, value)
                && let Some(caller) = self.caller(&name, raw, &mut caller_tokens)
            {
                callers.push(caller);
            }
        }

        let server = match server_value {
            Some(value) => self.section::<RawServer>("[server]", value),
            None => Some(RawServer::default()),
        };
        let server = server.and_then(|raw| self.server(raw, !callers.is_empty()));

        let mut externals: HashMap<String, Arc<ExternalCredential>> = HashMap::new();
        let mut external_list = Vec::new();
        for (name, value) in self.entries("external_credentials", externals_value) {
            let context = format!("external credential `{}`", name.get_ref());
            let Some(raw) = self.section::<RawExternalCredential>(&context, value) else {
                continue;
            };
            if let Some(ec) = self.external_credential(&name, raw) {
                let ec = Arc::new(ec);
                externals.insert(name.into_inner(), ec.clone());
                external_list.push(ec);
            }
        }

        let mut named = HashMap::new();
        for (name, value) in self.entries("named_credentials", nameds_value) {
            let context = format!("named credential `{}`", name.get_ref());
            let Some(raw) = self.section::<RawNamedCredential>(&context, value) else {
                continue;
            };
            if let Some(nc) = self.named_credential(&name, raw, &externals) {
                named.insert(nc.name.clone(), Arc::new(nc));
            }
        }

        Some(Config {
            path: path.to_owned(),
            server: server?,
            external_credentials: external_list,
            named_credentials: named,
            callers,
            has_literal_secrets: self.literal_secrets,
        })
    }

    /// The `NAME = { ... }` entries of a top-level table, with checked names.
    fn entries<'i>(
        &mut self,
        kind: &str,
        value: Option<Spanned<DeValue<'i>>>,
    ) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
        let Some(value) = value else { return Vec::new() };
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.problem(Some(span), format!("`{kind}` must be a table of named entries"));
            return Vec::new();
        };
        let what = kind.trim_end_matches('s').replace('_', " ");
        let mut out = Vec::new();
        for (key, value) in table {
            let name = Spanned::new(key.span(), key.get_ref().to_string());
            if let Err(why) = check_name(name.get_ref()) {
                self.problem(
                    Some(name.span()),
                    format!("{what} name `{}` {why}", name.get_ref()),
                );
            }
            out.push((name, value));
        }
        out
    }

    /// `[server]`; whether a non-loopback `listen` is acceptable depends on `callers`.
    fn server(&mut self, raw: RawServer, has_callers: bool) -> Option<Server> {
        let listen_text = raw
            .listen
            .as_ref()
            .map_or(DEFAULT_LISTEN, |s| s.get_ref().as_str());
        let listen_span = raw.listen.as_ref().map(Spanned::span);
        let mode = match &raw.unix_socket_mode {
            None => Some(0o600),
            Some(text) => match u32::from_str_radix(text.get_ref().trim_start_matches("0o"), 8) {
                Ok(mode) if mode <= 0o777 => Some(mode),
                _ => {
                    self.problem(
                        Some(text.span()),
                        format!(
                            "unix_socket_mode `{}` is not an octal file mode like \"0600\"",
                            text.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let listen = if let Some(path) = listen_text.strip_prefix("unix:") {
            if path.is_empty() {
                self.problem(
                    listen_span.clone(),
                    "listen `unix:` needs a socket path, e.g. \"unix:/run/callout.sock\"",
                );
                None
            } else {
                mode.map(|mode| Listen::Unix {
                    path: self.base_dir.join(path),
                    mode,
                })
            }
        } else {
            match listen_text.parse::<SocketAddr>() {
                Ok(addr) => Some(Listen::Tcp(addr)),
                Err(_) => {
                    self.problem(
                        listen_span.clone(),
                        format!(
                            "listen `{listen_text}` is not an IP address and port (e.g. \"127.0.0.1:7575\") or \"unix:PATH\""
                        ),
                    );
                    None
                }
            }
        };
        if let Some(Listen::Tcp(addr)) = &listen
            && !addr.ip().is_loopback()
            && !raw.allow_remote_callers
            && !has_callers
        {
            self.problem(
                listen_span,
                format!(
                    "listen `{addr}` is not a loopback address: anyone who can reach it could assert any permission set; configure [callers] or set `allow_remote_callers = true` in [server]"
                ),
            );
        }
        let default_permission_sets = self.permission_sets("[server]", &raw.default_permission_sets);
        Some(Server {
            listen: listen?,
            default_permission_sets,
            retry_body_limit: raw.retry_body_limit.unwrap_or(DEFAULT_RETRY_BODY_LIMIT),
            max_request_body: raw.max_request_body.unwrap_or(DEFAULT_MAX_REQUEST_BODY),
            shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            allow_remote_callers: raw.allow_remote_callers,
            max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1),
            header_read_timeout: raw
                .header_read_timeout
                .map_or(DEFAULT_HEADER_READ_TIMEOUT, |d| d.0),
        })
    }

    /// Checked permission set names.
    fn permission_sets(&mut self, context: &str, sets: &[Spanned<String>]) -> Vec<Box<str>> {
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

    fn caller(
        &mut self,
        name: &Spanned<String>,
        raw: RawCaller,
        seen: &mut Vec<(Secret, String)>,
    ) -> Option<Caller> {
        let context = format!("caller `{}`", name.get_ref());
        if raw.token.is_none() && raw.uid.is_none() {
            self.problem(
                Some(name.span()),
                format!("{context} has neither a `token` nor a `uid`, so no request could ever come from it"),
            );
        }
        let permission_sets = self.permission_sets(&context, &raw.permission_sets);
        let mut token = None;
        if let Some(raw_token) = &raw.token {
            let secret = self.secret(&format!("{context}: token"), raw_token)?;
            if secret.expose().len() < MIN_CALLER_TOKEN {
                self.problem(
                    Some(raw_token.span()),
                    format!("{context}: token is shorter than {MIN_CALLER_TOKEN} characters; use a long random value"),
                );
            }
            if let Some((_, other)) = seen.iter().find(|(s, _)| *s == secret) {
                self.problem(
                    Some(raw_token.span()),
                    format!("{context}: token is the same as caller `{other}`'s"),
                );
            }
            seen.push((secret.clone(), name.get_ref().clone()));
            token = Some(secret);
        }
        Some(Caller {
            name: name.get_ref().clone().into_boxed_str(),
            token,
            uid: raw.uid,
            permission_sets,
        })
    }

    fn external_credential(
        &mut self,
        name: &Spanned<String>,
        raw: RawExternalCredential,
    ) -> Option<ExternalCredential> {
        let context = format!("external credential `{}`", name.get_ref());
        let token_url = self.endpoint_url(&context, "token_url", &raw.token_url, raw.allow_plain_http);

        let mut refresh_on_status = Vec::new();
        for status in &raw.refresh_on_status {
            match u16::try_from(*status.get_ref()) {
                Ok(s @ 400..=599) => refresh_on_status.push(s),
                _ => self.problem(
                    Some(status.span()),
                    format!(
                        "{context}: refresh_on_status {} is not an HTTP error status (400-599)",
                        status.get_ref()
                    ),
                ),
            }
        }

        for key in raw.token_params.keys() {
            if RESERVED_TOKEN_PARAMS.contains(&key.as_str()) {
                self.problem(
                    Some(name.span()),
                    format!("{context}: token_params cannot set `{key}`: callout sends it itself"),
                );
            }
        }

        let mut principals = Vec::new();
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut sequences: HashMap<i64, String> = HashMap::new();
        for spanned in raw.principals {
            let span = spanned.span();
            let p: RawPrincipal = spanned.into_inner();
            let pname = p.name.get_ref().clone();
            if let Err(why) = check_name(&pname) {
                self.problem(
                    Some(p.name.span()),
                    format!("{context}: principal name `{pname}` {why}"),
                );
            }
            if names.insert(pname.clone(), p.name.span()).is_some() {
                self.problem(
                    Some(p.name.span()),
                    format!("{context}: principal `{pname}` is defined twice"),
                );
            }
            let sequence = *p.sequence.get_ref();
            if let Some(other) = sequences.insert(sequence, pname.clone()) {
                self.problem(
                    Some(p.sequence.span()),
                    format!("{context}: sequence {sequence} of principal `{pname}` is already used by principal `{other}`; sequences must be unique"),
                );
            }
            let mut sets = Vec::new();
            for set in &p.permission_sets {
                if let Err(why) = check_name(set.get_ref()) {
                    self.problem(
                        Some(set.span()),
                        format!("{context}: permission set name `{}` {why}", set.get_ref()),
                    );
                }
                sets.push(set.get_ref().clone().into_boxed_str());
            }
            if sets.is_empty() {
                self.problem(
                    Some(span.clone()),
                    format!("{context}: principal `{pname}` has no permission_sets, so no caller could ever use it"),
                );
            }
            let secret_context = format!("{context}: principal `{pname}`: client_secret");
            let Some(client_secret) = self.secret(&secret_context, &p.client_secret) else {
                continue;
            };
            principals.push(Principal {
                name: pname.into_boxed_str(),
                sequence,
                permission_sets: sets,
                client_id: p.client_id,
                client_secret,
                scope: p.scope,
            });
        }
        principals.sort_by_key(|p| p.sequence);

        let Protocol::Oauth2 = raw.protocol;
        Some(ExternalCredential {
            name: name.get_ref().clone().into_boxed_str(),
            flow: raw.flow,
            token_url: token_url?,
            scope: raw.scope,
            client_auth: raw.client_auth,
            token_params: raw.token_params.into_iter().collect(),
            refresh_on_status,
            refresh_before_expiry: raw
                .refresh_before_expiry
                .map_or(DEFAULT_REFRESH_BEFORE_EXPIRY, |d| d.0),
            default_token_ttl: raw.default_token_ttl.map(|d| d.0),
            token_timeout: raw.token_timeout.map_or(DEFAULT_TOKEN_TIMEOUT, |d| d.0),
            principals,
        })
    }

    fn named_credential(
        &mut self,
        name: &Spanned<String>,
        raw: RawNamedCredential,
        externals: &HashMap<String, Arc<ExternalCredential>>,
    ) -> Option<NamedCredential> {
        let context = format!("named credential `{}`", name.get_ref());
        let uri = self.endpoint_url(&context, "url", &raw.url, raw.allow_plain_http);
        let mut url = None;
        if let Some(uri) = uri {
            if uri.query().is_some() {
                self.problem(
                    Some(raw.url.span()),
                    format!("{context}: url must not have a query string"),
                );
            } else {
                let parts = uri.into_parts();
                let base_path = parts
                    .path_and_query
                    .map(|p| p.path().trim_end_matches('/').to_owned())
                    .unwrap_or_default();
                url = Some(UpstreamUrl {
                    scheme: parts.scheme.expect("endpoint_url checks the scheme"),
                    authority: parts.authority.expect("endpoint_url checks the authority"),
                    base_path,
                });
            }
        }

        let ec_name = raw.external_credential.get_ref();
        let external = externals.get(ec_name).cloned();
        if external.is_none() {
            let known: Vec<&str> = externals.keys().map(String::as_str).collect();
            self.problem(
                Some(raw.external_credential.span()),
                format!(
                    "{context}: external credential `{ec_name}` is not defined{}",
                    suggestion(ec_name, known.iter().copied())
                ),
            );
        }

        let mut headers = http::HeaderMap::new();
        for (key, value) in &raw.headers {
            let header = HeaderName::from_bytes(key.get_ref().as_bytes());
            let Ok(header) = header else {
                self.problem(
                    Some(key.span()),
                    format!("{context}: `{}` is not a valid header name", key.get_ref()),
                );
                continue;
            };
            if RESERVED_HEADERS.contains(&header.as_str())
                || header.as_str().starts_with("x-callout-")
                || (header == http::header::AUTHORIZATION && raw.generate_authorization_header)
            {
                self.problem(
                    Some(key.span()),
                    format!("{context}: header `{header}` is set by callout and cannot be configured"),
                );
                continue;
            }
            match HeaderValue::from_str(value.get_ref()) {
                Ok(v) => {
                    headers.append(header, v);
                }
                Err(_) => self.problem(
                    Some(value.span()),
                    format!("{context}: header `{header}` has a value that is not valid in HTTP"),
                ),
            }
        }

        let mut ca_file = None;
        let mut extra_roots = Vec::new();
        if let Some(file) = &raw.ca_file {
            let path = self.base_dir.join(file.get_ref());
            match read_certificates(&path) {
                Ok(certs) => extra_roots = certs,
                Err(why) => self.problem(
                    Some(file.span()),
                    format!("{context}: ca_file `{}`: {why}", path.display()),
                ),
            }
            ca_file = Some(path);
        }

        Some(NamedCredential {
            name: name.get_ref().clone().into_boxed_str(),
            url: url?,
            external_credential: external?,
            generate_authorization_header: raw.generate_authorization_header,
            timeout: raw.timeout.map_or(DEFAULT_UPSTREAM_TIMEOUT, |d| d.0),
            ca_file,
            extra_roots,
            headers,
        })
    }

    /// An absolute http(s) URL without fragment; plain http only to loopback unless allowed.
    fn endpoint_url(
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

    fn secret(&mut self, context: &str, raw: &Spanned<RawSecret>) -> Option<Secret> {
        let span = Some(raw.span());
        match raw.get_ref() {
            RawSecret::Literal(secret) => {
                self.literal_secrets = true;
                Some(secret.clone())
            }
            RawSecret::Env(var) => match (self.env)(var) {
                Some(value) => Some(Secret::new(value)),
                None => {
                    self.problem(
                        span,
                        format!("{context}: environment variable `{var}` is not set"),
                    );
                    None
                }
            },
            RawSecret::File(file) => {
                let path = self.base_dir.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(mut text) => {
                        if text.ends_with('\n') {
                            text.pop();
                            if text.ends_with('\r') {
                                text.pop();
                            }
                        }
                        Some(Secret::new(text))
                    }
                    Err(e) => {
                        self.problem(span, format!("{context}: cannot read `{}`: {e}", path.display()));
                        None
                    }
                }
            }
        }
    }
}

/// The seed's naming rule for named credentials, external credentials, principals and
/// permission sets.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    let first = name.chars().next();
    if first.is_none() {
        return Err("is empty");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("may contain only ASCII letters, digits and underscores");
    }
    if !first.is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err("must begin with a letter");
    }
    if name.ends_with('_') {
        return Err("must not end with an underscore");
    }
    if name.contains("__") {
        return Err("must not contain two consecutive underscores");
    }
    Ok(())
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_certificates(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .collect();
    let certs = certs.map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// ", did you mean `X`?" for the closest known name, when one is close.
pub(crate) fn suggestion<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let best = known
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .min();
    match best {
        Some((d, k)) if d <= name.len().max(3) / 3 + 1 => format!("; did you mean `{k}`?"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:7575"
default_permission_sets = ["Everyone"]
shutdown_grace = "2s"

[external_credentials.Target_Org]
protocol = "oauth2"
flow = "client_credentials"
token_url = "https://login.example.com/services/oauth2/token"
scope = "api"
client_auth = "body"
token_params = { audience = "https://api.example.com" }
refresh_on_status = [403, 500]
refresh_before_expiry = "30s"
default_token_ttl = "2h"
token_timeout = "5s"

[[external_credentials.Target_Org.principals]]
name = "Reader"
sequence = 20
permission_sets = ["Everyone"]
client_id = "reader"
client_secret = { env = "READER_SECRET" }

[[external_credentials.Target_Org.principals]]
name = "Admin"
sequence = 1
permission_sets = ["Integration_Admin"]
client_id = "admin"
client_secret = "literal"
scope = "api full"

[named_credentials.Target_Org_API]
url = "https://target.example.com/services/data/v60.0/"
external_credential = "Target_Org"
timeout = "30s"
headers = { "X-Request-Source" = "callout" }
"#;

    fn env(var: &str) -> Option<String> {
        (var == "READER_SECRET").then(|| "from-env".to_owned())
    }

    fn load(text: &str) -> Result<Config, Vec<Problem>> {
        validate(Path::new("/nowhere/callout.toml"), text, &env)
    }

    /// Every problem of `text`, as `LINE:COL: message`.
    fn problems(text: &str) -> Vec<String> {
        load(text)
            .map(|_| ())
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn loads_every_key() {
        let config = load(GOOD).unwrap();
        assert_eq!(config.server.default_permission_sets, vec!["Everyone".into()]);
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(2));
        let nc = &config.named_credentials["Target_Org_API"];
        assert_eq!(
            nc.url.to_string(),
            "https://target.example.com/services/data/v60.0"
        );
        assert_eq!(nc.timeout, Duration::from_secs(30));
        assert_eq!(nc.headers["x-request-source"], "callout");
        let ec = &nc.external_credential;
        assert_eq!(ec.client_auth, crate::config::ClientAuth::Body);
        assert_eq!(ec.refresh_on_status, vec![403, 500]);
        assert!(ec.refreshes_on(401) && ec.refreshes_on(500) && !ec.refreshes_on(404));
        assert_eq!(
            ec.token_params,
            vec![("audience".to_owned(), "https://api.example.com".to_owned())]
        );
        assert_eq!(ec.default_token_ttl, Some(Duration::from_secs(7200)));
        let names: Vec<&str> = ec.principals.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["Admin", "Reader"], "sorted by sequence");
        assert_eq!(ec.principals[1].client_secret.expose(), "from-env");
        assert_eq!(ec.effective_scope(&ec.principals[0]), Some("api full"));
        assert_eq!(ec.effective_scope(&ec.principals[1]), Some("api"));
    }

    #[test]
    fn reports_every_problem_with_its_place() {
        let text = GOOD
            .replace("name = \"Reader\"", "name = \"Bad__Name\"")
            .replace("sequence = 20", "sequence = 1")
            .replace("scope = \"api\"\n", "scope = \"api\"\nsurprise = 1\n")
            .replace("https://target.example.com", "http://target.example.com")
            .replace("READER_SECRET", "MISSING_SECRET")
            .replace(
                "[named_credentials.Target_Org_API]",
                "[named_credentials.Target_Org_API_]",
            );
        let found = problems(&text);
        let expect = [
            "unknown field `surprise`",
            "principal name `Bad__Name` must not contain two consecutive underscores",
            "sequence 1 of principal `Admin` is already used by principal `Bad__Name`",
            "environment variable `MISSING_SECRET` is not set",
            "named credential name `Target_Org_API_` must not end with an underscore",
        ];
        // The unknown key hides the rest of its own entry (serde stops there), so check it
        // separately from the others.
        assert!(found.iter().any(|p| p.contains(expect[0])), "{found:#?}");
        let without_unknown = problems(&text.replace("surprise = 1\n", ""));
        for e in &expect[1..] {
            assert!(
                without_unknown.iter().any(|p| p.contains(e)),
                "missing {e:?} in {without_unknown:#?}"
            );
        }
        assert!(
            without_unknown
                .iter()
                .any(|p| p.contains("plain http to a non-loopback host")),
            "{without_unknown:#?}"
        );
        assert!(
            without_unknown.iter().all(|p| !p.starts_with("0:")),
            "every problem has a place"
        );
        assert!(without_unknown.len() >= 5);
    }

    #[test]
    fn places_are_line_and_column() {
        let found = problems("[server]\nlisten = \"0.0.0.0:80\"\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("2:10: listen `0.0.0.0:80` is not a loopback address"),
            "{found:?}"
        );
        let found = problems("[server]\nbogus = true\n[unknown_table]\n");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("2:1: ") && p.contains("bogus")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("3:2: unknown key `unknown_table`")),
            "{found:?}"
        );
        let found = problems("[server\n");
        assert!(found[0].starts_with("1:"), "{found:?}");
    }

    #[test]
    fn name_rules() {
        for ok in ["A", "Target_Org", "a1_b2", "X9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "_a", "1a", "a_", "a__b", "a-b", "a b", "ä", ".callout"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                GOOD.replace("listen = \"127.0.0.1:7575\"", "listen = \"0.0.0.0:7575\""),
                "not a loopback address",
            ),
            (GOOD.replace("[403, 500]", "[200, 403]"), "refresh_on_status 200"),
            (
                GOOD.replace(
                    "external_credential = \"Target_Org\"",
                    "external_credential = \"Target_Orgg\"",
                ),
                "did you mean `Target_Org`?",
            ),
            (
                GOOD.replace("v60.0/\"", "v60.0?x=1\""),
                "must not have a query string",
            ),
            (
                GOOD.replace("v60.0/\"", "v60.0#frag\""),
                "must not have a fragment",
            ),
            (
                GOOD.replace("token_url = \"https", "token_url = \"ftp"),
                "must be an http:// or https:// URL",
            ),
            (
                GOOD.replace("\"X-Request-Source\"", "\"Host\""),
                "header `host` is set by callout",
            ),
            (
                GOOD.replace("\"X-Request-Source\"", "\"Authorization\""),
                "header `authorization` is set by callout",
            ),
            (
                GOOD.replace("client_auth = \"body\"", "client_auth = \"query\""),
                "unknown variant `query`",
            ),
            (
                GOOD.replace("flow = \"client_credentials\"", "flow = \"password\""),
                "unknown variant `password`",
            ),
            (
                GOOD.replace("token_timeout = \"5s\"", "token_timeout = \"5 parsecs\""),
                "is not a duration",
            ),
            (
                GOOD.replace(
                    "permission_sets = [\"Everyone\"]\nclient_id",
                    "permission_sets = []\nclient_id",
                ),
                "has no permission_sets",
            ),
            (
                GOOD.replace("client_secret = \"literal\"", "client_secret = { vault = \"x\" }"),
                "unknown field `vault`",
            ),
            (
                GOOD.replace("token_params = {", "token_params = { scope = \"x\","),
                "token_params cannot set `scope`",
            ),
        ];
        for (text, expected) in cases {
            let found = problems(&text);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "expected {expected:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_or_when_asked() {
        let loopback = GOOD
            .replace("https://login.example.com", "http://127.0.0.1:9000")
            .replace("https://target.example.com", "http://localhost:8080");
        assert!(load(&loopback).is_ok());
        let asked = GOOD
            .replace("https://login.example.com", "http://idp.internal")
            .replace(
                "token_timeout = \"5s\"",
                "token_timeout = \"5s\"\nallow_plain_http = true",
            );
        assert!(load(&asked).is_ok());
        let remote = GOOD.replace(
            "listen = \"127.0.0.1:7575\"",
            "listen = \"0.0.0.0:7575\"\nallow_remote_callers = true",
        );
        assert!(load(&remote).is_ok());
    }

    #[test]
    fn secret_files_are_relative_to_the_config_and_lose_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret\n\n").unwrap();
        let text = GOOD.replace("\"literal\"", "{ file = \"secret.txt\" }");
        let config = validate(&dir.path().join("callout.toml"), &text, &env).unwrap();
        let ec = &config.external_credentials[0];
        assert_eq!(ec.principals[0].client_secret.expose(), "s3cret\n");
        let missing = validate(
            &dir.path().join("callout.toml"),
            &text.replace("secret.txt", "nope.txt"),
            &env,
        );
        assert!(missing.unwrap_err()[0].message.contains("nope.txt"));
    }

    #[test]
    fn problems_never_show_a_secret() {
        let text = GOOD.replace(
            "client_secret = \"literal\"",
            "client_secret = \"literal\"\nsecret_typo = \"x\"",
        );
        let all = problems(&text).join("\n");
        assert!(!all.contains("literal") && !all.contains("from-env"), "{all}");
    }
}
