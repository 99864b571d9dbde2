//! Plain data types that several modules share (the public API, index values, metadata
//! records). They sit below everything else, so no module has to import another's
//! internals to name them.

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
