//! The keys a token may be signed with, from the operator's `rootcertbundle` (and
//! distribution 3's `jwks`), indexed by every id a token server of some generation puts
//! in `kid`: the libtrust key id of distribution 2.x-era servers (LAIN Console's), the
//! RFC 7638 JWK thumbprint, and a JWKS file's own `kid`s. The bundle's certificates are
//! also the roots an `x5c` chain must lead to.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use sha2::{Digest, Sha256};

use super::der;
use super::jose::VerifyingKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("certificate {index} of the bundle: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("the bundle holds no certificate")]
    Empty,
    #[error("the JWKS file: {0}")]
    Jwks(String),
}

pub struct TokenKeys {
    /// The bundle's certificates as roots for `x5c` chains.
    pub roots: Vec<TrustAnchor<'static>>,
    by_kid: HashMap<String, Arc<VerifyingKey>>,
}

impl TokenKeys {
    /// From the bundle's certificates (DER) and, optionally, a JWKS document.
    pub fn new(certificates: &[Vec<u8>], jwks: Option<&str>) -> Result<TokenKeys, KeyError> {
        let mut roots = Vec::new();
        let mut by_kid = HashMap::new();
        for (index, certificate) in certificates.iter().enumerate() {
            let bad = |reason: String| KeyError::Certificate { index, reason };
            let der = CertificateDer::from(certificate.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| bad(format!("not a usable certificate: {e:?}")))?;
            roots.push(anchor.to_owned());
            let spki = der::certificate_spki(certificate)
                .ok_or_else(|| bad("no public key found".into()))?;
            // A key of a kind no token algorithm uses still anchors chains.
            let Some(key) = der::spki_key(spki).and_then(|k| VerifyingKey::from_public_key(&k))
            else {
                continue;
            };
            let key = Arc::new(key);
            by_kid.insert(libtrust_key_id(spki), key.clone());
            if let Some(thumbprint) = key.thumbprint() {
                by_kid.insert(thumbprint, key);
            }
        }
        if let Some(text) = jwks {
            let set: JwkSet =
                serde_json::from_str(text).map_err(|e| KeyError::Jwks(e.to_string()))?;
            for jwk in &set.keys {
                let key = Arc::new(VerifyingKey::from_jwk(jwk).map_err(KeyError::Jwks)?);
                if let Some(kid) = &jwk.common.key_id {
                    by_kid.insert(kid.clone(), key.clone());
                }
                if let Ok(thumbprint) = jwk.thumbprint(ThumbprintHash::SHA256) {
                    by_kid.insert(thumbprint, key);
                }
            }
        }
        if roots.is_empty() && by_kid.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(TokenKeys { roots, by_kid })
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.by_kid.get(kid)
    }
}

/// libtrust's key id (docker/libtrust `keyIDFromCryptoKey`): the SHA-256 of the DER
/// SubjectPublicKeyInfo, its first 240 bits in base32, in twelve groups of four.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki);
    let mut encoded = String::with_capacity(48);
    // 30 bytes are 240 bits: six groups of 40 bits, eight characters each.
    for chunk in hash[..30].chunks(5) {
        let bits = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        for i in (0..8).rev() {
            encoded.push(char::from(ALPHABET[((bits >> (5 * i)) & 31) as usize]));
        }
    }
    encoded
        .as_bytes()
        .chunks(4)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The ids a token server may name a certificate's key by in `kid`: the libtrust key
/// id and the RFC 7638 thumbprint (for `registry token-server`).
pub fn certificate_key_ids(certificate: &[u8]) -> Option<(String, Option<String>)> {
    let spki = der::certificate_spki(certificate)?;
    let thumbprint = der::spki_key(spki)
        .and_then(|k| VerifyingKey::from_public_key(&k))
        .and_then(|k| k.thumbprint());
    Some((libtrust_key_id(spki), thumbprint))
}
