//! Repository metadata: which blobs a repository may read, its manifests, tags and
//! referrers, and the catalog of repositories. Every write is a list of [`Change`]s
//! handed to the group commit, which logs them in a pack and indexes them atomically;
//! changes to one repository's manifests and tags are serialized so that a delete never
//! races a tag into a dangling state.

use std::sync::RwLock;
use std::time::SystemTime;

use bytes::Bytes;

use crate::change::Change;
use crate::digest::{Algorithm, Digest};
use crate::engine::{BlobReader, Core, Engine};
use crate::error::{Error, Result};
use crate::group::GroupEntry;
use crate::index::keys::check_name;
use crate::index::values::LinkState;
use crate::index::{Family, keys, values};
use crate::sync::{read_lock, write_lock};
use crate::types::{BlobInfo, ManifestMeta, ManifestRecord, Reference, References};

impl Core {
    /// The lock that orders `repo`'s metadata changes. Writes that only add entries
    /// (links, manifests, tags) share it, so concurrent pushes to one repository share
    /// group commits; removals (untag, manifest delete, a collection's sweep) read what
    /// points at what and take it alone, so no push can slip a reference in between
    /// their read and their write.
    pub(crate) fn repo_lock(&self, repo: &str) -> &RwLock<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        repo.hash(&mut h);
        let locks = &self.repo_locks;
        &locks[(h.finish() as usize) % locks.len()]
    }
}

impl Engine {
    // ---- blobs in repositories -----------------------------------------------------

