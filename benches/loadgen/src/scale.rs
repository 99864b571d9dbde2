//! The scale check: a store that already holds a million blobs and a hundred thousand
//! tags must start as fast and answer small-object requests as fast as an empty one.
//!
//! The store is built synthetically through the engine's own API (the same records
//! and index entries pushes make, without HTTP in between), from many threads so
//! that group commit keeps it to a couple of minutes. Then this registry is started on
//! it several times (time to the first 200 from `/v2/`), and the small-object
//! scenarios run against it and against a fresh, empty store served beside it, one
//! right after the other, round by round.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use lain_engine::{Algorithm, Engine, ManifestMeta, Options, Reference};

use crate::report::median;
use crate::scenarios::{self, Fixture, Sizes, Target};
use crate::servers::{Kind, Programs, Server, free_port};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// How big a store to build.
pub struct Scale {
    pub blobs: usize,
    pub tags: usize,
    /// MiB of large blobs (64 MiB each) besides.
    pub large_mib: usize,
}

/// Blob `i`: a few distinct bytes in one of 1,000 repositories.
fn blob(i: usize) -> (String, Bytes) {
    (
        format!("scale/blobs{:03}", i % 1000),
        Bytes::from(format!("lain scale blob {i:09}")),
    )
}

/// Runs `f(i)` for every `i < n` on 64 threads.
pub(crate) fn fan_out(
    n: usize,
    what: &str,
    f: &(dyn Fn(usize) -> Result<(), String> + Sync),
) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        f(i)?;
                        if (i + 1).is_multiple_of(100_000) {
                            eprintln!(
                                "loadgen:   {what}: {} in {:.0} s",
                                i + 1,
                                start.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
    })
}

/// Fills `root` with `scale.blobs` blobs and `scale.tags` tagged manifests.
pub fn populate(root: &Path, scale: &Scale) -> Result<f64, String> {
    let start = Instant::now();
    let engine = Engine::open(root, Options::default()).map_err(|e| format!("open: {e}"))?;
    fan_out(scale.blobs, "blobs", &|i| {
        let (repo, bytes) = blob(i);
        let digest = Algorithm::Sha256.digest(&bytes);
        engine
            .put_blob(&repo, bytes, &digest)
            .map(|_| ())
            .map_err(|e| format!("blob {i}: {e}"))
    })?;
    fan_out(scale.tags, "tags", &|i| {
        // Each manifest refers to two of the blobs; 100 repositories of 1,000 tags.
        let desc = |k: usize| {
            let (_, bytes) = blob(k % scale.blobs.max(1));
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": Algorithm::Sha256.digest(&bytes).to_string(),
                "size": bytes.len(),
            })
        };
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(2 * i),
            "layers": [desc(2 * i + 1)],
        });
        let meta = ManifestMeta {
            media_type: OCI_MANIFEST.into(),
            ..ManifestMeta::default()
        };
        // The blobs are mounted into the manifest's repository first, as a client's
        // push would: the store is one a registry could have been given.
        let repo = format!("scale/tags{:03}", i % 100);
        for k in [2 * i, 2 * i + 1] {
            let (_, bytes) = blob(k % scale.blobs.max(1));
            engine
                .link_blob(&repo, &Algorithm::Sha256.digest(&bytes))
                .map_err(|e| format!("mount {k}: {e}"))?;
        }
        engine
            .put_manifest(
                &repo,
                Bytes::from(body.to_string()),
                &Reference::Tag(format!("v{i:06}")),
                meta,
                &lain_engine::References::default(),
            )
            .map(|_| ())
            .map_err(|e| format!("manifest {i}: {e}"))
    })?;
    // Large blobs, for re-hashing rates (`registry fsck --deep`).
    let piece = crate::data::pseudo_random(scale.large_mib as u64, 1 << 20);
    for n in 0..scale.large_mib.div_ceil(64) {
        let id = engine
            .start_upload("scale/large", Algorithm::Sha256)
            .map_err(|e| format!("large blob {n}: {e}"))?;
        let mut hasher = Algorithm::Sha256.hasher();
        for m in 0..64.min(scale.large_mib - n * 64) {
            // Each MiB differs in its first bytes: nothing deduplicates.
            let mut bytes = piece.clone();
            bytes[..16].copy_from_slice(&((n * 64 + m) as u128).to_le_bytes());
            hasher.update(&bytes);
            engine
                .upload_append("scale/large", &id, Bytes::from(bytes))
                .map_err(|e| format!("large blob {n}: {e}"))?;
        }
        engine
            .commit_upload("scale/large", &id, &hasher.finish())
            .map_err(|e| format!("large blob {n}: {e}"))?;
    }
    // A store that grew over months has long settled its compactions; a bulk load
    // leaves them all pending, and they would compete with the measured requests.
    engine.compact_index();
    Ok(start.elapsed().as_secs_f64())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Builds the store, measures start-up and small-object rates; returns the report
