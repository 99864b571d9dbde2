//! Garbage collection at scale (`benches/gc`): the stores a collection runs on, and the
//! pushes that run beside an online one.
//!
//! - `gc-populate`: a store built through the engine's API (many small blobs, images
//!   of several layers each, and large blobs), then half of every kind of image
//!   deleted, so a collection has as much to keep as to remove.
//! - `gc-push`: the same shape of store pushed over HTTP, for distribution 2.8's
//!   `garbage-collect` (which walks its own storage tree) and this registry's side by
//!   side, then half the manifests deleted over HTTP.
//! - `gc-online`: images pushed at full rate, first alone, then while `registry
//!   garbage-collect` runs through the server, then alone again.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lain_engine::{Algorithm, Digest, Engine, ManifestMeta, Options, Reference, References};

use crate::client::{Conn, Request};
use crate::scale::fan_out;
use crate::scenarios::{push_monolithic, request};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const REPOS: usize = 100;

/// Small blob `k`: distinct bytes of about a KiB.
fn small(k: usize) -> Vec<u8> {
    let mut bytes = format!("lain gc blob {k:09} ").into_bytes();
    bytes.resize(1024, b'.');
    bytes
}

fn manifest_json(config: (&str, usize), layers: &[(String, usize)], n: usize) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size
            })
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": layers,
        "annotations": { "bench.n": n.to_string() },
    })
    .to_string()
    .into_bytes()
}

/// Blobs per manifest when `blobs` blobs are shared out among `manifests` images.
fn per_image(blobs: usize, manifests: usize) -> usize {
    (blobs / manifests.max(1)).max(2)
}

