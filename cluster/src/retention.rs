//! Tag retention (`registry prune`) on the cluster: the newest tags of a repository
//! kept, the others removed each on the condition that it was not pushed again since it
//! was read, and the manifests only they pointed at removed on the condition that no
//! tag of the repository changed meanwhile. A push racing the prune keeps its tag.

use std::collections::BTreeSet;

use etcd_client::{Txn, TxnOp};
use lain_store::retention::{Pruned, TagOrder, natural};

use crate::error::Result;
use crate::meta::unchanged;
use crate::records::{self, ManifestEntry};
use crate::{ClusterStore, Inner};

impl ClusterStore {
    /// Keeps the newest `keep` tags of `repo` (by `order`; "pushed" is etcd's order of
    /// writes) and removes the others, with the manifests only they pointed at. With
    /// `dry_run`, only reports.
    pub async fn prune_repository(
        &self,
        repo: &str,
        keep: usize,
        order: TagOrder,
        dry_run: bool,
    ) -> Result<Pruned> {
        self.inner.prune(repo, keep, order, dry_run).await
    }

    /// Every repository, in order.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        self.inner.list_repositories(None, usize::MAX).await
    }
}

impl Inner {
    async fn prune(
        &self,
        repo: &str,
        keep: usize,
        order: TagOrder,
        dry_run: bool,
    ) -> Result<Pruned> {
        let prefix = self.layout.tags(repo);
        let mut tags = Vec::new();
        for kv in self.meta.scan_all(&prefix, false).await? {
            let Some(name) = kv.key().strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let digest = String::from_utf8_lossy(kv.value()).into_owned();
            tags.push((name, digest, kv.mod_revision()));
        }
        // Any tag made or moved after this read has a later revision.
        let read_at = tags.iter().map(|t| t.2).max().unwrap_or(0);
        tags.sort_by(|a, b| match order {
            TagOrder::Pushed => b.2.cmp(&a.2).then_with(|| natural(&b.0, &a.0)),
            TagOrder::Name => natural(&b.0, &a.0),
        });
        let old = tags.split_off(keep.min(tags.len()));
        let kept: BTreeSet<&str> = tags.iter().map(|(_, d, _)| d.as_str()).collect();
        let mut pruned = Pruned {
            kept: tags.iter().map(|(t, _, _)| t.clone()).collect(),
            ..Pruned::default()
        };
        let mut orphans = BTreeSet::new();
        for (tag, digest, tag_revision) in &old {
            if !kept.contains(digest.as_str()) {
                orphans.insert(digest.clone());
            }
            if dry_run {
                pruned.tags.push(tag.clone());
                continue;
            }
            let key = self.layout.tag(repo, tag);
            let txn = Txn::new()
                .when([unchanged(&key, *tag_revision)])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            if self.meta.txn(txn).await?.succeeded() {
                pruned.tags.push(tag.clone());
            }
        }
        for text in orphans {
            let digest = records::parse_digest(prefix.as_bytes(), &text)?;
            let key = self.layout.manifest(repo, &digest);
            let Some(kv) = self.meta.get(&key).await? else {
                continue;
            };
            if dry_run {
                pruned.manifests.push(digest);
                continue;
            }
            let entry: ManifestEntry = records::decode(kv.key(), kv.value())?;
            // Not if a tag was pushed since the read: it may point at this manifest.
            // (The prune's own deletions leave no key behind to compare.)
            if self
                .remove_manifest(repo, &digest, &entry, kv.mod_revision(), read_at)
                .await?
            {
                pruned.manifests.push(digest);
            }
        }
        Ok(pruned)
    }
}
