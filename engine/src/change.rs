//! Changes to repository metadata, the one vocabulary that both the live index and the
//! metadata log speak. Every write of links, manifests, tags or referrers is a list of
//! [`Change`]s: the group commit writes them to a pack as a metadata record (the log,
//! the source of truth) and turns them into index entries with [`Change::stage`]; a
//! rebuild reads the records back and stages the very same entries. One function
//! decides what a change does to the index, so the two can never disagree.
//!
//! The body encoding is FORMAT.md's "Metadata record body".

use std::time::SystemTime;

use crate::codec::{Reader, Writer};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::values::{LinkState, Source};
use crate::index::{Batch, Family, keys, values};
use crate::types::ManifestMeta;

/// An index entry: its family and key.
pub(crate) type EntryKey = (Family, Vec<u8>);

/// One change, as the registry was told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// `repo` may read blob `digest` (a push or a mount); lists `repo` in the catalog.
    /// `state` says since when, and whether a manifest has referenced it (a claim
    /// re-states the link with `claimed` set).
    Link {
        repo: String,
        digest: Digest,
        state: LinkState,
    },
    /// `repo` may no longer read blob `digest`.
    Unlink { repo: String, digest: Digest },
    /// Manifest `digest` is stored in `repo`; with a subject, it is also a referrer.
    Manifest {
        repo: String,
        digest: Digest,
        size: u64,
        meta: ManifestMeta,
    },
    /// Manifest `digest` is gone from `repo`, with its link and, when it had a subject,
    /// its referrer entry. Tags that pointed at it are removed by `Untag`s before it.
    ManifestDelete {
        repo: String,
        digest: Digest,
        subject: Option<Digest>,
    },
    /// `tag` of `repo` points at manifest `digest` since `pushed`.
    Tag {
        repo: String,
        tag: String,
        digest: Digest,
        pushed: SystemTime,
    },
    /// `tag` of `repo` is gone.
    Untag { repo: String, tag: String },
    /// `repo` is listed in the catalog. `Link` implies it; a snapshot of the live
    /// state (an upgrade, a compaction) states it for repositories whose links are
    /// all gone, which the catalog still lists.
    Repository { repo: String },
}

// Kind codes: part of the on-disk format. Kind 1 (a link without its time) is still
// read, as a link of unknown age; writers use kind 8.
const LINK_UNTIMED: u8 = 1;
const UNLINK: u8 = 2;
const MANIFEST: u8 = 3;
const MANIFEST_DELETE: u8 = 4;
const TAG: u8 = 5;
const UNTAG: u8 = 6;
const REPOSITORY: u8 = 7;
const LINK: u8 = 8;

impl Change {
    /// Adds this change's index entries to `batch`; `source` is where the change itself
    /// is logged, which the entry it sets records (see [`Change::keys`]).
    pub fn stage(&self, batch: &mut Batch, source: Source) {
        let source = Some(source);
        match self {
            Change::Link {
                repo,
                digest,
                state,
            } => {
                let value = values::encode_link(*state, source);
                batch.put(Family::Links, &keys::repo_digest(repo, digest), &value);
                batch.put(Family::Repos, &keys::repo(repo), &values::marker());
            }
            Change::Unlink { repo, digest } => {
                batch.delete(Family::Links, &keys::repo_digest(repo, digest));
            }
            Change::Manifest {
                repo,
                digest,
                size,
                meta,
            } => {
                let value = values::encode_manifest(*size, meta, source);
                batch.put(Family::Manifests, &keys::repo_digest(repo, digest), &value);
                if let Some(subject) = &meta.subject {
                    let key = keys::referrer(repo, subject, digest);
                    let value = values::encode_manifest(*size, meta, None);
                    batch.put(Family::Referrers, &key, &value);
                }
            }
            Change::ManifestDelete {
                repo,
                digest,
                subject,
            } => {
                let key = keys::repo_digest(repo, digest);
                batch.delete(Family::Manifests, &key);
                batch.delete(Family::Links, &key);
                if let Some(subject) = subject {
                    batch.delete(Family::Referrers, &keys::referrer(repo, subject, digest));
                }
            }
            Change::Tag {
                repo,
                tag,
                digest,
                pushed,
            } => {
                let value = values::encode_tag(digest, *pushed, source);
                batch.put(Family::Tags, &keys::tag(repo, tag), &value);
            }
            Change::Untag { repo, tag } => batch.delete(Family::Tags, &keys::tag(repo, tag)),
            Change::Repository { repo } => {
                batch.put(Family::Repos, &keys::repo(repo), &values::marker());
            }
        }
    }

