//! `registry fsck [--repair] [--deep]`: checks a data directory and prints each problem
//! with what it affects; `--repair` first rebuilds the index from the packs.

use std::path::Path;
use std::time::Instant;

use lain_engine::{Engine, Options};

use super::{Outcome, Output, bytes};

/// Rebuilds the index of the data directory at `root`, which nothing else may hold,
/// with the configured engine `options` (the seal size decides which packs are full).
pub fn repair(root: &Path, options: &Options, out: &dyn Output) -> Result<(), lain_engine::Error> {
    let started = Instant::now();
    let report = Engine::rebuild_index(root, options, out)?;
    out.line(&format!(
        "rebuilt the index from {} packs ({}): {} blobs, {} metadata records with {} changes, in {:.1?}",
        report.packs,
        bytes(report.pack_bytes),
        report.blobs,
        report.metadata_records,
        report.changes,
        started.elapsed()
    ));
    for (pack, range) in &report.damaged {
        out.line(&format!(
            "lost: pack {pack}, bytes {}..{} hold no valid record",
            range.start, range.end
        ));
    }
    for (pack, offset, why) in &report.skipped_records {
        out.line(&format!("skipped: pack {pack}, offset {offset}: {why}"));
    }
    for (path, why) in &report.skipped_files {
        out.line(&format!("skipped: {}: {why}", path.display()));
    }
    Ok(())
}

/// Checks the store and prints what is wrong, then a summary.
pub fn check(engine: &Engine, deep: bool, out: &dyn Output) -> Result<Outcome, String> {
    let started = Instant::now();
    let report = engine
        .check(deep, Some(&lain_http::manifest_references), out)
        .map_err(|e| format!("the check failed: {e}"))?;
    let elapsed = started.elapsed();
    for finding in &report.findings {
        out.line(&format!("problem: {finding}"));
    }
    let hashed = if deep {
        format!(
            ", re-hashed {} in {:.1} s ({:.0} MiB/s)",
            bytes(report.hashed_bytes),
            report.hashing_seconds,
            report.hashed_bytes as f64 / f64::from(1 << 20) / report.hashing_seconds.max(1e-9)
        )
    } else {
        String::new()
    };
    let problems = match report.findings.len() {
        0 => "no problems".to_owned(),
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    };
    out.line(&format!(
        "checked {} packs ({}), {} blobs, {} manifests, {} tags, {} metadata records{hashed} in {:.1?}: {problems}",
        report.packs,
        bytes(report.pack_bytes),
        report.blobs,
        report.manifests,
        report.tags,
        report.metadata_records,
        elapsed,
    ));
    Ok(if report.is_clean() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}
