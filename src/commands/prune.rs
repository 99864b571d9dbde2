//! `registry prune --keep-last N`: LAIN's weekly retention. Keeps the newest N tags of
//! each matching repository, deletes the rest with the manifests only they pointed at,
//! then collects garbage (unless told not to).

use lain_engine::{Engine, Pruned, TagOrder, glob_matches};
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
    let order = settings.order();
    let mut tally = Tally::new(settings, repos.len(), out);
    for repo in &repos {
        let pruned = engine
            .prune_repository(repo, settings.keep_last, order, settings.dry_run)
            .map_err(failed)?;
        tally.repository(repo, &pruned);
    }
    tally.summary();
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
    let order = settings.order();
    let mut tally = Tally::new(settings, repos.len(), out);
    for repo in &repos {
        let pruned = store
            .prune_repository(repo, settings.keep_last, order, settings.dry_run)
            .await
            .map_err(failed)?;
        tally.repository(repo, &pruned);
    }
    tally.summary();
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

impl Prune {
    fn order(&self) -> TagOrder {
        if self.by_name {
            TagOrder::Name
        } else {
            TagOrder::Pushed
        }
    }
}

/// What a prune reports, the same for every store: a line per removal, progress per
/// repository, and the summary.
struct Tally<'a> {
    settings: &'a Prune,
    out: &'a dyn Output,
    verb: &'static str,
    repositories: usize,
    tags: usize,
    manifests: usize,
}

impl<'a> Tally<'a> {
    fn new(settings: &'a Prune, repositories: usize, out: &'a dyn Output) -> Tally<'a> {
        out.phase("pruning repositories", repositories as u64);
        let verb = if settings.dry_run {
            "would remove"
        } else {
            "removed"
        };
        Tally {
            settings,
            out,
            verb,
            repositories,
            tags: 0,
            manifests: 0,
        }
    }

    fn repository(&mut self, repo: &str, pruned: &Pruned) {
        let verb = self.verb;
        for tag in &pruned.tags {
            self.out.line(&format!("{verb} tag {repo}:{tag}"));
        }
        for digest in &pruned.manifests {
            self.out.line(&format!("{verb} manifest {repo}@{digest}"));
        }
        self.tags += pruned.tags.len();
        self.manifests += pruned.manifests.len();
        self.out.advance(1);
    }

    fn summary(&self) {
        self.out.line(&format!(
            "{} {} tags and {} manifests in {} repositories, keeping the newest {} of each",
            self.verb, self.tags, self.manifests, self.repositories, self.settings.keep_last
        ));
    }
}
