//! Tag retention's vocabulary, the same for every store: which tags are the newest,
//! what a prune removed, natural order and the repository globs of `prune --repo`.

use std::cmp::Ordering;

use crate::digest::Digest;

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
