//! callout: a credential-injecting HTTP reverse proxy.
//!
//! A caller sends `METHOD /NAMED_CREDENTIAL/rest` to callout on loopback; callout picks the
//! caller's principal, gets an OAuth 2.0 access token for it, and forwards the request to the
//! named credential's URL with `Authorization: Bearer <token>`.
//!
//! # Layout
//! In the order a request meets them:
//! - `server`: accepts connections up to the limit, graceful drain.
//! - `connection`: one caller connection, HTTP/1.1 or h2c; idle keep-alive without buffers.
//! - `proxy`: the request path, and the state that outlives a reload.
//! - `admin`: the `/.callout/` endpoints.
//! - `caller`: who is calling (caller tokens, Unix peer uids) and what they may assert.
//! - `routing`: request target to named credential and upstream URI, refusing escapes.
//! - `principal`: asserted permission sets to the lowest-sequence principal.
//! - `token`: token requests (`Grant`), response parsing, the shared cache.
//! - `body`: request bodies, buffered for replay or streamed.
//! - `forward`: header hygiene and the bearer token on the way out.
//! - `upstream`: connections to an upstream origin, HTTP/1.1 pooled or HTTP/2 by ALPN.
//! - `client`: the rustls connector, and the pooled client for token requests.
//! - `error`: problem+json for everything callout refuses.
//! - `config`: the TOML file to a validated model; `secret`: redacting secret types.
//! - `metrics`: counters and histograms in Prometheus text format.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod body;
pub mod caller;
pub mod client;
pub mod config;
pub mod connection;
pub mod error;
pub mod forward;
pub mod metrics;
pub mod principal;
pub mod proxy;
pub mod routing;
pub mod secret;
pub mod server;
pub mod token;
pub mod upstream;

pub use config::Config;
pub use proxy::Proxy;
pub use server::run;
