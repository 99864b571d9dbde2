//! The byte layout of pack files, as `engine/FORMAT.md` specifies it. Everything that
//! encodes or decodes pack bytes lives here, so the document and the code have one
//! place to agree on.

use crate::digest::{Algorithm, Digest};

/// The first 8 bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"LAINPACK";
/// Format version written in the pack header of new packs. Version 1 packs (blob
/// records only) are read too; readers refuse any other.
pub const PACK_VERSION: u32 = 2;
/// Pack header: magic, version (u32 LE), reserved (u32, zero).
pub const PACK_HEADER_LEN: u64 = 16;

/// The first 4 bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"BLOB";
pub const RECORD_VERSION: u8 = 1;
/// Record header: magic, version, algorithm, reserved u16, length u64, digest [64], crc u32.
pub const RECORD_HEADER_LEN: u64 = 84;
/// Record trailer: CRC32 of the blob bytes.
pub const RECORD_TRAILER_LEN: u64 = 4;
/// Bytes a record adds around its blob.
pub const RECORD_OVERHEAD: u64 = RECORD_HEADER_LEN + RECORD_TRAILER_LEN;

pub fn encode_pack_header() -> [u8; PACK_HEADER_LEN as usize] {
    let mut header = [0u8; PACK_HEADER_LEN as usize];
    header[..8].copy_from_slice(&PACK_MAGIC);
    header[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
    header
}

/// Checks the pack header; returns the pack's format version, or what is wrong.
pub fn check_pack_header(bytes: &[u8]) -> Result<u32, String> {
    let header = bytes
        .get(..PACK_HEADER_LEN as usize)
        .ok_or("shorter than a pack header")?;
    if header[..8] != PACK_MAGIC {
        return Err("bad pack magic".into());
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(1..=PACK_VERSION).contains(&version) {
        return Err(format!("pack format version {version} is not supported"));
    }
    Ok(version)
}

/// The fixed-size header in front of a blob's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub digest: Digest,
    pub length: u64,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        h[..4].copy_from_slice(&RECORD_MAGIC);
        h[4] = RECORD_VERSION;
        h[5] = self.digest.algorithm().code();
        // h[6..8] reserved, zero.
        h[8..16].copy_from_slice(&self.length.to_le_bytes());
        let value = self.digest.as_bytes();
        h[16..16 + value.len()].copy_from_slice(value);
        let crc = crc32fast::hash(&h[..80]);
        h[80..84].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes a header; `None` when the bytes are not a valid, checksummed header
    /// (which is also how a never-completed record's zeroed placeholder reads).
    pub fn decode(bytes: &[u8]) -> Option<RecordHeader> {
        let h = bytes.get(..RECORD_HEADER_LEN as usize)?;
        if h[..4] != RECORD_MAGIC || h[4] != RECORD_VERSION || h[6..8] != [0, 0] {
            return None;
        }
        let crc = u32::from_le_bytes([h[80], h[81], h[82], h[83]]);
        if crc32fast::hash(&h[..80]) != crc {
            return None;
        }
        let algorithm = Algorithm::from_code(h[5])?;
        let length = u64::from_le_bytes(h[8..16].try_into().ok()?);
        let digest = Digest::from_bytes(algorithm, &h[16..16 + algorithm.hash_len()])?;
        if h[16 + algorithm.hash_len()..80].iter().any(|&b| b != 0) {
            return None;
        }
        Some(RecordHeader { digest, length })
    }
}

/// The first 4 bytes of a metadata record (format 2).
pub const META_MAGIC: [u8; 4] = *b"META";
pub const META_VERSION: u8 = 1;
/// Metadata record header: magic, version, reserved [3], sequence u64, body length u32,
/// crc u32.
pub const META_HEADER_LEN: u64 = 24;
/// A metadata record's body is at most this long: the group commit splits a group's
/// changes into several records, and refuses one atomic set of changes larger than it.
pub const META_MAX_BODY: u32 = 64 << 20;

/// The fixed-size header in front of a metadata record's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    /// Orders records across packs: a rebuild applies them in this order.
    pub sequence: u64,
    pub length: u32,
}

