//! The data directory: where each part lives, and the `FORMAT` file that says which
//! on-disk format the directory holds (FORMAT.md, "Data directory").

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The format this code writes.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_PREFIX: &str = "lain-registry data format ";
const CHECK_PREFIX: &str = "index.check-";

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

/// What a data directory holds, judged before opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing yet: it becomes a store of the current format.
    Empty,
    /// A store of format `version` (1: written before the `FORMAT` file existed).
    Store { version: u32 },
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    /// Where a rebuild writes the new index before it takes the place of `index/`.
    pub fn index_new(&self) -> PathBuf {
        self.root.join("index.new")
    }
    /// Where a rebuild moves the index it replaces, until the new one is in place.
    pub fn index_old(&self) -> PathBuf {
        self.root.join("index.old")
    }
    /// Where check number `n` of this process replays the log (removed after it, and
    /// at every open: one left behind was interrupted).
    pub fn index_check(&self, n: usize) -> PathBuf {
        self.root
            .join(format!("{CHECK_PREFIX}{}-{n}", std::process::id()))
    }

    /// Scratch directories of checks that were interrupted.
    pub fn stale_checks(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(CHECK_PREFIX))
            .map(|e| e.path())
            .collect()
    }

    pub fn packs(&self) -> PathBuf {
        self.root.join("packs")
    }
    fn format_file(&self) -> PathBuf {
        self.root.join("FORMAT")
    }

    /// Whether the directory holds a store (of any format).
    pub fn holds_store(&self) -> Result<bool> {
        Ok(self.found()? != Found::Empty)
    }

    /// Reads the `FORMAT` file; without one, a directory that has an index or packs is a
    /// format-1 store.
    pub fn found(&self) -> Result<Found> {
        let path = self.format_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let version = text
                    .trim_end()
                    .strip_prefix(FORMAT_PREFIX)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::UnsupportedFormat {
                        path: path.clone(),
                        detail: format!("unreadable format marker {text:?}"),
                    })?;
                Ok(Found::Store { version })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let has_packs = std::fs::read_dir(self.packs())
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if self.index().exists() || has_packs {
                    Ok(Found::Store { version: 1 })
                } else {
                    Ok(Found::Empty)
                }
            }
            Err(e) => Err(e).context("read", &path),
        }
    }

    /// Writes the `FORMAT` file for the current format, durably and atomically (a
    /// temporary file renamed into place, then the directory synced).
    pub fn write_format(&self) -> Result<()> {
        let path = self.format_file();
        let tmp = self.root.join("FORMAT.tmp");
        let mut file = std::fs::File::create(&tmp).context("create", &tmp)?;
        file.write_all(format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n").as_bytes())
            .context("write", &tmp)?;
        file.sync_all().context("fsync", &tmp)?;
        std::fs::rename(&tmp, &path).context("rename into place", &path)?;
        sync_dir(&self.root)
    }
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context("fsync directory", dir)
}
