//! Garbage collection across instances, while they serve. One collector at a time holds
//! etcd's lock `collector` (under its instance's lease: a killed collector's lock ends
//! with it). Every removal is a transaction conditional on what made it garbage, so a
//! push racing the collection either keeps what it needs or is told it is unknown:
//!
//! 1. With `delete_untagged`, a manifest no tag reaches (directly, as an index's child,
//!    or as a referrer of a kept subject) is removed, if the repository's tags have not
//!    changed since they were read.
//! 2. A link older than the grace window that no manifest of its repository references
//!    (no `ref` key) and that is not a manifest's own bytes is removed.
//! 3. A live blob older than the grace window that no repository links goes `deleting`
//!    (if still unlinked), then its object, then its record (see `blobs.rs`).
//! 4. Objects no record names (a push that died between its object and its record) and
//!    staged upload objects whose session is gone, older than the grace window, too.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Compare, CompareOp, LockOptions, Txn, TxnOp};
use lain_store::Digest;

use crate::error::{Error, Result};
use crate::keys;
use crate::meta::{absent, none_under, unchanged};
use crate::records::{self, BlobRecord, BlobState, ManifestEntry, now_ms};
use crate::{ClusterStore, Inner};

#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Keep only manifests that tags reach, as distribution's `--delete-untagged`.
    pub delete_untagged: bool,
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Links, blobs and objects younger than this are kept: a push in progress.
    pub grace: Duration,
    /// How long to wait for another collection to end.
    pub wait: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    pub dry_run: bool,
    pub repositories: u64,
    pub manifests_removed: u64,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub blob_bytes_removed: u64,
    pub objects_removed: u64,
    /// Removals a concurrent push prevented (the thing was in use after all).
    pub kept_by_races: u64,
    /// One line per removal, in order.
    pub removals: Vec<String>,
    pub elapsed: Duration,
}

impl ClusterStore {
    pub async fn collect(&self, options: &CollectOptions) -> Result<CollectReport> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut client = inner.meta.client();
        let lock = LockOptions::new().with_lease(inner.meta.lease());
        let held = tokio::time::timeout(
            options.wait,
            client.lock(inner.layout.collector(), Some(lock)),
        )
        .await
        .map_err(|_| Error::Contended {
            what: "the collection lock (another collection is running)",
        })??;
        let lock_key = held.key().to_vec();
        let result = inner.collect(options).await;
        if let Err(e) = client.unlock(lock_key).await {
            tracing::warn!(error = %e, "the collection lock stays until this instance's lease ends");
        }
        let mut report = result?;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl Inner {
    async fn collect(&self, options: &CollectOptions) -> Result<CollectReport> {
        let mut report = CollectReport {
            dry_run: options.dry_run,
            ..CollectReport::default()
        };
        let cutoff = now_ms().saturating_sub(options.grace.as_millis() as u64);
        let repositories = self
            .meta
            .scan_all(&self.layout.repositories(), true)
            .await?;
        for kv in &repositories {
            let Some(repo) = kv.key().strip_prefix(self.layout.repositories().as_bytes()) else {
                continue;
            };
            let repo = String::from_utf8_lossy(repo).into_owned();
            report.repositories += 1;
            if options.delete_untagged {
                self.remove_untagged(&repo, cutoff, options, &mut report)
                    .await?;
            }
            self.remove_links(&repo, cutoff, options, &mut report)
                .await?;
        }
        self.remove_blobs(cutoff, options, &mut report).await?;
        self.remove_orphans(options, &mut report).await?;
        Ok(report)
    }

    async fn remove_untagged(
        &self,
        repo: &str,
        cutoff: u64,
        options: &CollectOptions,
        report: &mut CollectReport,
    ) -> Result<()> {
        let tags_prefix = self.layout.tags(repo);
        let tags = self.meta.scan_all(&tags_prefix, false).await?;
        // The revision the tags were read at: none may have changed when a manifest goes.
        let read_at = tags.iter().map(|t| t.mod_revision()).max().unwrap_or(0);
        let manifests_prefix = self.layout.manifests(repo);
        let mut entries: HashMap<String, (ManifestEntry, i64)> = HashMap::new();
        for kv in self.meta.scan_all(&manifests_prefix, false).await? {
            let Some(digest) = kv.key().strip_prefix(manifests_prefix.as_bytes()) else {
                continue;
            };
            let entry: ManifestEntry = records::decode(kv.key(), kv.value())?;
            entries.insert(
                String::from_utf8_lossy(digest).into_owned(),
                (entry, kv.mod_revision()),
            );
        }
        // Reached: the tagged, their children, and referrers of what is reached; and
        // manifests younger than the grace window (an index's children are pushed by
        // digest before the index that names them).
        let mut kept: BTreeSet<String> = tags
            .iter()
            .map(|t| String::from_utf8_lossy(t.value()).into_owned())
            .collect();
        kept.extend(
            entries
                .iter()
                .filter(|(_, (entry, _))| entry.made > cutoff)
                .map(|(digest, _)| digest.clone()),
        );
        loop {
            let before = kept.len();
            for (digest, (entry, _)) in &entries {
                if kept.contains(digest) {
                    kept.extend(entry.children.iter().cloned());
                }
                if entry.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                    kept.insert(digest.clone());
                }
            }
            if kept.len() == before {
                break;
            }
        }
        for (text, (entry, revision)) in &entries {
            if kept.contains(text) {
                continue;
            }
            let digest = records::parse_digest(manifests_prefix.as_bytes(), text)?;
            report.removals.push(format!("manifest {repo}@{text}"));
            if options.dry_run {
                report.manifests_removed += 1;
                continue;
            }
            if self
                .remove_manifest(repo, &digest, entry, *revision, read_at)
                .await?
            {
                report.manifests_removed += 1;
            } else {
                report.kept_by_races += 1;
            }
        }
        Ok(())
    }

