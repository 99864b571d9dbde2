//! A Bearer token, checked as distribution checks one: the signature, by the leaf of an
//! `x5c` chain that leads to the bundle or by a key found by `kid`, with an algorithm
//! from the allow-list; then `iss`, `aud`, `exp` and `nbf`; then the `access` claim
//! says what it grants.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;

use super::der;
use super::keys::{self, TokenKeys};

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: who the token server says the caller is.
    pub subject: String,
    pub access: Vec<Access>,
    /// `exp`, seconds since the epoch.
    pub expires: u64,
}

/// One entry of the `access` claim: `{"type": "repository", "name": "lib/app",
/// "actions": ["pull", "push"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    access: Vec<Access>,
    exp: u64,
}

/// Why a token is refused; every one is `invalid_token` to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("the x5c chain does not lead to the root bundle: {0}")]
    Chain(String),
    #[error("no key with the id {0:?}")]
    UnknownKid(String),
    #[error("the token names neither an x5c chain nor a key id")]
    NoKey,
    #[error("{0}")]
    Invalid(String),
}

/// What a token is checked against (`auth.token`).
pub struct TokenSettings {
    pub issuer: String,
    pub service: String,
    pub keys: TokenKeys,
    /// The algorithms accepted (`signingalgorithms`); never an HMAC one.
    pub algorithms: Vec<Algorithm>,
}

/// The most certificates an `x5c` chain may hold.
const MAX_CHAIN: usize = 4;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY: u64 = 60;

/// The asymmetric algorithms this registry verifies, the default allow-list.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The algorithm `name` stands for, if this registry verifies it.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    let algorithm: Algorithm = name
        .parse()
        .map_err(|_| format!("{name:?} is not a JOSE algorithm"))?;
    if ALGORITHMS.contains(&algorithm) {
        Ok(algorithm)
    } else if name.starts_with("HS") {
        Err(format!(
            "{name}: HMAC algorithms are never accepted (a public key would sign tokens)"
        ))
    } else {
        Err(format!(
            "{name} is not supported; these are: RS256, RS384, RS512, PS256, PS384, PS512, \
             ES256, ES384, EdDSA"
        ))
    }
}

impl TokenSettings {
    /// Checks `token` now.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) || !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        let chain_key;
        let key = match (header.x5c_der(), &header.kid) {
            // Token servers send a leaf and perhaps an intermediate; a long list of
            // certificates would only make the chain search expensive.
            (Ok(Some(chain)), _) if chain.len() > MAX_CHAIN => {
                return Err(TokenError::Chain(format!(
                    "{} certificates in x5c; at most {MAX_CHAIN} are taken",
                    chain.len()
                )));
            }
            (Ok(Some(chain)), _) if !chain.is_empty() => {
                chain_key = self.chain_key(&chain)?;
                &chain_key
            }
            (Err(e), _) => return Err(TokenError::Malformed(format!("x5c: {e}"))),
            (_, Some(kid)) => {
                &self
                    .keys
                    .by_kid(kid)
                    .ok_or_else(|| TokenError::UnknownKid(kid.clone()))?
                    .decoding
            }
            (_, None) => return Err(TokenError::NoKey),
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Grant {
            subject: data.claims.sub,
            access: data.claims.access,
            expires: data.claims.exp,
        })
    }

    /// The leaf's key, once the chain (leaf first) verifies against the bundle.
    fn chain_key(&self, chain: &[Vec<u8>]) -> Result<jsonwebtoken::DecodingKey, TokenError> {
        let (leaf, intermediates) = chain.split_first().ok_or(TokenError::NoKey)?;
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| TokenError::Chain(format!("{e:?}")))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(UnixTime::since_unix_epoch)
            .map_err(|e| TokenError::Chain(e.to_string()))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.keys.roots,
                &intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| TokenError::Chain(format!("{e:?}")))?;
        der::certificate_spki(leaf)
            .and_then(der::spki_key)
            .and_then(|key| keys::decoding_key(&key))
            .ok_or_else(|| TokenError::Chain("the leaf's key is of no supported kind".into()))
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
