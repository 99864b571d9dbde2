//! [`Engine`]: opening a data directory, blob uploads and reads. Repository metadata
//! (links, manifests, tags, referrers) is in `repository.rs`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::collect::LinkGuard;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::group::GroupCommit;
use crate::index::{Batch, Family, Index, IndexMemory, keys, values};
use crate::inflight::Inflight;
use crate::layout::{FORMAT_VERSION, Found, Layout};
use crate::lock::DirLock;
use crate::pack::{Mapped, PackRecovery, Packs};
use crate::progress::Silent;
use crate::rebuild::{self, RebuildReport};
use crate::rollforward;
use crate::space::Space;
use crate::types::BlobInfo;
use crate::upgrade;
use crate::upload::{Session, Sessions, UploadId, UploadStatus};

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
    _lock: DirLock,
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
    /// Opens (creating if needed) the data directory `root`: takes its lock, rebuilds
    /// the index from the packs if it is missing, opens it, cuts uncommitted pack tails,
    /// drops the previous process's sessions, and upgrades a format-1 store in place.
    /// A second opener of the same directory gets [`Error::Locked`].
    pub fn open(root: &Path, options: Options) -> Result<Engine> {
        std::fs::create_dir_all(root).context("create", root)?;
        let dir_lock = DirLock::acquire(root)?;
        let layout = Layout::new(root);
        let found = layout.found()?;
        match found {
            Found::Empty => layout.write_format()?,
            Found::Store { version } if version > FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: format!(
                        "data format {version} is newer than this registry's ({FORMAT_VERSION})"
                    ),
                });
            }
            Found::Store { .. } => {}
        }
        let mut rebuilt = None;
        if found != Found::Empty && !layout.index().exists() {
            // Lost, deleted, or a rebuild was interrupted: the packs have it all.
            if found == (Found::Store { version: 1 }) {
                tracing::error!(
                    "{}: the index of a format-1 store is missing; its blobs are rebuilt \
                     from the packs, but its repositories, tags and manifests were only in \
                     the index and are gone",
                    root.display()
                );
            }
            let report = rebuild::rebuild(&layout, &options, &Silent)?;
            if report.packs > 0 {
                tracing::warn!(
                    ?report,
                    "index missing: rebuilt from the packs in {}",
                    root.display()
                );
            }
            rebuilt = Some(report);
        }
        rebuild::remove_dir_if_present(&layout.index_new())?;
        rebuild::remove_dir_if_present(&layout.index_old())?;
        for stale in layout.stale_checks() {
            rebuild::remove_dir_if_present(&stale)?;
        }
        let index = Index::open(
            &layout.index(),
            IndexMemory {
                block_cache_bytes: options.block_cache_bytes,
                write_buffer_bytes: options.write_buffer_bytes,
            },
        )?;

        let mut known = values::decode_packs(index.scan_all(Family::Packs)?)?;
        let mut sequence = index
            .get(Family::State, keys::SEQUENCE)?
            .map(|v| values::decode_sequence(&v))
            .transpose()?
            .unwrap_or(0);
        let rolled_forward = rollforward::roll_forward(
            &index,
            options.storage.as_ref(),
            &layout.packs(),
            options.pack_seal_size,
            &mut sequence,
            &mut known,
        )?;
        crate::collect::remove_retired(&index, options.storage.as_ref(), &layout.packs())?;
        let (packs, pack_report) = Packs::open(
            options.storage.clone(),
            layout.packs(),
            options.pack_seal_size,
            &known,
        )?;

        let stale = index.scan_all(Family::Uploads)?;
        let mut batch = Batch::default();
        for (key, _) in &stale {
            batch.delete(Family::Uploads, key);
        }
        index.commit(batch)?;

        let recovery = RecoveryReport {
            packs: pack_report,
            stale_uploads: stale.len(),
            rolled_forward,
            rebuilt,
            upgraded_from: None,
        };
        let options_reserve = options.reserved_space;
        let core = Core {
            options,
            index,
            packs: Arc::new(packs),
            inflight: Inflight::default(),
            group: GroupCommit::default(),
            sessions: Sessions::default(),
            stats: Counters::default(),
            sequence: AtomicU64::new(sequence),
            repo_locks: (0..64).map(|_| std::sync::RwLock::new(())).collect(),
            collection: LinkGuard::default(),
            maintenance: std::sync::Mutex::new(()),
            recovery,
            root: root.to_owned(),
            space: Space::new(root, options_reserve),
            _lock: dir_lock,
        };
        let mut engine = Engine {
            core: Arc::new(core),
        };
        if let Found::Store { version: 1 } = found {
            upgrade::from_format_1(&engine)?;
            layout.write_format()?;
            if let Some(core) = Arc::get_mut(&mut engine.core) {
                core.recovery.upgraded_from = Some(1);
            }
            tracing::info!(
                "upgraded {} from data format 1 to {FORMAT_VERSION}",
                root.display()
            );
        }
        let recovery = &engine.core.recovery;
        if recovery.packs != PackRecovery::default()
            || recovery.stale_uploads > 0
            || recovery.rolled_forward > 0
        {
            tracing::warn!(?recovery, "recovered data directory {}", root.display());
        }
        Ok(engine)
    }

    /// Whether `root` holds a store (a data directory this engine has written), without
    /// opening or creating anything.
    pub fn holds_store(root: &Path) -> Result<bool> {
        Layout::new(root).holds_store()
    }

    /// Rebuilds the index of the data directory `root` from its packs, replacing the
    /// index there (FORMAT.md, "Rebuilding the index"). Needs the directory to itself:
    /// a running server holds its lock ([`Error::Locked`]).
    pub fn rebuild_index(
        root: &Path,
        options: &Options,
        progress: &dyn crate::progress::Progress,
    ) -> Result<RebuildReport> {
        let _lock = DirLock::acquire(root)?;
        let layout = Layout::new(root);
        match layout.found()? {
            Found::Store { version } if version > FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: format!("data format {version} is newer than this registry's"),
                });
            }
            // Its packs hold no metadata: a rebuild would keep the blobs and drop every
            // repository, tag and manifest that its index alone holds.
            Found::Store { version: 1 } => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: "data format 1 keeps its metadata in the index only, so it cannot \
                             be rebuilt from the packs: open it once (`registry serve` or \
                             `registry fsck`) to upgrade it in place, then repair"
                        .into(),
                });
            }
            _ => {}
        }
        rebuild::rebuild(&layout, options, progress)
    }

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

    // ---- uploads -------------------------------------------------------------------

    /// Starts an upload into `repo`. The bytes are hashed with `algorithm` as they
    /// arrive (a commit with another algorithm's digest re-hashes once).
    pub fn start_upload(&self, repo: &str, algorithm: Algorithm) -> Result<UploadId> {
        self.start_upload_by(repo, algorithm, None)
    }

    /// [`Engine::start_upload`] for `owner`, held to its share of the sessions
    /// ([`Options::max_upload_sessions_per_owner`]).
    pub fn start_upload_by(
        &self,
        repo: &str,
        algorithm: Algorithm,
        owner: Option<&str>,
    ) -> Result<UploadId> {
        keys::check_name(repo, "repository name")?;
        self.core.space.admit(0)?;
        let options = &self.core.options;
        if let Some(owner) = owner {
            while self.core.sessions.owned_by(owner) >= options.max_upload_sessions_per_owner {
                let Some(evicted) = self
                    .core
                    .sessions
                    .evict_least_active(options.upload_evict_idle, Some(owner))
                else {
                    return Err(Error::TooManyUploadsFrom {
                        owner: owner.to_owned(),
                        limit: options.max_upload_sessions_per_owner,
                    });
                };
                tracing::info!(
                    upload = evicted,
                    owner,
                    "the owner's share of upload sessions is reached; ended its least active idle one"
                );
                self.forget_upload(&evicted);
            }
        }
        while self.core.sessions.len() >= options.max_upload_sessions {
            let sessions = &self.core.sessions;
            let evicted = sessions
                .evict_least_active(options.upload_evict_idle, None)
                .or_else(|| {
                    // Fair shares: an owner holding more sessions than this one gives up
                    // its least active, once idle for a few seconds. Many addresses
                    // that open sessions and never use them cannot shut others out.
                    let mine = owner.map_or(0, |owner| sessions.owned_by(owner));
                    let largest = sessions.largest_owner(mine + 1)?;
                    sessions.evict_least_active(options.upload_fair_share_idle, Some(&largest))
                });
            let Some(evicted) = evicted else {
                return Err(Error::TooManyUploads {
                    limit: options.max_upload_sessions,
                });
            };
            tracing::info!(
                upload = evicted,
                limit = options.max_upload_sessions,
                "upload session limit reached; ended the least active idle session"
            );
            self.forget_upload(&evicted);
        }
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut session = Session::new(repo, algorithm, self.core.packs.clone());
        session.owner = owner.map(str::to_owned);
        // Recorded without a sync: after a crash every session is dropped anyway, and
        // this entry only lets the next start count them.
        let mut batch = Batch::default();
        batch.put(
            Family::Uploads,
            &keys::upload(&id),
            &values::encode_upload(repo, session.started),
        );
        self.core.index.apply(batch)?;
        self.core.sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// Appends the next piece of upload `id`; returns the bytes received so far. If
    /// the write fails the session is cancelled.
    pub fn upload_append(&self, repo: &str, id: &str, piece: Bytes) -> Result<u64> {
        self.in_session(repo, id, |session| self.core.append(session, piece))
    }

    /// The client has stopped sending to upload `id` for now (its request ended): the
    /// pieces still gathering are written, so that a session waiting for its next chunk
    /// holds no buffer, however long the wait. Returns the bytes received so far.
    pub fn upload_pause(&self, repo: &str, id: &str) -> Result<u64> {
        self.in_session(repo, id, |session| self.core.pause(session))
    }

    /// The bytes upload `id` has received, once its last write has landed; if that
    /// write failed, the session is cancelled and the error returned.
    pub fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus> {
        self.in_session(repo, id, |session| session.status())
    }

    /// Runs `f` on session `id`; if it fails, the session ends (its bytes are cut off
    /// its pack) and is forgotten.
    fn in_session<T>(
        &self,
        repo: &str,
        id: &str,
        f: impl FnOnce(&mut crate::upload::Session) -> Result<T>,
    ) -> Result<T> {
        let slot = self.core.sessions.get(repo, id)?;
        let result = slot.with(id, f);
        if result.is_err() {
            self.core.sessions.remove(id);
            self.forget_upload(id);
        }
        result
    }

    /// Completes upload `id`: the blob is stored (unless it already was) and linked to
    /// the repository if its bytes hash to `expected`. The session ends either way; on
    /// a mismatch its bytes are dropped and [`Error::DigestMismatch`] is returned.
    pub fn commit_upload(&self, repo: &str, id: &str, expected: &Digest) -> Result<BlobInfo> {
        let session = self.core.sessions.take(repo, id)?;
        // On success the session's entry goes in the commit's own batch.
        let mut side = Batch::default();
        side.delete(Family::Uploads, &keys::upload(id));
        let result = self
            .core
            .commit(session, Some(expected), &|_, _| Ok(Vec::new()), side);
        if result.is_err() {
            self.forget_upload(id);
        }
        result
    }

    /// Abandons upload `id` and gives its bytes back.
    pub fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        drop(self.core.sessions.take(repo, id)?);
        self.forget_upload(id);
        Ok(())
    }

    /// Cancels every session idle for longer than `idle`; returns how many.
    pub fn purge_uploads(&self, idle: Duration) -> usize {
        let purged = self.core.sessions.purge(idle);
        for id in &purged {
            self.forget_upload(id);
        }
        purged.len()
    }

    fn forget_upload(&self, id: &str) {
        let mut batch = Batch::default();
        batch.delete(Family::Uploads, &keys::upload(id));
        if let Err(e) = self.core.index.apply(batch) {
            tracing::warn!(upload = id, error = %e, "could not remove upload entry");
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
