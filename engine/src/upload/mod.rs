//! Upload sessions: the only way bytes enter the store.
//!
//! A session hashes every piece as it arrives (the bytes are hot in cache then) and
//! holds the pieces, without copying them, until enough have gathered for one large
//! vectored write. The first write leases a pack (see [`crate::pack`]) and reserves the
//! record header; commit fills the header in, syncs, and indexes. A session that is
//! cancelled, fails, or turns out to be a duplicate gives its bytes back by truncating
//! its pack to where it started: the session's record is always its pack's tail.

pub(crate) mod session;

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::change::Change;
use crate::digest::{Algorithm, Digest};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::group::{GroupEntry, SmallBlob};
use crate::index::values::LinkState;
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{RECORD_HEADER_LEN, RECORD_TRAILER_LEN, RecordHeader};
use crate::pack::{Appender, Location, PackWriter};
use crate::sync::{lock, read_lock};
use crate::types::BlobInfo;

use session::{Lease, MAX_PENDING_PIECES, Session, land};
pub use session::{UploadId, UploadStatus};

impl Core {
    /// Takes in one piece of an upload: hashes it now, writes it when enough has
    /// gathered. On error the session's bytes are gone and it must be dropped.
    pub(crate) fn append(&self, session: &mut Session, piece: Bytes) -> Result<u64> {
        self.space.admit(piece.len() as u64)?;
        session.last_active = Instant::now();
        session.hasher.update(&piece);
        session.crc.update(&piece);
        session.received += piece.len() as u64;
        session.pending_len += piece.len();
        session.pending.push(piece);
        if session.pending_len >= self.options.upload_flush_bytes
            || session.pending.len() >= MAX_PENDING_PIECES
        {
            self.write_pending(session, &[], Queue::AfterLanding)?;
        }
        Ok(session.received)
    }

    /// Writes what is pending (see [`crate::Engine::upload_pause`]). The write runs on
    /// its own thread as in [`Core::append`]; the pieces are freed when it lands.
    pub(crate) fn pause(&self, session: &mut Session) -> Result<u64> {
        if !session.pending.is_empty() {
            // Queued behind the write in flight rather than after waiting for it: the
            // client gets its answer (and sends its next chunk) meanwhile.
            self.write_pending(session, &[], Queue::Behind)?;
        }
        Ok(session.received)
    }

