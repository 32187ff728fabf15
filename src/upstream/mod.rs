//! Where requests go out: the caller's body prepared for sending (and resending), header
//! hygiene both ways, TLS, and the pooled connections to each upstream origin.

mod body;
mod headers;
mod idle;
mod pool;
mod tls;

pub use body::{BodyError, Prepared, RequestBody};
pub use headers::{Outgoing, clean_response};
pub use pool::{ResponseBodyError, Upstream, UpstreamBody};
pub use tls::{Connector, connector, pooled};
