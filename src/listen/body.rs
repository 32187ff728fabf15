//! The caller's request body as it arrives on a connection.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::socket::ExchangeState;

/// A caller's request body. On HTTP/1.1 it tells its exchange when it has been read to the
/// end: only then is the connection at the start of the next request.
pub struct CallerBody {
    incoming: Incoming,
    exchange: Option<ExchangeState>,
}

impl CallerBody {
    pub(super) fn new(incoming: Incoming, exchange: Option<ExchangeState>) -> CallerBody {
        if incoming.is_end_stream()
            && let Some(exchange) = &exchange
        {
            exchange.body_ended();
        }
        CallerBody { incoming, exchange }
    }
}

impl Body for CallerBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.incoming).poll_frame(cx));
        if ends_body(&frame, &self.incoming)
            && let Some(exchange) = &self.exchange
        {
            exchange.body_ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// Whether `frame`, just polled from `body`, was its last: the end itself, or data or
/// trailers after which nothing is left. An error ends nothing cleanly.
pub fn ends_body(frame: &Option<Result<Frame<Bytes>, hyper::Error>>, body: &Incoming) -> bool {
    match frame {
        None => true,
        Some(Ok(_)) => body.is_end_stream(),
        Some(Err(_)) => false,
    }
}
