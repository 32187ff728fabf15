//! `[server]`: where callout listens and the limits it applies.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawDuration;
use super::read::{Reader, Table};
use super::{Listen, Server};

const DEFAULT_LISTEN: &str = "127.0.0.1:7575";
const DEFAULT_RETRY_BODY_LIMIT: u64 = 1024 * 1024;
const DEFAULT_MAX_REQUEST_BODY: u64 = 10 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
const DEFAULT_MAX_UPSTREAM_CONNECTIONS: usize = 256;
const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const KEYS: &[&str] = &[
    "listen",
    "default_permission_sets",
    "retry_body_limit",
    "max_request_body",
    "shutdown_grace",
    "allow_remote_callers",
    "unix_socket_mode",
    "max_connections",
    "header_read_timeout",
    "idle_timeout",
    "max_concurrent_streams",
    "max_upstream_connections",
    "body_idle_timeout",
    "strict_file_permissions",
    "admin_listen",
    "watch_files",
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
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        max_upstream_connections: DEFAULT_MAX_UPSTREAM_CONNECTIONS,
        body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
        strict_file_permissions: false,
        admin_listen: None,
        watch_files: true,
    }
}

impl Reader<'_> {
    /// `[server]`; whether a non-loopback `listen` is acceptable depends on `callers`.
    pub(super) fn server(&mut self, table: Option<Table<'_>>, has_callers: bool) -> Option<Server> {
        let Some(mut t) = table else {
            return Some(default_server());
        };
        let listen_raw = self.take::<String>(&mut t, "listen");
        let sets = self.take::<Vec<toml::Spanned<String>>>(&mut t, "default_permission_sets");
        let retry_body_limit = self.take::<u64>(&mut t, "retry_body_limit");
        let max_request_body = self.take::<u64>(&mut t, "max_request_body");
        let shutdown_grace = self.take::<RawDuration>(&mut t, "shutdown_grace");
        let allow_remote_callers = self.take::<bool>(&mut t, "allow_remote_callers");
        let mode_raw = self.take::<String>(&mut t, "unix_socket_mode");
        let max_connections = self.take::<usize>(&mut t, "max_connections");
        let header_read_timeout = self.take::<RawDuration>(&mut t, "header_read_timeout");
        let idle_timeout = self.take::<RawDuration>(&mut t, "idle_timeout");
        let max_concurrent_streams = self.take::<u32>(&mut t, "max_concurrent_streams");
        let max_upstream_connections = self.take::<usize>(&mut t, "max_upstream_connections");
        let body_idle_timeout = self.take::<RawDuration>(&mut t, "body_idle_timeout");
        let strict_file_permissions = self.take::<bool>(&mut t, "strict_file_permissions");
        let admin_listen_raw = self.take::<String>(&mut t, "admin_listen");
        let watch_files = self.take::<bool>(&mut t, "watch_files");
        self.finish(t, KEYS, &|_| None);

        let admin_listen = admin_listen_raw.and_then(|text| match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    Some(text.span()),
                    format!(
                        "admin_listen `{}` is not an IP address and port, e.g. \"0.0.0.0:9090\"",
                        text.get_ref()
                    ),
                );
                None
            }
        });
        let positive = |r: &mut Self, v: Option<toml::Spanned<usize>>, key: &str, default: usize| match v {
            Some(v) if *v.get_ref() == 0 => {
                r.problem(Some(v.span()), format!("[server]: {key} must be at least 1"));
                default
            }
            Some(v) => v.into_inner(),
            None => default,
        };
        let max_upstream_connections = positive(
            self,
            max_upstream_connections,
            "max_upstream_connections",
            DEFAULT_MAX_UPSTREAM_CONNECTIONS,
        );
        let max_concurrent_streams = positive(
            self,
            max_concurrent_streams.map(|v| toml::Spanned::new(v.span(), *v.get_ref() as usize)),
            "max_concurrent_streams",
            DEFAULT_MAX_CONCURRENT_STREAMS as usize,
        ) as u32;

        let allow_remote_callers = allow_remote_callers.is_some_and(|b| b.into_inner());
        let listen_text = listen_raw
            .as_ref()
            .map_or(DEFAULT_LISTEN, |s| s.get_ref().as_str());
        let listen_span = listen_raw.as_ref().map(toml::Spanned::span);
        let mode = match &mode_raw {
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
            && !allow_remote_callers
            && !has_callers
        {
            self.problem(
                listen_span,
                format!(
                    "listen `{addr}` is not a loopback address: anyone who can reach it could assert any permission set; configure [callers] or set `allow_remote_callers = true` in [server]"
                ),
            );
        }
        let default_permission_sets =
            self.permission_sets("[server]", &sets.map(|s| s.into_inner()).unwrap_or_default());
        let duration =
            |d: Option<toml::Spanned<RawDuration>>, default| d.map_or(default, |d| d.into_inner().0);
        Some(Server {
            listen: listen?,
            default_permission_sets,
            retry_body_limit: retry_body_limit.map_or(DEFAULT_RETRY_BODY_LIMIT, |v| v.into_inner()),
            max_request_body: max_request_body.map_or(DEFAULT_MAX_REQUEST_BODY, |v| v.into_inner()),
            shutdown_grace: duration(shutdown_grace, DEFAULT_SHUTDOWN_GRACE),
            allow_remote_callers,
            max_connections: max_connections
                .map_or(DEFAULT_MAX_CONNECTIONS, |v| v.into_inner())
                .max(1),
            header_read_timeout: duration(header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: duration(idle_timeout, DEFAULT_IDLE_TIMEOUT),
            max_concurrent_streams,
            max_upstream_connections,
            body_idle_timeout: duration(body_idle_timeout, DEFAULT_BODY_IDLE_TIMEOUT),
            strict_file_permissions: strict_file_permissions.is_some_and(toml::Spanned::into_inner),
            admin_listen,
            watch_files: watch_files.is_none_or(toml::Spanned::into_inner),
        })
    }
}