/// Builds the store in `root` through the engine and deletes every other image.
pub fn populate(
    root: &Path,
    blobs: usize,
    manifests: usize,
    large_mib: usize,
) -> Result<(), String> {
    let start = Instant::now();
    let engine = Engine::open(root, Options::default()).map_err(|e| format!("open: {e}"))?;
    let per = per_image(blobs, manifests);
    let repo = |image: usize| format!("gc/app{:02}", image % REPOS);
    fan_out(manifests, "images", &|i| {
        let mut digests = Vec::new();
        for k in i * per..(i + 1) * per {
            let bytes = small(k);
            let digest = Algorithm::Sha256.digest(&bytes);
            engine
                .put_blob(&repo(i), Bytes::from(bytes), &digest)
                .map_err(|e| format!("blob {k}: {e}"))?;
            digests.push(digest);
        }
        let config = digests[0].to_string();
        let layers: Vec<(String, usize)> =
            digests[1..].iter().map(|d| (d.to_string(), 1024)).collect();
        let body = manifest_json((&config, 1024), &layers, i);
        push_manifest(&engine, &repo(i), body, &format!("v{i:06}"), digests)
    })?;
    let large = large_mib / 64;
    let piece = crate::data::pseudo_random(7, 1 << 20);
    // One after another, so they share packs (kept and deleted ones side by side), as
    // the layers of a registry pushed to over time do.
    let one_at_a_time = |n: usize| -> Result<(), String> {
        let id = engine
            .start_upload("gc/large", Algorithm::Sha256)
            .map_err(|e| format!("large {n}: {e}"))?;
        let mut hasher = Algorithm::Sha256.hasher();
        for m in 0..64 {
            let mut bytes = piece.clone();
            bytes[..16].copy_from_slice(&((n * 64 + m) as u128).to_le_bytes());
            hasher.update(&bytes);
            engine
                .upload_append("gc/large", &id, Bytes::from(bytes))
                .map_err(|e| format!("large {n}: {e}"))?;
        }
        let layer = hasher.finish();
        engine
            .commit_upload("gc/large", &id, &layer)
            .map_err(|e| format!("large {n}: {e}"))?;
        let config = small(usize::MAX - n);
        let config_digest = Algorithm::Sha256.digest(&config);
        engine
            .put_blob("gc/large", Bytes::from(config), &config_digest)
            .map_err(|e| format!("large config {n}: {e}"))?;
        let body = manifest_json(
            (&config_digest.to_string(), 1024),
            &[(layer.to_string(), 64 << 20)],
            n,
        );
        push_manifest(
            &engine,
            "gc/large",
            body,
            &format!("large{n:04}"),
            vec![config_digest, layer],
        )
    };
    (0..large).try_for_each(one_at_a_time)?;
    // Half of each kind of image goes: their blobs are garbage now.
    fan_out(manifests, "deletes", &|i| {
        delete_tagged(&engine, &repo(i), &format!("v{i:06}"), i)
    })?;
    fan_out(large, "large deletes", &|n| {
        delete_tagged(&engine, "gc/large", &format!("large{n:04}"), n)
    })?;
    engine.compact_index();
    eprintln!(
        "loadgen: built {} blobs in {manifests} images and {large} large blobs in {:.0} s; deleted every other image",
        manifests * per,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn push_manifest(
    engine: &Engine,
    repo: &str,
    body: Vec<u8>,
    tag: &str,
    blobs: Vec<Digest>,
) -> Result<(), String> {
    let meta = ManifestMeta {
        media_type: OCI_MANIFEST.into(),
        ..ManifestMeta::default()
    };
    let references = References {
        blobs,
        manifests: Vec::new(),
    };
    engine
        .put_manifest(
            repo,
            Bytes::from(body),
            &Reference::Tag(tag.to_owned()),
            meta,
            &references,
        )
        .map(|_| ())
        .map_err(|e| format!("manifest {repo}:{tag}: {e}"))
}

fn delete_tagged(engine: &Engine, repo: &str, tag: &str, i: usize) -> Result<(), String> {
    if i.is_multiple_of(2) {
        return Ok(());
    }
    let digest = engine
        .resolve_tag(repo, tag)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{repo}:{tag} is missing"))?;
    engine
        .delete_manifest(repo, &digest)
        .map(|_| ())
        .map_err(|e| format!("delete {repo}:{tag}: {e}"))
}

/// Pushes `manifests` images of `per` small blobs each over HTTP (16 connections), then
/// deletes every other one by digest.
pub fn push(addr: SocketAddr, manifests: usize, per: usize) -> Result<(), String> {
    let start = Instant::now();
    let digests: Vec<std::sync::Mutex<Option<String>>> = (0..manifests)
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let mut conn = Conn::new(addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= manifests {
                        return;
                    }
                    let repo = format!("gc/app{:02}", i % REPOS);
                    let result = push_image_http(&mut conn, &repo, i, per, i * per, 1024);
                    match result {
                        Ok(digest) => {
                            *digests[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(digest)
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(format!("image {i}: {e}"));
                            next.store(manifests, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut conn = Conn::new(addr);
    for (i, digest) in digests.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let digest = digest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let digest = digest.ok_or("an image was not pushed")?;
        let path = format!("/v2/gc/app{:02}/manifests/{digest}", i % REPOS);
        conn.send(&request("DELETE", &path, &[]))
            .and_then(|r| r.expect(202, "DELETE manifest"))
            .map_err(|e| e.to_string())?;
    }
    eprintln!(
        "loadgen: pushed {manifests} images of {per} blobs over HTTP in {:.0} s; deleted every other one",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pushes one image: `per` blobs numbered from `first` (the first is its config, each
/// `size` bytes, unique), then its manifest; returns the manifest's digest.
fn push_image_http(
    conn: &mut Conn,
    repo: &str,
    n: usize,
    per: usize,
    first: usize,
    size: usize,
) -> Result<String, String> {
    let mut layers = Vec::new();
    let mut config = String::new();
    for k in first..first + per {
        let mut bytes = small(k);
        // The config stays small; layers are `size` bytes.
        if k != first {
            bytes.resize(size, b'.');
        }
        let digest = Algorithm::Sha256.digest(&bytes).to_string();
        push_monolithic(conn, repo, &[&bytes], &digest).map_err(|e| e.to_string())?;
        if k == first {
            config = digest;
        } else {
            layers.push((digest, size));
        }
    }
    let body = manifest_json((&config, small(first).len()), &layers, n);
    let path = format!("/v2/{repo}/manifests/v{n:06}");
    let parts: [&[u8]; 1] = [&body];
    let req = Request {
        headers: &[("Content-Type", OCI_MANIFEST)],
        ..request("PUT", &path, &parts)
    };
    conn.send(&req)
        .and_then(|r| r.expect(201, "PUT manifest"))
        .map_err(|e| e.to_string())?;
    Ok(Algorithm::Sha256.digest(&body).to_string())
}

/// Images pushed per second by 4 connections (a 256 KiB layer and a config each)
/// while `during` is running, or for `seconds` when it is `None`.
fn push_rate(
    addr: SocketAddr,
    counter: &AtomicU64,
    seconds: f64,
    during: Option<&mut std::process::Child>,
) -> Result<(f64, f64, Option<bool>), String> {
    let stop = AtomicBool::new(false);
    let pushed = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<String>);
    let start = Instant::now();
    let mut finished = None;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut conn = Conn::new(addr);
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                    let repo = format!("gc/online{:02}", n % 10);
                    let first = 1_000_000_000 + n * 2;
                    match push_image_http(&mut conn, &repo, n, 2, first, 256 << 10) {
                        Ok(_) => {
                            pushed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        match during {
            Some(child) => {
                finished = child.wait().ok().map(|s| s.success());
            }
            None => std::thread::sleep(Duration::from_secs_f64(seconds)),
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok((
        pushed.load(Ordering::Relaxed) as f64 / elapsed,
        elapsed,
        finished,
    ))
}

/// Push rates alone, during `registry garbage-collect` through the server at `addr`
/// (data in `root`), and alone again.
pub fn online(addr: SocketAddr, registry: &Path, root: &Path, seconds: f64) -> Result<(), String> {
    let counter = AtomicU64::new(0);
    let (before, _, _) = push_rate(addr, &counter, seconds, None)?;
    let mut collector = Command::new(registry)
        .args([
            "garbage-collect",
            "--grace",
            "0s",
            "--compact-threshold",
            "0",
        ])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", registry.display()))?;
    let (during, took, finished) = push_rate(addr, &counter, 0.0, Some(&mut collector))?;
    if finished != Some(true) {
        return Err("the online collection failed".into());
    }
    let (after, _, _) = push_rate(addr, &counter, seconds, None)?;
    let alone = (before + after) / 2.0;
    println!(
        "pushes (4 connections, images of a 256 KiB layer): {alone:.1} images/s alone \
         ({before:.1} before, {after:.1} after), {during:.1} images/s during the {took:.1} s \
         collection: {:.0}% of the rate alone",
        100.0 * during / alone
    );
    Ok(())
}