    /// The blob, if it is stored and `repo` may read it.
    pub fn repo_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        let linked = self
            .core
            .index
            .contains(Family::Links, &keys::repo_digest(repo, digest))?;
        if !linked {
            return Ok(None);
        }
        self.blob_info(digest)
    }

    /// The blob's bytes, if it is stored and `repo` may read it: one lookup fewer than
    /// [`Engine::repo_blob`] followed by [`Engine::read_blob`], for the pull path.
    /// Nothing is read yet: [`BlobReader::range`] checks the part the caller wants.
    pub fn read_repo_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobReader>> {
        let linked = self
            .core
            .index
            .contains(Family::Links, &keys::repo_digest(repo, digest))?;
        if !linked {
            return Ok(None);
        }
        Ok(self.read_current(digest)?.map(|(_, reader)| reader))
    }

    /// Lets `repo` read an already stored blob (a cross-repository mount moves no
    /// bytes). Returns `None`, changing nothing, when the blob is not stored.
    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        check_name(repo, "repository name")?;
        // As a commit of the same digest would: a compaction deciding whether the
        // blob's bytes are still needed waits, or sees the link.
        let _one_commit_per_digest = self.core.inflight.acquire(digest);
        let _repo = read_lock(self.core.repo_lock(repo));
        let Some(info) = self.blob_info(digest)? else {
            return Ok(None);
        };
        self.core.collection.note(digest);
        self.log(vec![Change::Link {
            repo: repo.to_owned(),
            digest: digest.clone(),
            state: LinkState::now(),
        }])?;
        Ok(Some(info))
    }

    /// Removes `repo`'s link to a blob; returns whether there was one. The bytes stay
    /// until garbage collection finds no other reference.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        check_name(repo, "repository name")?;
        let key = keys::repo_digest(repo, digest);
        if !self.core.index.contains(Family::Links, &key)? {
            return Ok(false);
        }
        self.log(vec![Change::Unlink {
            repo: repo.to_owned(),
            digest: digest.clone(),
        }])?;
        Ok(true)
    }

    // ---- manifests and tags --------------------------------------------------------

    /// Stores a manifest pushed under `reference`: its bytes as a blob, its metadata,
    /// its referrer entry when it has a subject, and the tag when `reference` is one,
    /// in one atomic durable write. Pushed by digest, the bytes must hash to it
    /// ([`Error::DigestMismatch`] otherwise); pushed by tag, they are hashed with sha256.
    /// The bytes are hashed once, here.
    ///
    /// `references` are what the manifest names (the caller parses it): each blob must
    /// be linked to `repo` and each child manifest stored there, checked under the
    /// repository's lock, so a collection's sweep either keeps them or this push gets
    /// [`Error::ReferenceUnknown`], never a manifest with a missing reference. Links
    /// referenced for the first time are claimed in the same write: garbage collection
    /// spares unclaimed young links as uploads whose manifest is still to come, and a
    /// claimed link only while a manifest references it.
    pub fn put_manifest(
        &self,
        repo: &str,
        bytes: Bytes,
        reference: &Reference,
        meta: ManifestMeta,
        references: &References,
    ) -> Result<ManifestRecord> {
        check_name(repo, "repository name")?;
        let (algorithm, expected, tag) = match reference {
            Reference::Digest(d) => (d.algorithm(), Some(d), None),
            Reference::Tag(t) => {
                check_name(t, "tag")?;
                (Algorithm::Sha256, None, Some(t.as_str()))
            }
        };
        let pushed = SystemTime::now();
        let changes = |digest: &Digest, size: u64| -> Result<Vec<Change>> {
            let mut changes = self.claims(repo, references)?;
            changes.push(Change::Manifest {
                repo: repo.to_owned(),
                digest: digest.clone(),
                size,
                meta: meta.clone(),
            });
            if let Some(tag) = tag {
                changes.push(Change::Tag {
                    repo: repo.to_owned(),
                    tag: tag.to_owned(),
                    digest: digest.clone(),
                    pushed,
                });
            }
            Ok(changes)
        };
        let stored = self
            .core
            .store(repo, bytes, algorithm, expected, &changes)?;
        Ok(ManifestRecord {
            digest: stored.digest,
            size: stored.size,
            meta,
        })
    }

    /// Checks that `repo` has everything `references` names, and returns the claims
    /// of the links referenced for the first time. The caller holds the repository's
    /// lock (shared).
    fn claims(&self, repo: &str, references: &References) -> Result<Vec<Change>> {
        let index = &self.core.index;
        for child in &references.manifests {
            if !index.contains(Family::Manifests, &keys::repo_digest(repo, child))? {
                return Err(Error::ReferenceUnknown {
                    repo: repo.to_owned(),
                    digest: Box::new(child.clone()),
                    what: "manifest",
                });
            }
        }
        let linked: Vec<(&Digest, &'static str)> = references
            .blobs
            .iter()
            .map(|d| (d, "blob"))
            .chain(references.manifests.iter().map(|d| (d, "manifest")))
            .collect();
        let keys: Vec<Vec<u8>> = linked
            .iter()
            .map(|(d, _)| keys::repo_digest(repo, d))
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut claims = Vec::new();
        for ((digest, what), value) in linked
            .into_iter()
            .zip(index.get_many(Family::Links, &refs)?)
        {
            let Some(value) = value else {
                return Err(Error::ReferenceUnknown {
                    repo: repo.to_owned(),
                    digest: Box::new(digest.clone()),
                    what,
                });
            };
            let (state, _) = values::decode_link(&value)?;
            let already = claims
                .iter()
                .any(|c| matches!(c, Change::Link { digest: d, .. } if d == digest));
            if !state.claimed && !already {
                claims.push(Change::Link {
                    repo: repo.to_owned(),
                    digest: digest.clone(),
                    state: LinkState {
                        claimed: true,
                        ..state
                    },
                });
            }
        }
        Ok(claims)
    }

    /// The manifest `reference` names in `repo`, if any.
    pub fn manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestRecord>> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => match self.resolve_tag(repo, tag)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let Some(value) = self
            .core
            .index
            .get(Family::Manifests, &keys::repo_digest(repo, &digest))?
        else {
            return Ok(None);
        };
        let (size, meta) = values::decode_manifest(&value, Family::Manifests)?;
        Ok(Some(ManifestRecord { digest, size, meta }))
    }

    /// The manifest and its bytes.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(ManifestRecord, Bytes)>> {
        let Some(record) = self.manifest(repo, reference)? else {
            return Ok(None);
        };
        let bytes = self.read_blob(&record.digest, None)?.into_bytes()?;
        Ok(Some((record, bytes)))
    }

    /// The digest a tag points at.
    pub fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let Some(value) = self.core.index.get(Family::Tags, &keys::tag(repo, tag))? else {
            return Ok(None);
        };
        Ok(Some(values::decode_tag(&value)?.0))
    }

    /// Points `tag` at a manifest already stored in `repo`.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        check_name(repo, "repository name")?;
        check_name(tag, "tag")?;
        let _repo = read_lock(self.core.repo_lock(repo));
        let manifest = keys::repo_digest(repo, digest);
        if !self.core.index.contains(Family::Manifests, &manifest)? {
            return Err(Error::ManifestUnknown(digest.to_string()));
        }
        self.log(vec![Change::Tag {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            digest: digest.clone(),
            pushed: SystemTime::now(),
        }])
    }

    /// Removes a tag (not the manifest); returns whether it existed.
    pub fn untag(&self, repo: &str, tag: &str) -> Result<bool> {
        check_name(repo, "repository name")?;
        check_name(tag, "tag")?;
        let _repo = write_lock(self.core.repo_lock(repo));
        let key = keys::tag(repo, tag);
        if !self.core.index.contains(Family::Tags, &key)? {
            return Ok(false);
        }
        self.log(vec![Change::Untag {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
        }])?;
        Ok(true)
    }

    /// Removes a manifest from `repo` with every tag pointing at it and its referrer
    /// entry; returns whether it existed. Referrers *of* it stay, as the OCI spec asks.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        check_name(repo, "repository name")?;
        let _repo = write_lock(self.core.repo_lock(repo));
        let key = keys::repo_digest(repo, digest);
        let Some(value) = self.core.index.get(Family::Manifests, &key)? else {
            return Ok(false);
        };
        let (_, meta) = values::decode_manifest(&value, Family::Manifests)?;
        let prefix = keys::repo_prefix(repo);
        let tags = self
            .core
            .index
            .scan(Family::Tags, &prefix, None, usize::MAX)?;
        let mut changes = Vec::new();
        for (tag_key, tag_value) in tags {
            if values::decode_tag(&tag_value)?.0 == *digest {
                changes.push(Change::Untag {
                    repo: repo.to_owned(),
                    tag: utf8(&tag_key[prefix.len()..], Family::Tags)?,
                });
            }
        }
        changes.push(Change::ManifestDelete {
            repo: repo.to_owned(),
            digest: digest.clone(),
            subject: meta.subject,
        });
        self.log(changes)?;
        Ok(true)
    }

    /// Makes `changes` durable and visible: logged in a pack, then indexed.
    fn log(&self, changes: Vec<Change>) -> Result<()> {
        self.core.group_commit(GroupEntry {
            changes,
            ..GroupEntry::default()
        })
    }

    /// Every manifest of `repo`, in digest order.
    pub fn list_manifests(&self, repo: &str) -> Result<Vec<ManifestRecord>> {
        let prefix = keys::repo_prefix(repo);
        let entries = self
            .core
            .index
            .scan(Family::Manifests, &prefix, None, usize::MAX)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let (digest, _) =
                Digest::from_key(&key[prefix.len()..]).ok_or(Error::CorruptIndex {
                    family: Family::Manifests.name(),
                })?;
            let (size, meta) = values::decode_manifest(&value, Family::Manifests)?;
            out.push(ManifestRecord { digest, size, meta });
        }
        Ok(out)
    }

    /// Up to `limit` tags of `repo` in lexical order, starting after `after`.
    pub fn list_tags(&self, repo: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let prefix = keys::repo_prefix(repo);
        let entries =
            self.core
                .index
                .scan(Family::Tags, &prefix, after.map(str::as_bytes), limit)?;
        entries
            .iter()
            .map(|(key, _)| utf8(&key[prefix.len()..], Family::Tags))
            .collect()
    }

    // ---- catalog -------------------------------------------------------------------

    /// Up to `limit` repository names in lexical order, starting after `after`.
    pub fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let entries = self
            .core
            .index
            .scan(Family::Repos, &[], after.map(str::as_bytes), limit)?;
        entries
            .iter()
            .map(|(key, _)| utf8(key, Family::Repos))
            .collect()
    }

    /// Whether anything was ever pushed to or mounted into `repo`.
    pub fn repository_exists(&self, repo: &str) -> Result<bool> {
        self.core.index.contains(Family::Repos, &keys::repo(repo))
    }

    // ---- referrers -----------------------------------------------------------------

    /// Manifests in `repo` whose subject is `subject`, in digest order, optionally only
    /// those of one artifact type.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>> {
        Ok(self
            .referrers_page(repo, subject, artifact_type, None, usize::MAX)?
            .0)
    }

    /// [`Engine::referrers`] a page at a time: in digest order, of the referrers after
    /// `after`, the first `limit` (those of `artifact_type` among them). The second
    /// value is the last referrer read when the page is full (more may follow).
    pub fn referrers_page(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, Option<Digest>)> {
        let prefix = keys::referrers_of(repo, subject);
        let after = after.map(Digest::to_key);
        let entries = self
            .core
            .index
            .scan(Family::Referrers, &prefix, after.as_deref(), limit)?;
        let full = entries.len() >= limit;
        let mut out = Vec::new();
        let mut last = None;
        for (key, value) in entries {
            let corrupt = || Error::CorruptIndex {
                family: Family::Referrers.name(),
            };
            let (digest, _) = Digest::from_key(&key[prefix.len()..]).ok_or_else(corrupt)?;
            let (size, meta) = values::decode_manifest(&value, Family::Referrers)?;
            last = Some(digest.clone());
            if artifact_type.is_none_or(|t| meta.artifact_type.as_deref() == Some(t)) {
                out.push(ManifestRecord { digest, size, meta });
            }
        }
        Ok((out, last.filter(|_| full)))
    }
}

fn utf8(bytes: &[u8], family: Family) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::CorruptIndex {
        family: family.name(),
    })
}
