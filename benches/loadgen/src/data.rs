//! The bytes the scenarios push, made and hashed before any clock starts.
//!
//! Large blobs share one pseudo-random buffer and differ in their first 16 bytes, so a
//! gigabyte of distinct blobs costs one buffer of memory; every blob is still a
//! distinct digest that no server can deduplicate.

use lain_engine::Algorithm;

use crate::servers::thread_cpu_seconds;

/// `len` pseudo-random bytes (splitmix64 from `seed`): incompressible, reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `sha256:<hex>` of `bytes`, by the registry's own digest code.
pub fn sha256_digest(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
}

const PREFIX: usize = 16;

/// Large blobs over one shared buffer: blob `i` is `prefixes[i]` then `base[16..]`.
pub struct LargeSet {
    base: Vec<u8>,
    prefixes: Vec<[u8; PREFIX]>,
    pub digests: Vec<String>,
}

impl LargeSet {
    /// `count` blobs of `size` bytes; `tag` keeps sets of one run apart.
    pub fn new(base: &[u8], tag: u64, count: usize) -> LargeSet {
        let prefixes: Vec<[u8; PREFIX]> = (0..count as u64)
            .map(|i| {
                let mut p = [0u8; PREFIX];
                p[..8].copy_from_slice(&tag.to_le_bytes());
                p[8..].copy_from_slice(&i.to_le_bytes());
                p
            })
            .collect();
        let digests = prefixes
            .iter()
            .map(|p| {
                let mut h = Algorithm::Sha256.hasher();
                h.update(p);
                h.update(&base[PREFIX..]);
                h.finish().to_string()
            })
            .collect();
        LargeSet {
            base: base.to_vec(),
            prefixes,
            digests,
        }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn size(&self) -> u64 {
        self.base.len() as u64
    }

    /// Blob `i` as the two slices that make it up.
    pub fn parts(&self, i: usize) -> [&[u8]; 2] {
        [&self.prefixes[i], &self.base[PREFIX..]]
    }

    /// Bytes `range` of blob `i`, as up to two slices.
    pub fn slice(&self, i: usize, start: usize, end: usize) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2);
        if start < PREFIX {
            parts.push(&self.prefixes[i][start..end.min(PREFIX)]);
        }
        if end > PREFIX {
            parts.push(&self.base[start.max(PREFIX)..end]);
        }
        parts
    }
}

/// Small blobs, each its own buffer.
pub struct SmallSet {
    pub blobs: Vec<Vec<u8>>,
    pub digests: Vec<String>,
}

impl SmallSet {
    pub fn new(seed: u64, count: usize, size: usize) -> SmallSet {
        let blobs: Vec<Vec<u8>> = (0..count as u64)
            .map(|i| pseudo_random(seed.wrapping_mul(1_000_003).wrapping_add(i), size))
            .collect();
        let digests = blobs.iter().map(|b| sha256_digest(b)).collect();
        SmallSet { blobs, digests }
    }
}

/// CPU seconds this machine spends to sha256 one GiB, on one core, with the same
/// implementation the registry uses: the floor of the push path, since every pushed
/// byte must be hashed once.
pub fn sha256_cpu_per_gib(buffer: &[u8], passes: usize) -> f64 {
    let start = thread_cpu_seconds();
    let mut h = Algorithm::Sha256.hasher();
    for _ in 0..passes {
        h.update(buffer);
    }
    std::hint::black_box(h.finish());
    let gib = (buffer.len() * passes) as f64 / (1u64 << 30) as f64;
    (thread_cpu_seconds() - start) / gib
}
