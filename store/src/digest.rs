//! OCI content digests (`algorithm:hex`) and the incremental hashers behind them.
//!
//! Only the two algorithms the OCI image spec registers are accepted. A digest is kept
//! in binary form; its text form is produced on demand, so index keys stay compact.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A registered digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in the text form (`sha256:...`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the binary hash value in bytes.
    /// The algorithm its text form names (`sha256`, `sha512`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn hash_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The one-byte code this algorithm has in stored keys and records (the engine's
    /// FORMAT.md).
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Algorithm> {
        match code {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Hashes `data` in one call.
    pub fn digest(self, data: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finish()
    }
}

/// A content digest: algorithm plus the binary hash value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    // Large enough for sha512; only the first `algorithm.hash_len()` bytes are meaningful and
    // the rest stay zero, so derived equality and ordering are exact.
    bytes: [u8; 64],
}

impl Digest {
    /// Builds a digest from its binary hash value; `None` when the length does not fit
    /// the algorithm.
    pub fn from_bytes(algorithm: Algorithm, value: &[u8]) -> Option<Digest> {
        if value.len() != algorithm.hash_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..value.len()].copy_from_slice(value);
        Some(Digest { algorithm, bytes })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The binary hash value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.hash_len()]
    }

    /// The lowercase hex encoding of the hash value (no algorithm prefix).
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(self.algorithm.hash_len() * 2);
        for byte in self.as_bytes() {
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
        out
    }

    /// The compact binary form stores use inside keys: algorithm code, then the value.
    pub fn to_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(1 + self.algorithm.hash_len());
        key.push(self.algorithm.code());
        key.extend_from_slice(self.as_bytes());
        key
    }

    /// Parses the form written by [`Digest::to_key`]; returns the digest and the number
    /// of bytes it took.
    pub fn from_key(key: &[u8]) -> Option<(Digest, usize)> {
        let (&code, rest) = key.split_first()?;
        let algorithm = Algorithm::from_code(code)?;
        let value = rest.get(..algorithm.hash_len())?;
        Some((
            Digest::from_bytes(algorithm, value)?,
            1 + algorithm.hash_len(),
        ))
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("digest has no `algorithm:` prefix")]
    MissingAlgorithm,
    #[error("unsupported digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("digest value must be {expected} lowercase hex characters")]
    BadEncoding { expected: usize },
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Digest, DigestParseError> {
        let (name, hex) = text
            .split_once(':')
            .ok_or(DigestParseError::MissingAlgorithm)?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestParseError::UnsupportedAlgorithm(name.to_owned()))?;
        let expected = algorithm.hash_len() * 2;
        let bad = DigestParseError::BadEncoding { expected };
        if hex.len() != expected {
            return Err(bad);
        }
        let mut bytes = [0u8; 64];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or_else(|| bad.clone())?;
            let low = hex_value(pair[1]).ok_or_else(|| bad.clone())?;
            bytes[i] = (high << 4) | low;
        }
        Ok(Digest { algorithm, bytes })
    }
}

/// Only lowercase hex is canonical in OCI digests.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An incremental hasher for one [`Algorithm`].
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The hasher's state as bytes, so that another process can go on where this one
    /// stopped (an upload continued on another node). The form is sha2's own, stable
    /// within sha2 0.11; [`Hasher::restore`] checks it.
    pub fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// A hasher from [`Hasher::save`]'s bytes; `None` if they are not a saved state of
    /// `algorithm`.
    pub fn restore(algorithm: Algorithm, saved: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        Some(match algorithm {
            Algorithm::Sha256 => {
                Hasher::Sha256(sha2::Sha256::deserialize(saved.try_into().ok()?).ok()?)
            }
            Algorithm::Sha512 => {
                Hasher::Sha512(sha2::Sha512::deserialize(saved.try_into().ok()?).ok()?)
            }
        })
    }

    pub fn finish(self) -> Digest {
        let digest = match self {
            Hasher::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        };
        // A hash output always has its algorithm's length.
        digest.expect("hash output has the algorithm's length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_known_value() {
        let d = Algorithm::Sha256.digest(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let d512 = Algorithm::Sha512.digest(b"abc");
        assert_eq!(d512.to_string().parse::<Digest>().unwrap(), d512);
        assert!(d512.to_string().starts_with("sha512:ddaf35a1"));
    }

    #[test]
    fn a_saved_hasher_goes_on_where_it_stopped() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut first = algorithm.hasher();
            first.update(b"the first half, ");
            let saved = first.save();
            let mut second = Hasher::restore(algorithm, &saved).expect("restores");
            second.update(b"and the second");
            assert_eq!(
                second.finish(),
                algorithm.digest(b"the first half, and the second")
            );
            assert!(Hasher::restore(algorithm, &saved[1..]).is_none());
        }
        let sha256 = Algorithm::Sha256.hasher().save();
        assert!(Hasher::restore(Algorithm::Sha512, &sha256).is_none());
    }

    #[test]
    fn rejects_malformed_text() {
        let ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            ok.parse::<Digest>(),
            Err(DigestParseError::MissingAlgorithm)
        );
        assert!(matches!(
            format!("md5:{ok}").parse::<Digest>(),
            Err(DigestParseError::UnsupportedAlgorithm(_))
        ));
        assert!(format!("sha256:{}", &ok[1..]).parse::<Digest>().is_err());
        assert!(
            format!("sha256:{}", ok.to_uppercase())
                .parse::<Digest>()
                .is_err()
        );
        assert!(format!("sha256:{ok}0").parse::<Digest>().is_err());
        assert!("sha256:".parse::<Digest>().is_err());
    }

    proptest::proptest! {
        /// Digests come from clients: any text either parses and prints back the same,
        /// or is refused; it never panics.
        #[test]
        fn any_text_parses_back_or_is_refused(text in "\\PC{0,80}|sha(256|512):[0-9a-fA-F]{0,130}") {
            if let Ok(d) = text.parse::<Digest>() {
                proptest::prop_assert_eq!(d.to_string(), text);
            }
        }

        #[test]
        fn any_key_bytes_are_safe(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Some((d, used)) = Digest::from_key(&bytes) {
                proptest::prop_assert_eq!(&d.to_key()[..], &bytes[..used]);
            }
        }
    }

    #[test]
    fn key_round_trip() {
        let d = Algorithm::Sha512.digest(b"x");
        let mut key = d.to_key();
        key.extend_from_slice(b"tail");
        let (back, used) = Digest::from_key(&key).unwrap();
        assert_eq!(back, d);
        assert_eq!(&key[used..], b"tail");
        assert!(Digest::from_key(&[9, 1, 2]).is_none());
        assert!(Digest::from_key(&[1, 1, 2]).is_none());
    }
}