/// section (Markdown).
pub fn run(
    scale: &Scale,
    programs: &Programs,
    sizes: &Sizes,
    runs: usize,
    scratch: &Path,
) -> Result<String, String> {
    let dir = scratch.join("scale");
    eprintln!(
        "loadgen: scale: building a store of {} blobs and {} tags",
        scale.blobs, scale.tags
    );
    let built = populate(&dir.join("data"), scale)?;
    let size = dir_size(&dir.join("data"));

    let mut startups = Vec::new();
    let mut empty_startups = Vec::new();
    for _ in 0..runs.max(3) {
        let port = free_port().map_err(|e| e.to_string())?;
        let mut server = Server::start_in(Kind::Ours, programs, &dir, port)?;
        startups.push(server.ready_after.as_secs_f64());
        server.keep_data = true;
        server.stop();
        let server = Server::start(Kind::Ours, programs, scratch)?;
        empty_startups.push(server.ready_after.as_secs_f64());
        server.stop();
    }

    let all = scenarios::all();
    let small: Vec<_> = all.iter().filter(|s| s.small_object).collect();
    let mut rates: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); small.len()];
    for run in 0..runs {
        // Both stores are served at once and take each scenario one right after the
        // other, so the two rates compared were measured seconds apart; which goes
        // first alternates from round to round.
        eprintln!("loadgen: scale round {} of {runs}", run + 1);
        let fixture = Fixture::new(sizes.small_objects(), scratch, 1 + run as u64)?;
        let port = free_port().map_err(|e| e.to_string())?;
        let mut populated = Server::start_in(Kind::Ours, programs, &dir, port)?;
        populated.keep_data = true;
        let empty = Server::start(Kind::Ours, programs, scratch)?;
        let client = |server: &Server| Target {
            addr: server.addr,
            verify: true,
            scratch: scratch.join("scale-client"),
        };
        let mut order = [(true, client(&populated)), (false, client(&empty))];
        if run % 2 == 1 {
            order.reverse();
        }
        for (k, scenario) in small.iter().enumerate() {
            for (is_populated, target) in &order {
                let measure = (scenario.run)(target, &fixture)
                    .map_err(|e| format!("scale: {}: {e}", scenario.name))?;
                let rate = measure.amount / measure.seconds;
                eprintln!(
                    "loadgen:   {:<45} {:<9} {rate:>10.1} ops/s",
                    scenario.name,
                    if *is_populated { "populated" } else { "empty" }
                );
                if *is_populated {
                    rates[k].1.push(rate);
                } else {
                    rates[k].0.push(rate);
                }
            }
        }
        populated.stop();
        empty.stop();
    }

    let ms = |v: &mut Vec<f64>| median(v).map_or("–".into(), |s| format!("{:.0} ms", s * 1000.0));
    let mut out = String::new();
    out.push_str(&format!(
        "\n## Scale: {} blobs and {} tags\n\nBuilt through the engine API from 64 threads, then the index compacted (as a store that grew over time would be), in {built:.0} s; {:.1} GiB on disk (packs and index).\n\n",
        scale.blobs,
        scale.tags,
        size as f64 / (1u64 << 30) as f64
    ));
    out.push_str(&format!(
        "Start-up, process spawn to the first 200 from `/v2/` (median of {}): **{}** with the store, {} empty.\n\n",
        startups.len(),
        ms(&mut startups),
        ms(&mut empty_startups)
    ));
    out.push_str(
        "| scenario | empty store | populated store | change |\n| --- | ---: | ---: | ---: |\n",
    );
    for (k, scenario) in small.iter().enumerate() {
        let (empty, full) = &mut rates[k];
        let (e, f) = (median(empty), median(full));
        let change = match (e, f) {
            (Some(e), Some(f)) if e > 0.0 => format!("{:+.0}%", (f / e - 1.0) * 100.0),
            _ => "–".into(),
        };
        let show = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0} ops/s"));
        out.push_str(&format!(
            "| {} | {} | {} | {change} |\n",
            scenario.name,
            show(e),
            show(f)
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
