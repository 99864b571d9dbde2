//! [`Engine`] and its shared state [`Core`]: blob uploads and reads. Opening a data
//! directory is in `open.rs`; repository metadata (links, manifests, tags, referrers)
//! in `repository.rs`.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::collect::guard::LinkGuard;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::group::queue::GroupCommit;
use crate::index::{Family, Index, keys, values};
use crate::inflight::Inflight;
use crate::lock::DirLock;
use crate::pack::{Mapped, PackRecovery, Packs};
use crate::rebuild::RebuildReport;
use crate::space::Space;
use crate::types::BlobInfo;
use crate::upload::session::Sessions;

pub use crate::options::Options;

/// A pack's size and how much of it is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackUsage {
    pub id: u64,
    pub committed: u64,
    pub sealed: bool,
    /// Bytes of records that no index entry needs any more.
    pub dead: u64,
}

impl PackUsage {
    /// Bytes of records still needed.
    pub fn live(&self) -> u64 {
        self.committed
            .saturating_sub(crate::pack::format::PACK_HEADER_LEN + self.dead)
    }
}

/// What opening the data directory found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub packs: PackRecovery,
    /// Upload sessions of the previous process, dropped (sessions do not survive a
    /// restart).
    pub stale_uploads: usize,
    /// Valid records found past the index's committed lengths (the index's last writes,
    /// which are not synced, were lost) and applied to it.
    pub rolled_forward: usize,
    /// The index was missing and has been rebuilt from the packs.
    pub rebuilt: Option<RebuildReport>,
    /// The store was of this format and has been upgraded.
    pub upgraded_from: Option<u32>,
}

/// Counters since the engine was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Upload commits that returned successfully.
    pub commits: u64,
    /// Commits whose digest was already stored (no bytes kept).
    pub deduplicated: u64,
    /// fdatasync calls on packs made by commits.
    pub pack_syncs: u64,
    /// Index writes (each commit group, new packs, upload sessions). Only a few are
    /// synced: commits are durable through their pack's sync.
    pub index_writes: u64,
    /// Syncs of the index's write-ahead log. Fewer than `index_writes` means
    /// concurrent writes shared syncs.
    pub index_syncs: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub deduplicated: AtomicU64,
    pub pack_syncs: AtomicU64,
}

/// The engine's shared state; [`Engine`] is a cheap handle to it.
pub(crate) struct Core {
    pub options: Options,
    pub index: Index,
    pub packs: Arc<Packs>,
    pub inflight: Inflight,
    pub group: GroupCommit,
    pub sessions: Sessions,
    pub stats: Counters,
    /// The sequence number of the newest metadata record.
    pub sequence: AtomicU64,
    pub repo_locks: Vec<std::sync::RwLock<()>>,
    /// Blobs linked while a garbage collection runs, which it must not take away.
    pub collection: LinkGuard,
    /// Held by maintenance that must not overlap: a collection (which deletes packs)
    /// and checks or backups (which read whole packs).
    pub maintenance: std::sync::Mutex<()>,
    pub recovery: RecoveryReport,
    pub root: PathBuf,
    /// Free space, and the reserve clients' bytes may not take.
    pub space: Space,
    // Last field: dropped after the index and packs are closed.
    pub _lock: DirLock,
}

/// A handle to an open data directory. Cloning is cheap; all clones share one store.
/// Every method is blocking (file and index I/O): async callers run them on a blocking
/// thread pool.
#[derive(Clone)]
pub struct Engine {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("root", &self.core.root)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// The sequence number for the next metadata record. Only the group commit's
    /// leader asks, one group at a time.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Engine {
    /// Every pack with its committed length and its dead bytes (records nothing needs
    /// any more), in id order: what garbage collection chooses packs to compact by.
    pub fn pack_usage(&self) -> Result<Vec<PackUsage>> {
        let snapshot = self.core.index.snapshot();
        let mut out = Vec::new();
        for (id, entry) in values::decode_packs(snapshot.scan_all(Family::Packs)?)? {
            let dead = match snapshot.get(Family::Usage, &keys::pack(id))? {
                Some(v) => values::decode_dead(&v)?,
                None => 0,
            };
            out.push(PackUsage {
                id,
                committed: entry.committed,
                sealed: entry.sealed,
                dead,
            });
        }
        Ok(out)
    }

