//! `auth.htpasswd`: Basic credentials checked against a file of bcrypt entries, as
//! distribution does; any valid user has all access. Checking a bcrypt hash costs tens
//! of milliseconds and Docker sends the credentials with every request, so a pair
//! that was checked is remembered (by its SHA-256) for as long as this set of users
//! lives; failed attempts are counted per client address and refused past a limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

/// A line of the file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct HtpasswdError {
    pub line: usize,
    pub reason: String,
}

/// Failed logins an address may make in [`WINDOW`] before it is refused.
const FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Checked pairs remembered at most.
const REMEMBERED: usize = 10_000;

pub struct Htpasswd {
    pub realm: String,
    users: HashMap<String, String>,
    checked: Mutex<HashMap<[u8; 32], String>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Why Basic credentials are not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// None given, malformed, unknown user or wrong password.
    Unauthorized,
    /// Too many failures from this address lately.
    TooMany,
}

impl Htpasswd {
    /// The users of an htpasswd file's text; only bcrypt entries (`$2a$`, `$2b$`,
    /// `$2y$`) are taken, anything else is an error naming its line.
    pub fn parse(realm: String, text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| HtpasswdError {
                line: line_no,
                reason: reason.to_owned(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| error("expected user:hash"))?;
            if user.is_empty() {
                return Err(error("the user name is empty"));
            }
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                return Err(error(
                    "not a bcrypt hash (htpasswd -B); MD5, SHA-1, crypt and plain entries are refused",
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            realm,
            users,
            checked: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The user an `Authorization: Basic ...` header names, if its password is right.
    pub fn check(&self, header: Option<&str>, peer: IpAddr) -> Result<String, Refusal> {
        let now = Instant::now();
        {
            let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((count, since)) = failures.get(&peer)
                && *count >= FAILURES
                && now.duration_since(*since) < WINDOW
            {
                return Err(Refusal::TooMany);
            }
        }
        match self.verify(header) {
            Some(user) => Ok(user),
            None => {
                if header.is_some() {
                    let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
                    let entry = failures.entry(peer).or_insert((0, now));
                    entry.0 += 1;
                }
                Err(Refusal::Unauthorized)
            }
        }
    }

    /// The user whose right password `header` carries, without the failure count.
    pub(crate) fn verify(&self, header: Option<&str>) -> Option<String> {
        let (scheme, encoded) = header?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let key: [u8; 32] = Sha256::digest(encoded.trim().as_bytes()).into();
        if let Some(user) = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Some(user.clone());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let hash = self.users.get(user)?;
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return None;
        }
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.len() >= REMEMBERED {
            checked.clear();
        }
        checked.insert(key, user.to_owned());
        Some(user.to_owned())
    }

    /// `Basic realm="..."`.
    pub fn challenge(&self) -> String {
        format!(
            "Basic realm=\"{}\"",
            self.realm.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn file() -> Htpasswd {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        Htpasswd::parse("lain".into(), &format!("# users\n\nalice:{hash}\n")).expect("parse")
    }

    #[test]
    fn bcrypt_entries_only() {
        let e = Htpasswd::parse("r".into(), "alice:$apr1$abc$def\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Htpasswd::parse("r".into(), "# c\nbob:{SHA}abc\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(Htpasswd::parse("r".into(), "nocolon\n").is_err());
        assert!(Htpasswd::parse("r".into(), ":$2y$05$x\n").is_err());
    }

    #[test]
    fn right_and_wrong_credentials() {
        let h = file();
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret")), peer),
            Ok("alice".into())
        );
        // Again, from the remembered check.
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret")), peer),
            Ok("alice".into())
        );
        assert_eq!(
            h.check(Some(&basic("alice", "wrong")), peer),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            h.check(Some(&basic("mallory", "s3cret")), peer),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(h.check(None, peer), Err(Refusal::Unauthorized));
        assert_eq!(h.check(Some("Bearer x"), peer), Err(Refusal::Unauthorized));
        assert_eq!(h.check(Some("Basic !!!"), peer), Err(Refusal::Unauthorized));
        assert_eq!(h.challenge(), "Basic realm=\"lain\"");
    }

    #[test]
    fn failures_are_limited_per_address() {
        let h = file();
        let noisy: IpAddr = "127.0.0.2".parse().expect("ip");
        let quiet: IpAddr = "127.0.0.3".parse().expect("ip");
        for _ in 0..FAILURES {
            assert_eq!(
                h.check(Some(&basic("alice", "guess")), noisy),
                Err(Refusal::Unauthorized)
            );
        }
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret")), noisy),
            Err(Refusal::TooMany)
        );
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret")), quiet),
            Ok("alice".into())
        );
    }

    proptest::proptest! {
        /// The property of the `auth_header` fuzz target, on every run: no header but
        /// alice's real credentials logs in, and none panics the check.
        #[test]
        fn arbitrary_authorization_headers_are_refused(
            text in "\\PC{0,120}",
            user in "\\PC{0,20}",
            password in "\\PC{0,20}",
        ) {
            let users = file();
            let peer = IpAddr::from([127, 0, 0, 1]);
            proptest::prop_assert!(users.check(Some(&text), peer).is_err());
            proptest::prop_assume!(password != "s3cret");
            proptest::prop_assert!(users.check(Some(&basic(&user, &password)), peer).is_err());
        }
    }
}
