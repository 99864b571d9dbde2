//! The state an upload session's `Location` carries (`?_state=`): the session's size
//! when the location was issued, authenticated with a key derived from `http.secret`
//! (a keyed blake3 hash over the repository, the session id and the size). Any
//! instance that shares the secret can reject a forged location before it asks the
//! store.
//!
//! A location without `_state` (a client that builds it from `Docker-Upload-UUID`) is
//! not refused: the store knows whether the session exists.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;

/// Bytes of the hash kept: 128 bits, as distribution's HMAC-SHA256 state keeps all
/// 256; forging one takes 2^128 guesses, each a request.
const TAG_LEN: usize = 16;

#[derive(Clone)]
pub struct UploadStates {
    key: [u8; 32],
}

/// Why a `_state` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Not this registry's (another secret, or altered).
    Forged,
}

impl UploadStates {
    /// From `http.secret`'s bytes.
    pub fn new(secret: &[u8]) -> UploadStates {
        UploadStates {
            key: blake3::derive_key("lain-registry upload location state v1", secret),
        }
    }

    /// A key of this process alone: its locations are good only here.
    pub fn random() -> UploadStates {
        let mut secret = [0u8; 32];
        getrandom(&mut secret);
        UploadStates::new(&secret)
    }

    fn tag(&self, name: &str, id: &str, received: u64) -> [u8; TAG_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&received.to_be_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_LEN]);
        tag
    }

    /// The `_state` of session `id` of `name` with `received` bytes.
    pub fn issue(&self, name: &str, id: &str, received: u64) -> String {
        let mut state = received.to_be_bytes().to_vec();
        state.extend_from_slice(&self.tag(name, id, received));
        BASE64.encode(state)
    }

    /// The size `state` says session `id` of `name` had.
    pub fn check(&self, name: &str, id: &str, state: &str) -> Result<u64, StateError> {
        let bytes = BASE64.decode(state).map_err(|_| StateError::Forged)?;
        if bytes.len() != 8 + TAG_LEN {
            return Err(StateError::Forged);
        }
        let (size, tag) = bytes.split_at(8);
        let received = u64::from_be_bytes(size.try_into().map_err(|_| StateError::Forged)?);
        // Compared as blake3 hashes compare: in constant time.
        let mut expected = [0u8; 32];
        expected[..TAG_LEN].copy_from_slice(&self.tag(name, id, received));
        let mut got = [0u8; 32];
        got[..TAG_LEN].copy_from_slice(tag);
        if blake3::Hash::from_bytes(expected) == blake3::Hash::from_bytes(got) {
            Ok(received)
        } else {
            Err(StateError::Forged)
        }
    }
}

/// 32 random bytes from the kernel.
fn getrandom(out: &mut [u8; 32]) {
    use std::io::Read;
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(out));
    if filled.is_err() {
        // No /dev/urandom: the clock and the address of the stack, hashed. Only this
        // process's locations depend on it.
        let seed = format!("{:?}{:p}", std::time::SystemTime::now(), out);
        *out = *blake3::hash(seed.as_bytes()).as_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_checks_only_for_its_session_size_and_secret() {
        let states = UploadStates::new(b"secret");
        let state = states.issue("lain/app", "id-1", 12_345);
        assert_eq!(states.check("lain/app", "id-1", &state), Ok(12_345));
        assert_eq!(
            states.check("lain/app", "id-2", &state),
            Err(StateError::Forged)
        );
        assert_eq!(
            states.check("lain/other", "id-1", &state),
            Err(StateError::Forged)
        );
        let other = UploadStates::new(b"another secret");
        assert_eq!(
            other.check("lain/app", "id-1", &state),
            Err(StateError::Forged)
        );
        // The size cannot be changed without the tag.
        let mut bytes = BASE64.decode(&state).unwrap();
        bytes[7] ^= 1;
        assert_eq!(
            states.check("lain/app", "id-1", &BASE64.encode(&bytes)),
            Err(StateError::Forged)
        );
        assert_eq!(
            states.check("lain/app", "id-1", "%%%"),
            Err(StateError::Forged)
        );
        assert_eq!(
            states.check("lain/app", "id-1", ""),
            Err(StateError::Forged)
        );
    }
}
