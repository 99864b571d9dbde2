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
use crate::index::{Family, values};

/// Bytes of changes per group commit: each record (and its index batch) a few MiB,
/// well inside the record limit.
const CHUNK_BYTES: usize = 8 << 20;

pub(crate) fn from_format_1(engine: &Engine) -> Result<()> {
    let core = &engine.core;
    let mut changes = Vec::new();
    let split = |key: &[u8], family: Family| -> Result<(String, Vec<u8>)> {
        let at = key
            .iter()
            .position(|&b| b == crate::index::keys::SEPARATOR)
            .ok_or(Error::CorruptIndex {
                family: family.name(),
            })?;
        let repo = String::from_utf8(key[..at].to_vec()).map_err(|_| Error::CorruptIndex {
            family: family.name(),
        })?;
        Ok((repo, key[at + 1..].to_vec()))
    };
    let digest_of = |rest: &[u8], family: Family| {
        crate::digest::Digest::from_key(rest)
            .filter(|(_, used)| *used == rest.len())
            .map(|(d, _)| d)
            .ok_or(Error::CorruptIndex {
                family: family.name(),
            })
    };
    for (key, _) in core.index.scan_all(Family::Repos)? {
        let repo = String::from_utf8(key.to_vec()).map_err(|_| Error::CorruptIndex {
            family: Family::Repos.name(),
        })?;
        changes.push(Change::Repository { repo });
    }
    for (key, _) in core.index.scan_all(Family::Links)? {
        let (repo, rest) = split(&key, Family::Links)?;
        let digest = digest_of(&rest, Family::Links)?;
        changes.push(Change::Link { repo, digest });
    }
    for (key, value) in core.index.scan_all(Family::Manifests)? {
        let (repo, rest) = split(&key, Family::Manifests)?;
        let digest = digest_of(&rest, Family::Manifests)?;
        let (size, meta) = values::decode_manifest(&value, Family::Manifests)?;
        changes.push(Change::Manifest {
            repo,
            digest,
            size,
            meta,
        });
    }
    for (key, value) in core.index.scan_all(Family::Tags)? {
        let (repo, rest) = split(&key, Family::Tags)?;
        let tag = String::from_utf8(rest).map_err(|_| Error::CorruptIndex {
            family: Family::Tags.name(),
        })?;
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
