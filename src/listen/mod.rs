//! Where requests come in: accepting connections up to the limit, serving each as HTTP/1.1
//! or h2c, and draining them on shutdown.
//!
//! Nothing here knows what a request is for: a `Handler` answers each one. That keeps the
//! connection machinery (leases, limits, shutdown) independent of the proxy above it.

mod accept;
mod body;
mod connection;
mod h2;
mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};

pub use accept::{Listener, bind_unix, run};
pub use body::{CallerBody, ends_body};
pub use connection::Stream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the listener knows about the other end of a connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The peer process's uid, on a Unix socket (SO_PEERCRED).
    pub uid: Option<u32>,
}

/// The limits a listener applies; read when it starts (and `shutdown_grace` when it stops).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a caller may take to send a request head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Streams per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight requests get to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

/// Answers the requests of every connection a listener accepts.
pub trait Handler: Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;

    fn handle(
        self: Arc<Self>,
        request: Request<CallerBody>,
        peer: Peer,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;

    fn limits(&self) -> Limits;

    /// The listener has stopped accepting: readiness should now fail.
    fn start_draining(&self);
}
