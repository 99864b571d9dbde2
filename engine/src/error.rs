//! The engine's typed errors. Callers (the HTTP layer) map variants to protocol errors;
//! nothing here knows about status codes.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, DigestParseError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process (or another `Engine` in this one) holds the data directory.
    #[error("data directory {path} is locked by another process")]
    Locked { path: PathBuf },

    /// A file operation failed; `op` names what the engine was doing.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The RocksDB index reported an error.
    #[error("index: {0}")]
    Index(#[from] IndexError),

    /// An index value or key could not be decoded: the index is damaged or was written
    /// by an incompatible version.
    #[error("index entry in `{family}` is corrupt")]
    CorruptIndex { family: &'static str },

    /// Pack bytes are missing or fail their checksum.
    #[error("pack {pack} is damaged: {detail}")]
    CorruptPack { pack: u64, detail: String },

    /// The device could not read stored bytes (a bad sector, a lost disk). Only this
    /// read fails; the bytes may be readable again later, or need a restore.
    #[error("pack {pack} cannot be read at offset {offset}: {source}")]
    Unreadable {
        pack: u64,
        offset: u64,
        #[source]
        source: io::Error,
    },

    /// The file system holding the data has no room for more (or for more client
    /// bytes, which may not take the reserve). Nothing stored is affected; deletes and
    /// collections still work, and what they free is usable at once.
    #[error("storage is full: {detail}")]
    StorageFull { detail: String },

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

    /// A piece offered at another offset than the session's end.
    #[error("the upload has {received} bytes; a chunk must continue there")]
    UploadOffset { received: u64 },

    /// `max_upload_sessions` sessions exist and none has been idle long enough to end.
    #[error("{limit} upload sessions are in progress; try again later")]
    TooManyUploads { limit: usize },

    /// `owner` has its share of the sessions open and none has been idle long enough
    /// to end.
    #[error("{limit} upload sessions of this client are in progress; finish or cancel some")]
    TooManyUploadsFrom { owner: String, limit: usize },

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

    /// The data directory holds a format this version cannot open.
    #[error("{path}: {detail}")]
    UnsupportedFormat { path: PathBuf, detail: String },

    /// A backup's destination holds something other than an earlier backup of this
    /// store.
    #[error("backup destination {path}: {detail}")]
    BackupMismatch { path: PathBuf, detail: String },

    /// One atomic set of metadata changes would not fit in a metadata record.
    #[error("{bytes} bytes of metadata changes exceed the {limit}-byte record limit")]
    MetadataTooLarge { bytes: u64, limit: u32 },

    /// A repository name or tag the index cannot hold (empty, too long, or containing
    /// the key separator). Protocol-level name grammar is the caller's business.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        what: &'static str,
        reason: &'static str,
    },
}

/// An opaque RocksDB failure; kept as its own type so the public API does not expose
/// RocksDB types.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct IndexError(String);

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        let text = e.into_string();
        // RocksDB carries errno's text, not its number.
        if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
            return Error::StorageFull {
                detail: format!("index: {text}"),
            };
        }
        Error::Index(IndexError(text))
    }
}

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| {
            let path = path.into();
            if is_out_of_space(&source) {
                return Error::StorageFull {
                    detail: format!("{op} {}: {source}", path.display()),
                };
            }
            Error::Io { op, path, source }
        })
    }
}

/// Whether an I/O error means the file system is out of space (or quota).
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
