//! Index values: each starts with a format version byte, then fixed-width little-endian
//! integers and length-prefixed strings (FORMAT.md, "Index"). Decoding never panics: a
//! value that does not parse is reported as `CorruptIndex`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::Family;
use crate::pack::{Location, PackEntry};
use crate::repository::ManifestMeta;

const VERSION: u8 = 1;

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Writer {
        Writer(vec![VERSION])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        let mut w = self.u32(len);
        w.0.extend_from_slice(&s.as_bytes()[..len as usize]);
        w
    }
    fn opt_str(self, s: Option<&str>) -> Self {
        match s {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    fn digest(mut self, d: &Digest) -> Self {
        self.0.extend_from_slice(&d.to_key());
        self
    }
    fn opt_digest(self, d: Option<&Digest>) -> Self {
        match d {
            Some(d) => self.u8(1).digest(d),
            None => self.u8(0),
        }
    }
    fn time(self, t: SystemTime) -> Self {
        let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        self.u64(u64::try_from(millis).unwrap_or(u64::MAX))
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    family: Family,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], family: Family) -> Result<Reader<'a>> {
        let mut r = Reader { buf, family };
        if r.u8()? != VERSION {
            return Err(r.corrupt());
        }
        Ok(r)
    }
    fn corrupt(&self) -> Error {
        Error::CorruptIndex {
            family: self.family.name(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt()),
        }
    }
    fn str(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt())
    }
    fn opt_str(&mut self) -> Result<Option<String>> {
        if self.flag()? {
            Ok(Some(self.str()?))
        } else {
            Ok(None)
        }
    }
    fn digest(&mut self) -> Result<Digest> {
        let (digest, used) = Digest::from_key(self.buf).ok_or_else(|| self.corrupt())?;
        self.buf = &self.buf[used..];
        Ok(digest)
    }
    fn opt_digest(&mut self) -> Result<Option<Digest>> {
        if self.flag()? {
            Ok(Some(self.digest()?))
        } else {
            Ok(None)
        }
    }
    fn time(&mut self) -> Result<SystemTime> {
        Ok(UNIX_EPOCH + Duration::from_millis(self.u64()?))
    }
    /// Fails if bytes are left over: a value is exactly what its version says.
    fn done(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt())
        }
    }
}

pub fn encode_location(loc: &Location) -> Vec<u8> {
    Writer::new()
        .u64(loc.pack)
        .u64(loc.offset)
        .u64(loc.length)
        .u32(loc.crc)
        .done()
}

pub fn decode_location(value: &[u8]) -> Result<Location> {
    let mut r = Reader::new(value, Family::Blobs)?;
    let loc = Location {
        pack: r.u64()?,
        offset: r.u64()?,
        length: r.u64()?,
        crc: r.u32()?,
    };
    r.done()?;
    Ok(loc)
}

pub fn encode_pack(entry: &PackEntry) -> Vec<u8> {
    Writer::new()
        .u64(entry.committed)
        .u8(u8::from(entry.sealed))
        .done()
}

pub fn decode_pack(value: &[u8]) -> Result<PackEntry> {
    let mut r = Reader::new(value, Family::Packs)?;
    let entry = PackEntry {
        committed: r.u64()?,
        sealed: r.flag()?,
    };
    r.done()?;
    Ok(entry)
}

/// A tag's value: the manifest it points at and when it was pushed.
pub fn encode_tag(digest: &Digest, pushed: SystemTime) -> Vec<u8> {
    Writer::new().digest(digest).time(pushed).done()
}

pub fn decode_tag(value: &[u8]) -> Result<(Digest, SystemTime)> {
    let mut r = Reader::new(value, Family::Tags)?;
    let out = (r.digest()?, r.time()?);
    r.done()?;
    Ok(out)
}

/// A manifest's (or referrer's) description: its size and what the protocol layer
/// extracted from it. The same encoding serves `manifests` and `referrers`.
pub fn encode_manifest(size: u64, meta: &ManifestMeta, family: Family) -> Vec<u8> {
    debug_assert!(matches!(family, Family::Manifests | Family::Referrers));
    let mut w = Writer::new()
        .u64(size)
        .str(&meta.media_type)
        .opt_digest(meta.subject.as_ref())
        .opt_str(meta.artifact_type.as_deref())
        .u32(u32::try_from(meta.annotations.len()).unwrap_or(u32::MAX));
    for (key, value) in &meta.annotations {
        w = w.str(key).str(value);
    }
    w.done()
}

pub fn decode_manifest(value: &[u8], family: Family) -> Result<(u64, ManifestMeta)> {
    let mut r = Reader::new(value, family)?;
    let size = r.u64()?;
    let media_type = r.str()?;
    let subject = r.opt_digest()?;
    let artifact_type = r.opt_str()?;
    let count = r.u32()?;
    let mut annotations = Vec::new();
    for _ in 0..count {
        annotations.push((r.str()?, r.str()?));
    }
    r.done()?;
    Ok((
        size,
        ManifestMeta {
            media_type,
            subject,
            artifact_type,
            annotations,
        },
    ))
}

pub fn encode_upload(repo: &str, started: SystemTime) -> Vec<u8> {
    Writer::new().str(repo).time(started).done()
}

/// Value of `repos` and `links`: presence is the information.
pub fn marker() -> Vec<u8> {
    Writer::new().done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

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
        let encoded = encode_manifest(42, &meta, Family::Manifests);
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
