//! The byte layout of pack files, as `engine/FORMAT.md` specifies it. Everything that
//! encodes or decodes pack bytes lives here, so the document and the code have one
//! place to agree on.

use crate::digest::{Algorithm, Digest};

/// The first 8 bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"LAINPACK";
/// Format version written in the pack header; readers refuse any other.
pub const PACK_VERSION: u32 = 1;
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

/// Checks the pack header; returns what is wrong with it, if anything.
pub fn check_pack_header(bytes: &[u8]) -> Result<(), String> {
    let header = bytes
        .get(..PACK_HEADER_LEN as usize)
        .ok_or("shorter than a pack header")?;
    if header[..8] != PACK_MAGIC {
        return Err("bad pack magic".into());
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != PACK_VERSION {
        return Err(format!("pack format version {version} is not supported"));
    }
    Ok(())
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

/// A record found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the pack.
    pub offset: u64,
    pub header: RecordHeader,
    /// CRC32 of the blob bytes, from the trailer.
    pub crc: u32,
}

impl ScannedRecord {
    /// Offset of the blob's first byte.
    pub fn data_offset(&self) -> u64 {
        self.offset + RECORD_HEADER_LEN
    }

    /// Offset just past the record's trailer.
    pub fn end(&self) -> u64 {
        self.offset + RECORD_OVERHEAD + self.header.length
    }
}

/// What a scan found from its starting offset on.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<ScannedRecord>,
    /// Offset just past the last valid record (the start offset if there was none).
    pub valid_end: u64,
}

/// Walks the records of `pack` (its bytes from offset 0) starting at `from`, stopping at
/// the first one whose header, length or data checksum does not hold.
pub fn scan(pack: &[u8], from: u64) -> Scan {
    let mut scan = Scan {
        records: Vec::new(),
        valid_end: from,
    };
    let mut offset = from;
    while let Some(rest) = usize::try_from(offset).ok().and_then(|o| pack.get(o..)) {
        let Some(header) = RecordHeader::decode(rest) else {
            break;
        };
        // A header can pass its CRC and still claim any length: all arithmetic on it
        // is checked.
        let header_len = RECORD_HEADER_LEN as usize;
        let Some(data_end) = usize::try_from(header.length)
            .ok()
            .and_then(|n| n.checked_add(header_len))
        else {
            break;
        };
        let Some(data) = rest.get(header_len..data_end) else {
            break;
        };
        let Some(trailer) = data_end.checked_add(4).and_then(|e| rest.get(data_end..e)) else {
            break;
        };
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        if crc32fast::hash(data) != crc {
            break;
        }
        let record = ScannedRecord {
            offset,
            header,
            crc,
        };
        offset = record.end();
        scan.valid_end = offset;
        scan.records.push(record);
    }
    scan
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
                proptest::prop_assert_eq!(RecordHeader::decode(&bytes[at..]), Some(r.header.clone()));
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
        let mut v2 = encode_pack_header();
        v2[8] = 2;
        assert!(check_pack_header(&v2).is_err());
    }
}