    /// Writes the pending pieces, then `trailer`. A session's first write leases a
    /// pack and starts its record with a zeroed header placeholder, which
    /// [`Core::finish_record`] fills in.
    ///
    /// With an empty `trailer` more pieces are coming: the write then runs on its own
    /// thread while the caller goes on hashing the next pieces, and the next call (or
    /// the commit, or dropping the session) waits for it first. With a trailer it is
    /// the record's last write and done before returning.
    fn write_pending<'s>(
        &self,
        session: &'s mut Session,
        trailer: &[u8],
        queue: Queue,
    ) -> Result<&'s mut Lease> {
        // The write in flight lands before this one starts, here or on this one's thread.
        let previous = match queue {
            Queue::Behind if trailer.is_empty() => session.writing.take(),
            _ => {
                session.settle_write()?;
                None
            }
        };
        let first = session.lease.is_none();
        let Session {
            lease,
            pending,
            pending_len,
            received,
            writing,
            ..
        } = session;
        let lease = match lease {
            Some(lease) => lease,
            None => {
                let writer = self.lease_pack()?;
                lease.insert(Lease {
                    record_start: writer.end(),
                    writer,
                })
            }
        };
        let mut pieces = std::mem::take(pending);
        if first {
            pieces.insert(0, Bytes::from_static(&[0u8; RECORD_HEADER_LEN as usize]));
        }
        // Where these bytes start in the pack.
        let offset = lease.record_start
            + if first {
                0
            } else {
                RECORD_HEADER_LEN + *received - *pending_len as u64
            };
        *pending_len = 0;
        if !trailer.is_empty() {
            let mut bufs: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
            bufs.push(IoSlice::new(trailer));
            lease.writer.append(&bufs)?;
            return Ok(lease);
        }
        let appender = Arc::new(lease.writer.appender());
        let pieces = Arc::new(pieces);
        let previous = Arc::new(Mutex::new(previous));
        let write = {
            let (appender, pieces, previous) = (
                Arc::clone(&appender),
                Arc::clone(&pieces),
                Arc::clone(&previous),
            );
            move || {
                if let Some(previous) = lock(&previous).take() {
                    land(previous)?;
                }
                write_and_start_writeback(&appender, &pieces, offset)
            }
        };
        match std::thread::Builder::new()
            .name("lain-upload-write".into())
            .stack_size(256 << 10)
            .spawn(write)
        {
            Ok(handle) => *writing = Some(handle),
            Err(e) => {
                // No thread to be had (a thread limit): write here instead.
                tracing::debug!("writing an upload's pieces inline: {e}");
                if let Some(previous) = lock(&previous).take() {
                    land(previous)?;
                }
                write_and_start_writeback(&appender, &pieces, offset)?;
            }
        }
        Ok(lease)
    }

    /// An idle unsealed pack, or a new one, recorded in the index before use.
    pub(crate) fn lease_pack(&self) -> Result<PackWriter> {
        match self.packs.take_idle() {
            Some(writer) => Ok(writer),
            None => self.create_pack(),
        }
    }

    /// A new pack, recorded in the index before use.
    pub(crate) fn create_pack(&self) -> Result<PackWriter> {
        let writer = self.packs.create()?;
        let mut batch = Batch::default();
        self.stage_pack(&mut batch, writer.id, writer.end());
        self.index.commit(batch)?;
        Ok(writer)
    }

    /// Adds to `batch` the index entry saying pack `id` is committed up to `end`.
    pub(crate) fn stage_pack(&self, batch: &mut Batch, id: u64, end: u64) {
        let entry = self.packs.entry(end);
        batch.put(Family::Packs, &keys::pack(id), &values::encode_pack(&entry));
    }

    /// Stores bytes that are all at hand (a manifest, a small blob) as if uploaded in
    /// one piece: see [`Core::commit`].
    pub(crate) fn store(
        &self,
        repo: &str,
        bytes: Bytes,
        algorithm: Algorithm,
        expected: Option<&Digest>,
        changes: &dyn Fn(&Digest, u64) -> Result<Vec<Change>>,
    ) -> Result<BlobInfo> {
        let mut session = Session::new(repo, algorithm, self.packs.clone());
        self.append(&mut session, bytes)?;
        self.commit(session, expected, changes, Batch::default())
    }

    /// Finishes an upload: verifies the digest against `expected` (or, without one,
    /// takes what the bytes hash to), stores the blob unless it exists, links it to the
    /// session's repository, and applies `changes` (given the digest and size) and
    /// `side` in the same atomic commit (the pack synced, then the index). Returns once
    /// all of it is durable. `changes` runs under the repository's lock (shared), so
    /// what it checks in the index holds until the commit is indexed.
    pub(crate) fn commit(
        &self,
        mut session: Session,
        expected: Option<&Digest>,
        changes: &dyn Fn(&Digest, u64) -> Result<Vec<Change>>,
        side: Batch,
    ) -> Result<BlobInfo> {
        // Every byte received is in the pack (or still pending) before it is verified.
        session.settle_write()?;
        let digest = match expected {
            None => session.hasher.clone().finish(),
            Some(expected) => {
                let computed = self.final_digest(&session, expected.algorithm())?;
                if &computed != expected {
                    return Err(Error::DigestMismatch {
                        expected: Box::new(expected.clone()),
                        computed: Box::new(computed),
                    });
                }
                computed
            }
        };
        let size = session.received;
        let _one_commit_per_digest = self.inflight.acquire(&digest);
        // Ordered against a collection: its sweep of this repository (exclusive lock)
        // sees the new link or runs after it is indexed, and its compaction, deciding
        // under the digest's inflight lock whether the bytes are still needed, sees it
        // noted.
        let _repo = read_lock(self.repo_lock(&session.repo));
        self.collection.note(&digest);
        let mut entry = GroupEntry {
            blob: None,
            changes: vec![Change::Link {
                repo: session.repo.clone(),
                digest: digest.clone(),
                state: LinkState::now(),
            }],
            side,
            restate: None,
        };
        entry.changes.extend(changes(&digest, size)?);

        if self.index.contains(Family::Blobs, &keys::blob(&digest))? {
            // Deduplicated: the session's bytes go back to its pack when it drops.
            self.group_commit(entry)?;
            self.stats.deduplicated.fetch_add(1, Ordering::Relaxed);
        } else if session.lease.is_none() || size < self.options.upload_flush_bytes as u64 {
            // A small blob: its record goes in the group's pack, synced with the
            // group's other changes. Its bytes are in memory, or, when a pause wrote
            // them to the session's pack, read back from there (the page cache); that
            // copy is cut off when the session drops, as a duplicate's is.
            let data = self.small_blob_bytes(&mut session)?;
            entry.blob = Some(SmallBlob {
                header: RecordHeader {
                    digest: digest.clone(),
                    length: size,
                },
                data,
                crc: session.crc.clone().finalize(),
            });
            self.group_commit(entry)?;
        } else {
            // The record is synced in the session's own pack; the group logs the link
            // and indexes both.
            let loc = self.finish_record(&mut session, &digest)?;
            let end = loc.offset + loc.length + RECORD_TRAILER_LEN;
            entry.side.put(
                Family::Blobs,
                &keys::blob(&digest),
                &values::encode_location(&loc),
            );
            self.stage_pack(&mut entry.side, loc.pack, end);
            let indexed = self.group_commit(entry);
            if let Some(lease) = session.lease.take()
                && let Some(writer) = self.packs.settle(lease.writer, end, indexed.is_ok())
            {
                self.packs.release(writer);
            }
            indexed?;
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(BlobInfo { digest, size })
    }

    /// Every byte a session received, for a record in the group's pack: what its pack
    /// holds (written by a pause), then what is still pending.
    fn small_blob_bytes(&self, session: &mut Session) -> Result<Vec<Bytes>> {
        let mut data = Vec::with_capacity(session.pending.len() + 1);
        if let Some(lease) = &session.lease {
            let written = session.received - session.pending_len as u64;
            let data_start = lease.record_start + RECORD_HEADER_LEN;
            let len = usize::try_from(written).unwrap_or(usize::MAX);
            data.push(lease.writer.read_written(data_start, len)?);
        }
        data.append(&mut session.pending);
        session.pending_len = 0;
        Ok(data)
    }

    /// The digest of everything received, in `algorithm`. Sessions hash with the
    /// algorithm chosen when they started; if the client's digest uses another one,
    /// the bytes are hashed again from the pack (a rare, one-off cost).
    fn final_digest(&self, session: &Session, algorithm: Algorithm) -> Result<Digest> {
        if session.hasher.algorithm() == algorithm {
            return Ok(session.hasher.clone().finish());
        }
        let mut hasher = algorithm.hasher();
        if let Some(lease) = &session.lease {
            let written = session.received - session.pending_len as u64;
            let data_start = lease.record_start + RECORD_HEADER_LEN;
            let map = lease.writer.map_written(data_start + written)?;
            hasher.update(&map[data_start as usize..]);
        }
        for piece in &session.pending {
            hasher.update(piece);
        }
        Ok(hasher.finish())
    }

    /// Writes the rest of a session's record (its pieces, the trailer), fills in the
    /// header placeholder and syncs. Returns the blob's location; the record stays
    /// uncommitted until the caller's index write succeeds.
    fn finish_record(&self, session: &mut Session, digest: &Digest) -> Result<Location> {
        let crc = session.crc.clone().finalize();
        let header = RecordHeader {
            digest: digest.clone(),
            length: session.received,
        }
        .encode();
        let length = session.received;
        let lease = self.write_pending(session, &crc.to_le_bytes(), Queue::AfterLanding)?;
        lease.writer.write_at(&header, lease.record_start)?;
        lease.writer.sync()?;
        self.stats.pack_syncs.fetch_add(1, Ordering::Relaxed);
        let loc = Location {
            pack: lease.writer.id,
            offset: lease.record_start + RECORD_HEADER_LEN,
            length,
            crc,
        };
        Ok(loc)
    }
}

