//! The data directory lock: one process owns a data directory at a time.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Holds an exclusive `flock` on `<root>/LOCK` until dropped. The kernel releases it
/// when the process dies, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(root: &Path) -> Result<DirLock> {
        let path: PathBuf = root.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context("open", &path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked {
                path: root.to_owned(),
            }),
            Err(TryLockError::Error(e)) => Err(e).context("lock", &path),
        }
    }
}
