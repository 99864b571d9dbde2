//! The byte encoding that index values and metadata records share: fixed-width
//! little-endian integers, length-prefixed UTF-8 strings, digests in their binary form
//! (`dkey`), optional fields behind a flag byte. Decoding never panics: it returns
//! `None` at the first byte that does not fit, and callers name what was damaged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::types::ManifestMeta;

/// Builds an encoding front to back.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A u32 byte length, then the bytes. Names the engine stores are bounded far below
    /// 4 GiB (`index::keys::check_name`); anything longer is cut at the limit.
    pub fn str(self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        let mut w = self.u32(len);
        w.0.extend_from_slice(&s.as_bytes()[..len as usize]);
        w
    }
    pub fn opt_str(self, s: Option<&str>) -> Self {
        match s {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    pub fn digest(mut self, d: &Digest) -> Self {
        self.0.extend_from_slice(&d.to_key());
        self
    }
    pub fn opt_digest(self, d: Option<&Digest>) -> Self {
        match d {
            Some(d) => self.u8(1).digest(d),
            None => self.u8(0),
        }
    }
    /// Milliseconds since the Unix epoch, as a u64.
    pub fn time(self, t: SystemTime) -> Self {
        let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        self.u64(u64::try_from(millis).unwrap_or(u64::MAX))
    }
    /// A manifest's description: size u64, `str(media type)`, optional `dkey(subject)`,
    /// optional `str(artifact type)`, annotation count u32, then `str(key) str(value)`
    /// pairs.
    pub fn manifest(self, size: u64, meta: &ManifestMeta) -> Self {
        let mut w = self
            .u64(size)
            .str(&meta.media_type)
            .opt_digest(meta.subject.as_ref())
            .opt_str(meta.artifact_type.as_deref())
            .u32(u32::try_from(meta.annotations.len()).unwrap_or(u32::MAX));
        for (key, value) in &meta.annotations {
            w = w.str(key).str(value);
        }
        w
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

/// Reads an encoding front to back.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A flag byte: 0 or 1, anything else is damage.
    pub fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    pub fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    pub fn opt_str(&mut self) -> Option<Option<String>> {
        if self.flag()? {
            Some(Some(self.str()?))
        } else {
            Some(None)
        }
    }
    pub fn digest(&mut self) -> Option<Digest> {
        let (digest, used) = Digest::from_key(self.buf)?;
        self.buf = &self.buf[used..];
        Some(digest)
    }
    pub fn opt_digest(&mut self) -> Option<Option<Digest>> {
        if self.flag()? {
            Some(Some(self.digest()?))
        } else {
            Some(None)
        }
    }
    pub fn time(&mut self) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_millis(self.u64()?))
    }
    /// See [`Writer::manifest`].
    pub fn manifest(&mut self) -> Option<(u64, ManifestMeta)> {
        let size = self.u64()?;
        let media_type = self.str()?;
        let subject = self.opt_digest()?;
        let artifact_type = self.opt_str()?;
        let count = self.u32()?;
        let mut annotations = Vec::new();
        for _ in 0..count {
            annotations.push((self.str()?, self.str()?));
        }
        let meta = ManifestMeta {
            media_type,
            subject,
            artifact_type,
            annotations,
        };
        Some((size, meta))
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// `Some(())` when every byte was read: an encoding is exactly what its version says.
    pub fn done(self) -> Option<()> {
        self.buf.is_empty().then_some(())
    }
}
