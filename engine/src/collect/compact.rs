//! Compaction: rewriting the packs a collection chose, as FORMAT.md's "Compaction"
//! section prescribes. For each pack: the blob records the index still points at and
//! that some repository still links are copied into new packs, and the index switched
//! to the copies in one synced write (blobs nobody links are dropped from the index in
//! the same write); then every change of the pack that is still the newest of its key
//! is re-stated through the group commit; only then is the pack deleted. A crash at any
//! point leaves either the old pack (and the next collection compacts it again) or
//! copies the index points at.

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;

use bytes::Bytes;

use crate::change::{self, Change, EntryKey};
use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::Result;
use crate::group::{GroupEntry, Restate};
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{self, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordKind, ScannedRecord};
use crate::pack::{Location, PackWriter};
use crate::progress::Progress;

/// Bytes gathered before one vectored write into the new pack.
const WRITE_BYTES: u64 = 8 << 20;
/// Keys per re-statement group entry: each group's leader reads them in one batch.
const RESTATE_KEYS: usize = 2048;

/// What compacting packs did.
#[derive(Debug, Default)]
pub(super) struct Compacted {
    pub packs: u64,
    pub bytes_copied: u64,
    pub blobs_dropped: u64,
    pub blob_bytes_dropped: u64,
    /// Packs chosen but left alone, and why.
    pub skipped: Vec<(u64, String)>,
}

/// Where copies go: new packs, written by the compaction alone and handed to the
/// write pool when it is done.
pub(super) struct Target<'a> {
    engine: &'a Engine,
    writer: Option<PackWriter>,
    /// Packs filled up to the seal size, held until the index records their lengths
    /// (a writer from the pool must never append where the index says nothing is).
    full: Vec<PackWriter>,
}

