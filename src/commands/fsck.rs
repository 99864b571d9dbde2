//! `registry fsck [--repair] [--deep]`: checks a data directory and prints each problem
//! with what it affects; `--repair` first rebuilds the index from the packs.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use lain_engine::{Digest, Engine, Options, Reference};

use super::{Outcome, Output, bytes};

/// Rebuilds the index of the data directory at `root`, which nothing else may hold.
pub fn repair(root: &Path, out: &dyn Output) -> Result<(), lain_engine::Error> {
    let started = Instant::now();
    let report = Engine::rebuild_index(root, &Options::default(), out)?;
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
        .check(deep, out)
        .map_err(|e| format!("the check failed: {e}"))?;
    let mut problems: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    problems.extend(check_references(engine, out).map_err(|e| format!("the check failed: {e}"))?);
    let elapsed = started.elapsed();
    for problem in &problems {
        out.line(&format!("problem: {problem}"));
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
    let clean = problems.is_empty();
    let problems = match problems.len() {
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
    Ok(if clean {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

/// Every manifest's references: the blobs it names (config, layers) are readable in its
/// repository, and the manifests an index names are in it. The engine stores manifests
/// without reading them; what they reference is the protocol's to say.
fn check_references(engine: &Engine, out: &dyn Output) -> lain_engine::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut repos = Vec::new();
    loop {
        let page = engine.list_repositories(repos.last().map(String::as_str), 1000)?;
        if page.is_empty() {
            break;
        }
        repos.extend(page);
    }
    out.phase("checking manifest references", repos.len() as u64);
    for repo in &repos {
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        for tag in engine.list_tags(repo, None, usize::MAX)? {
            if let Some(digest) = engine.resolve_tag(repo, &tag)? {
                tags.entry(digest)
                    .or_default()
                    .push(format!("{repo}:{tag}"));
            }
        }
        for record in engine.list_manifests(repo)? {
            // Gone since it was listed (a delete while the server runs): nothing to check.
            let Some((_, bytes)) =
                engine.get_manifest(repo, &Reference::Digest(record.digest.clone()))?
            else {
                continue;
            };
            let affected = match tags.get(&record.digest) {
                Some(tags) => format!("; tags: {}", tags.join(", ")),
                None => String::new(),
            };
            let manifest = &record.digest;
            let (blobs, children) =
                match lain_http::manifest_references(&bytes, &record.meta.media_type) {
                    Ok(references) => references,
                    Err(why) => {
                        problems.push(format!(
                            "{repo}: manifest {manifest} does not parse as {}: {why}{affected}",
                            record.meta.media_type
                        ));
                        continue;
                    }
                };
            for blob in blobs {
                if engine.repo_blob(repo, &blob)?.is_none() {
                    problems.push(format!("{repo}: manifest {manifest} references blob {blob}, which {repo} cannot read{affected}"));
                }
            }
            for child in children {
                if engine
                    .manifest(repo, &Reference::Digest(child.clone()))?
                    .is_none()
                {
                    problems.push(format!("{repo}: manifest {manifest} references manifest {child}, which is not in {repo}{affected}"));
                }
            }
        }
        out.advance(1);
    }
    Ok(problems)
}
