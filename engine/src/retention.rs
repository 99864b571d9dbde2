//! Tag retention: `Engine::prune_repository` keeps the newest tags of a repository and
//! deletes the rest, with the manifests that only they pointed at. The decision and
//! the deletions happen under the repository's exclusive lock, so a tag pushed
//! meanwhile is either seen (and counted among the newest) or arrives after.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::change::Change;
use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::group::GroupEntry;
use crate::index::keys::check_name;
use crate::index::{Family, keys, values};
use crate::sync::write_lock;
pub use lain_store::retention::{Pruned, TagOrder, glob_matches, natural};

impl Engine {
    /// Keeps the newest `keep` tags of `repo` (by `order`) and removes the others; a
    /// manifest that only removed tags pointed at is deleted with them (its blobs are
    /// then for garbage collection), one a kept tag points at stays. With `dry_run`,
    /// only reports.
    pub fn prune_repository(
        &self,
        repo: &str,
        keep: usize,
        order: TagOrder,
        dry_run: bool,
    ) -> Result<Pruned> {
        check_name(repo, "repository name")?;
        let _exclusive = write_lock(self.core.repo_lock(repo));
        let prefix = keys::repo_prefix(repo);
        let mut tags: Vec<(String, Digest, SystemTime)> = Vec::new();
        for (key, value) in self
            .core
            .index
            .scan(Family::Tags, &prefix, None, usize::MAX)?
        {
            let name = String::from_utf8(key[prefix.len()..].to_vec()).map_err(|_| {
                Error::CorruptIndex {
                    family: Family::Tags.name(),
                }
            })?;
            let (digest, pushed) = values::decode_tag(&value)?;
            tags.push((name, digest, pushed));
        }
        tags.sort_by(|a, b| match order {
            TagOrder::Pushed => b.2.cmp(&a.2).then_with(|| natural(&b.0, &a.0)),
            TagOrder::Name => natural(&b.0, &a.0),
        });
        let old = tags.split_off(keep.min(tags.len()));
        let kept: HashSet<&Digest> = tags.iter().map(|(_, d, _)| d).collect();
        let mut pruned = Pruned {
            kept: tags.iter().map(|(t, _, _)| t.clone()).collect(),
            ..Pruned::default()
        };
        let mut changes = Vec::new();
        let mut deleted: HashSet<&Digest> = HashSet::new();
        for (tag, _, _) in &old {
            changes.push(Change::Untag {
                repo: repo.to_owned(),
                tag: tag.clone(),
            });
            pruned.tags.push(tag.clone());
        }
        for (_, digest, _) in &old {
            if kept.contains(digest) || !deleted.insert(digest) {
                continue;
            }
            let key = keys::repo_digest(repo, digest);
            let Some(value) = self.core.index.get(Family::Manifests, &key)? else {
                continue;
            };
            let (_, meta) = values::decode_manifest(&value, Family::Manifests)?;
            changes.push(Change::ManifestDelete {
                repo: repo.to_owned(),
                digest: digest.clone(),
                subject: meta.subject,
            });
            pruned.manifests.push(digest.clone());
        }
        if !dry_run {
            for chunk in changes.chunks(4096) {
                self.core.group_commit(GroupEntry {
                    changes: chunk.to_vec(),
                    ..GroupEntry::default()
                })?;
            }
        }
        Ok(pruned)
    }
}
