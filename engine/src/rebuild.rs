//! Rebuilding the index from the packs alone (FORMAT.md, "Rebuilding the index"): blob
//! records give the `blobs` family, metadata records replayed in sequence order give
//! links, manifests, tags, referrers and the catalog, and each pack's last valid record
//! gives its committed length. The new index is written beside the old one and takes
//! its place only when complete, so a rebuild interrupted at any moment leaves either
//! the old index or none, and the next open starts it again.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::index::{Batch, Family, Index, IndexMemory, keys, values};
use crate::layout::{Layout, sync_dir};
use crate::options::Options;
use crate::pack::format::{self, PACK_HEADER_LEN, RECORD_OVERHEAD, RecordKind};
use crate::pack::{self, Location, PackEntry};
use crate::progress::Progress;
use crate::replay::{MetaAt, replay};

/// What a rebuild found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub packs: usize,
    pub pack_bytes: u64,
    /// Distinct blobs indexed.
    pub blobs: u64,
    /// Metadata records replayed, and the changes in them.
    pub metadata_records: u64,
    pub changes: u64,
    /// Stretches of packs that hold no valid record: the bytes there are lost.
    pub damaged: Vec<(u64, Range<u64>)>,
    /// Records not applied: pack, offset, why. A metadata record whose body does not
    /// parse although its checksums hold (written by a newer version?); and records
    /// found past damaged bytes that cannot be trusted to be records (see below).
    pub skipped_records: Vec<(u64, u64, &'static str)>,
    /// Files in the pack directory that are not packs this version can read.
    pub skipped_files: Vec<(PathBuf, String)>,
}

/// Index writes are applied in batches of about this many entries; the last one is
/// synced and makes all of them durable.
const BATCH_ENTRIES: usize = 50_000;

/// Builds a new index of the data directory from its packs and puts it in place of the
/// current one (if any). The caller holds the directory's lock.
pub(crate) fn rebuild(
    layout: &Layout,
    options: &Options,
    progress: &dyn Progress,
) -> Result<RebuildReport> {
    let target = layout.index_new();
    remove_dir_if_present(&target)?;
    let index = Index::open(
        &target,
        IndexMemory {
            block_cache_bytes: options.block_cache_bytes,
            write_buffer_bytes: options.write_buffer_bytes,
        },
    )?;
    let report = fill(&index, &layout.packs(), options, None, progress)?;
    drop(index);
    sync_dir(&target)?;

    // Switch: the old index goes aside, the new one takes its name, the old one goes.
    // An interruption between the renames leaves no `index/`, and the next open
    // rebuilds again.
    let (current, old) = (layout.index(), layout.index_old());
    remove_dir_if_present(&old)?;
    if current.exists() {
        std::fs::rename(&current, &old).context("move aside", &current)?;
    }
    std::fs::rename(&target, &current).context("move into place", &target)?;
    sync_dir(&layout.root)?;
    remove_dir_if_present(&old)?;
    Ok(report)
}

/// Removes an index directory left by an earlier, interrupted rebuild.
pub(crate) fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("remove", dir),
        _ => Ok(()),
    }
}

