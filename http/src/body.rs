//! Response bodies: nothing, one buffer, or a blob streamed from the store (zero-copy
//! slices of the local engine's pack mappings; ranged GETs of the cluster's objects).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use lain_store::BlobBody;

pub enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Blob(BlobBody),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(bytes) => f.debug_tuple("Full").field(bytes).finish(),
            ResponseBody::Blob(blob) => f.debug_tuple("Blob").field(&blob.remaining()).finish(),
        }
    }
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(bytes.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    /// A blob whose bytes cannot be read past the first piece: the response has
    /// begun, so the connection is cut (the client sees a short body, never a wrong
    /// byte).
    type Error = lain_store::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, lain_store::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Blob(blob) => blob
                .as_mut()
                .poll_piece(cx)
                .map(|next| next.map(|piece| piece.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Blob(blob) => blob.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            ResponseBody::Empty => 0,
            ResponseBody::Full(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
            ResponseBody::Blob(blob) => blob.remaining(),
        })
    }
}
