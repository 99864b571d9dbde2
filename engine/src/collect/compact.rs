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
use crate::error::{Error, IoContext, Result};
use crate::group::{GroupEntry, Restate};
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{
    HeaderWalk, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordKind, ScannedRecord, WalkError,
};
use crate::pack::{Location, PackWriter};
use crate::progress::Progress;
use crate::storage::PackFile;

/// Bytes copied in one call: small enough that pacing is smooth.
const PIECE_BYTES: u64 = 1 << 20;
/// Records whose blobs are switched (copied or dropped) in one index write.
const SWITCH_RECORDS: usize = 8192;
/// Keys per re-statement group entry: each group's leader reads them in one batch, and
/// they bound the memory of carrying a pack's log forward.
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
///
/// Memory stays bounded whatever the pack holds (a 1 GiB pack of small records has
/// millions): records are walked one at a time, blobs switched `SWITCH_RECORDS` at a
/// time, and the log carried forward `RESTATE_KEYS` keys at a time.
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
    let source = Source {
        id,
        file: core.packs.file(id)?,
        committed,
    };
    // First, that every record reads. A record that does not would be kept by a
    // rebuild as unreadable: refuse to drop it, before anything has changed.
    if let Some(reason) = source.unfit()? {
        out.skipped
            .push((id, format!("{reason}: run `registry fsck`")));
        return Ok(false);
    }
    let mut carry = Carry::new(engine, id);
    let mut records = source.records();
    loop {
        let slice = records
            .by_ref()
            .take(SWITCH_RECORDS)
            .collect::<Result<Vec<_>>>()?;
        if slice.is_empty() {
            break;
        }
        switch_blobs(engine, target, &source, &slice, live, progress, out)?;
        for record in &slice {
            if let RecordKind::Meta { .. } = record.kind {
                for change in source.changes(record)? {
                    carry.add(change)?;
                }
            }
        }
    }
    carry.flush()?;
    retire(engine, id)?;
    out.packs += 1;
    Ok(true)
}

/// The pack being compacted, read a record at a time.
struct Source {
    id: u64,
    file: Arc<dyn PackFile>,
    committed: u64,
}

impl Source {
    fn path(&self) -> String {
        format!("pack {}", self.id)
    }

    fn walk(&self) -> HeaderWalk<impl Fn(&mut [u8], u64) -> std::io::Result<()> + '_> {
        let read_at = |buf: &mut [u8], offset: u64| self.file.read_at(buf, offset);
        HeaderWalk::new(read_at, PACK_HEADER_LEN, self.committed)
    }

    /// Why the pack cannot be compacted, if it cannot: committed bytes that are not
    /// whole records, or a metadata record whose body does not check out or that this
    /// version cannot parse.
    fn unfit(&self) -> Result<Option<String>> {
        for record in self.walk() {
            let record = match record {
                Ok(record) => record,
                Err(WalkError::Io(e)) => return Err(e).context("read", self.path()),
                Err(WalkError::Invalid { at }) => {
                    return Ok(Some(format!(
                        "its committed bytes at {at} are not a record"
                    )));
                }
            };
            if let RecordKind::Meta { .. } = record.kind
                && self.decode(&record)?.is_none()
            {
                let at = record.offset;
                return Ok(Some(format!("the metadata record at {at} does not read")));
            }
        }
        Ok(None)
    }

    /// The pack's records in order (`unfit` found them whole: bytes that are not a
    /// record now are a pack that changed under the compaction).
    fn records(&self) -> impl Iterator<Item = Result<ScannedRecord>> + '_ {
        self.walk().map(|record| match record {
            Ok(record) => Ok(record),
            Err(WalkError::Io(e)) => Err(e).context("read", self.path()),
            Err(WalkError::Invalid { at }) => Err(self.changed(at)),
        })
    }

    /// The changes of metadata record `record`, which `unfit` found readable.
    fn changes(&self, record: &ScannedRecord) -> Result<Vec<Change>> {
        let changes = self
            .decode(record)?
            .ok_or_else(|| self.changed(record.offset))?;
        Ok(changes.into_iter().map(|(change, _)| change).collect())
    }

    /// A metadata record's changes, `None` when its body does not check out.
    fn decode(&self, record: &ScannedRecord) -> Result<Option<Vec<(Change, u32)>>> {
        let mut body = vec![0u8; usize::try_from(record.length).unwrap_or(0)];
        self.file
            .read_at(&mut body, record.data().start)
            .context("read", self.path())?;
        Ok((crc32fast::hash(&body) == record.crc)
            .then(|| change::decode_sized(&body))
            .flatten())
    }

    fn changed(&self, at: u64) -> Error {
        Error::CorruptPack {
            pack: self.id,
            detail: format!(
                "the record at {at} no longer reads as it did earlier in the compaction"
            ),
        }
    }
}

