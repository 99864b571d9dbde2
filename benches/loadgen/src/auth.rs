//! What token authentication costs (`benches/auth`): small-blob pulls and manifest GETs
//! against a registry without auth and one with token auth, side by side in one run,
//! with one token sent on every request (as a client does for a whole pull).
//! `sign-token` makes that token with the test keys of `http/src/auth/fixtures`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lain_engine::Algorithm as DigestAlgorithm;

use crate::client::{Conn, Request};

const CONNECTIONS: usize = 32;
const REPO: &str = "bench/auth";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A token for `issuer`/`service` granting pull and push on the benchmark's repository,
/// RS256 by the PEM key `key_pem`, named by `kid`, valid for an hour.
pub fn sign(key_pem: &[u8], kid: &str, issuer: &str, service: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": issuer, "sub": "bench", "aud": service, "exp": now + 3600, "nbf": now - 5,
        "iat": now, "jti": now.to_string(),
        "access": [{"type": "repository", "name": REPO, "actions": ["pull", "push"]}],
    });
    let header = jsonwebtoken::Header {
        alg: jsonwebtoken::Algorithm::RS256,
        kid: Some(kid.to_owned()),
        ..jsonwebtoken::Header::default()
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

/// Pushes a 4 KiB blob and a manifest over it; returns their paths.
fn populate(addr: SocketAddr, auth: &[(&str, &str)]) -> Result<(String, String), String> {
    let mut conn = Conn::new(addr);
    let blob = vec![7u8; 4096];
    let digest = DigestAlgorithm::Sha256.digest(&blob).to_string();
    let path = format!("/v2/{REPO}/blobs/uploads/?digest={digest}");
    let parts: [&[u8]; 1] = [&blob];
    conn.send(&Request {
        method: "POST",
        path: &path,
        headers: auth,
        body: &parts,
        keep_body: false,
    })
    .and_then(|r| r.expect(201, "push blob"))
    .map_err(|e| e.to_string())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 4096},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 4096}],
    })
    .to_string();
    let mut headers = auth.to_vec();
    headers.push(("Content-Type", MANIFEST));
    let parts: [&[u8]; 1] = [manifest.as_bytes()];
    conn.send(&Request {
        method: "PUT",
        path: &format!("/v2/{REPO}/manifests/v1"),
        headers: &headers,
        body: &parts,
        keep_body: false,
    })
    .and_then(|r| r.expect(201, "push manifest"))
    .map_err(|e| e.to_string())?;
    Ok((
        format!("/v2/{REPO}/blobs/{digest}"),
        format!("/v2/{REPO}/manifests/v1"),
    ))
}

/// GETs of `path` per second over `CONNECTIONS` connections for `seconds`.
fn rate(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    seconds: f64,
) -> Result<f64, String> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<String>);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CONNECTIONS {
            s.spawn(|| {
                let mut conn = Conn::new(addr);
                while !stop.load(Ordering::Relaxed) {
                    let result = conn
                        .send(&Request {
                            method: "GET",
                            path,
                            headers,
                            body: &[],
                            keep_body: false,
                        })
                        .and_then(|r| r.expect(200, "GET"));
                    match result {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e.to_string());
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// The rates without and with token auth, and their ratio, for blobs and manifests;
/// each pair measured back to back, three rounds, medians printed.
pub fn cost(
    open: SocketAddr,
    guarded: SocketAddr,
    token: &str,
    seconds: f64,
) -> Result<(), String> {
    let bearer = format!("Bearer {token}");
    let auth: [(&str, &str); 1] = [("Authorization", &bearer)];
    let (blob, manifest) = populate(open, &[])?;
    populate(guarded, &auth)?;
    for (what, path) in [("4 KiB blob GETs", &blob), ("manifest GETs", &manifest)] {
        let mut ratios = Vec::new();
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let without = rate(open, path, &[], seconds)?;
            let with = rate(guarded, path, &auth, seconds)?;
            ratios.push(with / without);
            pairs.push((without, with));
        }
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let rounds: Vec<String> = pairs
            .iter()
            .map(|(a, b)| format!("{a:.0} / {b:.0}"))
            .collect();
        println!(
            "{what} ({CONNECTIONS} connections): without / with token auth, per second: {}; median ratio {:.0}%",
            rounds.join(", "),
            100.0 * sorted[1]
        );
    }
    Ok(())
}
