//! Request bodies on their way upstream: fully buffered (so a refresh-and-retry can send
//! them again) when small, streamed in constant memory otherwise, and cut off at
//! `max_request_body` either way.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::idle::IdleTimer;
use crate::listen::CallerBody;

/// Why a request body could not be passed on.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Caller(#[source] hyper::Error),
    #[error("the request body sent no byte for {0:?}")]
    Idle(std::time::Duration),
}

/// A request body as sent to the upstream.
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    /// The whole body, which can be sent any number of times.
    Buffered(Option<Bytes>),
    /// What was read ahead, then the rest as it arrives.
    Streaming {
        prefix: VecDeque<Bytes>,
        rest: CallerBody,
        sent: u64,
        limit: u64,
        idle: IdleTimer,
    },
}

/// The caller's body after reading ahead up to the retry limit.
pub enum Prepared {
    /// Complete: can be replayed.
    Buffered(Bytes),
    /// Too large or of unknown size past the retry limit: streams once.
    Streaming(RequestBody),
}

impl RequestBody {
    pub fn buffered(bytes: Bytes) -> RequestBody {
        RequestBody {
            kind: Kind::Buffered((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// Reads `body` until it ends or `retry_limit` bytes are exceeded, failing past `max`
    /// or when it moves no byte for `idle`.
    pub async fn prepare(
        mut body: CallerBody,
        retry_limit: u64,
        max: u64,
        idle: std::time::Duration,
    ) -> Result<Prepared, BodyError> {
        if body.is_end_stream() {
            return Ok(Prepared::Buffered(Bytes::new()));
        }
        let declared = body.size_hint().exact();
        if declared.is_some_and(|n| n > max) {
            return Err(BodyError::TooLarge(max));
        }
        let mut prefix = VecDeque::new();
        let mut read = 0u64;
        if declared.is_none_or(|n| n <= retry_limit) {
            loop {
                let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                let Some(frame) = tokio::time::timeout(idle, next)
                    .await
                    .map_err(|_| BodyError::Idle(idle))?
                else {
                    return Ok(Prepared::Buffered(concat(prefix, read)));
                };
                let frame = frame.map_err(BodyError::Caller)?;
                // Trailers end a body; they are dropped with a buffered one.
                let Ok(data) = frame.into_data() else { continue };
                read += data.len() as u64;
                if read > max {
                    return Err(BodyError::TooLarge(max));
                }
                prefix.push_back(data);
                if read > retry_limit {
                    break;
                }
            }
        }
        Ok(Prepared::Streaming(RequestBody {
            kind: Kind::Streaming {
                prefix,
                rest: body,
                sent: 0,
                limit: max,
                idle: IdleTimer::new(idle),
            },
        }))
    }
}

fn concat(mut chunks: VecDeque<Bytes>, len: u64) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().expect("one chunk"),
        _ => {
            let mut all = Vec::with_capacity(len as usize);
            for c in chunks {
                all.extend_from_slice(&c);
            }
            Bytes::from(all)
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().kind {
            Kind::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Streaming {
                prefix,
                rest,
                sent,
                limit,
                idle,
            } => {
                if let Some(chunk) = prefix.pop_front() {
                    *sent += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                let polled = Pin::new(rest).poll_frame(cx);
                if idle.expired(cx, polled.is_pending()) {
                    return Poll::Ready(Some(Err(BodyError::Idle(idle.limit()))));
                }
                let frame = ready!(polled);
                Poll::Ready(frame.map(|f| {
                    let f = f.map_err(BodyError::Caller)?;
                    if let Some(data) = f.data_ref() {
                        *sent += data.len() as u64;
                        if *sent > *limit {
                            return Err(BodyError::TooLarge(*limit));
                        }
                    }
                    Ok(f)
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered(bytes) => bytes.is_none(),
            Kind::Streaming { prefix, rest, .. } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streaming { prefix, rest, .. } => {
                let ahead: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + ahead);
                }
                out.set_lower(hint.lower() + ahead);
                out
            }
        }
    }
}