impl MetaHeader {
    pub fn encode(&self) -> [u8; META_HEADER_LEN as usize] {
        let mut h = [0u8; META_HEADER_LEN as usize];
        h[..4].copy_from_slice(&META_MAGIC);
        h[4] = META_VERSION;
        // h[5..8] reserved, zero.
        h[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        h[16..20].copy_from_slice(&self.length.to_le_bytes());
        let crc = crc32fast::hash(&h[..20]);
        h[20..24].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(bytes: &[u8]) -> Option<MetaHeader> {
        let h = bytes.get(..META_HEADER_LEN as usize)?;
        if h[..4] != META_MAGIC || h[4] != META_VERSION || h[5..8] != [0, 0, 0] {
            return None;
        }
        let crc = u32::from_le_bytes(h[20..24].try_into().ok()?);
        if crc32fast::hash(&h[..20]) != crc {
            return None;
        }
        let length = u32::from_le_bytes(h[16..20].try_into().ok()?);
        if length > META_MAX_BODY {
            return None;
        }
        Some(MetaHeader {
            sequence: u64::from_le_bytes(h[8..16].try_into().ok()?),
            length,
        })
    }
}

/// A complete metadata record: header, `body`, CRC32 of the body.
pub fn encode_meta_record(sequence: u64, body: &[u8]) -> Vec<u8> {
    let header = MetaHeader {
        sequence,
        length: u32::try_from(body.len()).unwrap_or(u32::MAX),
    };
    let mut out = Vec::with_capacity(body.len() + META_HEADER_LEN as usize + 4);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A blob's bytes, and the digest they hash to.
    Blob(Digest),
    /// Metadata changes, applied in `sequence` order.
    Meta { sequence: u64 },
}

/// A record found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the pack.
    pub offset: u64,
    pub kind: RecordKind,
    /// Bytes between header and trailer (the blob, or the metadata body).
    pub length: u64,
    /// CRC32 of those bytes, from the trailer.
    pub crc: u32,
}

impl ScannedRecord {
    fn header_len(&self) -> u64 {
        match self.kind {
            RecordKind::Blob(_) => RECORD_HEADER_LEN,
            RecordKind::Meta { .. } => META_HEADER_LEN,
        }
    }

    /// Offset of the first byte after the header (the blob's first byte).
    pub fn data_offset(&self) -> u64 {
        self.offset + self.header_len()
    }

    /// The bytes between header and trailer (a blob's, or a metadata body), as a range
    /// of the pack.
    pub fn data(&self) -> std::ops::Range<u64> {
        self.data_offset()..self.data_offset() + self.length
    }

    /// For a blob record of `pack` (the pack's bytes it was scanned from), whether its
    /// bytes hash to its digest: what the CRCs cannot tell (they catch damage, not
    /// substitution). Metadata records have no digest: `true`.
    pub fn hashes_to_digest(&self, pack: &[u8]) -> bool {
        let RecordKind::Blob(digest) = &self.kind else {
            return true;
        };
        let range = self.data();
        // A scanned record lies inside the bytes it was scanned from.
        let data = &pack[range.start as usize..range.end as usize];
        digest.algorithm().digest(data) == *digest
    }

    /// Offset just past the record's trailer.
    pub fn end(&self) -> u64 {
        self.data_offset() + self.length + RECORD_TRAILER_LEN
    }
}

/// What a scan found from its starting offset on.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<ScannedRecord>,
    /// Offset just past the last valid record (the start offset if there was none).
    pub valid_end: u64,
    /// Byte ranges that hold no valid record, between or after valid ones (only a
    /// [`scan_all`] reports them; [`scan`] stops at the first).
    pub damaged: Vec<std::ops::Range<u64>>,
}

