//! Upgrading a format-1 store in place. Format 1 kept repository metadata in the index
//! only; format 2 logs it in the packs. The upgrade writes the index's whole metadata
//! as metadata records (a snapshot, through the ordinary group commit), and only then
//! writes the `FORMAT` file. A kill at any moment before that leaves a store that still
//! reads as format 1 and is upgraded again at the next open: the repeated snapshot
//! states the same entries, so replaying both gives the same index.

use crate::change::{self, Change};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::group::GroupEntry;
use crate::index::{Family, keys, values};

/// Bytes of changes per group commit: each record (and its index batch) a few MiB,
/// well inside the record limit.
const CHUNK_BYTES: usize = 8 << 20;

pub(crate) fn from_format_1(engine: &Engine) -> Result<()> {
    let core = &engine.core;
    let mut changes = Vec::new();
    let corrupt = |family: Family| Error::CorruptIndex {
        family: family.name(),
    };
    for (key, _) in core.index.scan_all(Family::Repos)? {
        let repo = String::from_utf8(key.to_vec()).map_err(|_| corrupt(Family::Repos))?;
        changes.push(Change::Repository { repo });
    }
    for (key, _) in core.index.scan_all(Family::Links)? {
        let (repo, digest) = keys::parse_repo_digest(&key).ok_or_else(|| corrupt(Family::Links))?;
        changes.push(Change::Link { repo, digest });
    }
    for (key, value) in core.index.scan_all(Family::Manifests)? {
        let (repo, digest) =
            keys::parse_repo_digest(&key).ok_or_else(|| corrupt(Family::Manifests))?;
        let (size, meta) = values::decode_manifest(&value, Family::Manifests)?;
        changes.push(Change::Manifest {
            repo,
            digest,
            size,
            meta,
        });
    }
    for (key, value) in core.index.scan_all(Family::Tags)? {
        let (repo, tag) = keys::parse_tag(&key).ok_or_else(|| corrupt(Family::Tags))?;
        let (digest, pushed) = values::decode_tag(&value)?;
        changes.push(Change::Tag {
            repo,
            tag,
            digest,
            pushed,
        });
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