/// When a session's write may start, relative to the one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// After it has landed, waiting for it here: the next pieces are not taken in
    /// before the disk has the ones before them.
    AfterLanding,
    /// On its own thread, right behind it: the caller does not wait.
    Behind,
}

/// Appends `pieces` at `offset` of the leased pack and gets them moving to the disk now
/// rather than all at the commit's fdatasync, which the client waits for. The
/// writeback is best effort: a file system without sync_file_range still gets every
/// byte synced at commit.
///
/// Writeback starts for whole pages only: the next write continues in the last, partial
/// page, and a page under writeback makes that write wait for the disk.
fn write_and_start_writeback(appender: &Appender, pieces: &[Bytes], offset: u64) -> Result<()> {
    const PAGE: u64 = 4096;
    let bufs: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    appender.append(&bufs)?;
    let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    let whole_pages_end = (offset + len) / PAGE * PAGE;
    if whole_pages_end > offset
        && let Err(e) = appender.start_writeback(offset, whole_pages_end - offset)
    {
        tracing::debug!("early writeback not started: {e}");
    }
    Ok(())
}

impl crate::engine::Engine {
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

    /// [`Engine::upload_append`] if the session has exactly `at` bytes;
    /// [`Error::UploadOffset`] otherwise, the session unchanged (another request
    /// wrote first).
    pub fn upload_append_at(&self, repo: &str, id: &str, at: u64, piece: Bytes) -> Result<u64> {
        self.in_session(repo, id, |session| {
            if session.received != at {
                return Ok(Err(Error::UploadOffset {
                    received: session.received,
                }));
            }
            self.core.append(session, piece).map(Ok)
        })?
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
}
