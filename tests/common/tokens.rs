//! Tokens as a token server would issue them, signed with the test keys in
//! `http/src/auth/fixtures` (whose certificates the registries under test trust).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

pub const SERVICE: &str = "lain.local";
pub const ISSUER: &str = "lain auth server";

/// Read at run time: a test binary built in another checkout that shares the target
/// directory would otherwise look in that checkout.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("http/src/auth/fixtures")
    .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The libtrust key id of `fixtures/rsa.crt` (checked against an independent
/// computation in the http crate's tests).
pub const RSA_KID: &str = "EH4R:B7VT:O2TS:YACU:YQDY:7FQX:B5V4:Y2TO:NT3E:VMP4:SU7I:EFYA";

/// The claims of a token for `subject` granting `access` (`[(type, name, [actions])]`),
/// valid for `lifetime` seconds (negative: already expired).
pub fn claims(subject: &str, access: &[(&str, &str, &[&str])], lifetime: i64) -> serde_json::Value {
    let access: Vec<serde_json::Value> = access
        .iter()
        .map(|(kind, name, actions)| json!({"type": kind, "name": name, "actions": actions}))
        .collect();
    json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now() as i64 + lifetime, "nbf": now() - 5, "iat": now() - 5,
        "jti": format!("{subject}-{lifetime}"), "access": access,
    })
}

/// `claims` signed RS256 by the key `key` (a fixture's name) under the key id `kid`.
pub fn sign(claims: &serde_json::Value, key: &str, kid: &str) -> String {
    let key = std::fs::read(fixture(key)).expect("key");
    let header = Header {
        alg: Algorithm::RS256,
        kid: Some(kid.into()),
        ..Header::default()
    };
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(&key).expect("pem"),
    )
    .expect("sign")
}

/// A token for `subject` granting `access`, RS256 by the bundle's RSA key, valid for
/// `lifetime` seconds (negative: already expired).
pub fn token(subject: &str, access: &[(&str, &str, &[&str])], lifetime: i64) -> String {
    sign(&claims(subject, access, lifetime), "rsa.key", RSA_KID)
}

/// base64url without padding, for tokens crafted by hand.
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 with padding (Basic credentials, etcd's JSON gateway).
pub fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bundle a registry under test trusts: the test root CA and the RSA key's
/// certificate, written into `dir`.
pub fn bundle(dir: &std::path::Path) -> PathBuf {
    let bundle = dir.join("bundle.pem");
    let mut pem = std::fs::read(fixture("root.crt")).expect("root");
    pem.extend(std::fs::read(fixture("rsa.crt")).expect("rsa"));
    pem.extend(std::fs::read(fixture("ec521.crt")).expect("ec521"));
    std::fs::write(&bundle, pem).expect("bundle");
    bundle
}

/// `registry token-server` on a free port, issuing tokens as `lain test tokens`
/// signed with the fixture key `key` (its certificate `cert`, named by `kid`:
/// libtrust, thumbprint or x5c), for the users of the htpasswd file `users` and the
/// grant table `grants` (YAML list items); killed when dropped.
pub struct TokenServer {
    child: std::process::Child,
    pub port: u16,
}

pub const TOKEN_ISSUER: &str = "lain test tokens";

impl TokenServer {
    pub fn start(
        dir: &std::path::Path,
        kid: &str,
        (key, cert): (&str, &str),
        users: &std::path::Path,
        grants: &str,
    ) -> TokenServer {
        let port = super::free_port();
        let config = dir.join(format!("token-server-{port}.yml"));
        std::fs::write(
            &config,
            format!(
                "addr: 127.0.0.1:{port}\nissuer: {TOKEN_ISSUER}\nkey: {}\ncertificate: {}\nkid: {kid}\nusers: {}\ngrants:\n{grants}",
                fixture(key).display(),
                fixture(cert).display(),
                users.display()
            ),
        )
        .expect("write");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["token-server", config.to_str().expect("utf-8")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("token server");
        let server = TokenServer { child, port };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "token server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    /// The registry's `auth.token` section for tokens from this server.
    pub fn registry_auth(&self, bundle: &std::path::Path) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: lain.local\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            bundle.display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
