//! The values kept in etcd, as JSON: readable with `etcdctl get`, and a field added
//! later is a field older records lack (`#[serde(default)]`), not a new format.

use std::time::{SystemTime, UNIX_EPOCH};

use lain_store::{Digest, ManifestMeta, ManifestRecord};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn parse_digest(key: &[u8], text: &str) -> Result<Digest> {
    text.parse()
        .map_err(|e: lain_store::DigestParseError| Error::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            detail: e.to_string(),
        })
}

/// A stored blob. Its bytes are the object `blobs/<algorithm>/<hex>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub state: BlobState,
    /// When the record was made (ms): the collection's grace window counts from here.
    pub made: u64,
}

/// A blob's life: `live` while it may be linked; `deleting` from the moment a collector
/// has decided to remove it (no link can be added) until its object and record are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobState {
    Live,
    Deleting,
}

/// A manifest in a repository; its bytes are a blob (`blob/<digest>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub size: u64,
    pub media_type: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Vec<(String, String)>,
    /// The blobs it references (config, layers), as the protocol read them.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// The manifests it references (an index's).
    #[serde(default)]
    pub children: Vec<String>,
    pub made: u64,
}

impl ManifestEntry {
    pub fn record(&self, key: &[u8], digest: Digest) -> Result<ManifestRecord> {
        let subject = match &self.subject {
            Some(text) => Some(parse_digest(key, text)?),
            None => None,
        };
        Ok(ManifestRecord {
            digest,
            size: self.size,
            meta: ManifestMeta {
                media_type: self.media_type.clone(),
                subject,
                artifact_type: self.artifact_type.clone(),
                annotations: self.annotations.clone(),
            },
        })
    }
}

/// An upload session: what any instance needs to take its next chunk or its commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub repo: String,
    pub owner: String,
    pub algorithm: String,
    pub started: u64,
    /// The last time a request wrote to it (ms): idle sessions are purged from here.
    pub active: u64,
    /// Bytes received: the parts', then the tail's.
    pub received: u64,
    /// The hasher's saved state (base64) after every byte received.
    pub hasher: String,
    /// The S3 multipart upload its parts belong to, once it has one.
    #[serde(default)]
    pub multipart: Option<String>,
    /// The parts' ETags, in order: part `i` is S3 part number `i + 1`.
    #[serde(default)]
    pub parts: Vec<String>,
    /// Bytes in the parts.
    #[serde(default)]
    pub parts_len: u64,
    /// Bytes after the parts, staged in an object of their own.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// The digest a commit is finishing the multipart upload as: a retried commit
    /// must name the same.
    #[serde(default)]
    pub completed: Option<String>,
}

/// Staged bytes: `uploads/<id>/tail-<name>`, named at random by the writer that staged
/// them, so that two racing writers never write the same object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tail {
    pub name: String,
    pub len: u64,
}
