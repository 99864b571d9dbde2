//! `registry garbage-collect [--dry-run] [--delete-untagged]`: removes what no kept
//! manifest needs and frees the space (see `lain_engine::CollectOptions`).

use lain_engine::{CollectOptions, Engine, Removal};
use serde::{Deserialize, Serialize};

use super::{Outcome, Output, bytes};

/// The collection's settings as the command line and the control socket carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collect {
    pub delete_untagged: bool,
    pub dry_run: bool,
    pub grace: std::time::Duration,
    pub compact_threshold: f64,
}

impl Collect {
    pub fn options(&self) -> CollectOptions {
        CollectOptions {
            delete_untagged: self.delete_untagged,
            dry_run: self.dry_run,
            grace: self.grace,
            compact_threshold: self.compact_threshold,
        }
    }
}

pub fn collect(engine: &Engine, settings: &Collect, out: &dyn Output) -> Result<Outcome, String> {
    let report = engine
        .collect(&settings.options(), &lain_http::manifest_references, out)
        .map_err(|e| format!("the collection failed: {e}"))?;
    for removal in &report.removals {
        out.line(&match removal {
            Removal::Manifest { repo, digest } => format!("would remove manifest {repo}@{digest}"),
            Removal::Link { repo, digest } => format!("would unlink blob {digest} from {repo}"),
            Removal::Blob {
                digest,
                size,
                pack: Some(pack),
            } => format!(
                "would remove blob {digest} ({}) with pack {pack}",
                bytes(*size)
            ),
            Removal::Blob {
                digest,
                size,
                pack: None,
            } => format!(
                "unreferenced blob {digest} ({}) stays until its pack passes the threshold",
                bytes(*size)
            ),
            Removal::Pack {
                id,
                committed,
                dead,
            } => format!(
                "would rewrite pack {id}: {} of {} dead",
                bytes(*dead),
                bytes(*committed)
            ),
        });
    }
    for skipped in &report.skipped {
        out.line(&format!("skipped: {skipped}"));
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    out.line(&format!(
        "{verb} {} manifests, {} links and {} blobs ({}) in {} repositories; {} unreferenced blobs in all",
        report.manifests_removed,
        report.links_removed,
        report.blobs_removed,
        bytes(report.blob_bytes_removed),
        report.repositories,
        report.blobs_unreferenced,
    ));
    let verb = if report.dry_run {
        "would rewrite"
    } else {
        "rewrote"
    };
    out.line(&format!(
        "{verb} {} packs, copying {}; data directory {} before, {} after",
        report.packs_rewritten,
        bytes(report.bytes_copied),
        bytes(report.disk_before),
        bytes(report.disk_after),
    ));
    if report.packs_busy > 0 {
        out.line(&format!(
            "{} packs were being written to and wait for the next collection",
            report.packs_busy
        ));
    }
    let rate = match report.bytes_copied {
        0 => String::new(),
        copied => format!(
            " (of which copying {:.2} s: {:.0} MiB/s)",
            report.copying.as_secs_f64(),
            copied as f64 / f64::from(1 << 20) / report.copying.as_secs_f64().max(1e-3)
        ),
    };
    out.line(&format!(
        "took {:.2} s: marking and sweeping {:.2} s, compacting {:.2} s{rate}",
        report.elapsed.as_secs_f64(),
        report.marking.as_secs_f64(),
        report.compacting.as_secs_f64(),
    ));
    Ok(if report.skipped.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

/// The collection of a cluster (see `lain_cluster::CollectOptions`): one collector at a
/// time, whichever process runs it, while every instance serves.
pub async fn collect_cluster(
    store: &lain_cluster::ClusterStore,
    settings: &Collect,
    out: &dyn Output,
) -> Result<Outcome, String> {
    let options = lain_cluster::CollectOptions {
        delete_untagged: settings.delete_untagged,
        dry_run: settings.dry_run,
        grace: settings.grace,
        wait: std::time::Duration::from_secs(60),
    };
    let report = store
        .collect(&options)
        .await
        .map_err(|e| format!("the collection failed: {e}"))?;
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for removal in &report.removals {
        out.line(&format!("{verb} {removal}"));
    }
    out.line(&format!(
        "{verb} {} manifests, {} links, {} blobs ({}) and {} stray objects in {} repositories; \
         {} removals skipped because a push needed them; {:.1} s",
        report.manifests_removed,
        report.links_removed,
        report.blobs_removed,
        bytes(report.blob_bytes_removed),
        report.objects_removed,
        report.repositories,
        report.kept_by_races,
        report.elapsed.as_secs_f64(),
    ));
    Ok(Outcome::Clean)
}
