//! A Bearer token, checked as distribution checks one: the signature, by the leaf of an
//! `x5c` chain that leads to the bundle or by a key found by `kid`, with an algorithm
//! from the allow-list; then `iss`, `aud`, `exp` and `nbf`; then the `access` claim
//! says what it grants.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;

use super::der;
use super::jose::{self, Algorithm, MalformedError, VerifyingKey};
use super::keys::TokenKeys;

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

/// The claims read; others (`iat`, `jti`, ...) are ignored, as distribution does.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    access: Option<Vec<Access>>,
}

/// `aud`: RFC 7519 allows one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, service: &str) -> bool {
        match self {
            Audience::One(one) => one == service,
            Audience::Many(many) => many.iter().any(|a| a == service),
        }
    }
}

/// Why a token is refused; every one is `invalid_token` to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(#[from] MalformedError),
    #[error("the claims are not what a token holds: {0}")]
    Claims(String),
    #[error("the algorithm {0:?} is not allowed")]
    Algorithm(String),
    #[error("the x5c chain does not lead to the root bundle: {0}")]
    Chain(String),
    #[error("no key with the id {0:?}")]
    UnknownKid(String),
    #[error("the token names neither an x5c chain nor a key id")]
    NoKey,
    #[error("the signature is not the key's")]
    Signature,
    #[error("issued by {0:?}, not by the configured issuer")]
    Issuer(Option<String>),
    #[error("not meant for this service (aud)")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
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

/// The algorithm `name` stands for, if this registry verifies it.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    name.parse()
        .map_err(|e: jose::AlgorithmError| e.to_string())
}

impl TokenSettings {
    /// Checks `token` now.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let token = jose::parse(token)?;
        let algorithm = token
            .header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| TokenError::Algorithm(token.header.alg.clone()))?;
        let chain_key;
        let key = match (&token.header.x5c, &token.header.kid) {
            // Token servers send a leaf and perhaps an intermediate; a long list of
            // certificates would only make the chain search expensive.
            (Some(chain), _) if chain.len() > MAX_CHAIN => {
                return Err(TokenError::Chain(format!(
                    "{} certificates in x5c; at most {MAX_CHAIN} are taken",
                    chain.len()
                )));
            }
            (Some(chain), _) if !chain.is_empty() => {
                chain_key = self.chain_key(chain)?;
                &chain_key
            }
            (_, Some(kid)) => &**self
                .keys
                .by_kid(kid)
                .ok_or_else(|| TokenError::UnknownKid(kid.clone()))?,
            (_, None) => return Err(TokenError::NoKey),
        };
        if !key.verify(algorithm, token.signing_input.as_bytes(), &token.signature) {
            return Err(TokenError::Signature);
        }
        let claims: Claims = serde_json::from_slice(&token.payload)
            .map_err(|e| TokenError::Claims(e.to_string()))?;
        self.check_claims(claims, now()?)
    }

    /// `iss`, `aud`, `exp` and `nbf` (with [`LEEWAY`]) at `now`, seconds since the epoch.
    fn check_claims(&self, claims: Claims, now: f64) -> Result<Grant, TokenError> {
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(TokenError::Issuer(claims.iss));
        }
        if !claims.aud.is_some_and(|aud| aud.contains(&self.service)) {
            return Err(TokenError::Audience);
        }
        let leeway = LEEWAY as f64;
        let exp = claims
            .exp
            .filter(|exp| exp.is_finite())
            .ok_or_else(|| TokenError::Claims("no exp".into()))?;
        if exp + leeway < now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| !nbf.is_finite() || nbf > now + leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(Grant {
            subject: claims.sub.unwrap_or_default(),
            access: claims.access.unwrap_or_default(),
            // Saturating: a far-future or negative exp is still an ordering.
            expires: exp as u64,
        })
    }

    /// The leaf's key, once the chain (leaf first) verifies against the bundle.
    fn chain_key(&self, chain: &[Vec<u8>]) -> Result<VerifyingKey, TokenError> {
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
            .and_then(|key| VerifyingKey::from_public_key(&key))
            .ok_or_else(|| TokenError::Chain("the leaf's key is of no supported kind".into()))
    }
}

/// Seconds since the epoch; a clock before 1970 refuses every token.
fn now() -> Result<f64, TokenError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .map_err(|_| TokenError::Expired)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
