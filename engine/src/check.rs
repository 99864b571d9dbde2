//! `Engine::check`: every invariant FORMAT.md lists, verified against the bytes. Each
//! problem is reported with the repositories and tags it affects, so an operator knows
//! which images to push again. Nothing here writes to the store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::{Family, Index, IndexMemory, Snapshot, keys, values};
use crate::layout::Layout;
use crate::pack::format::{
    self, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordHeader, RecordKind, ScannedRecord,
};
use crate::progress::Progress;
use crate::rebuild;
use crate::types::ReferenceReader;

/// What is wrong, one invariant at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A pack the index knows cannot be opened or read.
    PackUnreadable { pack: u64, detail: String },
    /// A pack file is shorter than its committed length.
    PackShort {
        pack: u64,
        length: u64,
        committed: u64,
    },
    /// Committed bytes of a pack that hold no valid record (a flipped byte, a torn
    /// write that was acknowledged, an overwrite).
    PackDamaged { pack: u64, range: Range<u64> },
    /// A `blobs` entry that does not point at a valid record of that blob.
    BlobEntryWrong { digest: Digest, detail: String },
    /// A blob whose bytes no longer hash to its digest (found by a deep check).
    BlobCorrupt { digest: Digest, pack: u64 },
    /// A repository may read a blob that is not stored.
    LinkDangling { repo: String, digest: Digest },
    /// A manifest whose bytes are not stored, or that its repository has no link to.
    ManifestIncomplete {
        repo: String,
        digest: Digest,
        detail: &'static str,
    },
    /// A tag that points at a manifest its repository does not have.
    TagDangling {
        repo: String,
        tag: String,
        digest: Digest,
    },
    /// A referrer entry whose manifest its repository does not have.
    ReferrerDangling { repo: String, digest: Digest },
    /// A manifest that names a blob its repository cannot read, or a child manifest
    /// its repository does not have.
    ReferenceMissing {
        repo: String,
        manifest: Digest,
        reference: Digest,
        what: &'static str,
    },
    /// A stored manifest the protocol cannot read any more.
    ManifestUnreadable {
        repo: String,
        digest: Digest,
        detail: String,
    },
    /// The index and the metadata log in the packs disagree about a key.
    LogDisagrees {
        family: &'static str,
        key: String,
        detail: &'static str,
    },
    /// An index entry that does not decode.
    IndexEntryCorrupt { family: &'static str, key: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PackUnreadable { pack, detail } => write!(f, "pack {pack}: {detail}"),
            Problem::PackShort {
                pack,
                length,
                committed,
            } => write!(
                f,
                "pack {pack}: {length} bytes on disk, {committed} committed (truncated)"
            ),
            Problem::PackDamaged { pack, range } => write!(
                f,
                "pack {pack}: bytes {}..{} hold no valid record",
                range.start, range.end
            ),
            Problem::BlobEntryWrong { digest, detail } => write!(f, "blob {digest}: {detail}"),
            Problem::BlobCorrupt { digest, pack } => {
                write!(
                    f,
                    "blob {digest} in pack {pack}: its bytes do not hash to its digest"
                )
            }
            Problem::LinkDangling { repo, digest } => {
                write!(f, "{repo}: linked blob {digest} is not stored")
            }
            Problem::ManifestIncomplete {
                repo,
                digest,
                detail,
            } => write!(f, "{repo}: manifest {digest}: {detail}"),
            Problem::TagDangling { repo, tag, digest } => {
                write!(
                    f,
                    "{repo}:{tag}: points at manifest {digest}, which is not in {repo}"
                )
            }
            Problem::ReferrerDangling { repo, digest } => {
                write!(f, "{repo}: referrer {digest} has no manifest entry")
            }
            Problem::ReferenceMissing {
                repo,
                manifest,
                reference,
                what,
            } => write!(
                f,
                "{repo}: manifest {manifest} references {what} {reference}, which is not in {repo}"
            ),
            Problem::ManifestUnreadable {
                repo,
                digest,
                detail,
            } => write!(f, "{repo}: manifest {digest} does not parse: {detail}"),
            Problem::LogDisagrees {
                family,
                key,
                detail,
            } => write!(
                f,
                "index and metadata log disagree in {family} at {key}: {detail}"
            ),
            Problem::IndexEntryCorrupt { family, key } => {
                write!(f, "index entry in {family} at {key} does not decode")
            }
        }
    }
}

