//! Bodies on both sides of the proxy, for HTTP/2 clients' requests (served by hyper).
//!
//! [`ReqBody`] is what weir sends to a server: nothing, a buffered body (which a retry can send
//! again), or a buffered prefix followed by the rest of the client's stream. [`RespBody`] is
//! what weir sends to the client: its own short answer, or the server's stream — and it carries
//! the request's [`Completion`], run exactly once when the body ends, fails, or is dropped
//! because the client went away. That is where the access-log record is written, the
//! connection returns to the pool and the server's in-flight count drops.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Errors of a body weir forwards: the other side's I/O, as hyper reports it.
pub type BodyError = hyper::Error;

// === impl ReqBody ===

/// A request body on its way to a server.
pub enum ReqBody {
    /// No body.
    Empty,
    /// The whole body, buffered (retryable).
    Full(Option<Bytes>),
    /// A buffered prefix, then the rest of the client's body as it arrives.
    Stream {
        /// What was buffered before the request was sent.
        prefix: Option<Bytes>,
        /// The rest.
        rest: Incoming,
        /// Bytes received from the client so far (prefix included).
        received: Arc<AtomicU64>,
    },
}

impl ReqBody {
    /// A copy to send again (only for replayable bodies).
    pub fn replay(&self) -> Option<ReqBody> {
        match self {
            ReqBody::Empty => Some(ReqBody::Empty),
            ReqBody::Full(bytes) => Some(ReqBody::Full(bytes.clone())),
            ReqBody::Stream { .. } => None,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream {
                prefix,
                rest,
                received,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                let frame = ready!(Pin::new(rest).poll_frame(cx));
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    received.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(bytes) => bytes.is_none(),
            ReqBody::Stream { prefix, rest, .. } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ReqBody::Stream { prefix, rest, .. } => {
                let extra = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

// === impl RespBody ===

/// How a response body ended, for the request's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Every byte was handed to hyper.
    Complete,
    /// The server's body failed mid-way (reset, early close).
    UpstreamFailed {
        /// Whether the failure was a reset.
        reset: bool,
    },
    /// hyper dropped the body before its end: the client went away or the connection closed.
    Abandoned,
}

/// Work to do once a response body has ended.
pub trait Completion: Send + 'static {
    /// Called exactly once with how the body ended and how many body bytes went out.
    fn complete(self: Box<Self>, end: BodyEnd, bytes_out: u64);
}

/// A response body on its way to the client.
pub struct RespBody {
    kind: Kind,
    bytes: u64,
    completion: Option<Box<dyn Completion>>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl RespBody {
    /// weir's own short body.
    pub fn full(body: impl Into<Bytes>, completion: Option<Box<dyn Completion>>) -> Self {
        let body = body.into();
        RespBody {
            kind: Kind::Full((!body.is_empty()).then_some(body)),
            bytes: 0,
            completion,
        }
    }

    /// The server's body, streamed.
    pub fn upstream(body: Incoming, completion: Option<Box<dyn Completion>>) -> Self {
        RespBody {
            kind: Kind::Upstream(body),
            bytes: 0,
            completion,
        }
    }

    fn finish(&mut self, end: BodyEnd) {
        if let Some(completion) = self.completion.take() {
            completion.complete(end, self.bytes);
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Kind::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
        };
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Some(Err(err)) => {
                let reset = err_is_reset(err);
                this.finish(BodyEnd::UpstreamFailed { reset });
            }
            None => this.finish(BodyEnd::Complete),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        // A body hyper never polled to its end. An empty or fully-sent full body still counts
        // as complete (hyper may drop a body whose end it learned from `is_end_stream`).
        let end = if self.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::Abandoned
        };
        self.finish(end);
    }
}

/// Whether a hyper error comes from a connection reset.
pub fn err_is_reset(err: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return crate::net::is_reset(io);
        }
        source = e.source();
    }
    false
}
