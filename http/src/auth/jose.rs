//! JOSE as Docker tokens use it: the compact serialization, the asymmetric algorithms
//! of the allow-list, and keys that check (and, for `registry token-server`, make)
//! signatures.
//!
//! Signatures are jsonwebtoken's (RustCrypto backend) for every algorithm but ES512:
//! jsonwebtoken has no P-521, so ES512 goes to RustCrypto's `p521` directly. That is
//! also why the header is read here and not by jsonwebtoken, whose `Algorithm` cannot
//! name ES512: one path reads every token, and only the last step, the signature,
//! differs by key.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p521::ecdsa::signature::{Signer, Verifier};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::der::PublicKey;

/// The asymmetric JWS algorithms (RFC 7518) this registry verifies. HMAC is not among
/// them: with a public key as the secret, anyone could sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, the default allow-list.
    pub const ALL: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm in jsonwebtoken, which lacks ES512.
    fn jsonwebtoken(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as J;
        Some(match self {
            Algorithm::RS256 => J::RS256,
            Algorithm::RS384 => J::RS384,
            Algorithm::RS512 => J::RS512,
            Algorithm::PS256 => J::PS256,
            Algorithm::PS384 => J::PS384,
            Algorithm::PS512 => J::PS512,
            Algorithm::ES256 => J::ES256,
            Algorithm::ES384 => J::ES384,
            Algorithm::EdDSA => J::EdDSA,
            Algorithm::ES512 => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a name is no algorithm of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    #[error("{0}: HMAC algorithms are never accepted (a public key would sign tokens)")]
    Hmac(String),
    #[error("{0:?} is not supported; these are: {list}", list = names())]
    Unsupported(String),
}

fn names() -> String {
    Algorithm::ALL
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Algorithm {
    type Err = AlgorithmError;

    fn from_str(name: &str) -> Result<Algorithm, AlgorithmError> {
        if let Some(algorithm) = Algorithm::ALL.iter().find(|a| a.name() == name) {
            Ok(*algorithm)
        } else if name.starts_with("HS") {
            Err(AlgorithmError::Hmac(name.into()))
        } else {
            Err(AlgorithmError::Unsupported(name.into()))
        }
    }
}

/// What a token's header says about its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg` as written; it may name an algorithm this registry refuses.
    pub alg: String,
    pub kid: Option<String>,
    /// The `x5c` chain, leaf first, DER.
    pub x5c: Option<Vec<Vec<u8>>>,
}

/// A compact JWS taken apart, its signature not yet checked.
#[derive(Debug)]
pub struct Compact<'a> {
    pub header: Header,
    /// `header.payload` as sent: what the signature covers.
    pub signing_input: &'a str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a token cannot be taken apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedError {
    #[error("not three base64url parts separated by dots")]
    Parts,
    #[error("the {0} is not base64url")]
    Base64(&'static str),
    #[error("the header is not a JSON object with a string alg: {0}")]
    Header(String),
    #[error("x5c: certificate {0} is not base64")]
    Certificate(usize),
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
}

/// Splits `token` into header, payload and signature.
pub fn parse(token: &str) -> Result<Compact<'_>, MalformedError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MalformedError::Parts);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| MalformedError::Base64("header"))?;
    let raw: RawHeader =
        serde_json::from_slice(&header).map_err(|e| MalformedError::Header(e.to_string()))?;
    let x5c = raw
        .x5c
        .map(|chain| {
            chain
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    STANDARD
                        .decode(c)
                        .map_err(|_| MalformedError::Certificate(i))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Compact {
        header: Header {
            alg: raw.alg,
            kid: raw.kid,
            x5c,
        },
        signing_input,
        payload: URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| MalformedError::Base64("payload"))?,
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| MalformedError::Base64("signature"))?,
    })
}

