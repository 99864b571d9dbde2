//! `registry prune --keep-last N`: LAIN's weekly retention. Keeps the newest N tags of
//! each matching repository, deletes the rest with the manifests only they pointed at,
//! then collects garbage (unless told not to).

use lain_engine::{Engine, TagOrder, glob_matches};
use serde::{Deserialize, Serialize};

use super::collect::{Collect, collect};
use super::{Outcome, Output};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prune {
    pub keep_last: usize,
    /// Only repositories whose name matches (`*` and `?`); all without one.
    pub repo: Option<String>,
    /// `true`: by name (natural order); `false`: by push time.
    pub by_name: bool,
    pub dry_run: bool,
    /// The collection that follows, if any.
    pub then_collect: Option<Collect>,
}

pub fn prune(engine: &Engine, settings: &Prune, out: &dyn Output) -> Result<Outcome, String> {
    let failed = |e: lain_engine::Error| format!("pruning failed: {e}");
    let repos: Vec<String> = engine
        .list_repositories(None, usize::MAX)
        .map_err(failed)?
        .into_iter()
        .filter(|r| settings.repo.as_deref().is_none_or(|g| glob_matches(g, r)))
        .collect();
    let order = if settings.by_name {
        TagOrder::Name
    } else {
        TagOrder::Pushed
    };
    out.phase("pruning repositories", repos.len() as u64);
    let (mut tags, mut manifests) = (0, 0);
    let verb = if settings.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for repo in &repos {
        let pruned = engine
            .prune_repository(repo, settings.keep_last, order, settings.dry_run)
            .map_err(failed)?;
        for tag in &pruned.tags {
            out.line(&format!("{verb} tag {repo}:{tag}"));
        }
        for digest in &pruned.manifests {
            out.line(&format!("{verb} manifest {repo}@{digest}"));
        }
        tags += pruned.tags.len();
        manifests += pruned.manifests.len();
        out.advance(1);
    }
    out.line(&format!(
        "{verb} {tags} tags and {manifests} manifests in {} repositories, keeping the newest {} of each",
        repos.len(),
        settings.keep_last
    ));
    match &settings.then_collect {
        Some(collection) => collect(
            engine,
            &Collect {
                dry_run: settings.dry_run,
                ..collection.clone()
            },
            out,
        ),
        None => Ok(Outcome::Clean),
    }
}

/// [`prune`] on the cluster, then its collection (see `lain_cluster`'s retention).
pub async fn prune_cluster(
    store: &lain_cluster::ClusterStore,
    settings: &Prune,
    out: &dyn Output,
) -> Result<Outcome, String> {
    let failed = |e: lain_cluster::Error| format!("pruning failed: {e}");
    let repos: Vec<String> = store
        .repositories()
        .await
        .map_err(failed)?
        .into_iter()
        .filter(|r| settings.repo.as_deref().is_none_or(|g| glob_matches(g, r)))
        .collect();
    let order = if settings.by_name {
        TagOrder::Name
    } else {
        TagOrder::Pushed
    };
    out.phase("pruning repositories", repos.len() as u64);
    let (mut tags, mut manifests) = (0, 0);
    let verb = if settings.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for repo in &repos {
        let pruned = store
            .prune_repository(repo, settings.keep_last, order, settings.dry_run)
            .await
            .map_err(failed)?;
        for tag in &pruned.tags {
            out.line(&format!("{verb} tag {repo}:{tag}"));
        }
        for digest in &pruned.manifests {
            out.line(&format!("{verb} manifest {repo}@{digest}"));
        }
        tags += pruned.tags.len();
        manifests += pruned.manifests.len();
        out.advance(1);
    }
    out.line(&format!(
        "{verb} {tags} tags and {manifests} manifests in {} repositories, keeping the newest {} of each",
        repos.len(),
        settings.keep_last
    ));
    match &settings.then_collect {
        Some(collection) => {
            let collection = Collect {
                dry_run: settings.dry_run,
                ..collection.clone()
            };
            super::collect::collect_cluster(store, &collection, out).await
        }
        None => Ok(Outcome::Clean),
    }
}
