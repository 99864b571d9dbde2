//! Upload sessions: the only way bytes enter the store.
//!
//! A session hashes every piece as it arrives (the bytes are hot in cache then) and
//! holds the pieces, without copying them, until enough have gathered for one large
//! vectored write. The first write leases a pack (see [`crate::pack`]) and reserves the
//! record header; commit fills the header in, syncs, and indexes. A session that is
//! cancelled, fails, or turns out to be a duplicate gives its bytes back by truncating
//! its pack to where it started: the session's record is always its pack's tail.

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::change::Change;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::group::{GroupEntry, SmallBlob};
use crate::index::values::LinkState;
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{RECORD_HEADER_LEN, RECORD_TRAILER_LEN, RecordHeader};
use crate::pack::{Appender, Location, PackWriter, Packs};
use crate::sync::{lock, read_lock};
use crate::types::BlobInfo;

/// Pieces an upload holds before writing, whatever their size: bounds the per-piece
/// bookkeeping a client sending tiny pieces can cause, and the `writev` length.
const MAX_PENDING_PIECES: usize = 1024;

/// Identifies an upload session (a UUID in text form).
pub type UploadId = String;

/// What [`crate::Engine::upload_status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes received so far; the next piece continues at this offset.
    pub received: u64,
    pub started: SystemTime,
}

/// One upload in progress.
pub(crate) struct Session {
    pub repo: String,
    /// Who started it, as the caller names them (see `Engine::start_upload_by`).
    pub owner: Option<String>,
    pub started: SystemTime,
    pub last_active: Instant,
    hasher: Hasher,
    crc: crc32fast::Hasher,
    received: u64,
    /// Pieces received but not yet written.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// The pack this session writes to; taken at the first write, so sessions that
    /// never send bytes hold no pack.
    lease: Option<Lease>,
    /// The write of the previous flush, running while the next pieces are hashed.
    writing: Option<JoinHandle<Result<()>>>,
    packs: Arc<Packs>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The write in flight finishes before the pack's tail is cut and it goes back.
        let _ = self.settle_write();
        if let Some(lease) = self.lease.take() {
            self.packs.release(lease.writer);
        }
    }
}

/// A leased pack and the offset where this session's record starts in it.
struct Lease {
    writer: PackWriter,
    record_start: u64,
}

impl Session {
    pub fn new(repo: &str, algorithm: Algorithm, packs: Arc<Packs>) -> Session {
        Session {
            repo: repo.to_owned(),
            owner: None,
            started: SystemTime::now(),
            last_active: Instant::now(),
            hasher: algorithm.hasher(),
            crc: crc32fast::Hasher::new(),
            received: 0,
            pending: Vec::new(),
            pending_len: 0,
            lease: None,
            writing: None,
            packs,
        }
    }

    /// Waits for the write in flight, if any, and returns its outcome. A failed write
    /// ends the session (its caller drops it).
    fn settle_write(&mut self) -> Result<()> {
        self.writing.take().map_or(Ok(()), land)
    }

    /// What the session holds, once the write in flight has landed: a write that
    /// failed ends the session here, before its client sends more, rather than at the
    /// next append.
    pub fn status(&mut self) -> Result<UploadStatus> {
        self.settle_write()?;
        Ok(UploadStatus {
            received: self.received,
            started: self.started,
        })
    }
}

/// Waits for a write thread and returns its outcome.
fn land(handle: JoinHandle<Result<()>>) -> Result<()> {
    handle.join().unwrap_or_else(|_| {
        Err(Error::Io {
            op: "append (the writing thread panicked) to",
            path: "an upload's pack".into(),
            source: std::io::Error::other("panic"),
        })
    })
}

/// The sessions that clients can resume by id.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<UploadId, Arc<Slot>>>,
}

/// A session's place in the table. The session itself is `None` once a commit or
/// cancel has taken it, so a request racing with those finds it gone.
pub(crate) struct Slot {
    repo: String,
    owner: Option<String>,
    session: Mutex<Option<Session>>,
}