/// Switches one slice of the pack's records: the blobs the index still points at here
/// and some repository links are copied, the others dropped, and the index switched in
/// one synced write.
fn switch_blobs(
    engine: &Engine,
    target: &mut Target<'_>,
    source: &Source,
    slice: &[ScannedRecord],
    live: &HashSet<Digest>,
    progress: &dyn Progress,
    out: &mut Compacted,
) -> Result<()> {
    let core = &engine.core;
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
        if current != Some(Location::of(source.id, record)) {
            continue; // a copy the index does not use
        }
        if live.contains(digest) {
            keep.push(record);
        } else {
            unlinked.push((record, digest));
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
    let copy_started = Instant::now();
    target.copy(source.file.as_ref(), &keep, &mut batch, progress, out)?;
    out.copying += copy_started.elapsed();
    for (record, digest) in &dropped {
        batch.delete(Family::Blobs, &keys::blob(digest));
        out.blobs_dropped += 1;
        out.blob_bytes_dropped += record.length;
    }
    core.index.commit(batch)?;
    target.settle();
    drop(held);
    Ok(())
}

/// Carries a pack's log forward (FORMAT.md, "Compaction", step 3) in parts of at most
/// `RESTATE_KEYS` keys. Per key, a part keeps when the key was first seen (re-stated
/// changes keep the log's order) and its newest change when that is a deletion. A key
/// whose changes fall in several parts is re-stated by each: the group's leader states
/// what the index holds now, so the later statements repeat the first, and a deletion
/// is stated again only for a key that has no entry now.
struct Carry<'a> {
    engine: &'a Engine,
    pack: u64,
    newest: HashMap<EntryKey, (usize, Option<Change>)>,
}

impl<'a> Carry<'a> {
    fn new(engine: &'a Engine, pack: u64) -> Carry<'a> {
        Carry {
            engine,
            pack,
            newest: HashMap::new(),
        }
    }

    fn add(&mut self, change: Change) -> Result<()> {
        // A link also lists its repository in the catalog, which keeps it after the
        // link is gone: that entry is re-stated on its own.
        if let Change::Link { repo, .. } = &change {
            let next = self.newest.len();
            self.newest
                .entry((Family::Repos, keys::repo(repo)))
                .or_insert((next, None));
        }
        let next = self.newest.len();
        let key = change.key();
        let deletion = change.is_deletion().then_some(change);
        self.newest.entry(key).or_insert((next, None)).1 = deletion;
        if self.newest.len() >= RESTATE_KEYS {
            self.flush()?;
        }
        Ok(())
    }

    /// Re-states the keys gathered so far, in one group entry.
    fn flush(&mut self) -> Result<()> {
        if self.newest.is_empty() {
            return Ok(());
        }
        let mut order: Vec<(usize, EntryKey, Option<Change>)> = self
            .newest
            .drain()
            .map(|(key, (at, deletion))| (at, key, deletion))
            .collect();
        order.sort_unstable_by_key(|(at, _, _)| *at);
        let keys = order
            .into_iter()
            .map(|(_, key, deletion)| (key, deletion))
            .collect();
        self.engine.core.group_commit(GroupEntry {
            restate: Some(Restate {
                from: vec![self.pack],
                keys,
            }),
            ..GroupEntry::default()
        })
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
