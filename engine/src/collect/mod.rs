//! Garbage collection: `Engine::collect`. It runs while the registry serves.
//!
//! 1. **Mark and sweep**, one repository at a time under its exclusive lock
//!    (`mark.rs`): the manifests it keeps (all, or with `delete_untagged` those that
//!    tags reach, with their children and the referrers of kept subjects), the links
//!    those need, and links spared as uploads in progress; the rest is removed by
//!    ordinary logged changes.
//! 2. **Unreferenced blobs**: blobs no repository links any more, counted per pack.
//! 3. **Compaction** (`compact.rs`) of the packs whose dead bytes (superseded metadata,
//!    framing, unreferenced blobs) pass the threshold: live records copied, the log
//!    carried forward, the pack deleted. Unreferenced blobs go with their pack; in packs
//!    below the threshold they stay (no repository can read them) until it passes.
//!
//! Pushes and mounts that link a blob while a collection runs note it (`guard.rs`), so
//! neither the sweep nor the compaction takes it away.

mod compact;
pub(crate) mod guard;
mod mark;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::Result;
use crate::group::GroupEntry;
use crate::index::{Family, keys, values};
use crate::pack::format::{PACK_HEADER_LEN, RECORD_OVERHEAD};
use crate::progress::Progress;
use crate::sync::{lock, write_lock};
use crate::types::ReferenceReader;

/// How to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Keep only manifests that tags reach (with their children and the referrers of
    /// kept subjects), as distribution's `--delete-untagged`; otherwise every manifest.
    pub delete_untagged: bool,
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// A link no manifest has referenced yet is kept while younger than this: the
    /// layers of an image whose manifest is still to come.
    pub grace: Duration,
    /// A pack is rewritten once at least this fraction of its bytes is dead.
    pub compact_threshold: f64,
}

/// The default grace period: an hour, as long as the slowest push takes.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// The default compaction threshold: a pack a quarter dead is rewritten, so at most a
/// quarter of the disk (plus the packs being written) holds garbage after a collection,
/// and each live byte is copied at most about once per three bytes freed.
pub const DEFAULT_COMPACT_THRESHOLD: f64 = 0.25;

impl Default for CollectOptions {
    fn default() -> CollectOptions {
        CollectOptions {
            delete_untagged: false,
            dry_run: false,
            grace: DEFAULT_GRACE,
            compact_threshold: DEFAULT_COMPACT_THRESHOLD,
        }
    }
}

/// One thing a collection removes (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Manifest {
        repo: String,
        digest: Digest,
    },
    Link {
        repo: String,
        digest: Digest,
    },
    /// A blob no repository links; with the pack it goes with, if any passes the
    /// threshold.
    Blob {
        digest: Digest,
        size: u64,
        pack: Option<u64>,
    },
    /// A pack to rewrite: its size and dead bytes.
    Pack {
        id: u64,
        committed: u64,
        dead: u64,
    },
}

/// What a collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectReport {
    pub dry_run: bool,
    pub repositories: u64,
    pub manifests_removed: u64,
    pub links_removed: u64,
    /// Blobs that no repository links (dropped with their packs, unless a dry run).
    pub blobs_unreferenced: u64,
    pub blobs_removed: u64,
    pub blob_bytes_removed: u64,
    /// Packs rewritten (or to rewrite) and the live bytes copied out of them.
    pub packs_rewritten: u64,
    pub bytes_copied: u64,
    /// Packs past the threshold that an upload was writing to: the next collection
    /// rewrites them.
    pub packs_busy: u64,
    /// Bytes of the data directory (packs and index) before and after.
    pub disk_before: u64,
    pub disk_after: u64,
    pub elapsed: Duration,
    /// Of which marking and sweeping (and finding the unreferenced blobs).
    pub marking: Duration,
    /// Of which compacting.
    pub compacting: Duration,
    /// Of which copying records and syncing the copies (`bytes_copied` in this time
    /// is the copy's rate; the rest of compacting is carrying the log forward).
    pub copying: Duration,
    /// Repositories not swept, and packs not compacted, because something is wrong
    /// with them (`registry fsck` says what).
    pub skipped: Vec<String>,
    /// In a dry run, everything that would go.
    pub removals: Vec<Removal>,
}

