//! Mark and sweep of one repository, on the live index under the repository's
//! exclusive lock: which manifests and links it keeps, and the changes that remove the
//! rest. Reading the live index (not a snapshot) under that lock is what makes the
//! sweep safe while the registry serves: every push that adds a manifest, a tag or a
//! link to the repository holds the lock shared, so it either happened before (and is
//! seen here) or happens after the sweep is indexed (and finds what it references
//! still there, or gets `ReferenceUnknown`).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::change::Change;
use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::values::{self, LinkState};
use crate::index::{Family, keys};
use crate::types::{ManifestMeta, ReferenceReader, References};

use super::CollectOptions;

/// What one repository keeps and loses.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    /// The removals, as changes to log.
    pub changes: Vec<Change>,
    /// Digests of the links the repository keeps: the blobs it still needs.
    pub kept_links: Vec<Digest>,
    pub manifests_removed: Vec<Digest>,
    /// Links removed on their own (a removed manifest's link goes with it).
    pub links_removed: Vec<Digest>,
    /// Why nothing was swept here: a manifest whose references could not be read, so
    /// which blobs it needs is unknown.
    pub skipped: Option<String>,
}

pub(super) fn mark_repo(
    engine: &Engine,
    repo: &str,
    options: &CollectOptions,
    reader: ReferenceReader<'_>,
    epoch: SystemTime,
) -> Result<Verdict> {
    let index = &engine.core.index;
    let prefix = keys::repo_prefix(repo);
    let corrupt = |family: Family| Error::CorruptIndex {
        family: family.name(),
    };
    let after_prefix = |key: &[u8], family| {
        Digest::from_key(&key[prefix.len()..])
            .map(|(d, _)| d)
            .ok_or_else(|| corrupt(family))
    };

    let mut manifests: HashMap<Digest, ManifestMeta> = HashMap::new();
    for (key, value) in index.scan(Family::Manifests, &prefix, None, usize::MAX)? {
        let (_, meta) = values::decode_manifest(&value, Family::Manifests)?;
        manifests.insert(after_prefix(&key, Family::Manifests)?, meta);
    }
    let mut links: Vec<(Digest, LinkState)> = Vec::new();
    for (key, value) in index.scan(Family::Links, &prefix, None, usize::MAX)? {
        let (state, _) = values::decode_link(&value)?;
        links.push((after_prefix(&key, Family::Links)?, state));
    }
    // Spared: a link made since the collection began (its epoch), whatever the grace;
    // and an upload whose manifest is still to come: no manifest has referenced it yet
    // and it is younger than the grace period (a link from the future, after the clock
    // went back, counts as young).
    let young = |state: &LinkState| {
        state.at >= epoch
            || (!state.claimed
                && epoch
                    .duration_since(state.at)
                    .map_or(true, |age| age < options.grace))
    };
    let link_states: HashMap<&Digest, &LinkState> = links.iter().map(|(d, s)| (d, s)).collect();

    let mut references: HashMap<Digest, References> = HashMap::new();
    let mut read = |digest: &Digest| -> Result<std::result::Result<References, String>> {
        if let Some(found) = references.get(digest) {
            return Ok(Ok(found.clone()));
        }
        let Some(meta) = manifests.get(digest) else {
            return Ok(Ok(References::default()));
        };
        let Some(bytes) = engine.read_unmapped(digest)? else {
            return Ok(Err(format!("manifest {digest}: its bytes are not stored")));
        };
        match reader(&bytes, &meta.media_type) {
            Ok(found) => {
                references.insert(digest.clone(), found.clone());
                Ok(Ok(found))
            }
            Err(detail) => Ok(Err(format!("manifest {digest}: {detail}"))),
        }
    };

    let mut kept: HashSet<Digest> = HashSet::new();
    let mut skipped = None;
    if options.delete_untagged {
        // Roots: what tags point at, and manifests spared as uploads in progress (an
        // index's children go up before the index). Then everything they reach: child
        // manifests, and referrers of kept subjects.
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (digest, meta) in &manifests {
            if let Some(subject) = &meta.subject {
                referrers.entry(subject).or_default().push(digest);
            }
        }
        let mut work: Vec<Digest> = Vec::new();
        for (_, value) in index.scan(Family::Tags, &prefix, None, usize::MAX)? {
            work.push(values::decode_tag(&value)?.0);
        }
        work.extend(
            manifests
                .keys()
                .filter(|d| link_states.get(d).is_some_and(|s| young(s)))
                .cloned(),
        );
        while let Some(digest) = work.pop() {
            if !manifests.contains_key(&digest) || !kept.insert(digest.clone()) {
                continue;
            }
            match read(&digest)? {
                Ok(found) => work.extend(found.manifests),
                Err(why) => {
                    skipped = Some(why);
                    break;
                }
            }
            if let Some(found) = referrers.get(&digest) {
                work.extend(found.iter().map(|d| (*d).clone()));
            }
        }
    } else {
        kept = manifests.keys().cloned().collect();
    }

    let mut needed: HashSet<Digest> = HashSet::new();
    if skipped.is_none() {
        for digest in &kept {
            match read(digest)? {
                Ok(found) => {
                    needed.extend(found.blobs);
                    needed.extend(found.manifests);
                }
                Err(why) => {
                    skipped = Some(why);
                    break;
                }
            }
            needed.insert(digest.clone());
        }
    }
    if skipped.is_some() {
        return Ok(Verdict {
            kept_links: links.into_iter().map(|(d, _)| d).collect(),
            skipped,
            ..Verdict::default()
        });
    }

    let mut verdict = Verdict::default();
    let mut removed: Vec<(&Digest, &ManifestMeta)> = manifests
        .iter()
        .filter(|(d, _)| !kept.contains(*d))
        .collect();
    removed.sort_by(|a, b| a.0.cmp(b.0));
    for (digest, meta) in removed {
        verdict.changes.push(Change::ManifestDelete {
            repo: repo.to_owned(),
            digest: digest.clone(),
            subject: meta.subject.clone(),
        });
        verdict.manifests_removed.push(digest.clone());
    }
    for (digest, state) in links {
        if needed.contains(&digest) || young(&state) {
            verdict.kept_links.push(digest);
        } else if !manifests.contains_key(&digest) {
            verdict.changes.push(Change::Unlink {
                repo: repo.to_owned(),
                digest: digest.clone(),
            });
            verdict.links_removed.push(digest);
        }
    }
    Ok(verdict)
}