/// A public key a token's signature is checked with.
pub enum VerifyingKey {
    /// Any key jsonwebtoken verifies with: RSA, P-256, P-384, Ed25519.
    Jose(DecodingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl VerifyingKey {
    /// The key of a certificate or a JWKS entry; `None` for kinds no algorithm uses.
    pub fn from_public_key(key: &PublicKey) -> Option<VerifyingKey> {
        Some(match key {
            PublicKey::Rsa(pkcs1) => VerifyingKey::Jose(DecodingKey::from_rsa_der(pkcs1)),
            PublicKey::P256(point) | PublicKey::P384(point) => {
                VerifyingKey::Jose(DecodingKey::from_ec_der(point))
            }
            PublicKey::Ed25519(raw) => VerifyingKey::Jose(DecodingKey::from_ed_der(raw)),
            PublicKey::P521(point) => {
                VerifyingKey::P521(p521::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()?)
            }
        })
    }

    /// The key a JWK describes (distribution 3's `jwks`).
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, String> {
        if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm
            && ec.curve == EllipticCurve::P521
        {
            let coordinate = |c: &str| URL_SAFE_NO_PAD.decode(c).map_err(|e| e.to_string());
            let mut point = vec![0x04];
            point.extend(coordinate(&ec.x)?);
            point.extend(coordinate(&ec.y)?);
            return p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map(VerifyingKey::P521)
                .map_err(|_| "a P-521 key whose point is not on the curve".into());
        }
        DecodingKey::from_jwk(jwk)
            .map(VerifyingKey::Jose)
            .map_err(|e| e.to_string())
    }

    /// RFC 7638: the SHA-256 thumbprint of the key's JWK, base64url.
    pub fn thumbprint(&self) -> Option<String> {
        match self {
            VerifyingKey::Jose(key) => Jwk::from_decoding_key(key, None)
                .ok()?
                .thumbprint(ThumbprintHash::SHA256)
                .ok(),
            VerifyingKey::P521(key) => {
                let point = key.to_sec1_point(false);
                let (x, y) = point.as_bytes()[1..].split_at(66);
                // The required members in lexicographic order, no whitespace.
                let canonical = format!(
                    r#"{{"crv":"P-521","kty":"EC","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y)
                );
                Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
            }
        }
    }

    /// Whether `signature` over `message` is this key's under `algorithm`. A key of
    /// another kind than the algorithm's is a failed check, not an error.
    pub fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match (self, algorithm.jsonwebtoken()) {
            (VerifyingKey::Jose(key), Some(algorithm)) => jsonwebtoken::crypto::verify(
                &URL_SAFE_NO_PAD.encode(signature),
                message,
                key,
                algorithm,
            )
            .unwrap_or(false),
            (VerifyingKey::P521(key), None) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            _ => false,
        }
    }
}

/// A private key that signs tokens (`registry token-server`), with the algorithm its
/// kind implies: RS256 for RSA, ES256/ES384/ES512 by curve, EdDSA for Ed25519.
pub struct SigningKey {
    algorithm: Algorithm,
    key: PrivateKey,
}

enum PrivateKey {
    Jose(EncodingKey),
    P521(p521::ecdsa::SigningKey),
}

impl SigningKey {
    /// From a PKCS#8 PEM private key (PKCS#1 also for RSA). The curve of an EC key is
    /// read by RustCrypto's curve crates: jsonwebtoken would take any EC key for ES256.
    pub fn from_pem(pem: &[u8]) -> Option<SigningKey> {
        use p521::pkcs8::DecodePrivateKey;
        let text = std::str::from_utf8(pem).ok()?;
        let jose = |algorithm, key: Result<EncodingKey, _>| {
            key.ok().map(|key| (algorithm, PrivateKey::Jose(key)))
        };
        let (algorithm, key) = if let Ok(key) = p521::ecdsa::SigningKey::from_pkcs8_pem(text) {
            (Algorithm::ES512, PrivateKey::P521(key))
        } else if p384::SecretKey::from_pkcs8_pem(text).is_ok() {
            jose(Algorithm::ES384, EncodingKey::from_ec_pem(pem))?
        } else if p256::SecretKey::from_pkcs8_pem(text).is_ok() {
            jose(Algorithm::ES256, EncodingKey::from_ec_pem(pem))?
        } else if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, PrivateKey::Jose(key))
        } else {
            jose(Algorithm::EdDSA, EncodingKey::from_ed_pem(pem))?
        };
        let key = SigningKey { algorithm, key };
        // jsonwebtoken takes any PEM it can split (a certificate too) and fails only
        // when it signs: sign once now, so a bad key stops the start.
        key.sign(serde_json::Map::new(), &serde_json::Value::Null)
            .ok()?;
        Some(key)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// A compact JWS of `claims`; `header` gets this key's `alg` (and `typ`).
    pub fn sign(
        &self,
        mut header: serde_json::Map<String, serde_json::Value>,
        claims: &serde_json::Value,
    ) -> Result<String, String> {
        header.insert("typ".into(), "JWT".into());
        header.insert("alg".into(), self.algorithm.name().into());
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = match (&self.key, self.algorithm.jsonwebtoken()) {
            (PrivateKey::Jose(key), Some(algorithm)) => {
                jsonwebtoken::crypto::sign(input.as_bytes(), key, algorithm)
                    .map_err(|e| e.to_string())?
            }
            (PrivateKey::P521(key), _) => {
                let signature: p521::ecdsa::Signature = key.sign(input.as_bytes());
                URL_SAFE_NO_PAD.encode(signature.to_bytes())
            }
            (PrivateKey::Jose(_), None) => return Err("no signer for this algorithm".into()),
        };
        Ok(format!("{input}.{signature}"))
    }
}
