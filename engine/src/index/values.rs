//! Index values: each starts with a format version byte, then fields in the shared
//! encoding of [`crate::codec`] (FORMAT.md, "Index"). Decoding never panics: a value
//! that does not parse is reported as `CorruptIndex`.

use std::time::SystemTime;

use crate::codec::{Reader, Writer};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::Family;
use crate::pack::{Location, PackEntry};
use crate::types::ManifestMeta;

const VERSION: u8 = 1;

fn writer() -> Writer {
    Writer::new().u8(VERSION)
}

/// Decodes a value of `family` with `read`, which must consume it exactly.
fn decode<T>(
    value: &[u8],
    family: Family,
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Result<T> {
    decode_version(value, family, VERSION, read)
}

/// [`decode`] for a value whose version byte must be `version`.
fn decode_version<T>(
    value: &[u8],
    family: Family,
    version: u8,
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Result<T> {
    let mut r = Reader::new(value);
    let out = (|| {
        (r.u8()? == version).then_some(())?;
        read(&mut r)
    })();
    match out {
        Some(out) if r.is_empty() => Ok(out),
        _ => Err(Error::CorruptIndex {
            family: family.name(),
        }),
    }
}

pub fn encode_location(loc: &Location) -> Vec<u8> {
    writer()
        .u64(loc.pack)
        .u64(loc.offset)
        .u64(loc.length)
        .u32(loc.crc)
        .done()
}

pub fn decode_location(value: &[u8]) -> Result<Location> {
    decode(value, Family::Blobs, |r| {
        Some(Location {
            pack: r.u64()?,
            offset: r.u64()?,
            length: r.u64()?,
            crc: r.u32()?,
        })
    })
}

/// Every pack and its entry, from a scan of the `packs` family.
pub fn decode_packs(entries: super::Entries) -> Result<Vec<(u64, PackEntry)>> {
    entries
        .iter()
        .map(|(key, value)| {
            let id = super::keys::pack_id(key).ok_or(Error::CorruptIndex {
                family: Family::Packs.name(),
            })?;
            Ok((id, decode_pack(value)?))
        })
        .collect()
}

pub fn encode_pack(entry: &PackEntry) -> Vec<u8> {
    writer()
        .u64(entry.committed)
        .u8(u8::from(entry.sealed))
        .done()
}

pub fn decode_pack(value: &[u8]) -> Result<PackEntry> {
    decode(value, Family::Packs, |r| {
        Some(PackEntry {
            committed: r.u64()?,
            sealed: r.flag()?,
        })
    })
}

/// A tag's value: the manifest it points at and when it was pushed.
pub fn encode_tag(digest: &Digest, pushed: SystemTime, source: Option<Source>) -> Vec<u8> {
    with_source(writer().digest(digest).time(pushed), source).done()
}

pub fn decode_tag(value: &[u8]) -> Result<(Digest, SystemTime)> {
    Ok(decode_sourced(value, Family::Tags, |r| Some((r.digest()?, r.time()?)))?.0)
}

/// A manifest's (or referrer's) description: its size and what the protocol layer
/// extracted from it. The same encoding serves `manifests` and `referrers`.
/// A `manifests` value (with its source) or a `referrers` value (without).
pub fn encode_manifest(size: u64, meta: &ManifestMeta, source: Option<Source>) -> Vec<u8> {
    with_source(writer().manifest(size, meta), source).done()
}

pub fn decode_manifest(value: &[u8], family: Family) -> Result<(u64, ManifestMeta)> {
    debug_assert!(matches!(family, Family::Manifests | Family::Referrers));
    Ok(decode_sourced(value, family, |r| r.manifest())?.0)
}

/// Where the change that set an entry is: the pack of its metadata record and the
/// change's own bytes there. When the entry is replaced or removed, those bytes are dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub pack: u64,
    pub bytes: u32,
}

fn with_source(w: Writer, source: Option<Source>) -> Writer {
    match source {
        Some(s) => w.u64(s.pack).u32(s.bytes),
        None => w,
    }
}

/// Decodes a value of `family` whose fields `read` consumes, then an optional source.
fn decode_sourced<T>(
    value: &[u8],
    family: Family,
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Result<(T, Option<Source>)> {
    decode_sourced_version(value, family, VERSION, read)
}

/// [`decode_sourced`] for a value whose version byte must be `version`.
fn decode_sourced_version<T>(
    value: &[u8],
    family: Family,
    version: u8,
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Result<(T, Option<Source>)> {
    decode_version(value, family, version, |r| {
        let out = read(r)?;
        let source = if r.is_empty() {
            None
        } else {
            Some(Source {
                pack: r.u64()?,
                bytes: r.u32()?,
            })
        };
        Some((out, source))
    })
}

/// The source of a `links`, `manifests` or `tags` value (none in values written by
/// format 1, and in other families).
pub fn decode_source(family: Family, value: &[u8]) -> Result<Option<Source>> {
    Ok(match family {
        Family::Links => decode_link(value)?.1,
        Family::Manifests => decode_sourced(value, family, |r| r.manifest())?.1,
        Family::Tags => decode_sourced(value, family, |r| Some((r.digest()?, r.time()?)))?.1,
        _ => None,
    })
}

/// A `links` value (version 2): when the link was made and whether a manifest has
/// referenced the blob through it since (garbage collection spares unclaimed young
/// links: uploads whose manifest is still to come), then the source.
pub fn encode_link(link: LinkState, source: Option<Source>) -> Vec<u8> {
    let w = Writer::new()
        .u8(LINK_VERSION)
        .time(link.at)
        .u8(u8::from(link.claimed));
    with_source(w, source).done()
}

/// What a `links` value says besides its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub at: SystemTime,
    pub claimed: bool,
}

impl LinkState {
    /// A link made now, not yet referenced by any manifest.
    pub fn now() -> LinkState {
        LinkState {
            at: SystemTime::now(),
            claimed: false,
        }
    }

    /// A link of unknown age that counts as claimed: what a version-1 value (which
    /// kept no time) stands for, so that no grace period ever spares it.
    pub const OLD: LinkState = LinkState {
        at: std::time::UNIX_EPOCH,
        claimed: true,
    };
}

const LINK_VERSION: u8 = 2;

/// A `links` value of either version, with its source.
pub fn decode_link(value: &[u8]) -> Result<(LinkState, Option<Source>)> {
    if value.first() != Some(&LINK_VERSION) {
        let ((), source) = decode_sourced(value, Family::Links, |_| Some(()))?;
        return Ok((LinkState::OLD, source));
    }
    decode_sourced_version(value, Family::Links, LINK_VERSION, |r| {
        Some(LinkState {
            at: r.time()?,
            claimed: r.flag()?,
        })
    })
}

/// A `usage` value (or merge operand): dead bytes of a pack.
pub fn encode_dead(bytes: u64) -> Vec<u8> {
    writer().u64(bytes).done()
}

pub fn decode_dead(value: &[u8]) -> Result<u64> {
    decode(value, Family::Usage, |r| r.u64())
}

/// The `usage` family's merge operator: values and operands are dead-byte counts, and
/// merging adds them. An operand that does not decode fails the merge (RocksDB then
/// reports the key as corrupt) rather than being counted as zero.
pub fn merge_add(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut sum = match existing {
        Some(v) => decode_dead(v).ok()?,
        None => 0,
    };
    for operand in operands {
        sum = sum.saturating_add(decode_dead(operand).ok()?);
    }
    Some(encode_dead(sum))
}

pub fn encode_sequence(sequence: u64) -> Vec<u8> {
    writer().u64(sequence).done()
}

pub fn decode_sequence(value: &[u8]) -> Result<u64> {
    decode(value, Family::State, |r| r.u64())
}

pub fn encode_upload(repo: &str, started: SystemTime) -> Vec<u8> {
    writer().str(repo).time(started).done()
}

/// Value of `repos` and `links`: presence is the information.
pub fn marker() -> Vec<u8> {
    writer().done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use std::time::{Duration, UNIX_EPOCH};

    proptest::proptest! {
        /// Index values are read back from disk: garbage is an error, never a panic.
        #[test]
        fn arbitrary_values_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_location(&bytes);
            let _ = decode_pack(&bytes);
            let _ = decode_tag(&bytes);
            let _ = decode_manifest(&bytes, Family::Manifests);
            let _ = decode_link(&bytes);
        }
    }

    #[test]
    fn values_round_trip_and_reject_garbage() {
        let loc = Location {
            pack: 3,
            offset: 100,
            length: 7,
            crc: 0xdead_beef,
        };
        assert_eq!(decode_location(&encode_location(&loc)).unwrap(), loc);
        let pack = PackEntry {
            committed: 9,
            sealed: true,
        };
        assert_eq!(decode_pack(&encode_pack(&pack)).unwrap(), pack);
        let meta = ManifestMeta {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            subject: Some(Algorithm::Sha256.digest(b"s")),
            artifact_type: Some("application/x-sig".into()),
            annotations: vec![("k".into(), "v".into())],
        };
        let encoded = encode_manifest(42, &meta, None);
        let (size, back) = decode_manifest(&encoded, Family::Manifests).unwrap();
        assert_eq!((size, back), (42, meta.clone()));
        // Every truncation and a trailing byte are refused, never a panic.
        for cut in 0..encoded.len() {
            assert!(decode_manifest(&encoded[..cut], Family::Manifests).is_err());
        }
        let mut long = encoded.clone();
        long.push(0);
        assert!(decode_manifest(&long, Family::Manifests).is_err());
        let d = Algorithm::Sha512.digest(b"m");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            decode_tag(&encode_tag(&d, t, None)).unwrap(),
            (d.clone(), t)
        );
        let source = Source { pack: 7, bytes: 99 };
        let sourced = encode_tag(&d, t, Some(source));
        assert_eq!(decode_tag(&sourced).unwrap(), (d, t));
        assert_eq!(decode_source(Family::Tags, &sourced).unwrap(), Some(source));
        let manifest = encode_manifest(42, &meta, Some(source));
        assert_eq!(decode_manifest(&manifest, Family::Manifests).unwrap().0, 42);
        assert_eq!(
            decode_source(Family::Manifests, &manifest).unwrap(),
            Some(source)
        );
        let link = LinkState {
            at: t,
            claimed: false,
        };
        let linked = encode_link(link, Some(source));
        assert_eq!(decode_link(&linked).unwrap(), (link, Some(source)));
        assert_eq!(decode_source(Family::Links, &linked).unwrap(), Some(source));
        let unsourced = encode_link(link, None);
        assert_eq!(decode_link(&unsourced).unwrap(), (link, None));
        for cut in 1..linked.len() {
            if cut != unsourced.len() {
                assert!(decode_link(&linked[..cut]).is_err(), "cut {cut}");
            }
        }
        // Version 1 (format 1, and format 2 before link times): no time, counts as old.
        assert_eq!(decode_link(&marker()).unwrap(), (LinkState::OLD, None));
        let v1 = with_source(writer(), Some(source)).done();
        assert_eq!(decode_link(&v1).unwrap(), (LinkState::OLD, Some(source)));
    }
}
