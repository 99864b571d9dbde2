//! A blob's bytes on their way to a response: opened first (the size decides the
//! response's status and headers), then read as one range, piece by piece.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::error::Result;

/// A blob found in a repository, not read yet.
#[async_trait::async_trait]
pub trait OpenBlob: Send + 'static {
    fn size(&self) -> u64;

    /// The bytes of `range` (inside `0..size`), ready to stream: a failure to start
    /// reading (a store that does not answer) is an error here, before the response
    /// has begun. [`crate::Error::RangeNotSatisfiable`] for a range outside the blob.
    async fn read(self: Box<Self>, range: Range<u64>) -> Result<BlobBody>;
}

/// A range of a blob's bytes as a stream of pieces. After an error it ends: the
/// response has begun, so the client sees a short body, never a wrong byte.
pub trait BlobStream: Send + 'static {
    /// Bytes not yet yielded.
    fn remaining(&self) -> u64;

    fn poll_piece(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>>;
}

pub type BlobBody = Pin<Box<dyn BlobStream>>;
