//! Response bodies: nothing, one buffer, or a blob streamed as zero-copy slices of the
//! engine's pack mappings.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use lain_engine::BlobReader;

#[derive(Debug)]
pub enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Blob(BlobReader),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(bytes.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    /// A blob whose bytes the device cannot read past the first piece: the response
    /// has begun, so the connection is cut (the client sees a short body, never a
    /// wrong byte).
    type Error = lain_engine::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, lain_engine::Error>>> {
        let next = match self.get_mut() {
            ResponseBody::Empty => None,
            ResponseBody::Full(bytes) => bytes.take().map(Ok),
            ResponseBody::Blob(reader) => reader.next(),
        };
        if let Some(Err(e)) = &next {
            tracing::error!(error = %e, "blob read failed during its response");
        }
        Poll::Ready(next.map(|piece| piece.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Blob(reader) => reader.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            ResponseBody::Empty => 0,
            ResponseBody::Full(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
            ResponseBody::Blob(reader) => reader.remaining(),
        })
    }
}
