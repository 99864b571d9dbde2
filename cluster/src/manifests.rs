//! Manifests, tags, referrers and the listings. A manifest's bytes are a blob of its
//! repository; its entry (`repo/<r>@manifest/<digest>`) is written in one transaction
//! with its tag, its referrer entry and a `ref` key per blob it references, on the
//! condition that the repository links every blob and has every child manifest it names.
//! A collector removes a link only if no `ref` key names it, in a transaction too: so a
//! manifest push and a collection never both succeed on the same blob.

use std::collections::BTreeSet;

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use lain_store::{Algorithm, Digest, ManifestMeta, ManifestRecord, Reference, References};

use crate::blobs::Source;
use crate::error::{Error, Result};
use crate::meta::{exists, unchanged};
use crate::records::{self, ManifestEntry, now_ms};
use crate::{Inner, TXN_ATTEMPTS};

/// Operations a transaction of this store holds at most: under etcd's default limit
/// (`--max-txn-ops`, 128) with room for the few keys a change adds to its references.
pub(crate) const REFERENCES_PER_TXN: usize = 100;

impl Inner {
    pub async fn put_manifest(
        &self,
        repo: &str,
        bytes: Bytes,
        reference: &Reference,
        meta: ManifestMeta,
        references: &References,
    ) -> lain_store::Result<ManifestRecord> {
        let (algorithm, tag) = match reference {
            Reference::Digest(d) => (d.algorithm(), None),
            Reference::Tag(tag) => (Algorithm::Sha256, Some(tag.as_str())),
        };
        let digest = algorithm.digest(&bytes);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(lain_store::Error::DigestMismatch {
                expected: Box::new(expected.clone()),
                computed: Box::new(digest),
            });
        }
        let size = bytes.len() as u64;
        // The bytes first, as a blob of the repository: the entry never names bytes
        // that are not stored.
        self.settle_blob(repo, &digest, size, Source::Bytes(bytes))
            .await?;
        let blobs: BTreeSet<&Digest> = references.blobs.iter().collect();
        let children: BTreeSet<&Digest> = references.manifests.iter().collect();
        let entry = ManifestEntry {
            size,
            media_type: meta.media_type.clone(),
            subject: meta.subject.as_ref().map(ToString::to_string),
            artifact_type: meta.artifact_type.clone(),
            annotations: meta.annotations.clone(),
            blobs: blobs.iter().map(ToString::to_string).collect(),
            children: children.iter().map(ToString::to_string).collect(),
            made: now_ms(),
        };
        // Each reference: the key it needs (the repository's link to a blob, or a child
        // manifest) and the `ref` key that pins it.
        let references: Vec<(String, TxnOp)> = blobs
            .iter()
            .map(|b| self.layout.link(repo, b))
            .chain(children.iter().map(|c| self.layout.manifest(repo, c)))
            .zip(blobs.iter().chain(children.iter()))
            .map(|(needed, r)| {
                let pin = TxnOp::put(
                    self.layout.reference(repo, r, &digest),
                    now_ms().to_string(),
                    None,
                );
                (needed, pin)
            })
            .collect();
        let mut ops = vec![TxnOp::put(
            self.layout.manifest(repo, &digest),
            records::encode(&entry),
            None,
        )];
        if let Some(tag) = tag {
            ops.push(TxnOp::put(
                self.layout.tag(repo, tag),
                digest.to_string(),
                None,
            ));
        }
        if let Some(subject) = &meta.subject {
            ops.push(TxnOp::put(
                self.layout.referrer(repo, subject, &digest),
                "",
                None,
            ));
        }
        let mut conditions = vec![exists(&self.layout.link(repo, &digest))];
        let pinned = if references.len() + ops.len() <= REFERENCES_PER_TXN {
            // One transaction: the references checked and pinned with the entry.
            for (needed, pin) in references {
                conditions.push(exists(&needed));
                ops.push(pin);
            }
            0
        } else {
            // More than etcd takes in one transaction (`--max-txn-ops`, 128 by
            // default): the references are pinned first, in batches each on the
            // condition that what it pins exists. A pinned link cannot be collected, so
            // the entry's own transaction then needs only its bytes' link.
            let mut pinned = 0;
            for batch in references.chunks(REFERENCES_PER_TXN) {
                let txn = Txn::new()
                    .when(
                        batch
                            .iter()
                            .map(|(needed, _)| exists(needed))
                            .collect::<Vec<_>>(),
                    )
                    .and_then(batch.iter().map(|(_, pin)| pin.clone()).collect::<Vec<_>>());
                if !self
                    .meta
                    .txn(txn)
                    .await
                    .map_err(lain_store::Error::from)?
                    .succeeded()
                {
                    self.unpin(repo, &digest, &blobs, &children).await;
                    return Err(self
                        .missing_reference(repo, &digest, &blobs, &children)
                        .await?);
                }
                pinned += batch.len();
            }
            pinned
        };
        let txn = Txn::new().when(conditions).and_then(ops);
        if self
            .meta
            .txn(txn)
            .await
            .map_err(lain_store::Error::from)?
            .succeeded()
        {
            return Ok(ManifestRecord { digest, size, meta });
        }
        if pinned > 0 {
            self.unpin(repo, &digest, &blobs, &children).await;
        }
        Err(self
            .missing_reference(repo, &digest, &blobs, &children)
            .await?)
    }

    /// Removes a manifest's entry, its referrer key and its `ref` keys, with `ops`, on
    /// `conditions`; false if they do not hold. `ref` keys past what one transaction
    /// holds go after the entry, in batches (a collection removes any a crash leaves).
    pub(crate) async fn remove_entry(
        &self,
        repo: &str,
        digest: &Digest,
        entry: &ManifestEntry,
        conditions: Vec<Compare>,
        mut ops: Vec<TxnOp>,
    ) -> Result<bool> {
        let key = self.layout.manifest(repo, digest);
        ops.push(TxnOp::delete(key.as_str(), None));
        if let Some(subject) = &entry.subject {
            let subject = records::parse_digest(key.as_bytes(), subject)?;
            ops.push(TxnOp::delete(
                self.layout.referrer(repo, &subject, digest),
                None,
            ));
        }
        let mut refs = Vec::new();
        for referenced in entry.blobs.iter().chain(&entry.children) {
            let referenced = records::parse_digest(key.as_bytes(), referenced)?;
            refs.push(self.layout.reference(repo, &referenced, digest));
        }
        let later = if ops.len() + refs.len() <= REFERENCES_PER_TXN {
            ops.extend(refs.iter().map(|r| TxnOp::delete(r.as_str(), None)));
            Vec::new()
        } else {
            refs
        };
        if !self
            .meta
            .txn(Txn::new().when(conditions).and_then(ops))
            .await?
            .succeeded()
        {
            return Ok(false);
        }
        for batch in later.chunks(REFERENCES_PER_TXN) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|k| TxnOp::delete(k.as_str(), None))
                .collect();
            self.meta.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(true)
    }

    /// Best effort: the `ref` keys of a manifest whose push failed (a collection
    /// removes any left behind, once older than its grace window).
    async fn unpin(
        &self,
        repo: &str,
        digest: &Digest,
        blobs: &BTreeSet<&Digest>,
        children: &BTreeSet<&Digest>,
    ) {
        let keys: Vec<String> = blobs
            .iter()
            .chain(children.iter())
            .map(|r| self.layout.reference(repo, r, digest))
            .collect();
        for batch in keys.chunks(REFERENCES_PER_TXN) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|k| TxnOp::delete(k.as_str(), None))
                .collect();
            let _ = self.meta.txn(Txn::new().and_then(ops)).await;
        }
    }

    /// Which reference made a manifest's transaction fail.
    async fn missing_reference(
        &self,
        repo: &str,
        digest: &Digest,
        blobs: &BTreeSet<&Digest>,
        children: &BTreeSet<&Digest>,
    ) -> Result<lain_store::Error> {
        let wanted: Vec<(&Digest, &'static str, String)> = children
            .iter()
            .map(|c| (*c, "manifest", self.layout.manifest(repo, c)))
            .chain(
                blobs
                    .iter()
                    .map(|b| (*b, "blob", self.layout.link(repo, b))),
            )
            .chain([(
                digest,
                "manifest's own bytes",
                self.layout.link(repo, digest),
            )])
            .collect();
        let keys: Vec<String> = wanted.iter().map(|(_, _, k)| k.clone()).collect();
        let found = self.meta.get_many(&keys).await?;
        for ((digest, what, _), found) in wanted.into_iter().zip(found) {
            if found.is_none() {
                return Ok(lain_store::Error::ReferenceUnknown {
                    repo: repo.to_owned(),
                    digest: Box::new(digest.clone()),
                    what,
                });
            }
        }
        // Everything is there now: a collection removed something and a push put it
        // back between the transaction and this look.
        Ok(Error::Contended {
            what: "a manifest's push",
        }
        .into())
    }

    async fn resolve(&self, repo: &str, reference: &Reference) -> Result<Option<Digest>> {
        match reference {
            Reference::Digest(d) => Ok(Some(d.clone())),
            Reference::Tag(tag) => {
                let Some(kv) = self.meta.get(&self.layout.tag(repo, tag)).await? else {
                    return Ok(None);
                };
                let text = String::from_utf8_lossy(kv.value()).into_owned();
                Ok(Some(records::parse_digest(kv.key(), &text)?))
            }
        }
    }

    pub async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let Some(digest) = self.resolve(repo, reference).await? else {
            return Ok(None);
        };
        let Some(kv) = self.meta.get(&self.layout.manifest(repo, &digest)).await? else {
            return Ok(None);
        };
        let entry: ManifestEntry = records::decode(kv.key(), kv.value())?;
        Ok(Some(entry.record(kv.key(), digest)?))
    }

    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(ManifestRecord, Bytes)>> {
        let Some(record) = self.manifest(repo, reference).await? else {
            return Ok(None);
        };
        let bytes = self
            .bucket
            .read_all(&self.layout.blob_object(&record.digest))
            .await?;
        Ok(Some((record, bytes)))
    }

    pub async fn untag(&self, repo: &str, tag: &str) -> Result<bool> {
        let key = self.layout.tag(repo, tag);
        let txn = Txn::new()
            .when([exists(&key)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        Ok(self.meta.txn(txn).await?.succeeded())
    }

    /// Removes the manifest, the tags that point at it, its `ref` keys and its referrer
    /// entry; its bytes stay linked until a collection finds them unreferenced.
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let key = self.layout.manifest(repo, digest);
        let text = digest.to_string();
        for _ in 0..TXN_ATTEMPTS {
            let Some(kv) = self.meta.get(&key).await? else {
                return Ok(false);
            };
            let entry: ManifestEntry = records::decode(kv.key(), kv.value())?;
            let tags = self.meta.scan_all(&self.layout.tags(repo), false).await?;
            let mut conditions = vec![unchanged(&key, kv.mod_revision())];
            let mut ops = Vec::new();
            for tag in tags.iter().filter(|t| t.value() == text.as_bytes()) {
                conditions.push(Compare::value(tag.key(), CompareOp::Equal, text.as_bytes()));
                ops.push(TxnOp::delete(tag.key(), None));
            }
            if self
                .remove_entry(repo, digest, &entry, conditions, ops)
                .await?
            {
                return Ok(true);
            }
        }
        Err(Error::Contended {
            what: "a manifest's delete",
        })
    }

    pub async fn repository_exists(&self, repo: &str) -> Result<bool> {
        Ok(self
            .meta
            .get(&self.layout.repository(repo))
            .await?
            .is_some())
    }

    /// Names under `prefix`, after `after`, at most `limit`.
    async fn names(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let after = after.map(|a| format!("{prefix}{a}"));
        let (kvs, _) = self
            .meta
            .scan(prefix, after.as_deref(), limit, true)
            .await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| kv.key().strip_prefix(prefix.as_bytes()))
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    pub async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.names(&self.layout.tags(repo), after, limit).await
    }

    pub async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.names(&self.layout.repositories(), after, limit).await
    }

    pub async fn referrers_page(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, Option<Digest>)> {
        let prefix = self.layout.referrers(repo, subject);
        let after = after.map(ToString::to_string);
        let names = self.names(&prefix, after.as_deref(), limit).await?;
        let mut digests = Vec::with_capacity(names.len());
        for name in &names {
            digests.push(records::parse_digest(prefix.as_bytes(), name)?);
        }
        let keys: Vec<String> = digests
            .iter()
            .map(|d| self.layout.manifest(repo, d))
            .collect();
        let mut records = Vec::new();
        for (digest, kv) in digests.iter().zip(self.meta.get_many(&keys).await?) {
            // A referrer entry outlives its manifest by nothing; none is skipped.
            let Some(kv) = kv else { continue };
            let entry: ManifestEntry = records::decode(kv.key(), kv.value())?;
            if artifact_type.is_none_or(|t| entry.artifact_type.as_deref() == Some(t)) {
                records.push(entry.record(kv.key(), digest.clone())?);
            }
        }
        let more = (names.len() >= limit)
            .then(|| digests.last().cloned())
            .flatten();
        Ok((records, more))
    }
}
