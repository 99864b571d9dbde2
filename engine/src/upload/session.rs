//! An upload session's state: what it has hashed, the pieces it holds, the pack it
//! leases; and the table of open sessions, with its limits. Below the engine's shared
//! state, which holds the table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::digest::{Algorithm, Hasher};
use crate::error::{Error, Result};
use crate::pack::{PackWriter, Packs};
use crate::sync::lock;

/// Pieces an upload holds before writing, whatever their size: bounds the per-piece
/// bookkeeping a client sending tiny pieces can cause, and the `writev` length.
pub(super) const MAX_PENDING_PIECES: usize = 1024;

pub use crate::types::{UploadId, UploadStatus};

/// One upload in progress.
pub(crate) struct Session {
    pub repo: String,
    /// Who started it, as the caller names them (see `Engine::start_upload_by`).
    pub owner: Option<String>,
    pub started: SystemTime,
    pub last_active: Instant,
    pub(super) hasher: Hasher,
    pub(super) crc: crc32fast::Hasher,
    pub(super) received: u64,
    /// Pieces received but not yet written.
    pub(super) pending: Vec<Bytes>,
    pub(super) pending_len: usize,
    /// The pack this session writes to; taken at the first write, so sessions that
    /// never send bytes hold no pack.
    pub(super) lease: Option<Lease>,
    /// The write of the previous flush, running while the next pieces are hashed.
    pub(super) writing: Option<JoinHandle<Result<()>>>,
    pub(super) packs: Arc<Packs>,
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
pub(super) struct Lease {
    pub(super) writer: PackWriter,
    pub(super) record_start: u64,
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
    pub(super) fn settle_write(&mut self) -> Result<()> {
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
pub(super) fn land(handle: JoinHandle<Result<()>>) -> Result<()> {
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
    pub(super) map: Mutex<HashMap<UploadId, Arc<Slot>>>,
}

/// A session's place in the table. The session itself is `None` once a commit or
/// cancel has taken it, so a request racing with those finds it gone.
pub(crate) struct Slot {
    pub(super) repo: String,
    pub(super) owner: Option<String>,
    pub(super) session: Mutex<Option<Session>>,
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
