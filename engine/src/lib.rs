//! `lain-engine`: the registry's storage engine.
//!
//! Blobs are content-addressed by OCI digest and written exactly once, straight into an
//! append-only pack file ([`pack`]), and so is every change of repository metadata
//! (links, manifests, tags, referrers), as a metadata record. A RocksDB index
//! ([`index`]) is the view of those packs that requests read: digests to pack
//! locations, and the current metadata. It can always be rebuilt from the packs.
//! Reads are slices of memory-mapped packs. The byte-level format is in `FORMAT.md`.
//!
//! The engine knows nothing of HTTP or configuration files: its callers see
//! [`Engine`], the typed [`Error`], and plain data types.
//!
//! Durability contract: every method that changes data returns only after the change
//! is durable: its records (blob bytes, metadata changes) are fdatasync'ed in a pack,
//! and then the index is updated (a RocksDB write that is not synced: the packs are the
//! log, and opening rolls the index forward to them after a power cut). An index entry
//! never points at bytes that were not synced.

mod backup;
mod change;
mod check;
mod codec;
mod collect;
mod engine;
mod error;
mod group;
mod inflight;
mod layout;
mod lock;
mod open;
mod options;
mod rebuild;
mod replay;
mod repository;
mod retention;
mod rollforward;
mod space;
mod store;
mod sync;
mod upgrade;
mod upload;
mod usage;

pub mod index;
pub mod pack;
pub mod progress;
pub mod storage;

pub use backup::BackupReport;
pub use check::{CheckReport, Finding, Problem};
pub use collect::{
    CollectOptions, CollectReport, DEFAULT_COMPACT_THRESHOLD, DEFAULT_GRACE, Removal,
};
// The shared vocabulary lives below the engine, in the storage interface's crate;
// under these paths the engine's modules name it as their own.
pub use digest::{Algorithm, Digest, DigestParseError};
pub use engine::{BlobReader, Engine, EngineStats, Options, PackUsage, RecoveryReport};
pub use error::{Error, IndexError, Result};
pub use lain_store::{digest, types};
pub use pack::PackRecovery;
pub use rebuild::RebuildReport;
pub use retention::{Pruned, TagOrder, glob_matches, natural};
pub use types::{
    BlobInfo, ManifestMeta, ManifestRecord, Reference, ReferenceReader, References, UploadId,
    UploadStatus,
};