impl Problem {
    /// The blob the problem is about, if any.
    fn blob(&self) -> Option<&Digest> {
        match self {
            Problem::BlobEntryWrong { digest, .. }
            | Problem::BlobCorrupt { digest, .. }
            | Problem::LinkDangling { digest, .. }
            | Problem::ManifestIncomplete { digest, .. }
            | Problem::TagDangling { digest, .. }
            | Problem::ManifestUnreadable { digest, .. }
            | Problem::ReferenceMissing {
                manifest: digest, ..
            } => Some(digest),
            _ => None,
        }
    }
}

/// A problem and what it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: Problem,
    /// Repositories that link an affected blob.
    pub repositories: Vec<String>,
    /// `repo:tag` of tags whose manifest is an affected blob.
    pub tags: Vec<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problem)?;
        if !self.repositories.is_empty() {
            write!(f, "; repositories: {}", self.repositories.join(", "))?;
        }
        if !self.tags.is_empty() {
            write!(f, "; tags: {}", self.tags.join(", "))?;
        }
        Ok(())
    }
}

/// What a check looked at and found.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub packs: u64,
    pub pack_bytes: u64,
    pub blobs: u64,
    pub manifests: u64,
    pub tags: u64,
    pub metadata_records: u64,
    /// Blob bytes re-hashed (deep checks), and the wall time that took.
    pub hashed_bytes: u64,
    pub hashing_seconds: f64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Differences reported per family before the rest are only counted.
const MAX_LOG_DIFFERENCES: usize = 100;

impl Engine {
    /// Checks every invariant of the store; with `deep`, also re-hashes every blob;
    /// with a `reader`, also every manifest's references. Writes may go on meanwhile:
    /// the check reads the index through one snapshot and the packs only up to the
    /// lengths that snapshot commits, so it sees the store as of one moment.
    pub fn check(
        &self,
        deep: bool,
        reader: Option<ReferenceReader<'_>>,
        progress: &dyn Progress,
    ) -> Result<CheckReport> {
        // Not while a collection deletes packs.
        let _maintenance = crate::sync::lock(&self.core.maintenance);
        let snapshot = self.core.index.snapshot();
        let mut checker = Checker {
            engine: self,
            index: &snapshot,
            report: CheckReport::default(),
            problems: Vec::new(),
            maps: HashMap::new(),
            damaged: HashMap::new(),
            cuts: HashMap::new(),
        };
        checker.packs(deep, progress)?;
        checker.blobs(progress)?;
        checker.references(progress)?;
        if let Some(reader) = reader {
            checker.manifest_references(reader, progress)?;
        }
        checker.log_against_index(progress)?;
        checker.finish()
    }
}

struct Checker<'a> {
    engine: &'a Engine,
    index: &'a Snapshot<'a>,
    report: CheckReport,
    problems: Vec<Problem>,
    /// Each readable pack's committed bytes.
    maps: HashMap<u64, Bytes>,
    damaged: HashMap<u64, Vec<Range<u64>>>,
    /// Each pack's committed length in the snapshot: all the log the snapshot has.
    cuts: HashMap<u64, u64>,
}

