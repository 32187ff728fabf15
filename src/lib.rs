//! callout: a credential-injecting HTTP reverse proxy.
//!
//! A caller sends `METHOD /NAMED_CREDENTIAL/rest` to callout on loopback; callout picks the
//! caller's principal, applies that principal's credential (an OAuth 2.0 access token from
//! any of the server-to-server flows, Basic, an AWS SigV4 signature, headers built by
//! formulas, or nothing), and forwards the request to the named credential's URL.
//!
//! # Layout
//! In the order a request meets them:
//! - `listen`: accepting connections up to the limit, HTTP/1.1 or h2c, idle keep-alive
//!   without buffers, graceful drain; generic over the `Handler` that answers requests.
//! - `request`: the `Proxy` handler: caller, route, principal, admin endpoints, and the
//!   pipeline that runs a request through them to the upstream.
//! - `auth`: the credential seam (`Credential`), one file per protocol; `auth::oauth` has
//!   one file per grant.
//! - `formula`: Salesforce-style `{!...}` formulas, parsed at load and rendered per request.
//! - `jws`: PEM private keys and signed JWT assertions (RFC 7515, RFC 7523), with ring.
//! - `sigv4`: AWS Signature Version 4 (`aws_sigv4`), the header form, with ring.
//! - `token`: the shared token cache, one token request in flight per key, renewal ahead
//!   of expiry.
//! - `upstream`: request bodies, header hygiene, TLS, pooled connections per origin.
//! - `config`: the TOML file to a validated model, one file per table.
//! - `metrics`: counters and histograms in Prometheus text format.
//! - `probe`: `callout health`, a readiness probe without a shell.
//! - `secret`: redacting secret types; `cause`: error chains as one line.
//! - `watch`: noticing changes to the config and the files it reads, for reloads.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod auth;
pub mod cause;
pub mod config;
pub mod formula;
pub mod jws;
pub mod listen;
pub mod metrics;
pub mod probe;
pub mod request;
pub mod secret;
pub mod sigv4;
pub mod token;
pub mod upstream;
pub mod watch;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use request::Proxy;

/// Serves `listener` with `proxy` until `shutdown` completes, then drains.
pub async fn run(
    listener: impl Into<listen::Listener>,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) {
    listen::run(listener, proxy, shutdown).await
}
