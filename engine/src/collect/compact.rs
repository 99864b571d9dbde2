//! Compaction: rewriting the packs a collection chose, as FORMAT.md's "Compaction"
//! section prescribes. For each pack: the blob records the index still points at and
//! that some repository still links are copied into new packs, and the index switched
//! to the copies in one synced write (blobs nobody links are dropped from the index in
//! the same write); then every change of the pack that is still the newest of its key
//! is re-stated through the group commit; only then is the pack deleted. A crash at any
//! point leaves either the old pack (and the next collection compacts it again) or
//! copies the index points at.
//!
//! The pack is read by its record headers and the copies are made by the kernel
//! (`PackFile::append_from`), so compacting a large pack neither maps it nor passes its
//! bytes through this process: the collector's memory stays small, and the copy runs
//! at the disk's rate. Records are copied verbatim, trailers included; `fsck --deep`
//! is what re-verifies blob bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::change::{self, Change, EntryKey};
use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{IoContext, Result};
use crate::group::{GroupEntry, Restate};
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{self, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordKind, ScannedRecord};
use crate::pack::{Location, PackWriter};
use crate::progress::Progress;
use crate::storage::PackFile;

/// Bytes copied in one call: small enough that pacing is smooth.
const PIECE_BYTES: u64 = 1 << 20;
/// Records whose blobs are switched (copied or dropped) in one index write.
const SWITCH_RECORDS: usize = 8192;
/// Keys per re-statement group entry: each group's leader reads them in one batch.
const RESTATE_KEYS: usize = 16384;

/// What compacting packs did.
#[derive(Debug, Default)]
pub(super) struct Compacted {
    pub packs: u64,
    pub bytes_copied: u64,
    /// Time spent copying records and syncing the copies (not re-stating the log).
    pub copying: Duration,
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
    pace: Pace,
}

/// Keeps compaction from taking the disk from clients: while uploads commit, copies go
/// at most at `Options::compaction_busy_rate`; when nobody writes, at full speed.
struct Pace {
    window: Instant,
    bytes: u64,
    commits: u64,
}

impl Pace {
    /// Length of the windows in which activity and copied bytes are counted.
    const WINDOW: Duration = Duration::from_millis(250);

