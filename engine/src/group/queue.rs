//! What waits for a group: the entries committers hand over, and the queue where they
//! wait while a leader writes. Below the engine's shared state, which holds the queue.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use bytes::Bytes;

use crate::change::{Change, EntryKey};
use crate::error::Result;
use crate::index::Batch;
use crate::pack::PackWriter;
use crate::pack::format::RecordHeader;

/// What one committer hands to the group: all of it becomes durable and visible
/// atomically, or none of it.
#[derive(Default)]
pub(crate) struct GroupEntry {
    /// A blob to store in the group's pack.
    pub blob: Option<SmallBlob>,
    /// Metadata changes: logged in the group's metadata record, then indexed.
    pub changes: Vec<Change>,
    /// Index entries that are not part of the log: state the packs themselves show (a
    /// large upload's location and its pack's length) or that no restart keeps (an
    /// upload session's entry).
    pub side: Batch,
    /// Entries to re-state as they are when the group is written (compaction carrying
    /// the log forward): resolved by the leader, so no change of the same keys can
    /// slip in between the read and the write.
    pub restate: Option<Restate>,
}

/// What compaction asks the group to re-state: each key whose newest change may be in
/// the packs being compacted, with that change if it is a deletion.
pub(crate) struct Restate {
    /// The packs being compacted: an entry set by a change logged in one of them is
    /// re-stated, one set elsewhere is newer and needs nothing.
    pub from: Vec<u64>,
    pub keys: Vec<(EntryKey, Option<Change>)>,
}

/// An entry waiting for a group, its changes already encoded (by its own thread, not
/// the leader's).
pub(super) struct Queued {
    pub(super) entry: GroupEntry,
    /// The changes as a metadata record's body holds them (without the count), and the
    /// bytes each takes.
    pub(super) encoded: Vec<u8>,
    pub(super) sizes: Vec<u32>,
}

/// A blob whose bytes are all in memory.
pub(crate) struct SmallBlob {
    pub header: RecordHeader,
    pub data: Vec<Bytes>,
    pub crc: u32,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    pub(super) state: Mutex<State>,
    pub(super) finished: Condvar,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: Vec<(u64, Queued)>,
    pub(super) outcomes: HashMap<u64, Result<()>>,
    pub(super) leader_active: bool,
    pub(super) next_ticket: u64,
    /// The pack groups append to, kept leased between groups.
    pub(super) pack: Option<PackWriter>,
}
