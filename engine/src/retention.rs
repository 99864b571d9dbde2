//! Tag retention: `Engine::prune_repository` keeps the newest tags of a repository and
//! deletes the rest, with the manifests that only they pointed at. The decision and
//! the deletions happen under the repository's exclusive lock, so a tag pushed
//! meanwhile is either seen (and counted among the newest) or arrives after.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::SystemTime;

use crate::change::Change;
use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::group::GroupEntry;
use crate::index::keys::check_name;
use crate::index::{Family, keys, values};
use crate::sync::write_lock;

/// Which tags are the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// By the time the tag was last pushed.
    Pushed,
    /// By name, in natural order (digit runs compare as numbers: `v10` after `v9`),
    /// the greatest newest: LAIN's tags embed a timestamp.
    Name,
}

/// What pruning one repository removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Tags kept, newest first.
    pub kept: Vec<String>,
    /// Tags removed, newest first.
    pub tags: Vec<String>,
    /// Manifests removed: no kept tag pointed at them.
    pub manifests: Vec<Digest>,
}

impl Engine {
    /// Keeps the newest `keep` tags of `repo` (by `order`) and removes the others; a
    /// manifest that only removed tags pointed at is deleted with them (its blobs are
    /// then for garbage collection), one a kept tag points at stays. With `dry_run`,
    /// only reports.
    pub fn prune_repository(
        &self,
        repo: &str,
        keep: usize,
        order: TagOrder,
        dry_run: bool,
    ) -> Result<Pruned> {
        check_name(repo, "repository name")?;
        let _exclusive = write_lock(self.core.repo_lock(repo));
        let prefix = keys::repo_prefix(repo);
        let mut tags: Vec<(String, Digest, SystemTime)> = Vec::new();
        for (key, value) in self
            .core
            .index
            .scan(Family::Tags, &prefix, None, usize::MAX)?
        {
            let name = String::from_utf8(key[prefix.len()..].to_vec()).map_err(|_| {
                Error::CorruptIndex {
                    family: Family::Tags.name(),
                }
            })?;
            let (digest, pushed) = values::decode_tag(&value)?;
            tags.push((name, digest, pushed));
        }
        tags.sort_by(|a, b| match order {
            TagOrder::Pushed => b.2.cmp(&a.2).then_with(|| natural(&b.0, &a.0)),
            TagOrder::Name => natural(&b.0, &a.0),
        });
        let old = tags.split_off(keep.min(tags.len()));
        let kept: HashSet<&Digest> = tags.iter().map(|(_, d, _)| d).collect();
        let mut pruned = Pruned {
            kept: tags.iter().map(|(t, _, _)| t.clone()).collect(),
            ..Pruned::default()
        };
        let mut changes = Vec::new();
        let mut deleted: HashSet<&Digest> = HashSet::new();
        for (tag, _, _) in &old {
            changes.push(Change::Untag {
                repo: repo.to_owned(),
                tag: tag.clone(),
            });
            pruned.tags.push(tag.clone());
        }
        for (_, digest, _) in &old {
            if kept.contains(digest) || !deleted.insert(digest) {
                continue;
            }
            let key = keys::repo_digest(repo, digest);
            let Some(value) = self.core.index.get(Family::Manifests, &key)? else {
                continue;
            };
            let (_, meta) = values::decode_manifest(&value, Family::Manifests)?;
            changes.push(Change::ManifestDelete {
                repo: repo.to_owned(),
                digest: digest.clone(),
                subject: meta.subject,
            });
            pruned.manifests.push(digest.clone());
        }
        if !dry_run {
            for chunk in changes.chunks(4096) {
                self.core.group_commit(GroupEntry {
                    changes: chunk.to_vec(),
                    ..GroupEntry::default()
                })?;
            }
        }
        Ok(pruned)
    }
}

/// Natural order: runs of ASCII digits compare by value, everything else bytewise.
pub fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (run(a), run(b));
                let (da, db) = (&a[..na], &b[..nb]);
                let trim = |d: &[u8]| -> usize { d.iter().take_while(|&&c| c == b'0').count() };
                let (ta, tb) = (&da[trim(da)..], &db[trim(db)..]);
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                // Equal values: fewer leading zeros first, so the order stays total.
                let ordering = by_value.then_with(|| na.cmp(&nb));
                if ordering != Ordering::Equal {
                    return ordering;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// Whether `name` matches `pattern`: `*` stands for any run of characters (slashes
/// too), `?` for any one character; everything else for itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last star.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut tags = vec![
            "v10",
            "v9",
            "v1",
            "release-20240102-1",
            "release-20231231-12",
            "v01",
            "a",
            "",
        ];
        tags.sort_by(|a, b| natural(a, b));
        assert_eq!(
            tags,
            vec![
                "",
                "a",
                "release-20231231-12",
                "release-20240102-1",
                "v1",
                "v01",
                "v9",
                "v10"
            ]
        );
        // LAIN's tags: meta-version-<timestamp>-<commit>.
        assert_eq!(
            natural("meta-1700000000-abc", "meta-999999999-fff"),
            Ordering::Greater
        );
    }

    #[test]
    fn globs_match_like_shell_patterns_across_slashes() {
        assert!(glob_matches("*", "lain/app"));
        assert!(glob_matches("lain/*", "lain/app"));
        assert!(!glob_matches("lain/*", "other/app"));
        assert!(glob_matches("*app", "lain/webapp"));
        assert!(glob_matches("l?in/a*p", "lain/app"));
        assert!(!glob_matches("l?in/a*p", "lain/apx"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "a"));
    }
}
