//! `lain-store`: the one storage interface the protocol layer talks to, and the types
//! it speaks in. Two stores implement it: the local pack engine (`lain-engine`, one
//! node) and the cluster store (`lain-cluster`, objects in S3 and metadata in etcd,
//! several nodes). Neither knows the other; the protocol layer knows neither.
//!
//! Contract every store keeps: a call that changes data returns only once the change
//! is durable and visible to every later call, on any node that serves the same data.

pub mod blob;
pub mod digest;
pub mod error;
pub mod retention;
pub mod types;

use std::time::Duration;

use bytes::Bytes;

pub use blob::{BlobBody, BlobStream, OpenBlob};
pub use digest::{Algorithm, Digest, DigestParseError, Hasher};
pub use error::{Error, Result};
pub use types::{
    BlobInfo, ManifestMeta, ManifestRecord, Reference, ReferenceReader, References, UploadId,
    UploadStatus,
};

/// A registry's storage: blobs, upload sessions, manifests, tags and listings, per
/// repository. Repository names, tags and digests have passed the protocol's grammar.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // Blobs.

    /// The blob, if repository `repo` may read it.
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>>;

    /// The blob opened for reading, if repository `repo` may read it.
    async fn open_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Box<dyn OpenBlob>>>;

    /// Stores a blob sent whole (a small one: its bytes are in memory) and links it
    /// into `repo`; [`Error::DigestMismatch`] if the bytes are not `expected`'s.
    async fn put_blob(&self, repo: &str, bytes: Bytes, expected: &Digest) -> Result<BlobInfo>;

    /// Links a stored blob into `repo` (a cross-repository mount); `None` if no blob
    /// with that digest is stored.
    async fn link_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>>;

    /// Removes the blob from `repo`; false if `repo` did not have it. Its bytes stay
    /// until garbage collection.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;

    // Upload sessions.

    /// Opens a session; `owner` (the client's address) bounds how many one client holds.
    async fn start_upload(&self, repo: &str, algorithm: Algorithm, owner: &str)
    -> Result<UploadId>;

    async fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus>;

    /// Appends `piece` at offset `at`, which must be the session's end
    /// ([`Error::UploadOffset`] otherwise, the session unchanged); returns the new end.
    async fn upload_append(&self, repo: &str, id: &str, at: u64, piece: Bytes) -> Result<u64>;

    /// The client's request has ended: what the session gathers is put away, so that a
    /// session waiting for its next chunk holds no buffer. Returns the bytes received.
    async fn upload_pause(&self, repo: &str, id: &str) -> Result<u64>;

    /// Ends the session: the bytes, if they are `expected`'s, become a blob linked into
    /// `repo`. On [`Error::DigestMismatch`] the session is gone.
    async fn commit_upload(&self, repo: &str, id: &str, expected: &Digest) -> Result<BlobInfo>;

    async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()>;

    /// Ends sessions idle for `idle` or longer; returns how many.
    async fn purge_uploads(&self, idle: Duration) -> Result<usize>;

    /// The smallest chunk, but the last, that the store takes without staging it
    /// (`OCI-Chunk-Min-Length`); `None` when any size is as good.
    fn chunk_min_length(&self) -> Option<u64> {
        None
    }

    // Manifests and tags.

    /// Stores a manifest whose references the caller has read (`references`), checked
    /// here atomically with the write ([`Error::ReferenceUnknown`]), and points the
    /// tag at it if `reference` is one.
    async fn put_manifest(
        &self,
        repo: &str,
        bytes: Bytes,
        reference: &Reference,
        meta: ManifestMeta,
        references: &References,
    ) -> Result<ManifestRecord>;

    async fn manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestRecord>>;

    async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(ManifestRecord, Bytes)>>;

    /// Removes a tag; false if there was none.
    async fn untag(&self, repo: &str, tag: &str) -> Result<bool>;

    /// Removes a manifest and the tags that point at it; false if there was none.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool>;

    // Listings.

    async fn repository_exists(&self, repo: &str) -> Result<bool>;

    /// Tags of `repo` in order, after `after`, at most `limit`.
    async fn list_tags(&self, repo: &str, after: Option<&str>, limit: usize)
    -> Result<Vec<String>>;

    /// Repositories in order, after `after`, at most `limit`.
    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// Manifests of `repo` whose subject is `subject` (with `artifact_type`, if given),
    /// in digest order after `after`, at most `limit`; and the last digest looked at
    /// when more may follow.
    async fn referrers_page(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, Option<Digest>)>;
}
