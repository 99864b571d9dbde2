//! What a store call can fail with, in the terms the protocol answers in. Each store
//! keeps its own, richer error type and says here which kind each failure is.

use crate::digest::{Digest, DigestParseError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes of an upload hash to something other than what the client promised.
    /// The bytes have been dropped.
    #[error("digest mismatch: expected {expected}, computed {computed}")]
    DigestMismatch {
        expected: Box<Digest>,
        computed: Box<Digest>,
    },

    #[error(transparent)]
    InvalidDigest(#[from] DigestParseError),

    #[error("upload session {0} is unknown")]
    UploadUnknown(String),

    /// A piece was offered at another offset than the session's end: another request
    /// wrote to the session first. The session is unchanged.
    #[error("the upload has {received} bytes; a chunk must continue there")]
    UploadOffset { received: u64 },

    /// The store's upload sessions are all in use, none idle long enough to end.
    #[error("{limit} upload sessions are in progress; try again later")]
    TooManyUploads { limit: usize },

    /// The client has its share of the sessions open, none idle long enough to end.
    #[error("{limit} upload sessions of this client are in progress; finish or cancel some")]
    TooManyUploadsFrom { limit: usize },

    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),

    #[error("manifest {0} is unknown")]
    ManifestUnknown(String),

    /// A manifest names a blob its repository cannot read, or a child manifest its
    /// repository does not have.
    #[error("{what} {digest} is not in repository {repo}")]
    ReferenceUnknown {
        repo: String,
        digest: Box<Digest>,
        what: &'static str,
    },

    /// A byte range that does not lie inside the blob; `size` is the blob's size.
    #[error("range {start}..{end} is outside a blob of {size} bytes")]
    RangeNotSatisfiable { start: u64, end: u64, size: u64 },

    /// A repository name or tag the store cannot hold (empty, too long, or containing
    /// a separator of its keys). The protocol's name grammar is checked before.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        what: &'static str,
        reason: &'static str,
    },

    /// There is no room for more client bytes. Nothing stored is affected.
    #[error("storage is full: {detail}")]
    StorageFull { detail: String },

    /// A service the store depends on (a database, an object store) did not answer or
    /// refused for now. Nothing acknowledged is affected; the request may be retried.
    #[error("storage unavailable: {detail}")]
    Unavailable { detail: String },

    /// The store's own failure: damaged data, a failed device, a bug.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Internal(e.into())
    }
}
