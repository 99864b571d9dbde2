//! Index keys. Every repository-scoped key starts with the repository name and a NUL
//! byte, so one repository's entries are one contiguous, lexically ordered key range
//! (`a` and `a/b` never mix: `/` sorts after NUL). Digests appear in their binary form
//! (algorithm code, then the hash value).

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Separates a repository name from the rest of a key; names can never contain it.
pub const SEPARATOR: u8 = 0;

/// Key in `state`: the sequence number of the newest metadata record.
pub const SEQUENCE: &[u8] = b"sequence";

pub fn blob(digest: &Digest) -> Vec<u8> {
    digest.to_key()
}

/// The key range of everything one repository owns in a family.
pub fn repo_prefix(repo: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(repo.len() + 66);
    key.extend_from_slice(repo.as_bytes());
    key.push(SEPARATOR);
    key
}

/// Key in `links` and `manifests`.
pub fn repo_digest(repo: &str, digest: &Digest) -> Vec<u8> {
    let mut key = repo_prefix(repo);
    key.extend_from_slice(&digest.to_key());
    key
}

pub fn tag(repo: &str, tag: &str) -> Vec<u8> {
    let mut key = repo_prefix(repo);
    key.extend_from_slice(tag.as_bytes());
    key
}

/// The key range of all referrers of `subject` in `repo`.
pub fn referrers_of(repo: &str, subject: &Digest) -> Vec<u8> {
    repo_digest(repo, subject)
}

pub fn referrer(repo: &str, subject: &Digest, referrer: &Digest) -> Vec<u8> {
    let mut key = referrers_of(repo, subject);
    key.extend_from_slice(&referrer.to_key());
    key
}

pub fn repo(repo: &str) -> Vec<u8> {
    repo.as_bytes().to_vec()
}

/// Big-endian, so packs iterate in id order.
pub fn pack(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn pack_id(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// `state` keys of packs a compaction removed from the index whose files may still
/// need deleting.
pub const RETIRED_PREFIX: &[u8] = b"retired/";

pub fn retired(id: u64) -> Vec<u8> {
    let mut key = RETIRED_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub fn upload(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// The repository and the rest of a repository-scoped key.
fn split_repo(key: &[u8]) -> Option<(String, &[u8])> {
    let at = key.iter().position(|&b| b == SEPARATOR)?;
    let repo = String::from_utf8(key[..at].to_vec()).ok()?;
    Some((repo, &key[at + 1..]))
}

/// Parses a `links` or `manifests` key (or the subject part of a `referrers` key's
/// front: trailing bytes are allowed, see [`parse_referrer`]).
pub fn parse_repo_digest(key: &[u8]) -> Option<(String, Digest)> {
    let (repo, rest) = split_repo(key)?;
    let (digest, used) = Digest::from_key(rest)?;
    (used == rest.len()).then_some((repo, digest))
}

/// Parses a `tags` key.
pub fn parse_tag(key: &[u8]) -> Option<(String, String)> {
    let (repo, rest) = split_repo(key)?;
    Some((repo, String::from_utf8(rest.to_vec()).ok()?))
}

/// Parses a `referrers` key: repository, subject, referrer.
pub fn parse_referrer(key: &[u8]) -> Option<(String, Digest, Digest)> {
    let (repo, rest) = split_repo(key)?;
    let (subject, used) = Digest::from_key(rest)?;
    let (referrer, more) = Digest::from_key(&rest[used..])?;
    (used + more == rest.len()).then_some((repo, subject, referrer))
}

/// Names the index can hold: non-empty, bounded, and free of the key separator.
/// Protocol grammar is stricter and is the caller's to enforce.
pub(crate) fn check_name(name: &str, what: &'static str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 4096 {
        "longer than 4096 bytes"
    } else if name.as_bytes().contains(&SEPARATOR) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { what, reason })
}
