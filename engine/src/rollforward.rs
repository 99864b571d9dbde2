//! Rolling the index forward to the packs at open.
//!
//! The packs are the log and the index a view of it, so a commit is durable once its
//! pack is synced: the index write that follows is not synced (one `fdatasync` per
//! group instead of two). After a power cut the index may therefore end a few writes
//! before the packs do. Opening finds, past each pack's committed length, the valid
//! records there and applies them the way a rebuild would (blob locations; metadata
//! records in sequence order), so every acknowledged change is back before the store
//! serves. What is past the last valid record was never acknowledged, and the pack
//! layer cuts it off next. So is a group whose metadata record is older than what the
//! index has applied: its index write failed while the server went on (a rebuild
//! before the next open would still replay it; the roll-forward is where it goes).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::error::{IoContext, Result};
use crate::index::{Batch, Family, Index, keys, values};
use crate::pack::format::{self, META_HEADER_LEN, RECORD_OVERHEAD, RECORD_TRAILER_LEN, RecordKind};
use crate::pack::{self, Location, PackEntry};
use crate::replay::{MetaAt, replay};
use crate::storage::Storage;
use crate::usage::{META_FRAMING, Usage};

/// Applies the valid records past each pack's committed length to the index, and moves
/// the committed lengths in `known` past them. `sequence` is the newest metadata record
/// the index has applied; it comes back as the newest after the roll-forward. Returns
/// how many records it applied.
pub(crate) fn roll_forward(
    index: &Index,
    storage: &dyn Storage,
    dir: &std::path::Path,
    seal_size: u64,
    sequence: &mut u64,
    known: &mut [(u64, PackEntry)],
) -> Result<usize> {
    let applied_up_to = *sequence;
    let mut batch = Batch::default();
    let mut usage = Usage::new(index);
    let mut applied = 0;
    let mut metas = Vec::new();
    let mut maps: HashMap<u64, Bytes> = HashMap::new();
    // The first copy of a blob wins, in pack order, as in a rebuild.
    let mut staged_blobs = HashSet::new();
    for (id, entry) in known.iter_mut() {
        let path = dir.join(pack::file_name(*id));
        // A pack that cannot be read is the pack layer's to report.
        let Ok(file) = storage.open(&path) else {
            continue;
        };
        let len = file.size().context("stat", &path)?;
        if len <= entry.committed
            || format::check_pack_header(&file.map_readable(16.min(len)).context("map", &path)?)
                .is_err()
        {
            continue;
        }
        let map = file.map_readable(len).context("map", &path)?;
        let tail = format::scan(&map, entry.committed);
        // A metadata record the index has a later sequence than was never applied: its
        // group's index write failed (the client got an error), its pack was retired,
        // and later groups went on elsewhere. Its whole group is cut (the blob records
        // since the metadata record before it, which belong to it) and never applied
        // over the newer changes.
        let keep =
            match tail.records.iter().position(
                |r| matches!(r.kind, RecordKind::Meta { sequence: s } if s <= applied_up_to),
            ) {
                Some(stale) => tail.records[..stale]
                    .iter()
                    .rposition(|r| matches!(r.kind, RecordKind::Meta { .. }))
                    .map_or(0, |last_group_end| last_group_end + 1),
                None => tail.records.len(),
            };
        let records = &tail.records[..keep];
        let Some(last) = records.last() else {
            continue;
        };
        let valid_end = last.end();
        for record in records {
            match &record.kind {
                RecordKind::Blob(digest) => {
                    let key = keys::blob(digest);
                    if !staged_blobs.insert(digest.clone())
                        || index.contains(Family::Blobs, &key)?
                    {
                        // Stored already (elsewhere): this copy is dead space.
                        usage.dead(*id, RECORD_OVERHEAD + record.length);
                    } else {
                        let loc = Location::of(*id, record);
                        batch.put(Family::Blobs, &key, &values::encode_location(&loc));
                    }
                }
                RecordKind::Meta { sequence } => metas.push(MetaAt {
                    sequence: *sequence,
                    pack: *id,
                    body: record.data(),
                }),
            }
            applied += 1;
        }
        *entry = PackEntry {
            committed: valid_end,
            sealed: valid_end >= seal_size,
        };
        batch.put(Family::Packs, &keys::pack(*id), &values::encode_pack(entry));
        maps.insert(*id, map);
    }
    if applied == 0 {
        return Ok(0);
    }
    let unreadable = replay(metas, &maps, |meta, changes| {
        usage.dead(meta.pack, META_FRAMING);
        for (change, source) in changes {
            change.stage(&mut batch, *source);
            usage.change(change, *source)?;
        }
        *sequence = (*sequence).max(meta.sequence);
        Ok(())
    })?;
    for meta in unreadable {
        // Left in place for `fsck` to report; nothing needs its bytes.
        tracing::warn!(
            pack = meta.pack,
            offset = meta.offset(),
            "a metadata record this version cannot read was not applied"
        );
        usage.dead(
            meta.pack,
            META_HEADER_LEN + (meta.body.end - meta.body.start) + RECORD_TRAILER_LEN,
        );
        // Its sequence number is taken: a writer must not hand it out again.
        *sequence = (*sequence).max(meta.sequence);
    }
    usage.stage(&mut batch);
    batch.put(
        Family::State,
        keys::SEQUENCE,
        &values::encode_sequence(*sequence),
    );
    index.commit(batch)?;
    Ok(applied)
}