    /// Removes a manifest entry (as read at `revision`) with its `ref` and referrer
    /// keys, if no tag of the repository has changed since `tags_read_at` (so none
    /// points at it now that did not then): false if one has.
    pub(crate) async fn remove_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        entry: &ManifestEntry,
        revision: i64,
        tags_read_at: i64,
    ) -> Result<bool> {
        let key = self.layout.manifest(repo, digest);
        let tags_prefix = self.layout.tags(repo);
        let conditions = vec![
            unchanged(&key, revision),
            Compare::mod_revision(tags_prefix.as_str(), CompareOp::Less, tags_read_at + 1)
                .with_range(keys::prefix_end(&tags_prefix)),
        ];
        self.remove_entry(repo, digest, entry, conditions, Vec::new())
            .await
    }

    /// The `ref` keys under `references` whose manifest exists; those whose manifest
    /// does not (a push that died between pinning its references and writing its
    /// entry) are removed once older than the grace window.
    async fn live_references(
        &self,
        repo: &str,
        references: &str,
        manifests: &BTreeSet<Vec<u8>>,
        cutoff: u64,
        options: &CollectOptions,
    ) -> Result<usize> {
        let mut live = 0;
        for kv in self.meta.scan_all(references, false).await? {
            let Some(manifest) = kv.key().strip_prefix(references.as_bytes()) else {
                continue;
            };
            let made: u64 = String::from_utf8_lossy(kv.value()).parse().unwrap_or(0);
            if manifests.contains(manifest) || made > cutoff || options.dry_run {
                live += 1;
                continue;
            }
            let text = String::from_utf8_lossy(manifest).into_owned();
            let entry = self
                .layout
                .manifest(repo, &records::parse_digest(kv.key(), &text)?);
            let stale = Txn::new()
                .when([
                    absent(&entry),
                    unchanged(&String::from_utf8_lossy(kv.key()), kv.mod_revision()),
                ])
                .and_then([TxnOp::delete(kv.key(), None)]);
            if !self.meta.txn(stale).await?.succeeded() {
                live += 1;
            }
        }
        Ok(live)
    }

    async fn remove_links(
        &self,
        repo: &str,
        cutoff: u64,
        options: &CollectOptions,
        report: &mut CollectReport,
    ) -> Result<()> {
        let prefix = self.layout.links(repo);
        let manifests_prefix = self.layout.manifests(repo);
        let manifests: BTreeSet<Vec<u8>> = self
            .meta
            .scan_all(&manifests_prefix, true)
            .await?
            .into_iter()
            .map(|kv| kv.key()[manifests_prefix.len()..].to_vec())
            .collect();
        for kv in self.meta.scan_all(&prefix, false).await? {
            let Some(text) = kv.key().strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let text = String::from_utf8_lossy(text).into_owned();
            let made: u64 = String::from_utf8_lossy(kv.value()).parse().unwrap_or(0);
            if made > cutoff {
                continue;
            }
            let digest = records::parse_digest(kv.key(), &text)?;
            let references = self.layout.references_to(repo, &digest);
            let manifest = self.layout.manifest(repo, &digest);
            if manifests.contains(text.as_bytes())
                || self
                    .live_references(repo, &references, &manifests, cutoff, options)
                    .await?
                    > 0
            {
                continue;
            }
            report.removals.push(format!("link {repo} -> {text}"));
            if options.dry_run {
                report.links_removed += 1;
                continue;
            }
            let link = self.layout.link(repo, &digest);
            let txn = Txn::new()
                .when([
                    unchanged(&link, kv.mod_revision()),
                    none_under(&references),
                    absent(&manifest),
                ])
                .and_then([
                    TxnOp::delete(link.as_str(), None),
                    TxnOp::delete(self.layout.linked_by(&digest, repo), None),
                ]);
            if self.meta.txn(txn).await?.succeeded() {
                report.links_removed += 1;
            } else {
                report.kept_by_races += 1;
            }
        }
        Ok(())
    }

    async fn remove_blobs(
        &self,
        cutoff: u64,
        options: &CollectOptions,
        report: &mut CollectReport,
    ) -> Result<()> {
        let prefix = self.layout.blobs();
        for kv in self.meta.scan_all(&prefix, false).await? {
            let Some(text) = kv.key().strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let digest = records::parse_digest(kv.key(), &String::from_utf8_lossy(text))?;
            let record: BlobRecord = records::decode(kv.key(), kv.value())?;
            let linked = self.layout.linked(&digest);
            // A deleting record is a collection that died half-way: finished here.
            if record.state == BlobState::Live
                && (record.made > cutoff || self.meta.count(&linked).await? > 0)
            {
                continue;
            }
            report
                .removals
                .push(format!("blob {digest} ({} bytes)", record.size));
            if options.dry_run {
                report.blobs_removed += 1;
                report.blob_bytes_removed += record.size;
                continue;
            }
            let size = record.size;
            if self
                .remove_blob(&digest, kv.mod_revision(), record, Some(&linked))
                .await?
            {
                report.blobs_removed += 1;
                report.blob_bytes_removed += size;
            } else {
                report.kept_by_races += 1;
            }
        }
        Ok(())
    }

    /// Takes a blob through `deleting` to gone: the record (at `revision`; absent when
    /// `revision` is 0) goes `deleting` if nothing links it (`linked`), then the object
    /// goes, then the record. False if a link came first.
    async fn remove_blob(
        &self,
        digest: &Digest,
        revision: i64,
        record: BlobRecord,
        linked: Option<&str>,
    ) -> Result<bool> {
        let key = self.layout.blob(digest);
        let deleting = BlobRecord {
            state: BlobState::Deleting,
            ..record
        };
        let mut conditions = vec![if revision == 0 {
            absent(&key)
        } else {
            unchanged(&key, revision)
        }];
        if let Some(linked) = linked {
            conditions.push(none_under(linked));
        }
        let marked = Txn::new().when(conditions).and_then([TxnOp::put(
            key.as_str(),
            records::encode(&deleting),
            None,
        )]);
        let response = self.meta.txn(marked).await?;
        if !response.succeeded() {
            return Ok(false);
        }
        let marked_at = response.header().map_or(0, |h| h.revision());
        self.bucket.delete(&self.layout.blob_object(digest)).await?;
        let gone = Txn::new()
            .when([unchanged(&key, marked_at)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.meta.txn(gone).await?;
        Ok(true)
    }

    async fn remove_orphans(
        &self,
        options: &CollectOptions,
        report: &mut CollectReport,
    ) -> Result<()> {
        let old = |when: SystemTime| when.elapsed().is_ok_and(|age| age > options.grace);
        let blobs_root = self
            .layout
            .blob_object(&lain_store::Algorithm::Sha256.digest(b""));
        let blobs_root = object_store::path::Path::from_iter(
            blobs_root.parts().take(blobs_root.parts().count() - 2),
        );
        for (path, size, when) in self.bucket.list(&blobs_root).await? {
            let mut parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
            let (Some(hex), Some(algorithm)) = (parts.pop(), parts.pop()) else {
                continue;
            };
            let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                continue;
            };
            if !old(when) || self.meta.get(&self.layout.blob(&digest)).await?.is_some() {
                continue;
            }
            report.removals.push(format!("object {path} (no record)"));
            if options.dry_run {
                report.objects_removed += 1;
                continue;
            }
            let record = BlobRecord {
                size,
                state: BlobState::Deleting,
                made: now_ms(),
            };
            if self.remove_blob(&digest, 0, record, None).await? {
                report.objects_removed += 1;
            }
        }
        let sessions = self.layout.sessions();
        for (path, _, when) in self.bucket.list(&self.layout.uploads_objects()).await? {
            let id = path.parts().rev().nth(1).map(|p| p.as_ref().to_owned());
            let Some(id) = id else { continue };
            if !old(when) || self.meta.get(&format!("{sessions}{id}")).await?.is_some() {
                continue;
            }
            report.removals.push(format!("object {path} (no session)"));
            if !options.dry_run {
                self.bucket.delete(&path).await?;
            }
            report.objects_removed += 1;
        }
        Ok(())
    }
}
