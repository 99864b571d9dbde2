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
    let mut r = Reader::new(value);
    let out = (|| {
        (r.u8()? == VERSION).then_some(())?;
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
pub fn encode_tag(digest: &Digest, pushed: SystemTime) -> Vec<u8> {
    writer().digest(digest).time(pushed).done()
}

pub fn decode_tag(value: &[u8]) -> Result<(Digest, SystemTime)> {
    decode(value, Family::Tags, |r| Some((r.digest()?, r.time()?)))
}

/// A manifest's (or referrer's) description: its size and what the protocol layer
/// extracted from it. The same encoding serves `manifests` and `referrers`.
pub fn encode_manifest(size: u64, meta: &ManifestMeta) -> Vec<u8> {
    writer().manifest(size, meta).done()
}

pub fn decode_manifest(value: &[u8], family: Family) -> Result<(u64, ManifestMeta)> {
    debug_assert!(matches!(family, Family::Manifests | Family::Referrers));
    decode(value, family, |r| r.manifest())
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
        let encoded = encode_manifest(42, &meta);
        let (size, back) = decode_manifest(&encoded, Family::Manifests).unwrap();
        assert_eq!((size, back), (42, meta));
        // Every truncation and a trailing byte are refused, never a panic.
        for cut in 0..encoded.len() {
            assert!(decode_manifest(&encoded[..cut], Family::Manifests).is_err());
        }
        let mut long = encoded.clone();
        long.push(0);
        assert!(decode_manifest(&long, Family::Manifests).is_err());
        let d = Algorithm::Sha512.digest(b"m");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(decode_tag(&encode_tag(&d, t)).unwrap(), (d, t));
    }
}