impl Slot {
    /// Runs `f` on the session, waiting for any other request using it. If `f` fails,
    /// the session ends before the lock is released, so no other request can touch its
    /// half-written bytes.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let mut guard = lock(&self.session);
        let session = guard
            .as_mut()
            .ok_or_else(|| Error::UploadUnknown(id.to_owned()))?;
        let result = f(session);
        if result.is_err() {
            // Dropping the session cuts its bytes off the pack and puts the writer back
            // at the last commit.
            *guard = None;
        }
        result
    }
}

impl Sessions {
    pub fn insert(&self, id: UploadId, session: Session) {
        let slot = Slot {
            repo: session.repo.clone(),
            owner: session.owner.clone(),
            session: Mutex::new(Some(session)),
        };
        lock(&self.map).insert(id, Arc::new(slot));
    }

    /// The session `id`, if it exists and belongs to `repo`.
    pub fn get(&self, repo: &str, id: &str) -> Result<Arc<Slot>> {
        lock(&self.map)
            .get(id)
            .filter(|slot| slot.repo == repo)
            .cloned()
            .ok_or_else(|| Error::UploadUnknown(id.to_owned()))
    }

    /// Forgets session `id` (after it has ended).
    pub fn remove(&self, id: &str) {
        lock(&self.map).remove(id);
    }

    /// Removes session `id` of `repo` from the table and hands it over, once no other
    /// request is using it.
    pub fn take(&self, repo: &str, id: &str) -> Result<Session> {
        let slot = self.get(repo, id)?;
        lock(&self.map).remove(id);
        let session = lock(&slot.session).take();
        session.ok_or_else(|| Error::UploadUnknown(id.to_owned()))
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// How many sessions `owner` has.
    pub fn owned_by(&self, owner: &str) -> usize {
        lock(&self.map)
            .values()
            .filter(|slot| slot.owner.as_deref() == Some(owner))
            .count()
    }

    /// The owner holding the most sessions, if that is more than `than`.
    pub fn largest_owner(&self, than: usize) -> Option<String> {
        let map = lock(&self.map);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for owner in map.values().filter_map(|slot| slot.owner.as_deref()) {
            *counts.entry(owner).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|(_, n)| *n > than)
            .max_by_key(|(_, n)| *n)
            .map(|(owner, _)| owner.to_owned())
    }

    /// Ends every session idle for longer than `idle` (busy ones are skipped) and
    /// returns their ids.
    pub fn purge(&self, idle: Duration) -> Vec<UploadId> {
        let mut purged = Vec::new();
        for (id, slot) in self.snapshot() {
            if self.end_if(&id, &slot, |s| s.last_active.elapsed() > idle) {
                purged.push(id);
            }
        }
        purged
    }

    /// Ends the session (of `owner`, if given) that has received nothing for the
    /// longest, if that is at least `min_idle` (one being written right now is
    /// skipped), and returns its id; `None` if no session has been idle that long.
    pub fn evict_least_active(&self, min_idle: Duration, owner: Option<&str>) -> Option<UploadId> {
        let mut oldest: Option<(Instant, UploadId, Arc<Slot>)> = None;
        for (id, slot) in self.snapshot() {
            if owner.is_some_and(|owner| slot.owner.as_deref() != Some(owner)) {
                continue;
            }
            let Ok(guard) = slot.session.try_lock() else {
                continue;
            };
            if let Some(active) = guard.as_ref().map(|s| s.last_active)
                && active.elapsed() >= min_idle
                && oldest.as_ref().is_none_or(|(seen, ..)| active < *seen)
            {
                drop(guard);
                oldest = Some((active, id, slot));
            }
        }
        let (seen, id, slot) = oldest?;
        // Only if nothing touched it since it was chosen.
        self.end_if(&id, &slot, |s| s.last_active == seen)
            .then_some(id)
    }

    fn snapshot(&self) -> Vec<(UploadId, Arc<Slot>)> {
        lock(&self.map)
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect()
    }

    /// Ends session `id` if no request is using it and `condition` holds, checked
    /// under the session's own lock (a request that just touched it wins).
    fn end_if(&self, id: &str, slot: &Slot, condition: impl Fn(&Session) -> bool) -> bool {
        let Ok(mut guard) = slot.session.try_lock() else {
            return false;
        };
        if !guard.as_ref().is_some_and(condition) {
            return false;
        }
        *guard = None;
        lock(&self.map).remove(id);
        true
    }
}

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