impl<'a> Target<'a> {
    pub fn new(engine: &'a Engine) -> Target<'a> {
        Target {
            engine,
            writer: None,
            full: Vec::new(),
        }
    }

    /// Once the index records what was copied: lets go of the filled packs.
    fn settle(&mut self) {
        for writer in self.full.drain(..) {
            self.engine.core.packs.release(writer);
        }
    }

    /// Hands the last pack to the write pool (it takes new records until sealed).
    pub fn finish(mut self) {
        self.settle();
        if let Some(writer) = self.writer.take() {
            self.engine.core.packs.release(writer);
        }
    }
}

/// Compacts pack `id` (committed up to `committed`, out of the write pool): `live`
/// says which blobs some repository links. Returns whether the pack is gone (`false`:
/// left as it was, for a reason in `out.skipped`).
pub(super) fn compact_pack(
    engine: &Engine,
    target: &mut Target<'_>,
    id: u64,
    committed: u64,
    live: &HashSet<Digest>,
    progress: &dyn Progress,
    out: &mut Compacted,
) -> Result<bool> {
    let core = &engine.core;
    let (map, _) = core.packs.map_prefix(id, committed)?;
    let scan = format::scan(&map, PACK_HEADER_LEN);
    if (map.len() as u64) < committed || scan.valid_end != committed {
        out.skipped.push((
            id,
            format!(
                "its records end at {} of {committed} committed bytes: run `registry fsck`",
                scan.valid_end
            ),
        ));
        return Ok(false);
    }

    // What the pack holds that is still needed.
    let mut keep: Vec<&ScannedRecord> = Vec::new();
    let mut unlinked: Vec<(&ScannedRecord, &Digest)> = Vec::new();
    let mut newest: HashMap<EntryKey, Option<Change>> = HashMap::new();
    let mut order: Vec<EntryKey> = Vec::new();
    for record in &scan.records {
        match &record.kind {
            RecordKind::Blob(digest) => {
                let current = core
                    .index
                    .get(Family::Blobs, &keys::blob(digest))?
                    .map(|v| values::decode_location(&v))
                    .transpose()?;
                if current != Some(Location::of(id, record)) {
                    continue; // a copy the index does not use
                }
                if live.contains(digest) {
                    keep.push(record);
                } else {
                    unlinked.push((record, digest));
                }
            }
            RecordKind::Meta { .. } => {
                let range = record.data();
                let body = &map[range.start as usize..range.end as usize];
                // The scan checked the record's CRC; a body this version cannot parse
                // would be kept by a rebuild as unreadable: refuse to drop it.
                let Some(changes) = change::decode_sized(body) else {
                    out.skipped.push((
                        id,
                        format!(
                            "a metadata record at {} this version cannot read",
                            record.offset
                        ),
                    ));
                    return Ok(false);
                };
                for (change, _) in changes {
                    // A link also lists its repository in the catalog, which keeps it
                    // after the link is gone: that entry is re-stated on its own.
                    if let Change::Link { repo, .. } = &change {
                        let catalog = (Family::Repos, keys::repo(repo));
                        if !newest.contains_key(&catalog) {
                            newest.insert(catalog.clone(), None);
                            order.push(catalog);
                        }
                    }
                    let key = change.key();
                    let deletion = change.is_deletion().then_some(change);
                    if newest.insert(key.clone(), deletion).is_none() {
                        order.push(key);
                    }
                }
            }
        }
    }

    // Blobs nobody linked when the mark ran may have been linked since (a push of the
    // same bytes, a mount): decide under each digest's inflight lock, which those take
    // too, and hold it until the index no longer has the blob.
    let mut held = Vec::with_capacity(unlinked.len());
    let mut dropped = Vec::new();
    for (record, digest) in unlinked {
        held.push(core.inflight.acquire(digest));
        if core.collection.holds(digest) {
            keep.push(record);
        } else {
            dropped.push((record, digest));
        }
    }
    keep.sort_by_key(|r| r.offset);

    let mut batch = Batch::default();
    target.copy(&map, &keep, &mut batch, progress, out)?;
    for (record, digest) in &dropped {
        batch.delete(Family::Blobs, &keys::blob(digest));
        out.blobs_dropped += 1;
        out.blob_bytes_dropped += record.length;
    }
    core.index.commit(batch)?;
    target.settle();
    drop(held);

    // Carry the log forward.
    let from = vec![id];
    for chunk in order.chunks(RESTATE_KEYS) {
        let keys = chunk
            .iter()
            .map(|key| (key.clone(), newest.get(key).cloned().flatten()))
            .collect();
        core.group_commit(GroupEntry {
            restate: Some(Restate {
                from: from.clone(),
                keys,
            }),
            ..GroupEntry::default()
        })?;
    }

    retire(engine, id)?;
    out.packs += 1;
    Ok(true)
}

impl Target<'_> {
    /// Copies `records` of pack `id` (its bytes `map`) into new packs and stages the
    /// switch of their index entries, and the new packs' lengths, in `batch`; the new
    /// packs are synced.
    fn copy(
        &mut self,
        map: &Bytes,
        records: &[&ScannedRecord],
        batch: &mut Batch,
        progress: &dyn Progress,
        out: &mut Compacted,
    ) -> Result<()> {
        let core = &self.engine.core;
        let seal = core.options.pack_seal_size;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_bytes = 0u64;
        for record in records {
            let RecordKind::Blob(digest) = &record.kind else {
                continue;
            };
            let len = record.end() - record.offset;
            let full = self
                .writer
                .as_ref()
                .is_some_and(|w| w.end() + pending_bytes >= seal);
            if full || self.writer.is_none() {
                self.flush(&mut pending, &mut pending_bytes, batch)?;
                self.full.extend(self.writer.take());
                self.writer = Some(core.create_pack()?);
            }
            let Some(writer) = self.writer.as_ref() else {
                continue;
            };
            let at = writer.end() + pending_bytes;
            batch.put(
                Family::Blobs,
                &keys::blob(digest),
                &values::encode_location(&Location {
                    pack: writer.id,
                    offset: at + RECORD_HEADER_LEN,
                    length: record.length,
                    crc: record.crc,
                }),
            );
            pending.push(map.slice(record.offset as usize..record.end() as usize));
            pending_bytes += len;
            out.bytes_copied += len;
            progress.advance(len);
            if pending_bytes >= WRITE_BYTES {
                self.flush(&mut pending, &mut pending_bytes, batch)?;
            }
        }
        self.flush(&mut pending, &mut pending_bytes, batch)?;
        Ok(())
    }

    /// Writes what is pending to the current new pack and syncs it.
    fn flush(
        &mut self,
        pending: &mut Vec<Bytes>,
        bytes: &mut u64,
        batch: &mut Batch,
    ) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let slices: Vec<IoSlice<'_>> = pending.iter().map(|b| IoSlice::new(b)).collect();
        writer.append(&slices)?;
        writer.sync()?;
        let end = writer.end() + *bytes;
        self.engine.core.stage_pack(batch, writer.id, end);
        self.engine.core.packs.advance(writer, end);
        pending.clear();
        *bytes = 0;
        Ok(())
    }
}

/// Deletes a compacted pack: first from the index (synced, with a note that its file
/// is to go), then the file, then the note. A crash in between leaves the note, and
/// the next open or collection deletes the file (`remove_retired`).
fn retire(engine: &Engine, id: u64) -> Result<()> {
    let core = &engine.core;
    let mut batch = Batch::default();
    batch.delete(Family::Packs, &keys::pack(id));
    batch.delete(Family::Usage, &keys::pack(id));
    batch.put(Family::State, &keys::retired(id), &values::marker());
    core.index.commit(batch)?;
    core.packs.remove(id)?;
    let mut batch = Batch::default();
    batch.delete(Family::State, &keys::retired(id));
    core.index.apply(batch)
}
