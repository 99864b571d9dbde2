//! The engine as the protocol layer's [`lain_store::Store`]. Calls that write wait for
//! fdatasync, and upload-session calls may wait for a session's lock while a MiB is
//! written: they run on tokio's blocking pool, never on the async workers. Pure reads
//! (index point lookups, which the block cache and bloom filters keep to microseconds,
//! and slicing a pack's mapping) run inline: a hop to the pool would cost more.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use lain_store::{self as store, BlobBody, BlobStream, OpenBlob, Store};

use crate::digest::{Algorithm, Digest};
use crate::engine::{BlobReader, Engine};
use crate::error::Error;
use crate::types::{
    BlobInfo, ManifestMeta, ManifestRecord, Reference, References, UploadId, UploadStatus,
};

impl Engine {
    /// Runs `f` with a handle of this engine on the blocking pool.
    async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> crate::Result<T> + Send + 'static,
    ) -> store::Result<T> {
        let engine = self.clone();
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(result) => Ok(result?),
            Err(e) => Err(store::Error::internal(format!("engine task failed: {e}"))),
        }
    }
}

#[async_trait::async_trait]
impl Store for Engine {
    async fn blob(&self, repo: &str, digest: &Digest) -> store::Result<Option<BlobInfo>> {
        Ok(self.repo_blob(repo, digest)?)
    }

    async fn open_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> store::Result<Option<Box<dyn OpenBlob>>> {
        let reader = self.read_repo_blob(repo, digest)?;
        Ok(reader.map(|r| Box::new(r) as Box<dyn OpenBlob>))
    }

