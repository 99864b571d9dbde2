//! Upgrading a format-1 store in place. Format 1 kept repository metadata in the index
//! only; format 2 logs it in the packs. The upgrade writes the index's whole metadata
//! as metadata records (a snapshot, through the ordinary group commit), and only then
//! writes the `FORMAT` file. A kill at any moment before that leaves a store that still
//! reads as format 1 and is upgraded again at the next open: the repeated snapshot
//! states the same entries, so replaying both gives the same index.

use crate::change::{self, Change};
use crate::engine::Engine;
use crate::error::Result;
use crate::group::GroupEntry;
use crate::index::Family;

/// Bytes of changes per group commit: each record (and its index batch) a few MiB,
/// well inside the record limit.
const CHUNK_BYTES: usize = 8 << 20;

pub(crate) fn from_format_1(engine: &Engine) -> Result<()> {
    let core = &engine.core;
    let mut changes = Vec::new();
    for family in [
        Family::Repos,
        Family::Links,
        Family::Manifests,
        Family::Tags,
    ] {
        for (key, value) in core.index.scan_all(family)? {
            changes.extend(Change::restating(family, &key, &value)?);
        }
    }
    let (_, sizes) = change::encode_list(&changes);
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for (change, size) in changes.into_iter().zip(sizes) {
        chunk.push(change);
        bytes += size as usize;
        if bytes >= CHUNK_BYTES {
            commit(core, std::mem::take(&mut chunk))?;
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        commit(core, chunk)?;
    }
    Ok(())
}

fn commit(core: &crate::engine::Core, changes: Vec<Change>) -> Result<()> {
    core.group_commit(GroupEntry {
        changes,
        ..GroupEntry::default()
    })
}
