//! Connections to one upstream origin: idle HTTP/1.1 connections kept for reuse, or one
//! shared HTTP/2 connection when TLS negotiates h2 (ALPN).
//!
//! Each named credential talks to exactly one origin, so each gets an `Upstream` at config
//! load and a request reaches its connections without a lookup. A connection goes back to
//! the idle list when the caller has read its response body to the end; one whose body was
//! abandoned is closed, since its state is unknown.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tower_service::Service as _;

use tokio::sync::OwnedSemaphorePermit;

use super::body::RequestBody;
use super::idle::IdleTimer;
use super::tls::Connector;
use crate::listen::ends_body;

/// Idle connections kept per origin; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// Idle connections older than this are not reused: upstreams close them at about this age.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One upstream origin (scheme and authority) and its connections.
pub struct Upstream {
    origin: Uri,
    /// `Host` for HTTP/1.1 requests: the origin's authority.
    host: HeaderValue,
    connector: Connector,
    idle: Mutex<Vec<(http1::SendRequest<RequestBody>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl Upstream {
    pub fn new(origin: Uri, connector: Connector) -> Arc<Upstream> {
        let authority = origin.authority().map_or("", |a| a.as_str());
        let host = HeaderValue::from_str(authority).expect("an authority is a valid header value");
        Arc::new(Upstream {
            host,
            origin,
            connector,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
        })
    }

    /// Sends `request` (whose URI is absolute) on a pooled connection, or a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let absolute = request.uri().clone();
        // A pooled connection may have been closed by the upstream meanwhile; the request
        // comes back unsent then, and goes out on the next one (at most a few stale ones).
        for _ in 0..4 {
            let conn = match self.checkout() {
                Some(conn) => conn,
                // Boxed: connecting is rare, and its large future would otherwise be part of
                // (and copied with) every request's.
                None => Box::pin(self.connect()).await?,
            };
            match conn {
                Conn::H2(mut sender) => {
                    // HTTP/2 takes the authority from the absolute URI (`:authority`).
                    *request.uri_mut() = absolute;
                    request.headers_mut().remove(HOST);
                    let response = sender.send_request(request).await?;
                    return Ok(response.map(|body| UpstreamBody::new(body, None)));
                }
                Conn::H1(mut sender) => {
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    // HTTP/1.1 to an origin server: origin-form target and a `Host` header.
                    let mut origin_form = http::uri::Parts::default();
                    origin_form.path_and_query = absolute.path_and_query().cloned();
                    *request.uri_mut() = Uri::from_parts(origin_form).expect("a path alone is a URI");
                    request.headers_mut().insert(HOST, self.host.clone());
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let back = Some((Arc::downgrade(self), sender));
                            return Ok(response.map(|body| UpstreamBody::new(body, back)));
                        }
                        Err(mut err) => match err.take_message() {
                            Some(unsent) => request = unsent,
                            None => return Err(err.into_error().into()),
                        },
                    }
                }
            }
        }
        Err("no usable connection to the upstream".into())
    }

    fn checkout(&self) -> Option<Conn> {
        if let Some(h2) = self.h2.lock().expect("upstream h2 poisoned").as_ref()
            && !h2.is_closed()
        {
            return Some(Conn::H2(h2.clone()));
        }
        let mut idle = self.idle.lock().expect("upstream idle list poisoned");
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(Conn::H1(sender));
            }
        }
        None
    }

    fn checkin(&self, sender: http1::SendRequest<RequestBody>) {
        let mut idle = self.idle.lock().expect("upstream idle list poisoned");
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Conn, BoxError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(self.origin.clone()).await?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "upstream HTTP/2 connection ended");
                }
            });
            *self.h2.lock().expect("upstream h2 poisoned") = Some(sender.clone());
            return Ok(Conn::H2(sender));
        }
        let (sender, connection) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "upstream connection ended");
            }
        });
        Ok(Conn::H1(sender))
    }
}

enum Conn {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// An upstream response body that hands its HTTP/1.1 connection back once read to the end.
pub struct UpstreamBody {
    body: Incoming,
    back: Option<(Weak<Upstream>, http1::SendRequest<RequestBody>)>,
    idle: Option<IdleTimer>,
    /// The named credential's upstream slot, free again when the body is done with.
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why an upstream response body stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    #[error("the upstream's response body sent no byte for {0:?}")]
    Idle(Duration),
}

impl UpstreamBody {
    fn new(body: Incoming, back: Option<(Weak<Upstream>, http1::SendRequest<RequestBody>)>) -> UpstreamBody {
        UpstreamBody {
            body,
            back,
            idle: None,
            _permit: None,
        }
    }

    /// Cuts the body when it moves no byte for `limit`, and holds `permit` until the body
    /// is done with.
    pub fn guard(&mut self, limit: Duration, permit: OwnedSemaphorePermit) {
        self.idle = Some(IdleTimer::new(limit));
        self._permit = Some(permit);
    }

    fn release(&mut self) {
        if let Some((upstream, sender)) = self.back.take()
            && let Some(upstream) = upstream.upgrade()
        {
            upstream.checkin(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Some(idle) = &mut self.idle
            && idle.expired(cx, polled.is_pending())
        {
            let limit = idle.limit();
            // Its connection is in the middle of a response: not reusable.
            self.back = None;
            return Poll::Ready(Some(Err(ResponseBodyError::Idle(limit))));
        }
        let frame = ready!(polled);
        if ends_body(&frame, &self.body) {
            self.release();
        } else if matches!(frame, Some(Err(_))) {
            self.back = None;
        }
        Poll::Ready(frame.map(|f| f.map_err(ResponseBodyError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body nobody had to read (HEAD, 204, empty) still frees its connection; one left
        // half-read does not.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
