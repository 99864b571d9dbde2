//! `registry backup DEST`: a consistent copy of the store while it serves. Restoring is
//! starting `registry serve` on the copy (its index is rebuilt from the packs).

use std::path::Path;
use std::time::Instant;

use lain_engine::Engine;

use super::{Outcome, Output, bytes};

pub fn backup(engine: &Engine, dest: &Path, out: &dyn Output) -> Result<Outcome, String> {
    let started = Instant::now();
    let report = engine
        .backup(dest, out)
        .map_err(|e| format!("the backup failed: {e}"))?;
    out.line(&format!(
        "backed up {} packs ({}) to {} in {:.1?}: {} copied, {} packs hard-linked, {} unchanged, {} removed",
        report.packs,
        bytes(report.store_bytes),
        dest.display(),
        started.elapsed(),
        bytes(report.copied_bytes),
        report.linked_packs,
        report.unchanged_packs,
        report.removed_packs,
    ));
    Ok(Outcome::Clean)
}
