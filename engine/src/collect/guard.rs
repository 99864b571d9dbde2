//! What a running collection must not take away: blobs linked after it began. A push
//! (a commit, deduplicated or not) or a mount notes its digest here while it holds the
//! digest's inflight lock and its repository's lock, so the collection's sweep (under
//! the repository's exclusive lock) and its compaction (deciding under the digest's
//! inflight lock whether a blob's bytes are still needed) both see every such link,
//! whether or not it had reached the index when they looked.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::digest::Digest;
use crate::sync::lock;

#[derive(Debug, Default)]
pub(crate) struct LinkGuard {
    /// Whether a collection runs: every commit asks, so it is answered without a lock.
    active: AtomicBool,
    /// `None` while no collection runs (nothing is recorded then).
    linked: Mutex<Option<HashSet<Digest>>>,
}

impl LinkGuard {
    /// Records that `digest` was linked now, if a collection is running.
    pub fn note(&self, digest: &Digest) {
        if !self.active.load(Ordering::SeqCst) {
            return;
        }
        if let Some(linked) = lock(&self.linked).as_mut() {
            linked.insert(digest.clone());
        }
    }

    /// Whether `digest` was linked since the running collection began.
    pub fn holds(&self, digest: &Digest) -> bool {
        lock(&self.linked)
            .as_ref()
            .is_some_and(|linked| linked.contains(digest))
    }

    /// Starts recording, until the returned value is dropped.
    pub fn begin(&self) -> Recording<'_> {
        *lock(&self.linked) = Some(HashSet::new());
        self.active.store(true, Ordering::SeqCst);
        Recording(self)
    }
}

/// While alive, links are recorded; see [`LinkGuard::begin`].
pub(crate) struct Recording<'a>(&'a LinkGuard);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.active.store(false, Ordering::SeqCst);
        *lock(&self.0.linked) = None;
    }
}