/// Decodes the record that starts at `offset` of `pack`, if it is complete and valid.
pub fn record_at(pack: &[u8], offset: u64) -> Option<ScannedRecord> {
    let rest = pack.get(usize::try_from(offset).ok()?..)?;
    let (kind, header_len, length) = if let Some(h) = RecordHeader::decode(rest) {
        (RecordKind::Blob(h.digest), RECORD_HEADER_LEN, h.length)
    } else {
        let h = MetaHeader::decode(rest)?;
        let kind = RecordKind::Meta {
            sequence: h.sequence,
        };
        (kind, META_HEADER_LEN, u64::from(h.length))
    };
    // A header can pass its CRC and still claim any length: all arithmetic on it is
    // checked.
    let data_start = usize::try_from(header_len).ok()?;
    let data_end = usize::try_from(length).ok()?.checked_add(data_start)?;
    let data = rest.get(data_start..data_end)?;
    let trailer = rest.get(data_end..data_end.checked_add(4)?)?;
    let crc = u32::from_le_bytes(trailer.try_into().ok()?);
    (crc32fast::hash(data) == crc).then_some(ScannedRecord {
        offset,
        kind,
        length,
        crc,
    })
}

/// Walks the records of `pack` (its bytes from offset 0) starting at `from`, stopping at
/// the first one whose header, length or data checksum does not hold.
pub fn scan(pack: &[u8], from: u64) -> Scan {
    let mut scan = Scan {
        records: Vec::new(),
        valid_end: from,
        damaged: Vec::new(),
    };
    let mut offset = from;
    while let Some(record) = record_at(pack, offset) {
        offset = record.end();
        scan.valid_end = offset;
        scan.records.push(record);
    }
    scan
}

/// The records of a pack from `from` to `end`, read by their headers and trailers
/// only, through `read_at` (fill the buffer from the offset), so a walk of a large pack
/// reads a few bytes per record instead of every byte, and holds one record at a time
/// (a pack of small records has millions). Headers are checked (their CRCs, and that
/// the records end exactly at `end`); blob bytes are not, nor are metadata bodies (the
/// caller reads those). The walk stops at the first error.
pub struct HeaderWalk<R> {
    read_at: R,
    offset: u64,
    end: u64,
    stopped: bool,
}

/// Why a [`HeaderWalk`] stopped early.
#[derive(Debug)]
pub enum WalkError {
    /// `read_at` failed.
    Io(std::io::Error),
    /// The bytes at `at` are not a whole record ending at or before the walk's end.
    Invalid { at: u64 },
}

impl<R> HeaderWalk<R>
where
    R: Fn(&mut [u8], u64) -> std::io::Result<()>,
{
    pub fn new(read_at: R, from: u64, end: u64) -> HeaderWalk<R> {
        HeaderWalk {
            read_at,
            offset: from,
            end,
            stopped: false,
        }
    }

    fn next_record(&mut self) -> Result<ScannedRecord, WalkError> {
        let (offset, end) = (self.offset, self.end);
        let mut header = [0u8; RECORD_HEADER_LEN as usize];
        let available = usize::try_from((end - offset).min(RECORD_HEADER_LEN)).unwrap_or(0);
        (self.read_at)(&mut header[..available], offset).map_err(WalkError::Io)?;
        let bytes = &header[..available];
        let (kind, header_len, length) = if let Some(h) = RecordHeader::decode(bytes) {
            (RecordKind::Blob(h.digest), RECORD_HEADER_LEN, h.length)
        } else if let Some(h) = MetaHeader::decode(bytes) {
            let kind = RecordKind::Meta {
                sequence: h.sequence,
            };
            (kind, META_HEADER_LEN, u64::from(h.length))
        } else {
            return Err(WalkError::Invalid { at: offset });
        };
        let trailer_at = offset
            .checked_add(header_len)
            .and_then(|o| o.checked_add(length))
            .filter(|&o| o.saturating_add(RECORD_TRAILER_LEN) <= end)
            .ok_or(WalkError::Invalid { at: offset })?;
        let mut trailer = [0u8; RECORD_TRAILER_LEN as usize];
        (self.read_at)(&mut trailer, trailer_at).map_err(WalkError::Io)?;
        self.offset = trailer_at + RECORD_TRAILER_LEN;
        Ok(ScannedRecord {
            offset,
            kind,
            length,
            crc: u32::from_le_bytes(trailer),
        })
    }
}

impl<R> Iterator for HeaderWalk<R>
where
    R: Fn(&mut [u8], u64) -> std::io::Result<()>,
{
    type Item = Result<ScannedRecord, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped || self.offset >= self.end {
            return None;
        }
        let record = self.next_record();
        self.stopped = record.is_err();
        Some(record)
    }
}