    /// The entries whose source this change replaces, in the families that record
    /// sources: the first is the one it sets (its bytes stay needed while that entry
    /// does), if it sets one; the others it removes. A change that sets none (a
    /// deletion, a catalog entry) is needed by no entry once written.
    pub fn keys(&self) -> (Option<EntryKey>, Vec<EntryKey>) {
        match self {
            Change::Link { repo, digest, .. } => (
                Some((Family::Links, keys::repo_digest(repo, digest))),
                vec![],
            ),
            Change::Unlink { repo, digest } => {
                (None, vec![(Family::Links, keys::repo_digest(repo, digest))])
            }
            Change::Manifest { repo, digest, .. } => (
                Some((Family::Manifests, keys::repo_digest(repo, digest))),
                vec![],
            ),
            Change::ManifestDelete { repo, digest, .. } => {
                let key = keys::repo_digest(repo, digest);
                (
                    None,
                    vec![(Family::Manifests, key.clone()), (Family::Links, key)],
                )
            }
            Change::Tag { repo, tag, .. } => (Some((Family::Tags, keys::tag(repo, tag))), vec![]),
            Change::Untag { repo, tag } => (None, vec![(Family::Tags, keys::tag(repo, tag))]),
            Change::Repository { .. } => (None, vec![]),
        }
    }

