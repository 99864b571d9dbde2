//! Serializes commits of the same digest, so that "is it stored already?" and "store
//! it" happen as one step and a digest is never stored twice, while commits of
//! different digests proceed (and share syncs) in parallel.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

use crate::digest::Digest;
use crate::sync::lock;

#[derive(Debug, Default)]
pub struct Inflight {
    busy: Mutex<HashSet<Digest>>,
    released: Condvar,
}

/// While alive, no other commit of the same digest runs.
pub struct InflightGuard<'a> {
    owner: &'a Inflight,
    digest: Digest,
}

impl Inflight {
    pub fn acquire(&self, digest: &Digest) -> InflightGuard<'_> {
        let mut busy = lock(&self.busy);
        while busy.contains(digest) {
            busy = self.released.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        busy.insert(digest.clone());
        InflightGuard {
            owner: self,
            digest: digest.clone(),
        }
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.owner.busy).remove(&self.digest);
        self.owner.released.notify_all();
    }
}
