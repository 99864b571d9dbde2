//! Authentication and authorization: Docker's token auth (a Bearer JWT from a token
//! server, checked offline against the operator's keys) and htpasswd (Basic
//! credentials against bcrypt entries).

mod der;
pub mod htpasswd;
pub mod jose;
pub mod keys;
pub mod scope;
pub mod token;

pub use htpasswd::{Htpasswd, HtpasswdError, Refusal};
pub use keys::{KeyError, TokenKeys};
pub use scope::{Needs, Problem, Scope, allows, bearer_challenge, needs, pullable};
pub use token::{Access, Grant, TokenError, TokenSettings};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Token authentication as the HTTP layer applies it: the challenge's realm and
/// service, the checks, and the grants of tokens already verified (a client sends the
/// same token with every request of a push; its signature is checked once).
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    /// What the keys were built from (the wiring's digest of the key files), so that a
    /// reload can tell new keys from the same ones.
    pub fingerprint: String,
    /// distribution 3's `autoredirect`: the realm is this path on the request's host.
    pub autoredirect: Option<String>,
    settings: TokenSettings,
    verified: Mutex<HashMap<[u8; 32], Grant>>,
}

/// Verified tokens kept at most; past it, expired ones go, then all.
const VERIFIED_LIMIT: usize = 10_000;

impl TokenAuth {
    pub fn new(
        realm: String,
        fingerprint: String,
        autoredirect: Option<String>,
        settings: TokenSettings,
    ) -> TokenAuth {
        TokenAuth {
            realm,
            fingerprint,
            autoredirect,
            service: settings.service.clone(),
            settings,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The grant of `token`, checked now (or taken from an earlier check while it has
    /// not expired).
    pub fn check(&self, token: &str) -> Result<Grant, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fresh = |grant: &Grant| grant.expires.saturating_add(token::LEEWAY) > now;
        {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(grant) = verified.get(&key).filter(|g| fresh(g)) {
                return Ok(grant.clone());
            }
        }
        let grant = self.settings.verify(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_LIMIT {
            verified.retain(|_, g| fresh(g));
            if verified.len() >= VERIFIED_LIMIT {
                verified.clear();
            }
        }
        verified.insert(key, grant.clone());
        Ok(grant)
    }
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}