    async fn put_blob(
        &self,
        repo: &str,
        bytes: Bytes,
        expected: &Digest,
    ) -> store::Result<BlobInfo> {
        let (repo, expected) = (repo.to_owned(), expected.clone());
        self.off_thread(move |e| e.put_blob(&repo, bytes, &expected))
            .await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest) -> store::Result<Option<BlobInfo>> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.off_thread(move |e| e.link_blob(&repo, &digest)).await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> store::Result<bool> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.off_thread(move |e| e.unlink_blob(&repo, &digest))
            .await
    }

    async fn start_upload(
        &self,
        repo: &str,
        algorithm: Algorithm,
        owner: &str,
    ) -> store::Result<UploadId> {
        let (repo, owner) = (repo.to_owned(), owner.to_owned());
        self.off_thread(move |e| e.start_upload_by(&repo, algorithm, Some(&owner)))
            .await
    }

    async fn upload_status(&self, repo: &str, id: &str) -> store::Result<UploadStatus> {
        let (repo, id) = (repo.to_owned(), id.to_owned());
        self.off_thread(move |e| Engine::upload_status(e, &repo, &id))
            .await
    }

    async fn upload_append(
        &self,
        repo: &str,
        id: &str,
        at: u64,
        piece: Bytes,
    ) -> store::Result<u64> {
        let (repo, id) = (repo.to_owned(), id.to_owned());
        self.off_thread(move |e| e.upload_append_at(&repo, &id, at, piece))
            .await
    }

    async fn upload_pause(&self, repo: &str, id: &str) -> store::Result<u64> {
        let (repo, id) = (repo.to_owned(), id.to_owned());
        self.off_thread(move |e| Engine::upload_pause(e, &repo, &id))
            .await
    }

    async fn commit_upload(
        &self,
        repo: &str,
        id: &str,
        expected: &Digest,
    ) -> store::Result<BlobInfo> {
        let (repo, id, expected) = (repo.to_owned(), id.to_owned(), expected.clone());
        self.off_thread(move |e| Engine::commit_upload(e, &repo, &id, &expected))
            .await
    }

    async fn cancel_upload(&self, repo: &str, id: &str) -> store::Result<()> {
        let (repo, id) = (repo.to_owned(), id.to_owned());
        self.off_thread(move |e| Engine::cancel_upload(e, &repo, &id))
            .await
    }

    async fn purge_uploads(&self, idle: Duration) -> store::Result<usize> {
        self.off_thread(move |e| Ok(Engine::purge_uploads(e, idle)))
            .await
    }

    async fn put_manifest(
        &self,
        repo: &str,
        bytes: Bytes,
        reference: &Reference,
        meta: ManifestMeta,
        references: &References,
    ) -> store::Result<ManifestRecord> {
        let (repo, reference, references) =
            (repo.to_owned(), reference.clone(), references.clone());
        self.off_thread(move |e| {
            Engine::put_manifest(e, &repo, bytes, &reference, meta, &references)
        })
        .await
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> store::Result<Option<ManifestRecord>> {
        Ok(Engine::manifest(self, repo, reference)?)
    }

    async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> store::Result<Option<(ManifestRecord, Bytes)>> {
        Ok(Engine::get_manifest(self, repo, reference)?)
    }

    async fn untag(&self, repo: &str, tag: &str) -> store::Result<bool> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.off_thread(move |e| Engine::untag(e, &repo, &tag))
            .await
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> store::Result<bool> {
        let (repo, digest) = (repo.to_owned(), digest.clone());
        self.off_thread(move |e| Engine::delete_manifest(e, &repo, &digest))
            .await
    }

    async fn repository_exists(&self, repo: &str) -> store::Result<bool> {
        Ok(Engine::repository_exists(self, repo)?)
    }

    async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> store::Result<Vec<String>> {
        Ok(Engine::list_tags(self, repo, after, limit)?)
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> store::Result<Vec<String>> {
        Ok(Engine::list_repositories(self, after, limit)?)
    }

    async fn referrers_page(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
    ) -> store::Result<(Vec<ManifestRecord>, Option<Digest>)> {
        Ok(Engine::referrers_page(
            self,
            repo,
            subject,
            artifact_type,
            after,
            limit,
        )?)
    }
}

#[async_trait::async_trait]
impl OpenBlob for BlobReader {
    fn size(&self) -> u64 {
        self.remaining()
    }

    async fn read(self: Box<Self>, range: Range<u64>) -> store::Result<BlobBody> {
        Ok(Box::pin(self.range(range)?))
    }
}

impl BlobStream for BlobReader {
    fn remaining(&self) -> u64 {
        BlobReader::remaining(self)
    }

    /// Pieces are slices of a mapping, checked readable: they are ready at once.
    fn poll_piece(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<store::Result<Bytes>>> {
        let next = self.get_mut().next();
        if let Some(Err(e)) = &next {
            tracing::error!(error = %e, "blob read failed during its response");
        }
        Poll::Ready(next.map(|piece| piece.map_err(store::Error::from)))
    }
}

/// Each failure as the kind the protocol answers with.
impl From<Error> for store::Error {
    fn from(e: Error) -> store::Error {
        use store::Error as S;
        match e {
            Error::DigestMismatch { expected, computed } => {
                S::DigestMismatch { expected, computed }
            }
            Error::InvalidDigest(e) => S::InvalidDigest(e),
            Error::UploadUnknown(id) => S::UploadUnknown(id),
            Error::UploadOffset { received } => S::UploadOffset { received },
            Error::TooManyUploads { limit } => S::TooManyUploads { limit },
            Error::TooManyUploadsFrom { limit, .. } => S::TooManyUploadsFrom { limit },
            Error::BlobUnknown(digest) => S::BlobUnknown(digest),
            Error::ManifestUnknown(m) => S::ManifestUnknown(m),
            Error::ReferenceUnknown { repo, digest, what } => {
                S::ReferenceUnknown { repo, digest, what }
            }
            Error::RangeNotSatisfiable { start, end, size } => {
                S::RangeNotSatisfiable { start, end, size }
            }
            Error::InvalidName { what, reason } => S::InvalidName { what, reason },
            Error::StorageFull { detail } => S::StorageFull { detail },
            e @ (Error::Locked { .. }
            | Error::Io { .. }
            | Error::Index(_)
            | Error::CorruptIndex { .. }
            | Error::CorruptPack { .. }
            | Error::Unreadable { .. }
            | Error::UnsupportedFormat { .. }
            | Error::BackupMismatch { .. }
            | Error::MetadataTooLarge { .. }) => S::internal(e),
        }
    }
}
