//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use lain_engine::{Algorithm, Digest, Engine, Options};
#[allow(unused_imports)] // each test binary uses its own part of this module
pub use lain_testkit::{memory_tempdir, seed};
use rand::{Rng, RngExt, SeedableRng, rngs::StdRng};

/// Options with small packs and small write batches, so that tests cross pack seals and
/// the placeholder-then-patch write path with little data.
pub fn small_options() -> Options {
    Options {
        pack_seal_size: 256 << 10,
        upload_flush_bytes: 16 << 10,
        read_piece_bytes: 7 << 10,
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 4 << 20,
        ..Options::default()
    }
}

pub fn open(dir: &Path, options: Options) -> Engine {
    Engine::open(dir, options).expect("open engine")
}

pub fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn sha256(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest(data)
}

/// Uploads `data` in pieces split at `cuts` (offsets, any order) and commits it.
pub fn upload_in_pieces(engine: &Engine, repo: &str, data: &[u8], cuts: &[usize]) -> Digest {
    let digest = sha256(data);
    let id = engine.start_upload(repo, Algorithm::Sha256).expect("start");
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    bounds.push(0);
    bounds.push(data.len());
    bounds.sort_unstable();
    bounds.dedup();
    for pair in bounds.windows(2) {
        let piece = Bytes::copy_from_slice(&data[pair[0]..pair[1]]);
        engine.upload_append(repo, &id, piece).expect("append");
    }
    engine.commit_upload(repo, &id, &digest).expect("commit");
    digest
}

/// Reads a whole blob back through the piece iterator.
pub fn read_all(engine: &Engine, digest: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in engine.read_blob(digest, None).expect("read") {
        out.extend_from_slice(&piece.expect("readable"));
    }
    out
}

/// A random number in `0..n` (n > 0).
pub fn below(rng: &mut impl Rng, n: usize) -> usize {
    rng.random_range(0..n)
}

/// Bytes of blob records in all packs (headers and trailers included). Metadata
/// records, which every commit adds, are not counted: this measures stored blobs.
pub fn record_bytes(root: &Path) -> u64 {
    use lain_engine::pack::format::{RecordKind, scan};
    std::fs::read_dir(root.join("packs"))
        .expect("packs dir")
        .map(|e| {
            let bytes = std::fs::read(e.expect("entry").path()).expect("read pack");
            scan(&bytes, 16)
                .records
                .iter()
                .filter(|r| matches!(r.kind, RecordKind::Blob(_)))
                .map(|r| r.end() - r.offset)
                .sum::<u64>()
        })
        .sum()
}
/// A text dump of what a store serves, through the public API only (the same in the
/// format-1 code that made the fixture and in this one): every repository, its tags,
/// and for each candidate digest, whether each repository can read it as a blob, as a
/// manifest (with its description), and its referrers.
pub fn dump(engine: &lain_engine::Engine, candidates: &[lain_engine::Digest]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let names: Vec<String> = candidates.iter().map(|d| d.to_string()).collect();
    writeln!(out, "candidates {}", names.join(" ")).unwrap();
    for repo in engine.list_repositories(None, usize::MAX).unwrap() {
        writeln!(out, "repository {repo}").unwrap();
        for tag in engine.list_tags(&repo, None, usize::MAX).unwrap() {
            let d = engine.resolve_tag(&repo, &tag).unwrap().unwrap();
            writeln!(out, "  tag {tag} -> {d}").unwrap();
        }
        for d in candidates {
            if let Some(reader) = engine.read_repo_blob(&repo, d).unwrap() {
                let bytes = reader.into_bytes().unwrap();
                let hashed = lain_engine::Algorithm::Sha256.digest(&bytes);
                writeln!(out, "  blob {d} {} bytes, hash {hashed}", bytes.len()).unwrap();
            }
            let reference = lain_engine::Reference::Digest(d.clone());
            if let Some((record, bytes)) = engine.get_manifest(&repo, &reference).unwrap() {
                writeln!(
                    out,
                    "  manifest {d} {} {:?} ({} bytes read)",
                    record.size,
                    record.meta,
                    bytes.len()
                )
                .unwrap();
            }
            for r in engine.referrers(&repo, d, None).unwrap() {
                writeln!(
                    out,
                    "  referrer of {d}: {} {} {:?}",
                    r.digest, r.size, r.meta
                )
                .unwrap();
            }
        }
    }
    out
}

/// Bytes in all pack files past their 16-byte headers, committed or not: shows writes
/// that are not records yet.
pub fn pack_file_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("packs"))
        .expect("packs dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len() - 16)
        .sum()
}
