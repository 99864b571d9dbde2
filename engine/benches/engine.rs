//! Engine throughput beside the machine's raw figures, measured in the same run:
//!
//! - `write_256MiB` and `write_4KiB`: committing blobs (hash + write + fdatasync + synced
//!   index write), next to sha256 of the same bytes in memory and a plain sequential
//!   file write + fdatasync of the same bytes (appended, as the engine appends).
//!   Durability is on for every figure.
//! - `range_read_1MiB`: 1 MiB ranges at random offsets of a 256 MiB blob, copied out
//!   (as a socket write would), next to `pread` of the same ranges from a plain file.
//!
//! Run: `cargo bench -p lain-engine` (add `-- write_4KiB` to pick a group).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use lain_engine::{Algorithm, Engine, Options};

const MIB: usize = 1 << 20;

/// Pieces the size an HTTP layer would hand over.
const PIECE: usize = MIB;

fn random_buffer(len: usize) -> Vec<u8> {
    // xorshift: fast, incompressible enough, no dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Makes each blob unique (so dedup never skips the work) by stamping a counter into
/// its first bytes; returns the blob as cheap zero-copy pieces.
fn unique_pieces(template: &mut [u8], counter: u64) -> Vec<Bytes> {
    template[..8].copy_from_slice(&counter.to_le_bytes());
    let whole = Bytes::copy_from_slice(template);
    (0..whole.len())
        .step_by(PIECE)
        .map(|start| whole.slice(start..(start + PIECE).min(whole.len())))
        .collect()
}

fn timed_put(engine: &Engine, pieces: &[Bytes], digest: &lain_engine::Digest) {
    let id = engine
        .start_upload("bench/app", Algorithm::Sha256)
        .expect("start");
    for p in pieces {
        engine
            .upload_append("bench/app", &id, p.clone())
            .expect("append");
    }
    engine
        .commit_upload("bench/app", &id, digest)
        .expect("commit");
}

/// The two write paths compared: the engine committing a new blob, and a plain append +
/// fdatasync of the same bytes to a file. Each benchmark times its own step but runs
/// the other one right after it, so both see the same disk and host conditions (on a
/// shared host, figures taken minutes apart drift too much to be compared).
struct WriteSteps {
    engine: Engine,
    template: Vec<u8>,
    counter: AtomicU64,
    raw: File,
}

impl WriteSteps {
    fn engine_step(&mut self) -> Duration {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let pieces = unique_pieces(&mut self.template, n);
        // The client supplies the digest; computing it is not server work.
        let digest = Algorithm::Sha256.digest(&pieces.concat());
        let start = Instant::now();
        timed_put(&self.engine, &pieces, &digest);
        start.elapsed()
    }

    fn raw_step(&mut self) -> Duration {
        let start = Instant::now();
        for chunk in self.template.chunks(4 * MIB) {
            self.raw.write_all(chunk).expect("write raw");
        }
        self.raw.sync_data().expect("fdatasync raw");
        start.elapsed()
    }
}

fn write_group(c: &mut Criterion, size: usize, name: &str) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let engine = Engine::open(&dir.path().join("engine"), Options::default()).expect("open");
    // New bytes on new blocks, as the engine writes them: the raw file is appended to
    // and never truncated (rewriting the same blocks can be much faster).
    let raw = File::create(dir.path().join("raw")).expect("create raw");
    let steps = std::cell::RefCell::new(WriteSteps {
        engine: engine.clone(),
        template: random_buffer(size),
        counter: AtomicU64::new(1),
        raw,
    });

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(size as u64));
    if size >= 64 * MIB {
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
    }
    group.bench_function("engine_commit", |b| {
        b.iter_custom(|iters| {
            let mut steps = steps.borrow_mut();
            (0..iters)
                .map(|_| {
                    let measured = steps.engine_step();
                    steps.raw_step();
                    measured
                })
                .sum()
        })
    });
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut steps = steps.borrow_mut();
            (0..iters)
                .map(|_| {
                    steps.engine_step();
                    steps.raw_step()
                })
                .sum()
        })
    });
    let mut template = steps.borrow().template.clone();
    let counter = AtomicU64::new(u64::MAX / 2);

    if size < MIB {
        // Many small commits at once, from 16 threads that stay up for the whole
        // sample: shows concurrent commits sharing writes and syncs (group commit).
        // One iteration is one commit from each thread.
        const THREADS: usize = 16;
        group.throughput(Throughput::Bytes((size * THREADS) as u64));
        group.bench_function(BenchmarkId::new("engine_commit_threads", THREADS), |b| {
            b.iter_custom(|iters| {
                let work: Vec<Vec<(Vec<Bytes>, lain_engine::Digest)>> = (0..THREADS)
                    .map(|_| {
                        (0..iters)
                            .map(|_| {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                let pieces = unique_pieces(&mut template, n);
                                let digest = Algorithm::Sha256.digest(&pieces.concat());
                                (pieces, digest)
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                std::thread::scope(|s| {
                    for blobs in &work {
                        let engine = &engine;
                        s.spawn(move || {
                            for (pieces, digest) in blobs {
                                timed_put(engine, pieces, digest);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        group.throughput(Throughput::Bytes(size as u64));
    }

    group.bench_function("raw_sha256", |b| {
        b.iter(|| std::hint::black_box(Algorithm::Sha256.digest(&template)))
    });

    group.finish();
}

fn range_read_group(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let engine = Engine::open(&dir.path().join("engine"), Options::default()).expect("open");
    let size = 256 * MIB;
    let mut template = random_buffer(size);
    let pieces = unique_pieces(&mut template, 0);
    let digest = Algorithm::Sha256.digest(&template);
    timed_put(&engine, &pieces, &digest);
    let raw_path = dir.path().join("raw");
    std::fs::write(&raw_path, &template).expect("write raw");
    let raw = File::open(&raw_path).expect("open raw");

    let mut group = c.benchmark_group("range_read_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut out = vec![0u8; MIB];
    let mut offset = 0x1234_5678u64;
    let mut next_offset = move || {
        offset = offset
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (offset >> 11) % (size - MIB) as u64
    };
    group.bench_function("engine", |b| {
        b.iter(|| {
            let start = next_offset();
            let mut at = 0;
            for piece in engine
                .read_blob(&digest, Some(start..start + MIB as u64))
                .expect("read")
            {
                let piece = piece.expect("readable");
                out[at..at + piece.len()].copy_from_slice(&piece);
                at += piece.len();
            }
            std::hint::black_box(&out);
        })
    });
    group.bench_function("raw_pread", |b| {
        b.iter(|| {
            raw.read_exact_at(&mut out, next_offset()).expect("pread");
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

/// Benchmarks write real files, under the target directory (on disk, not a tmpfs).
fn bench_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("LAIN_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn benches(c: &mut Criterion) {
    write_group(c, 256 * MIB, "write_256MiB");
    write_group(c, 4 << 10, "write_4KiB");
    range_read_group(c);
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
