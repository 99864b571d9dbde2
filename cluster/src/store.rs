//! The cluster store as the protocol layer's [`lain_store::Store`].

use std::time::Duration;

use bytes::Bytes;
use lain_store::{
    Algorithm, BlobInfo, Digest, ManifestMeta, ManifestRecord, OpenBlob, Reference, References,
    Result, Store, UploadId, UploadStatus,
};

use crate::ClusterStore;

#[async_trait::async_trait]
impl Store for ClusterStore {
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        Ok(self.inner.blob(repo, digest).await?)
    }

    async fn open_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Box<dyn OpenBlob>>> {
        Ok(self.inner.open_blob(repo, digest).await?)
    }

    async fn put_blob(&self, repo: &str, bytes: Bytes, expected: &Digest) -> Result<BlobInfo> {
        self.inner.put_blob(repo, bytes, expected).await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        Ok(self.inner.link_blob(repo, digest).await?)
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.inner.unlink_blob(repo, digest).await?)
    }

    async fn start_upload(
        &self,
        repo: &str,
        algorithm: Algorithm,
        owner: &str,
    ) -> Result<UploadId> {
        self.inner.start_upload(repo, algorithm, owner).await
    }

    async fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus> {
        self.inner.upload_status(repo, id).await
    }

    async fn upload_append(&self, repo: &str, id: &str, at: u64, piece: Bytes) -> Result<u64> {
        self.inner.upload_append(repo, id, at, piece).await
    }

    async fn upload_pause(&self, repo: &str, id: &str) -> Result<u64> {
        self.inner.upload_pause(repo, id).await
    }

    async fn commit_upload(&self, repo: &str, id: &str, expected: &Digest) -> Result<BlobInfo> {
        self.inner.commit_upload(repo, id, expected).await
    }

    async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        self.inner.cancel_upload(repo, id).await
    }

    async fn purge_uploads(&self, idle: Duration) -> Result<usize> {
        Ok(self.inner.purge_uploads(idle).await?)
    }

    /// Chunks smaller than a part are staged as objects of their own between requests,
    /// rewritten with each next chunk until a part is full.
    fn chunk_min_length(&self) -> Option<u64> {
        Some(self.inner.options.part_size)
    }

    async fn put_manifest(
        &self,
        repo: &str,
        bytes: Bytes,
        reference: &Reference,
        meta: ManifestMeta,
        references: &References,
    ) -> Result<ManifestRecord> {
        self.inner
            .put_manifest(repo, bytes, reference, meta, references)
            .await
    }

    async fn manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestRecord>> {
        Ok(self.inner.manifest(repo, reference).await?)
    }

    async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(ManifestRecord, Bytes)>> {
        Ok(self.inner.get_manifest(repo, reference).await?)
    }

    async fn untag(&self, repo: &str, tag: &str) -> Result<bool> {
        Ok(self.inner.untag(repo, tag).await?)
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.inner.delete_manifest(repo, digest).await?)
    }

    async fn repository_exists(&self, repo: &str) -> Result<bool> {
        Ok(self.inner.repository_exists(repo).await?)
    }

    async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        Ok(self.inner.list_tags(repo, after, limit).await?)
    }

    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        Ok(self.inner.list_repositories(after, limit).await?)
    }

    async fn referrers_page(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, Option<Digest>)> {
        Ok(self
            .inner
            .referrers_page(repo, subject, artifact_type, after, limit)
            .await?)
    }
}