impl Checker<'_> {
    fn packs(&mut self, deep: bool, progress: &dyn Progress) -> Result<()> {
        let entries = self.index.scan_all(Family::Packs)?;
        let mut known = Vec::new();
        self.cuts.clear();
        for (key, value) in entries {
            match (keys::pack_id(&key), values::decode_pack(&value)) {
                (Some(id), Ok(entry)) => known.push((id, entry)),
                _ => self.corrupt_entry(Family::Packs, &key),
            }
        }
        let total = known.iter().map(|(_, e)| e.committed).sum();
        progress.phase(
            if deep {
                "reading and hashing packs"
            } else {
                "reading packs"
            },
            total,
        );
        for (id, entry) in known {
            let (map, length) = match self.engine.core.packs.map_prefix(id, entry.committed) {
                Ok(mapped) => mapped,
                Err(e) => {
                    self.problems.push(Problem::PackUnreadable {
                        pack: id,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            self.report.packs += 1;
            self.report.pack_bytes += entry.committed;
            self.cuts.insert(id, entry.committed);
            if length < entry.committed {
                self.problems.push(Problem::PackShort {
                    pack: id,
                    length,
                    committed: entry.committed,
                });
            }
            if let Err(detail) = format::check_pack_header(&map) {
                self.problems
                    .push(Problem::PackUnreadable { pack: id, detail });
                continue;
            }
            let scan = format::scan_all(&map, PACK_HEADER_LEN);
            self.report.metadata_records += scan
                .records
                .iter()
                .filter(|r| matches!(r.kind, RecordKind::Meta { .. }))
                .count() as u64;
            if deep {
                let started = Instant::now();
                for digest in rehash(&map, &scan.records, progress) {
                    self.problems
                        .push(Problem::BlobCorrupt { digest, pack: id });
                }
                self.report.hashing_seconds += started.elapsed().as_secs_f64();
                self.report.hashed_bytes += scan
                    .records
                    .iter()
                    .filter(|r| matches!(r.kind, RecordKind::Blob(_)))
                    .map(|r| r.length)
                    .sum::<u64>();
            }
            if !deep {
                progress.advance(entry.committed);
            }
            for range in &scan.damaged {
                self.problems.push(Problem::PackDamaged {
                    pack: id,
                    range: range.clone(),
                });
            }
            self.damaged.insert(id, scan.damaged);
            self.maps.insert(id, map);
        }
        Ok(())
    }

    /// Every `blobs` entry points at a valid record of its blob.
    fn blobs(&mut self, progress: &dyn Progress) -> Result<()> {
        let index = self.index;
        progress.phase("checking blob entries", 0);
        for entry in index.iter(Family::Blobs) {
            let (key, value) = entry?;
            let (Some((digest, _)), Ok(loc)) =
                (Digest::from_key(&key), values::decode_location(&value))
            else {
                self.corrupt_entry(Family::Blobs, &key);
                continue;
            };
            self.report.blobs += 1;
            progress.advance(1);
            let wrong = |detail: String| Problem::BlobEntryWrong {
                digest: digest.clone(),
                detail,
            };
            let Some(map) = self.maps.get(&loc.pack) else {
                self.problems.push(wrong(format!(
                    "points into pack {}, which is unreadable",
                    loc.pack
                )));
                continue;
            };
            let end = loc.offset.saturating_add(loc.length).saturating_add(4);
            let in_damage = self.in_damage(&loc);
            let header = loc
                .offset
                .checked_sub(RECORD_HEADER_LEN)
                .and_then(|at| map.get(at as usize..))
                .and_then(RecordHeader::decode);
            let trailer = map
                .get(end.saturating_sub(4) as usize..end as usize)
                .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
            let detail = if end > map.len() as u64 {
                Some(format!("lies past the committed end of pack {}", loc.pack))
            } else if in_damage {
                Some(format!("its record in pack {} is damaged", loc.pack))
            } else if header
                .as_ref()
                .is_none_or(|h| h.digest != digest || h.length != loc.length)
            {
                Some(format!(
                    "pack {} holds no record of it at offset {}",
                    loc.pack, loc.offset
                ))
            } else if trailer != Some(loc.crc) {
                Some("its checksum differs from the record's".to_owned())
            } else {
                None
            };
            if let Some(detail) = detail {
                self.problems.push(wrong(detail));
            }
        }
        Ok(())
    }

    /// Links, manifests, tags and referrers point at what exists.
    fn references(&mut self, progress: &dyn Progress) -> Result<()> {
        let index = self.index;
        progress.phase("checking repository metadata", 0);
        for entry in index.iter(Family::Links) {
            let (key, _) = entry?;
            let Some((repo, digest)) = keys::parse_repo_digest(&key) else {
                self.corrupt_entry(Family::Links, &key);
                continue;
            };
            if !index.contains(Family::Blobs, &keys::blob(&digest))? {
                self.problems.push(Problem::LinkDangling { repo, digest });
            }
            progress.advance(1);
        }
        for entry in index.iter(Family::Manifests) {
            let (key, _) = entry?;
            let Some((repo, digest)) = keys::parse_repo_digest(&key) else {
                self.corrupt_entry(Family::Manifests, &key);
                continue;
            };
            self.report.manifests += 1;
            let detail = if !index.contains(Family::Blobs, &keys::blob(&digest))? {
                Some("its bytes are not stored")
            } else if !index.contains(Family::Links, &key)? {
                Some("its repository has no link to its bytes")
            } else {
                None
            };
            if let Some(detail) = detail {
                self.problems.push(Problem::ManifestIncomplete {
                    repo,
                    digest,
                    detail,
                });
            }
            progress.advance(1);
        }
        for entry in index.iter(Family::Tags) {
            let (key, value) = entry?;
            let (Some((repo, tag)), Ok((digest, _))) =
                (keys::parse_tag(&key), values::decode_tag(&value))
            else {
                self.corrupt_entry(Family::Tags, &key);
                continue;
            };
            self.report.tags += 1;
            if !index.contains(Family::Manifests, &keys::repo_digest(&repo, &digest))? {
                self.problems
                    .push(Problem::TagDangling { repo, tag, digest });
            }
            progress.advance(1);
        }
        for entry in index.iter(Family::Referrers) {
            let (key, _) = entry?;
            let parsed = keys::parse_referrer(&key).map(|(repo, _, digest)| (repo, digest));
            let Some((repo, digest)) = parsed else {
                self.corrupt_entry(Family::Referrers, &key);
                continue;
            };
            if !index.contains(Family::Manifests, &keys::repo_digest(&repo, &digest))? {
                self.problems
                    .push(Problem::ReferrerDangling { repo, digest });
            }
        }
        Ok(())
    }

    /// Every manifest's references are in its repository: blobs it can read, child
    /// manifests it has.
    fn manifest_references(
        &mut self,
        reader: ReferenceReader<'_>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let index = self.index;
        progress.phase("checking manifest references", self.report.manifests);
        for entry in index.iter(Family::Manifests) {
            let (key, value) = entry?;
            let (Some((repo, digest)), Ok((_, meta))) = (
                keys::parse_repo_digest(&key),
                values::decode_manifest(&value, Family::Manifests),
            ) else {
                continue; // reported by `references`
            };
            progress.advance(1);
            let Some(bytes) = self.stored_bytes(&digest)? else {
                continue; // reported by `references` or `blobs`
            };
            let references = match reader(&bytes, &meta.media_type) {
                Ok(references) => references,
                Err(detail) => {
                    self.problems.push(Problem::ManifestUnreadable {
                        repo,
                        digest,
                        detail,
                    });
                    continue;
                }
            };
            let wanted = references
                .blobs
                .into_iter()
                .map(|d| (d, Family::Links, "blob"))
                .chain(
                    references
                        .manifests
                        .into_iter()
                        .map(|d| (d, Family::Manifests, "manifest")),
                );
            for (reference, family, what) in wanted {
                if !index.contains(family, &keys::repo_digest(&repo, &reference))? {
                    self.problems.push(Problem::ReferenceMissing {
                        repo: repo.clone(),
                        manifest: digest.clone(),
                        reference,
                        what,
                    });
                }
            }
        }
        Ok(())
    }

    /// A blob's bytes as the snapshot has them, if they are readable.
    fn stored_bytes(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let Some(value) = self.index.get(Family::Blobs, &keys::blob(digest))? else {
            return Ok(None);
        };
        let Ok(loc) = values::decode_location(&value) else {
            return Ok(None);
        };
        let start = usize::try_from(loc.offset).ok();
        let end = loc
            .offset
            .checked_add(loc.length)
            .and_then(|e| usize::try_from(e).ok());
        Ok(match (self.maps.get(&loc.pack), start, end) {
            (Some(map), Some(start), Some(end)) if end <= map.len() => Some(map.slice(start..end)),
            _ => None,
        })
    }

    /// Replays the log into a scratch index and compares it with the live one, family
    /// by family, in key order.
    fn log_against_index(&mut self, progress: &dyn Progress) -> Result<()> {
        let core = &self.engine.core;
        let layout = Layout::new(&core.root);
        // Its own directory: two checks may run at once (two clients of one server).
        static CHECKS: AtomicUsize = AtomicUsize::new(0);
        let n = CHECKS.fetch_add(1, Ordering::Relaxed);
        let scratch = layout.index_check(n);
        rebuild::remove_dir_if_present(&scratch)?;
        let outcome = (|| {
            let replayed = Index::open(
                &scratch,
                IndexMemory {
                    block_cache_bytes: 1 << 20,
                    write_buffer_bytes: 8 << 20,
                },
            )?;
            rebuild::fill(
                &replayed,
                &layout.packs(),
                &core.options,
                Some(&self.cuts),
                progress,
            )?;
            progress.phase("comparing the index with the log", 0);
            for family in Family::FROM_PACKS {
                self.compare(family, &replayed)?;
            }
            Ok::<(), Error>(())
        })();
        rebuild::remove_dir_if_present(&scratch)?;
        outcome
    }

    fn compare(&mut self, family: Family, replayed: &Index) -> Result<()> {
        let index = self.index;
        const ONLY_INDEX: &str = "in the index, not in the log";
        const ONLY_LOG: &str = "in the log, not in the index";
        let mut live = index.iter(family);
        let mut log = replayed.iter(family);
        let (mut a, mut b) = (live.next().transpose()?, log.next().transpose()?);
        let mut found = 0usize;
        let mut drifted = 0usize;
        loop {
            let (detail, key) = match (&a, &b) {
                (None, None) => break,
                (Some((ka, _)), None) => (ONLY_INDEX, ka.clone()),
                (None, Some((kb, _))) => (ONLY_LOG, kb.clone()),
                (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => (ONLY_INDEX, ka.clone()),
                    std::cmp::Ordering::Greater => (ONLY_LOG, kb.clone()),
                    std::cmp::Ordering::Equal if va == vb => ("", ka.clone()),
                    std::cmp::Ordering::Equal => ("values differ", ka.clone()),
                },
            };
            if detail != ONLY_LOG {
                a = live.next().transpose()?;
            }
            if detail != ONLY_INDEX {
                b = log.next().transpose()?;
            }
            // Blob records a rebuild would index that the index does not use: a
            // second copy of a blob, or a blob a compaction dropped, while the pack it
            // compacted is still there (cut off before its removal; FORMAT.md,
            // "Compaction"). Either holds the right bytes, and `blobs` has checked the
            // index's own copies. Only a blob the index has and the packs would not
            // give back is a loss waiting for the index to be rebuilt.
            let harmless = family == Family::Blobs && detail != ONLY_INDEX;
            if detail.is_empty() || harmless {
                continue;
            }
            // Dead-byte counts only steer which packs a collection rewrites; a crash
            // can leave them off a recount (the bytes of an upload cut off at its
            // commit, a compaction cut off before its pack went), and `fsck --repair`
            // recounts them. They are reported, not held against the store.
            if family == Family::Usage {
                drifted += 1;
                continue;
            }
            found += 1;
            if found <= MAX_LOG_DIFFERENCES {
                self.problems.push(Problem::LogDisagrees {
                    family: family.name(),
                    key: show_key(family, &key),
                    detail,
                });
            }
        }
        if drifted > 0 {
            tracing::warn!(
                packs = drifted,
                "dead-byte counts differ from a recount (they only steer collections; \
                 `fsck --repair` recounts them)"
            );
        }
        if found > MAX_LOG_DIFFERENCES {
            tracing::warn!(
                family = family.name(),
                "{} more differences between the index and the log not listed",
                found - MAX_LOG_DIFFERENCES
            );
        }
        Ok(())
    }

    /// Whether the record of the blob at `loc` overlaps a damaged stretch of its pack.
    fn in_damage(&self, loc: &crate::pack::Location) -> bool {
        let start = loc.offset.saturating_sub(RECORD_HEADER_LEN);
        let end = loc.offset.saturating_add(loc.length).saturating_add(4);
        self.damaged
            .get(&loc.pack)
            .is_some_and(|ranges| ranges.iter().any(|r| r.start < end && start < r.end))
    }

    fn corrupt_entry(&mut self, family: Family, key: &[u8]) {
        self.problems.push(Problem::IndexEntryCorrupt {
            family: family.name(),
            key: show_key(family, key),
        });
    }

    /// Attaches to each problem the repositories and tags it affects.
    fn finish(mut self) -> Result<CheckReport> {
        let index = self.index;
        let mut affected: HashSet<Digest> = self
            .problems
            .iter()
            .filter_map(|p| p.blob().cloned())
            .collect();
        // Blobs in damaged stretches of packs are affected too.
        for entry in index.iter(Family::Blobs) {
            let (key, value) = entry?;
            let (Some((digest, _)), Ok(loc)) =
                (Digest::from_key(&key), values::decode_location(&value))
            else {
                continue;
            };
            if self.in_damage(&loc) {
                affected.insert(digest);
            }
        }
        let mut repos: HashMap<Digest, BTreeSet<String>> = HashMap::new();
        let mut tags: HashMap<Digest, BTreeSet<String>> = HashMap::new();
        if !affected.is_empty() {
            for entry in index.iter(Family::Links) {
                let (key, _) = entry?;
                if let Some((repo, digest)) = keys::parse_repo_digest(&key)
                    && affected.contains(&digest)
                {
                    repos.entry(digest).or_default().insert(repo);
                }
            }
            for entry in index.iter(Family::Tags) {
                let (key, value) = entry?;
                if let (Some((repo, tag)), Ok((digest, _))) =
                    (keys::parse_tag(&key), values::decode_tag(&value))
                    && affected.contains(&digest)
                {
                    tags.entry(digest)
                        .or_default()
                        .insert(format!("{repo}:{tag}"));
                }
            }
        }
        for problem in self.problems {
            let digest = problem.blob().cloned();
            let finding = Finding {
                repositories: digest
                    .as_ref()
                    .and_then(|d| repos.get(d))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                tags: digest
                    .as_ref()
                    .and_then(|d| tags.get(d))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                problem,
            };
            self.report.findings.push(finding);
        }
        Ok(self.report)
    }
}

/// Hashes every blob record of `pack` and returns the digests whose bytes do not hash
/// to them. The records are shared out among a thread per core: re-hashing is the whole
/// cost of a deep check, and sha256 runs at one core's speed.
fn rehash(pack: &[u8], records: &[ScannedRecord], progress: &dyn Progress) -> Vec<Digest> {
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = || {
        let mut bad = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(record) = records.get(i) else {
                return bad;
            };
            if let RecordKind::Blob(digest) = &record.kind
                && !record.hashes_to_digest(pack)
            {
                bad.push(digest.clone());
            }
            progress.advance(record.end() - record.offset);
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut bad = work();
        for helper in helpers {
            // A helper that panicked left records unchecked: never report them as fine.
            bad.extend(
                helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        bad
    })
}

/// A key as a person reads it: repository, tag or digest where the family has them.
fn show_key(family: Family, key: &[u8]) -> String {
    let shown = match family {
        Family::Blobs => Digest::from_key(key).map(|(d, _)| d.to_string()),
        Family::Links | Family::Manifests => {
            keys::parse_repo_digest(key).map(|(r, d)| format!("{r}@{d}"))
        }
        Family::Tags => keys::parse_tag(key).map(|(r, t)| format!("{r}:{t}")),
        Family::Repos => String::from_utf8(key.to_vec()).ok(),
        Family::Packs => keys::pack_id(key).map(|id| format!("pack {id}")),
        _ => None,
    };
    shown.unwrap_or_else(|| format!("{key:02x?}"))
}