impl Engine {
    /// Collects garbage (see the module documentation); `reader` reads a manifest's
    /// references (the protocol's parser). Safe while the engine serves: pushes,
    /// mounts and pulls go on, and nothing linked meanwhile is taken.
    pub fn collect(
        &self,
        options: &CollectOptions,
        reader: ReferenceReader<'_>,
        progress: &dyn Progress,
    ) -> Result<CollectReport> {
        let core = &self.core;
        let _maintenance = lock(&core.maintenance);
        let started = Instant::now();
        let mut report = CollectReport {
            dry_run: options.dry_run,
            disk_before: self.disk_usage(),
            ..CollectReport::default()
        };
        if !options.dry_run {
            let packs = crate::layout::Layout::new(&core.root).packs();
            remove_retired(&core.index, core.options.storage.as_ref(), &packs)?;
        }
        let _recording = core.collection.begin();
        // The mark's epoch: links made from now on are never swept by this collection.
        let epoch = SystemTime::now();

        // 1. Mark and sweep, repository by repository.
        let repos: Vec<String> = core
            .index
            .scan_all(Family::Repos)?
            .into_iter()
            .filter_map(|(key, _)| String::from_utf8(key.into_vec()).ok())
            .collect();
        progress.phase("marking repositories", repos.len() as u64);
        let mut live: HashSet<Digest> = HashSet::new();
        for repo in &repos {
            let _exclusive = write_lock(core.repo_lock(repo));
            let verdict = mark::mark_repo(self, repo, options, reader, epoch)?;
            if !options.dry_run {
                for chunk in verdict.changes.chunks(SWEEP_CHANGES) {
                    core.group_commit(GroupEntry {
                        changes: chunk.to_vec(),
                        ..GroupEntry::default()
                    })?;
                }
            } else {
                report
                    .removals
                    .extend(verdict.manifests_removed.iter().map(|d| Removal::Manifest {
                        repo: repo.clone(),
                        digest: d.clone(),
                    }));
                report
                    .removals
                    .extend(verdict.links_removed.iter().map(|d| Removal::Link {
                        repo: repo.clone(),
                        digest: d.clone(),
                    }));
            }
            report.repositories += 1;
            report.manifests_removed += verdict.manifests_removed.len() as u64;
            report.links_removed += verdict.links_removed.len() as u64;
            if let Some(why) = verdict.skipped {
                report
                    .skipped
                    .push(format!("repository {repo} not swept: {why}"));
            }
            live.extend(verdict.kept_links);
            progress.advance(1);
        }

        // 2. Blobs no repository links, counted per pack.
        progress.phase("finding unreferenced blobs", 0);
        let mut garbage: HashMap<u64, u64> = HashMap::new();
        let mut unreferenced: Vec<(Digest, u64, u64)> = Vec::new();
        for entry in core.index.iter(Family::Blobs) {
            let (key, value) = entry?;
            let Some((digest, _)) = Digest::from_key(&key) else {
                continue; // fsck reports it
            };
            if live.contains(&digest) || core.collection.holds(&digest) {
                continue;
            }
            let loc = values::decode_location(&value)?;
            *garbage.entry(loc.pack).or_default() += RECORD_OVERHEAD + loc.length;
            unreferenced.push((digest, loc.length, loc.pack));
        }
        report.blobs_unreferenced = unreferenced.len() as u64;

        report.marking = started.elapsed();

        // 3. Packs to rewrite.
        let mut chosen = Vec::new();
        for usage in self.pack_usage()? {
            let body = usage.committed.saturating_sub(PACK_HEADER_LEN);
            let dead = usage.dead + garbage.get(&usage.id).copied().unwrap_or(0);
            if body > 0 && dead > 0 && dead as f64 >= options.compact_threshold * body as f64 {
                chosen.push(usage);
            }
        }
        if options.dry_run {
            let rewritten: HashSet<u64> = chosen.iter().map(|u| u.id).collect();
            for (digest, size, pack) in unreferenced {
                let goes = rewritten.contains(&pack);
                if goes {
                    report.blobs_removed += 1;
                    report.blob_bytes_removed += size;
                }
                report.removals.push(Removal::Blob {
                    digest,
                    size,
                    pack: goes.then_some(pack),
                });
            }
            for usage in &chosen {
                report.packs_rewritten += 1;
                report.bytes_copied += usage
                    .live()
                    .saturating_sub(garbage.get(&usage.id).copied().unwrap_or(0));
                report.removals.push(Removal::Pack {
                    id: usage.id,
                    committed: usage.committed,
                    dead: usage.dead + garbage.get(&usage.id).copied().unwrap_or(0),
                });
            }
            report.disk_after = report.disk_before;
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        drop(unreferenced);

        // 4. Compaction.
        let compaction_started = Instant::now();
        let total: u64 = chosen.iter().map(|u| u.live()).sum();
        progress.phase("compacting packs", total);
        let mut done = compact::Compacted::default();
        // Out of the write pool first, all of them, so that no writer appends to one
        // while it is copied (not even the group commit re-stating another's log): an
        // idle pack, or the group commit's between groups. A pack an upload is
        // writing to waits for the next collection.
        let mut held = HashMap::new();
        chosen.retain(|usage| {
            if usage.sealed {
                return true;
            }
            match core
                .packs
                .take_idle_id(usage.id)
                .or_else(|| core.surrender_group_pack(usage.id))
            {
                Some(writer) => {
                    held.insert(usage.id, writer);
                    true
                }
                None => {
                    report.packs_busy += 1;
                    false
                }
            }
        });
        let mut target = compact::Target::new(self);
        for usage in &chosen {
            let writer = held.remove(&usage.id);
            let committed = writer.as_ref().map_or(usage.committed, |w| w.end());
            let compacted = compact::compact_pack(
                self,
                &mut target,
                usage.id,
                committed,
                &live,
                progress,
                &mut done,
            );
            match compacted {
                // Deleted: its writer goes with it.
                Ok(true) => {}
                // Left as it was: back in the pool.
                Ok(false) => writer.into_iter().for_each(|w| core.packs.release(w)),
                Err(e) => {
                    for writer in writer.into_iter().chain(held.into_values()) {
                        core.packs.release(writer);
                    }
                    return Err(e);
                }
            }
        }
        target.finish();

        report.packs_rewritten = done.packs;
        report.copying = done.copying;
        report.bytes_copied = done.bytes_copied;
        report.blobs_removed = done.blobs_dropped;
        report.blob_bytes_removed = done.blob_bytes_dropped;
        report.skipped.extend(
            done.skipped
                .into_iter()
                .map(|(id, why)| format!("pack {id} not compacted: {why}")),
        );
        report.compacting = compaction_started.elapsed();
        report.disk_after = self.disk_usage();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Bytes the data directory takes: its packs and its index.
    fn disk_usage(&self) -> u64 {
        fn walk(dir: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map_or(0, |m| m.len()),
                    Err(_) => 0,
                })
                .sum()
        }
        let packs: u64 = self
            .pack_usage()
            .map(|all| all.iter().map(|u| u.committed).sum())
            .unwrap_or(0);
        packs + walk(&crate::layout::Layout::new(&self.core.root).index())
    }
}

/// Deletes the files of packs a compaction removed from the index but did not get to
/// delete (it was interrupted), and the notes saying they are to go.
pub(crate) fn remove_retired(
    index: &crate::index::Index,
    storage: &dyn crate::storage::Storage,
    dir: &std::path::Path,
) -> Result<usize> {
    use crate::error::IoContext;
    let retired = index.scan(Family::State, keys::RETIRED_PREFIX, None, usize::MAX)?;
    if retired.is_empty() {
        return Ok(0);
    }
    let mut batch = crate::index::Batch::default();
    for (key, _) in &retired {
        if let Some(id) = keys::pack_id(&key[keys::RETIRED_PREFIX.len()..]) {
            let path = dir.join(crate::pack::file_name(id));
            match storage.remove(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("remove", &path);
                }
                _ => {}
            }
        }
        batch.delete(Family::State, key);
    }
    storage.sync_dir(dir).context("fsync directory", dir)?;
    index.commit(batch)?;
    Ok(retired.len())
}

/// Changes per sweep group entry: one metadata record of a few hundred KiB.
const SWEEP_CHANGES: usize = 4096;
