//! Room on the data directory's file system. Clients' bytes (blobs, manifests) may not
//! take the last [`Options::reserved_space`](crate::Options::reserved_space) of it, so
//! that when pushes have filled the disk, what frees space still works: deletes log
//! their changes, the index writes, and a collection copies live records out of the
//! packs it retires.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct Space {
    dir: CString,
    reserved: u64,
}

impl Space {
    pub fn new(dir: &Path, reserved: u64) -> Space {
        Space {
            // A path from the OS has no NUL inside; if one did, `available` reports an
            // error and nothing is admitted.
            dir: CString::new(dir.as_os_str().as_bytes()).unwrap_or_default(),
            reserved,
        }
    }

    /// Admits `incoming` more bytes from a client, or refuses them with
    /// [`Error::StorageFull`] if they would cut into the reserve.
    pub fn admit(&self, incoming: u64) -> Result<()> {
        if self.reserved == 0 {
            return Ok(());
        }
        let available = self.available().map_err(|e| Error::StorageFull {
            detail: format!("cannot read the free space: {e}"),
        })?;
        if available < self.reserved.saturating_add(incoming) {
            return Err(Error::StorageFull {
                detail: format!(
                    "{available} bytes free, {} kept in reserve for deletes and collections",
                    self.reserved
                ),
            });
        }
        Ok(())
    }

    /// Bytes an unprivileged writer may still use (`statvfs`'s `f_bavail`).
    fn available(&self) -> io::Result<u64> {
        if self.dir.is_empty() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `dir` is a NUL-terminated path and `stat` has room for the result.
        if unsafe { libc::statvfs(self.dir.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let free = Space::new(dir.path(), 1).available().unwrap();
        assert!(free > 0);
        Space::new(dir.path(), 0).admit(u64::MAX).unwrap();
        Space::new(dir.path(), free / 2).admit(free / 4).unwrap();
        assert!(matches!(
            Space::new(dir.path(), free / 2).admit(free),
            Err(Error::StorageFull { .. })
        ));
        assert!(matches!(
            Space::new(dir.path(), u64::MAX).admit(0),
            Err(Error::StorageFull { .. })
        ));
    }
}