    /// The change that sets an index entry as it is now: how a snapshot of the live
    /// state (the format-1 upgrade, compaction) re-states it. `None` for families that
    /// no change sets directly (referrers follow their manifest; blobs are records).
    pub fn restating(family: Family, key: &[u8], value: &[u8]) -> Result<Option<Change>> {
        let corrupt = || Error::CorruptIndex {
            family: family.name(),
        };
        Ok(Some(match family {
            Family::Repos => Change::Repository {
                repo: String::from_utf8(key.to_vec()).map_err(|_| corrupt())?,
            },
            Family::Links => {
                let (repo, digest) = keys::parse_repo_digest(key).ok_or_else(corrupt)?;
                let (state, _) = values::decode_link(value)?;
                Change::Link {
                    repo,
                    digest,
                    state,
                }
            }
            Family::Manifests => {
                let (repo, digest) = keys::parse_repo_digest(key).ok_or_else(corrupt)?;
                let (size, meta) = values::decode_manifest(value, family)?;
                Change::Manifest {
                    repo,
                    digest,
                    size,
                    meta,
                }
            }
            Family::Tags => {
                let (repo, tag) = keys::parse_tag(key).ok_or_else(corrupt)?;
                let (digest, pushed) = values::decode_tag(value)?;
                Change::Tag {
                    repo,
                    tag,
                    digest,
                    pushed,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The key this change sets or removes in the family that records sources (or in
    /// `repos`, for a catalog entry): what identifies "the newest change of its key"
    /// when compaction carries the log forward.
    pub fn key(&self) -> EntryKey {
        match self {
            Change::Link { repo, digest, .. }
            | Change::Unlink { repo, digest }
            | Change::Manifest { repo, digest, .. }
            | Change::ManifestDelete { repo, digest, .. } => {
                let family = match self {
                    Change::Link { .. } | Change::Unlink { .. } => Family::Links,
                    _ => Family::Manifests,
                };
                (family, keys::repo_digest(repo, digest))
            }
            Change::Tag { repo, tag, .. } | Change::Untag { repo, tag } => {
                (Family::Tags, keys::tag(repo, tag))
            }
            Change::Repository { repo } => (Family::Repos, keys::repo(repo)),
        }
    }

    /// Whether this change removes its key's entry.
    pub fn is_deletion(&self) -> bool {
        matches!(
            self,
            Change::Unlink { .. } | Change::ManifestDelete { .. } | Change::Untag { .. }
        )
    }

    fn write(&self, w: Writer) -> Writer {
        match self {
            Change::Link {
                repo,
                digest,
                state,
            } => w
                .u8(LINK)
                .str(repo)
                .digest(digest)
                .time(state.at)
                .u8(u8::from(state.claimed)),
            Change::Unlink { repo, digest } => w.u8(UNLINK).str(repo).digest(digest),
            Change::Manifest {
                repo,
                digest,
                size,
                meta,
            } => w
                .u8(MANIFEST)
                .str(repo)
                .digest(digest)
                .manifest(*size, meta),
            Change::ManifestDelete {
                repo,
                digest,
                subject,
            } => w
                .u8(MANIFEST_DELETE)
                .str(repo)
                .digest(digest)
                .opt_digest(subject.as_ref()),
            Change::Tag {
                repo,
                tag,
                digest,
                pushed,
            } => w.u8(TAG).str(repo).str(tag).digest(digest).time(*pushed),
            Change::Untag { repo, tag } => w.u8(UNTAG).str(repo).str(tag),
            Change::Repository { repo } => w.u8(REPOSITORY).str(repo),
        }
    }

    fn read(r: &mut Reader) -> Option<Change> {
        let kind = r.u8()?;
        let repo = r.str()?;
        Some(match kind {
            LINK_UNTIMED => Change::Link {
                repo,
                digest: r.digest()?,
                state: LinkState::OLD,
            },
            LINK => Change::Link {
                repo,
                digest: r.digest()?,
                state: LinkState {
                    at: r.time()?,
                    claimed: r.flag()?,
                },
            },
            UNLINK => Change::Unlink {
                repo,
                digest: r.digest()?,
            },
            MANIFEST => {
                let digest = r.digest()?;
                let (size, meta) = r.manifest()?;
                Change::Manifest {
                    repo,
                    digest,
                    size,
                    meta,
                }
            }
            MANIFEST_DELETE => Change::ManifestDelete {
                repo,
                digest: r.digest()?,
                subject: r.opt_digest()?,
            },
            TAG => Change::Tag {
                repo,
                tag: r.str()?,
                digest: r.digest()?,
                pushed: r.time()?,
            },
            UNTAG => Change::Untag {
                repo,
                tag: r.str()?,
            },
            REPOSITORY => Change::Repository { repo },
            _ => return None,
        })
    }
}

/// The changes back to back, as a metadata record's body holds them after its count;
/// and the bytes each change took.
pub(crate) fn encode_list<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
) -> (Vec<u8>, Vec<u32>) {
    let mut sizes = Vec::new();
    let mut w = Writer::new();
    for change in changes {
        let before = w.len();
        w = change.write(w);
        sizes.push(u32::try_from(w.len() - before).unwrap_or(u32::MAX));
    }
    (w.done(), sizes)
}

/// A whole metadata record body: the change count (u32), then [`encode_list`].
#[cfg(test)]
pub(crate) fn encode_sized<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
) -> (Vec<u8>, Vec<u32>) {
    let (list, sizes) = encode_list(changes);
    let mut body = u32::try_from(sizes.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    body.extend_from_slice(&list);
    (body, sizes)
}

/// Parses a metadata record's body: each change with the bytes it takes there; `None`
/// if it is not exactly a list of changes.
pub(crate) fn decode_sized(body: &[u8]) -> Option<Vec<(Change, u32)>> {
    let mut r = Reader::new(body);
    let count = r.u32()?;
    // Each change takes at least 6 bytes: a bound against a count that lies.
    let mut changes = Vec::with_capacity((count as usize).min(body.len() / 6));
    for _ in 0..count {
        let before = r.remaining();
        let change = Change::read(&mut r)?;
        changes.push((change, u32::try_from(before - r.remaining()).ok()?));
    }
    r.done()?;
    Some(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use std::time::{Duration, UNIX_EPOCH};

    fn every_kind() -> Vec<Change> {
        let d = Algorithm::Sha256.digest(b"d");
        let s = Algorithm::Sha512.digest(b"s");
        let repo = "lib/app".to_owned();
        vec![
            Change::Link {
                repo: repo.clone(),
                digest: d.clone(),
                state: LinkState {
                    at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
                    claimed: true,
                },
            },
            Change::Unlink {
                repo: repo.clone(),
                digest: s.clone(),
            },
            Change::Manifest {
                repo: repo.clone(),
                digest: d.clone(),
                size: 42,
                meta: ManifestMeta {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    subject: Some(s.clone()),
                    artifact_type: Some("application/x-sig".into()),
                    annotations: vec![("k".into(), "v".into())],
                },
            },
            Change::ManifestDelete {
                repo: repo.clone(),
                digest: d.clone(),
                subject: None,
            },
            Change::Tag {
                repo: repo.clone(),
                tag: "v1".into(),
                digest: d,
                pushed: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            },
            Change::Untag {
                repo: repo.clone(),
                tag: "v1".into(),
            },
            Change::Repository { repo },
        ]
    }

    #[test]
    fn bodies_round_trip_and_reject_truncation() {
        let changes = every_kind();
        let (body, sizes) = encode_sized(&changes);
        assert_eq!(sizes.iter().sum::<u32>() as usize + 4, body.len());
        let sized: Vec<(Change, u32)> = changes.iter().cloned().zip(sizes).collect();
        assert_eq!(decode_sized(&body), Some(sized));
        for cut in 0..body.len() {
            assert_eq!(decode_sized(&body[..cut]), None, "cut {cut}");
        }
        let mut long = body.clone();
        long.push(0);
        assert_eq!(decode_sized(&long), None);
        assert_eq!(decode_sized(&encode_sized(&[]).0), Some(vec![]));
    }

    #[test]
    fn untimed_links_read_as_old_claimed_links() {
        let d = Algorithm::Sha256.digest(b"d");
        let body = Writer::new()
            .u32(1)
            .u8(LINK_UNTIMED)
            .str("r")
            .digest(&d)
            .done();
        let link = Change::Link {
            repo: "r".into(),
            digest: d,
            state: LinkState::OLD,
        };
        let size = body.len() as u32 - 4;
        assert_eq!(decode_sized(&body), Some(vec![(link, size)]));
    }

    proptest::proptest! {
        /// Record bodies are read back from disk: garbage is refused, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Some(changes) = decode_sized(&bytes) {
                let changes: Vec<Change> = changes.into_iter().map(|(c, _)| c).collect();
                // Exactly the same bytes, unless an untimed link was re-written timed.
                let again = encode_sized(&changes).0;
                let back: Option<Vec<Change>> =
                    decode_sized(&again).map(|c| c.into_iter().map(|(c, _)| c).collect());
                proptest::prop_assert_eq!(back, Some(changes));
                if !bytes.contains(&LINK_UNTIMED) {
                    proptest::prop_assert_eq!(again, bytes);
                }
            }
        }
    }
}
