//! Plain data types the storage interface speaks in, shared by the protocol layer and
//! every store.

use crate::digest::Digest;

/// A stored blob: its digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// How a client names a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// What the protocol layer extracted from a manifest's JSON; the engine stores it and
/// never parses manifests itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestMeta {
    pub media_type: String,
    /// The manifest this one refers to (OCI `subject`), which makes it a referrer.
    pub subject: Option<Digest>,
    /// The artifact type the referrers API reports for this manifest.
    pub artifact_type: Option<String>,
    /// Annotations the referrers API reports for this manifest.
    pub annotations: Vec<(String, String)>,
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub size: u64,
    pub meta: ManifestMeta,
}

/// What a manifest references, as the protocol reads it: the blobs it names (config,
/// layers) and its child manifests (an index's). The engine stores manifests without
/// reading them; checks and garbage collection ask the caller's reader, and a
/// manifest's push names them so that the engine can check them under its locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
}

/// Reads a manifest's references from its bytes and media type; an error says why the
/// bytes are not a manifest of that type.
pub type ReferenceReader<'a> = &'a (dyn Fn(&[u8], &str) -> Result<References, String> + Sync);

/// Identifies an upload session; the store chooses it, the protocol layer passes it back.
pub type UploadId = String;

/// What [`crate::Store::upload_status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes received so far; the next piece continues at this offset.
    pub received: u64,
    pub started: std::time::SystemTime,
}