    /// Called after `bytes` more were copied; sleeps if clients are writing and the
    /// copy is ahead of the busy rate.
    fn after(&mut self, core: &crate::engine::Core, bytes: u64) {
        self.bytes += bytes;
        let commits = core.stats.commits.load(Ordering::Relaxed);
        let rate = core.options.compaction_busy_rate;
        if commits != self.commits && rate > 0 {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.window.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if self.window.elapsed() >= Self::WINDOW {
            *self = Pace::start(core);
        }
    }

    fn start(core: &crate::engine::Core) -> Pace {
        Pace {
            window: Instant::now(),
            bytes: 0,
            commits: core.stats.commits.load(Ordering::Relaxed),
        }
    }
}

impl<'a> Target<'a> {
    pub fn new(engine: &'a Engine) -> Target<'a> {
        Target {
            engine,
            writer: None,
            full: Vec::new(),
            pace: Pace::start(&engine.core),
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

    /// Copies `records` of `source` (in offset order) into new packs, back-to-back
    /// runs of them in one go; syncs the copies and stages, in `batch`, the switch of
    /// the records' index entries to them and the new packs' lengths.
    fn copy(
        &mut self,
        source: &dyn PackFile,
        records: &[&ScannedRecord],
        batch: &mut Batch,
        progress: &dyn Progress,
        out: &mut Compacted,
    ) -> Result<()> {
        let core = &self.engine.core;
        let seal = core.options.pack_seal_size;
        let mut i = 0;
        while i < records.len() {
            let current = match self.writer.take() {
                Some(writer) if writer.end() < seal => writer,
                sealed => {
                    self.full.extend(sealed);
                    core.create_pack()?
                }
            };
            let writer = self.writer.insert(current);
            // A run: records back to back in the source, up to where the pack seals.
            let start = records[i].offset;
            let mut end = records[i].end();
            let mut j = i + 1;
            while j < records.len()
                && records[j].offset == end
                && writer.end() + (end - start) < seal
            {
                end = records[j].end();
                j += 1;
            }
            let at = writer.end();
            // In pieces: each one paced, and sent on to the disk at once, so the final
            // sync has little left to do and no burst of dirty pages builds up that
            // other writers' syncs would wait for.
            let mut done = 0;
            while done < end - start {
                let n = (end - start - done).min(PIECE_BYTES);
                writer.append_from(source, start + done, n)?;
                if let Err(e) = writer.start_writeback(at + done, n) {
                    tracing::debug!("early writeback not started: {e}");
                }
                done += n;
                core.packs.advance(writer, at + done);
                progress.advance(n);
                self.pace.after(core, n);
            }
            for record in &records[i..j] {
                let RecordKind::Blob(digest) = &record.kind else {
                    continue;
                };
                let loc = Location {
                    pack: writer.id,
                    offset: at + (record.offset - start) + RECORD_HEADER_LEN,
                    length: record.length,
                    crc: record.crc,
                };
                batch.put(
                    Family::Blobs,
                    &keys::blob(digest),
                    &values::encode_location(&loc),
                );
            }
            out.bytes_copied += end - start;
            i = j;
        }
        // Durable before the index points at them.
        for writer in self.full.iter().chain(&self.writer) {
            writer.sync()?;
            core.stage_pack(batch, writer.id, writer.end());
        }
        Ok(())
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
    let source: Arc<dyn PackFile> = core.packs.file(id)?;
    let path = format!("pack {id}");
    let read_at = |buf: &mut [u8], offset: u64| source.read_at(buf, offset);
    let Some(records) =
        format::walk_headers(read_at, PACK_HEADER_LEN, committed).context("read", path.as_str())?
    else {
        out.skipped.push((
            id,
            "its committed bytes do not read as whole records: run `registry fsck`".into(),
        ));
        return Ok(false);
    };

    // First the metadata: per key, when it was first seen (re-statements keep the
    // log's order), and its newest change when that is a deletion (boxed: most are
    // puts, and stay small). A record that does not read stops the compaction before
    // anything has changed.
    let mut newest: HashMap<EntryKey, (usize, Option<Box<Change>>)> = HashMap::new();
    for record in records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Meta { .. }))
    {
        let range = record.data();
        let mut body = vec![0u8; usize::try_from(record.length).unwrap_or(0)];
        source
            .read_at(&mut body, range.start)
            .context("read", path.as_str())?;
        // A body that does not check out, or that this version cannot parse, would be
        // kept by a rebuild as unreadable: refuse to drop it.
        let changes = (crc32fast::hash(&body) == record.crc)
            .then(|| change::decode_sized(&body))
            .flatten();
        let Some(changes) = changes else {
            out.skipped.push((
                id,
                format!(
                    "the metadata record at {} does not read: run `registry fsck`",
                    record.offset
                ),
            ));
            return Ok(false);
        };
        for (change, _) in changes {
            // A link also lists its repository in the catalog, which keeps it after the
            // link is gone: that entry is re-stated on its own.
            if let Change::Link { repo, .. } = &change {
                let next = newest.len();
                newest
                    .entry((Family::Repos, keys::repo(repo)))
                    .or_insert((next, None));
            }
            let next = newest.len();
            let deletion = change.is_deletion().then(|| Box::new(change.clone()));
            newest.entry(change.key()).or_insert((next, None)).1 = deletion;
        }
    }

    // Then the blobs, a slice of records at a time (bounded memory): the ones the
    // index still points at here and some repository links are copied, the others
    // dropped, and the index switched, for each slice in one synced write.
    for slice in records.chunks(SWITCH_RECORDS) {
        let mut keep: Vec<&ScannedRecord> = Vec::new();
        let mut unlinked: Vec<(&ScannedRecord, &Digest)> = Vec::new();
        let blobs: Vec<(&ScannedRecord, &Digest)> = slice
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::Blob(digest) => Some((r, digest)),
                RecordKind::Meta { .. } => None,
            })
            .collect();
        let keys: Vec<Vec<u8>> = blobs.iter().map(|(_, d)| keys::blob(d)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for ((record, digest), value) in blobs
            .into_iter()
            .zip(core.index.get_many(Family::Blobs, &refs)?)
        {
            let current = value.map(|v| values::decode_location(&v)).transpose()?;
            if current != Some(Location::of(id, record)) {
                continue; // a copy the index does not use
            }
            if live.contains(digest) {
                keep.push(record);
            } else {
                unlinked.push((record, digest));
            }
        }
        // Blobs nobody linked when the mark ran may have been linked since (a push of
        // the same bytes, a mount): decide under each digest's inflight lock, which
        // those take too, and hold it until the index no longer has the blob.
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
        let copy_started = Instant::now();
        target.copy(source.as_ref(), &keep, &mut batch, progress, out)?;
        out.copying += copy_started.elapsed();
        for (record, digest) in &dropped {
            batch.delete(Family::Blobs, &keys::blob(digest));
            out.blobs_dropped += 1;
            out.blob_bytes_dropped += record.length;
        }
        core.index.commit(batch)?;
        target.settle();
        drop(held);
    }

    // Carry the log forward.
    let from = vec![id];
    let mut order: Vec<(usize, EntryKey, Option<Box<Change>>)> = newest
        .into_iter()
        .map(|(key, (at, deletion))| (at, key, deletion))
        .collect();
    order.sort_unstable_by_key(|(at, _, _)| *at);
    let mut order = order.into_iter().peekable();
    while order.peek().is_some() {
        let keys = order
            .by_ref()
            .take(RESTATE_KEYS)
            .map(|(_, key, deletion)| (key, deletion.map(|d| *d)))
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