    /// What [`Engine::open`] repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.core.recovery
    }

    /// Compacts the whole index now, waiting until it is done. RocksDB compacts in the
    /// background as it goes; this settles the debt a bulk change leaves (a store
    /// loaded in one go, a garbage collection sweep) at a time of the caller's choosing
    /// rather than under the next clients' requests.
    pub fn compact_index(&self) {
        self.core.index.compact();
    }

    pub fn stats(&self) -> EngineStats {
        let c = &self.core.stats;
        EngineStats {
            commits: c.commits.load(Ordering::Relaxed),
            deduplicated: c.deduplicated.load(Ordering::Relaxed),
            pack_syncs: c.pack_syncs.load(Ordering::Relaxed),
            index_writes: self.core.index.writes(),
            index_syncs: self.core.index.wal_syncs(),
        }
    }

    /// Stores `bytes` as a blob of `repo` in one call (small blobs, tests).
    pub fn put_blob(&self, repo: &str, bytes: Bytes, expected: &Digest) -> Result<BlobInfo> {
        keys::check_name(repo, "repository name")?;
        let algorithm = expected.algorithm();
        self.core
            .store(repo, bytes, algorithm, Some(expected), &|_, _| {
                Ok(Vec::new())
            })
    }

    // ---- reads ---------------------------------------------------------------------

    /// The blob's size, if it is stored (an index point lookup).
    pub fn blob_info(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        Ok(self.location(digest)?.map(|loc| BlobInfo {
            digest: digest.clone(),
            size: loc.length,
        }))
    }

    /// The bytes of a blob, or of `range` of it, as zero-copy slices of the pack's
    /// memory map, delivered in pieces of at most `read_piece_bytes`. The first piece
    /// is known to be readable: a device error there is this call's error.
    pub fn read_blob(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobReader> {
        let (_, reader) = self
            .read_current(digest)?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        let whole = 0..reader.remaining();
        reader.range(range.unwrap_or(whole))
    }

    /// Where a blob is and a reader of it, if it is stored. A read that races a
    /// compaction (which copies the blob, points the index at the copy and removes the
    /// old pack between this lookup and the read) looks it up again.
    pub(crate) fn read_current(
        &self,
        digest: &Digest,
    ) -> Result<Option<(crate::pack::Location, BlobReader)>> {
        let mut loc = self.location(digest)?;
        loop {
            let Some(at) = loc else {
                return Ok(None);
            };
            match self.core.packs.read(&at) {
                Ok(mapped) => {
                    let piece = self.core.options.read_piece_bytes.max(1);
                    return Ok(Some((at, BlobReader::new(mapped, piece))));
                }
                Err(e) => {
                    let now = self.location(digest)?;
                    if now == Some(at) {
                        return Err(e);
                    }
                    loc = now;
                }
            }
        }
    }

    /// A copy of a blob's bytes read from its pack file, not through the mapping: for
    /// walks over many blobs (a collection reading every manifest) that would
    /// otherwise fault whole neighbourhoods of packs into this process's memory.
    pub(crate) fn read_unmapped(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let Some(loc) = self.location(digest)? else {
            return Ok(None);
        };
        let file = self.core.packs.file(loc.pack)?;
        let mut bytes = vec![0u8; usize::try_from(loc.length).unwrap_or(0)];
        file.read_at(&mut bytes, loc.offset)
            .map_err(|e| Error::CorruptPack {
                pack: loc.pack,
                detail: format!("{digest}: cannot read {} bytes: {e}", loc.length),
            })?;
        Ok(Some(bytes))
    }

    /// Reads a whole blob and checks it against its digest and its pack checksum.
    pub fn verify_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let (loc, reader) = self
            .read_current(digest)?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        let bytes = reader.into_bytes()?;
        let damaged = |detail: &str| Error::CorruptPack {
            pack: loc.pack,
            detail: format!("{digest}: {detail}"),
        };
        if crc32fast::hash(&bytes) != loc.crc {
            return Err(damaged("checksum mismatch"));
        }
        if &digest.algorithm().digest(&bytes) != digest {
            return Err(damaged("digest mismatch"));
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size: loc.length,
        })
    }

    pub(crate) fn location(&self, digest: &Digest) -> Result<Option<crate::pack::Location>> {
        self.core
            .index
            .get(Family::Blobs, &keys::blob(digest))?
            .map(|v| values::decode_location(&v))
            .transpose()
    }
}

/// A blob's bytes, as an iterator of bounded, zero-copy pieces. Each piece is checked
/// readable ([`crate::storage::PackFile::ensure_readable`]) before it is yielded, so a
/// failing device ends the read with [`Error::Unreadable`] instead of killing the
/// process that touches the mapped page; after an error the iterator ends.
#[derive(Debug, Clone)]
pub struct BlobReader {
    rest: Mapped,
    piece: usize,
    /// How many bytes at the start of `rest` are known to be readable.
    checked: usize,
}

impl BlobReader {
    /// A reader of `mapped`; nothing is checked until it is narrowed or read.
    fn new(mapped: Mapped, piece: usize) -> BlobReader {
        BlobReader {
            rest: mapped,
            piece,
            checked: 0,
        }
    }

    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.rest.bytes.len() as u64
    }

    /// All remaining bytes as one slice (still zero-copy), once all are known readable.
    pub fn into_bytes(self) -> Result<Bytes> {
        if self.checked < self.rest.bytes.len() {
            self.rest.ensure_readable(self.rest.bytes.len())?;
        }
        Ok(self.rest.bytes)
    }

    /// Narrows the reader to `range` of the bytes not yet yielded (still zero-copy);
    /// [`Error::RangeNotSatisfiable`] if the range does not lie inside them, and
    /// [`Error::Unreadable`] if its first piece cannot be read: a reader comes out of
    /// here ready to answer with.
    pub fn range(mut self, range: Range<u64>) -> Result<BlobReader> {
        let size = self.remaining();
        if range.start > range.end || range.end > size {
            return Err(Error::RangeNotSatisfiable {
                start: range.start,
                end: range.end,
                size,
            });
        }
        // Both bounds are at most `size`, a `usize` length.
        let (start, end) = (range.start as usize, range.end as usize);
        self.rest.bytes.truncate(end);
        self.rest.advance(start);
        self.checked = 0;
        self.check_next()?;
        Ok(self)
    }

    /// Makes sure the next piece is readable.
    fn check_next(&mut self) -> Result<()> {
        let next = self.piece.min(self.rest.bytes.len());
        if self.checked < next {
            self.rest.ensure_readable(next)?;
            self.checked = next;
        }
        Ok(())
    }
}

impl Iterator for BlobReader {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Result<Bytes>> {
        if self.rest.bytes.is_empty() {
            return None;
        }
        if let Err(e) = self.check_next() {
            self.rest.bytes.clear();
            return Some(Err(e));
        }
        let n = self.piece.min(self.rest.bytes.len());
        self.checked -= n;
        Some(Ok(self.rest.advance(n)))
    }
}
