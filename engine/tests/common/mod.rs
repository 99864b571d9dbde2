//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use lain_engine::{Algorithm, Digest, Engine, Options};
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
        out.extend_from_slice(&piece);
    }
    out
}

/// A random number in `0..n` (n > 0).
pub fn below(rng: &mut impl Rng, n: usize) -> usize {
    rng.random_range(0..n)
}

/// Bytes of records in all packs: file sizes less the 16-byte pack headers (creating a
/// pack adds a header; only records count as stored data).
pub fn record_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("packs"))
        .expect("packs dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len() - 16)
        .sum()
}