/// Writes into `index` what the packs in `dir` say. With `cuts`, only those packs and
/// only their first `cuts[id]` bytes: the log as of one consistent moment of a store
/// that is being written to (a check compares it with an index snapshot).
pub(crate) fn fill(
    index: &Index,
    dir: &Path,
    options: &Options,
    cuts: Option<&HashMap<u64, u64>>,
    progress: &dyn Progress,
) -> Result<RebuildReport> {
    let storage = &options.storage;
    storage.create_dir_all(dir).context("create", dir)?;
    let mut report = RebuildReport::default();
    let mut ids = Vec::new();
    for path in storage.list(dir).context("list", dir)? {
        match path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(pack::parse_file_name)
        {
            Some(id) => ids.push(id),
            None => report
                .skipped_files
                .push((path, "not a pack file name".into())),
        }
    }
    if let Some(cuts) = cuts {
        ids.retain(|id| cuts.contains_key(id));
    }
    ids.sort_unstable();

    let mut maps: HashMap<u64, Bytes> = HashMap::new();
    let mut metas = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut committed: HashMap<u64, u64> = HashMap::new();
    let mut writer = BatchWriter::new(index);
    let total: u64 = ids
        .iter()
        .filter_map(|&id| {
            storage
                .open(&dir.join(pack::file_name(id)))
                .ok()?
                .size()
                .ok()
        })
        .sum();
    progress.phase("reading packs", total);
    for id in ids {
        let path = dir.join(pack::file_name(id));
        let cut = cuts.and_then(|c| c.get(&id)).copied().unwrap_or(u64::MAX);
        let map = match storage.open(&path).and_then(|f| {
            let len = f.size()?;
            f.map_readable(len.min(cut))
        }) {
            Ok(map) => map,
            Err(e) => {
                report.skipped_files.push((path, e.to_string()));
                continue;
            }
        };
        if let Err(detail) = format::check_pack_header(&map) {
            report.skipped_files.push((path, detail));
            continue;
        }
        let scan = format::scan_all(&map, PACK_HEADER_LEN);
        // Past damaged bytes the scan searched for the next thing that checks out as a
        // record; it could be bytes inside a blob (a client's upload) crafted to look
        // like one. There, a blob record counts only if its bytes hash to its digest,
        // and metadata records, which nothing can verify, are not applied.
        let first_damage = scan.damaged.first().map(|r| r.start);
        for record in &scan.records {
            let past_damage = first_damage.is_some_and(|at| record.offset > at);
            match &record.kind {
                RecordKind::Blob(digest) => {
                    if past_damage && !record.hashes_to_digest(&map) {
                        report.skipped_records.push((
                            id,
                            record.offset,
                            "past damaged bytes, and its bytes do not hash to its digest",
                        ));
                        continue;
                    }
                    // The first valid copy wins; a later one is dead space.
                    if seen.insert(digest.clone()) {
                        let loc = Location::of(id, record);
                        writer.put(
                            Family::Blobs,
                            &keys::blob(digest),
                            &values::encode_location(&loc),
                        )?;
                        report.blobs += 1;
                    }
                }
                RecordKind::Meta { .. } if past_damage => report.skipped_records.push((
                    id,
                    record.offset,
                    "a metadata record past damaged bytes (it could be bytes of a blob)",
                )),
                RecordKind::Meta { sequence } => metas.push(MetaAt {
                    sequence: *sequence,
                    pack: id,
                    body: record.data(),
                }),
            }
        }
        report
            .damaged
            .extend(scan.damaged.iter().map(|range| (id, range.clone())));
        let entry = PackEntry {
            committed: scan.valid_end,
            sealed: scan.valid_end >= options.pack_seal_size,
        };
        committed.insert(id, scan.valid_end);
        writer.put(Family::Packs, &keys::pack(id), &values::encode_pack(&entry))?;
        report.packs += 1;
        report.pack_bytes += map.len() as u64;
        progress.advance(map.len() as u64);
        maps.insert(id, map);
    }

    progress.phase("replaying metadata", metas.len() as u64);
    let mut sequence = 0;
    let unreadable = replay(metas, &maps, |meta, changes| {
        for (change, source) in changes {
            writer.stage(|batch| change.stage(batch, *source))?;
        }
        report.metadata_records += 1;
        report.changes += changes.len() as u64;
        sequence = meta.sequence;
        progress.advance(1);
        Ok(())
    })?;
    for meta in unreadable {
        // Its sequence number is taken: a writer must not hand it out again.
        sequence = sequence.max(meta.sequence);
        report.skipped_records.push((
            meta.pack,
            meta.offset(),
            "a metadata record this version cannot read",
        ));
    }
    writer.put(
        Family::State,
        keys::SEQUENCE,
        &values::encode_sequence(sequence),
    )?;
    writer.finish()?;
    count_dead_bytes(index, &committed)?;
    Ok(report)
}

/// Fills the `usage` family of a rebuilt index: a pack's dead bytes are what no entry
/// needs, its committed bytes less the blob records `blobs` points into and the changes
/// that `links`, `manifests` and `tags` entries record as their sources.
fn count_dead_bytes(index: &Index, committed: &HashMap<u64, u64>) -> Result<()> {
    let mut live: HashMap<u64, u64> = HashMap::new();
    for entry in index.iter(Family::Blobs) {
        let (_, value) = entry?;
        let loc = values::decode_location(&value)?;
        *live.entry(loc.pack).or_default() += RECORD_OVERHEAD + loc.length;
    }
    for family in [Family::Links, Family::Manifests, Family::Tags] {
        for entry in index.iter(family) {
            let (_, value) = entry?;
            if let Some(source) = values::decode_source(family, &value)? {
                *live.entry(source.pack).or_default() += u64::from(source.bytes);
            }
        }
    }
    let mut batch = Batch::default();
    for (&pack, &end) in committed {
        let used = PACK_HEADER_LEN + live.get(&pack).copied().unwrap_or(0);
        let dead = end.saturating_sub(used);
        if dead > 0 {
            batch.put(Family::Usage, &keys::pack(pack), &values::encode_dead(dead));
        }
    }
    index.commit(batch)
}

/// Applies staged entries in large unsynced batches; `finish` syncs the last one, which
/// makes every earlier one durable too (one write-ahead log, written in order).
struct BatchWriter<'a> {
    index: &'a Index,
    batch: Batch,
    staged: usize,
}

impl<'a> BatchWriter<'a> {
    fn new(index: &'a Index) -> Self {
        BatchWriter {
            index,
            batch: Batch::default(),
            staged: 0,
        }
    }
    fn put(&mut self, family: Family, key: &[u8], value: &[u8]) -> Result<()> {
        self.stage(|batch| batch.put(family, key, value))
    }
    fn stage(&mut self, f: impl FnOnce(&mut Batch)) -> Result<()> {
        f(&mut self.batch);
        self.staged += 1;
        if self.staged >= BATCH_ENTRIES {
            self.index.apply(std::mem::take(&mut self.batch))?;
            self.staged = 0;
        }
        Ok(())
    }
    fn finish(self) -> Result<()> {
        self.index.commit(self.batch)
    }
}