/// Like [`scan`], but past an invalid stretch it searches for the next valid record and
/// goes on from there, reporting the stretch in `damaged`: a flipped byte costs one
/// record, not every record after it. For checks and repair, not for recovery (a torn
/// tail is expected there, and nothing past it is committed).
pub fn scan_all(pack: &[u8], from: u64) -> Scan {
    let mut all = scan(pack, from);
    let len = pack.len() as u64;
    while all.valid_end < len {
        let bad_start = all.valid_end;
        let next = (bad_start + 1..len.saturating_sub(3)).find(|&at| {
            let at = at as usize;
            let magic = &pack[at..at + 4];
            (magic == RECORD_MAGIC || magic == META_MAGIC) && record_at(pack, at as u64).is_some()
        });
        let Some(next) = next else {
            all.damaged.push(bad_start..len);
            break;
        };
        all.damaged.push(bad_start..next);
        let more = scan(pack, next);
        all.valid_end = more.valid_end;
        all.records.extend(more.records);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> Vec<u8> {
        let header = RecordHeader {
            digest: Algorithm::Sha256.digest(data),
            length: data.len() as u64,
        };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out
    }

    #[test]
    fn header_round_trip_both_algorithms() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let header = RecordHeader {
                digest: algorithm.digest(b"abc"),
                length: 3,
            };
            assert_eq!(RecordHeader::decode(&header.encode()), Some(header));
        }
    }

    #[test]
    fn header_rejects_any_flipped_bit_and_placeholder() {
        let header = RecordHeader {
            digest: Algorithm::Sha256.digest(b"abc"),
            length: 3,
        }
        .encode();
        for i in 0..header.len() * 8 {
            let mut bad = header;
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(RecordHeader::decode(&bad), None, "bit {i}");
        }
        assert_eq!(RecordHeader::decode(&[0u8; 84]), None);
    }

    #[test]
    fn scan_stops_at_torn_or_corrupt_record() {
        let mut pack = encode_pack_header().to_vec();
        pack.extend(record(b"first"));
        pack.extend(record(b""));
        let good_end = pack.len() as u64;
        let third = record(b"third blob");
        let s = scan(&pack, PACK_HEADER_LEN);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.valid_end, good_end);

        // A torn third record (every possible cut) is not counted.
        for cut in 0..third.len() {
            let mut torn = pack.clone();
            torn.extend_from_slice(&third[..cut]);
            let s = scan(&torn, PACK_HEADER_LEN);
            assert_eq!(s.records.len(), 2, "cut {cut}");
            assert_eq!(s.valid_end, good_end);
        }
        // A flipped data byte fails the data checksum.
        let mut corrupt = pack.clone();
        corrupt.extend_from_slice(&third);
        let data_byte = good_end as usize + RECORD_HEADER_LEN as usize + 2;
        corrupt[data_byte] ^= 0x40;
        assert_eq!(scan(&corrupt, PACK_HEADER_LEN).records.len(), 2);
    }

    #[test]
    fn meta_records_scan_beside_blobs_and_reject_flips() {
        let mut pack = encode_pack_header().to_vec();
        pack.extend(record(b"blob"));
        let meta_at = pack.len() as u64;
        let meta = encode_meta_record(7, b"changes");
        pack.extend(&meta);
        let s = scan(&pack, PACK_HEADER_LEN);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[1].kind, RecordKind::Meta { sequence: 7 });
        assert_eq!(s.records[1].offset, meta_at);
        assert_eq!(s.records[1].length, 7);
        assert_eq!(s.valid_end, pack.len() as u64);
        for i in 0..meta.len() * 8 {
            let mut bad = pack.clone();
            bad[meta_at as usize + i / 8] ^= 1 << (i % 8);
            assert_eq!(scan(&bad, PACK_HEADER_LEN).records.len(), 1, "bit {i}");
        }
    }

    #[test]
    fn walking_headers_finds_what_a_scan_finds_and_refuses_a_wrong_end() {
        let mut pack = encode_pack_header().to_vec();
        pack.extend(record(b"first"));
        pack.extend(encode_meta_record(3, b"changes"));
        pack.extend(record(&[7u8; 5000]));
        let end = pack.len() as u64;
        /// The records a walk gives, or where it found the bytes invalid.
        fn walk(pack: &[u8], end: u64) -> Result<Vec<ScannedRecord>, u64> {
            let read_at = |buf: &mut [u8], offset: u64| {
                let at = offset as usize;
                buf.copy_from_slice(&pack[at..at + buf.len()]);
                Ok(())
            };
            HeaderWalk::new(read_at, PACK_HEADER_LEN, end)
                .map(|r| match r {
                    Ok(record) => Ok(record),
                    Err(WalkError::Invalid { at }) => Err(at),
                    Err(WalkError::Io(e)) => panic!("{e}"),
                })
                .collect()
        }
        assert_eq!(walk(&pack, end), Ok(scan(&pack, PACK_HEADER_LEN).records));
        // An end inside a record, or past the last one, does not check out.
        for wrong in [end - 1, end - 4, PACK_HEADER_LEN + 10] {
            assert!(walk(&pack, wrong).is_err(), "end {wrong}");
        }
        let mut damaged = pack.clone();
        damaged[PACK_HEADER_LEN as usize + 2] ^= 1;
        assert_eq!(walk(&damaged, end), Err(PACK_HEADER_LEN));
        // A read error stops the walk there.
        let failing = |_: &mut [u8], _: u64| Err(std::io::Error::other("bad sector"));
        let mut walk = HeaderWalk::new(failing, PACK_HEADER_LEN, end);
        assert!(matches!(walk.next(), Some(Err(WalkError::Io(_)))));
        assert!(walk.next().is_none());
    }

    #[test]
    fn scan_all_steps_over_a_damaged_record() {
        let mut pack = encode_pack_header().to_vec();
        pack.extend(record(b"first"));
        let second_at = pack.len();
        pack.extend(record(b"second, to be damaged"));
        let third_at = pack.len() as u64;
        pack.extend(encode_meta_record(1, b"third"));
        pack.extend(record(b"fourth"));
        let end = pack.len() as u64;
        pack[second_at + RECORD_HEADER_LEN as usize + 3] ^= 1;
        assert_eq!(scan(&pack, PACK_HEADER_LEN).records.len(), 1);
        let all = scan_all(&pack, PACK_HEADER_LEN);
        assert_eq!(all.records.len(), 3);
        assert_eq!(all.damaged, vec![second_at as u64..third_at]);
        assert_eq!(all.valid_end, end);
        // Garbage after the last record is reported too.
        pack.extend_from_slice(b"BLOBgarbage");
        let all = scan_all(&pack, PACK_HEADER_LEN);
        assert_eq!(all.damaged.last(), Some(&(end..pack.len() as u64)));
    }

    proptest::proptest! {
        /// Whatever bytes a damaged disk holds, the scanner neither panics nor reports
        /// a record that does not re-validate.
        #[test]
        fn scan_of_arbitrary_bytes_is_safe(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            splice in proptest::prelude::any::<bool>(),
        ) {
            if splice {
                // Put a valid record in front so the scanner gets past the first one.
                let mut valid = record(b"payload");
                valid.extend_from_slice(&bytes);
                bytes = valid;
            }
            let found = scan(&bytes, 0);
            proptest::prop_assert!(found.valid_end as usize <= bytes.len());
            for r in &found.records {
                let at = r.offset as usize;
                let again = record_at(&bytes, at as u64);
                proptest::prop_assert_eq!(again.as_ref(), Some(r));
            }
            if splice {
                proptest::prop_assert!(!found.records.is_empty());
            }
        }
    }

    #[test]
    fn pack_header_checks() {
        assert!(check_pack_header(&encode_pack_header()).is_ok());
        assert!(check_pack_header(b"LAINPACK").is_err());
        let mut v1 = encode_pack_header();
        v1[8] = 1;
        assert_eq!(check_pack_header(&v1), Ok(1));
        let mut v3 = encode_pack_header();
        v3[8] = 3;
        assert!(check_pack_header(&v3).is_err());
    }
}
