//! Integration tests: callout between a real token endpoint and a real upstream, all on
//! loopback.

mod harness;
mod limits;
mod support;

mod assume_role;
mod callers;
mod cli;
mod custom;
mod delegation;
mod docs;
mod errors;
mod faults;
mod flows;
mod hardening;
mod hostile;
mod keepalive;
mod process;
mod properties;
mod protocols;
mod rotation;
mod routing;
mod sanitize;
mod sigv4;
mod smoke;
mod tls;
mod tokens;
