//! The one seam through which every pack byte passes.
//!
//! The engine never touches a pack file except through [`Storage`] and [`PackFile`], so
//! a test can swap the file system for [`SimulatedStorage`], which remembers what was
//! synced and can simulate a power cut. A process kill alone cannot reveal a missing
//! fsync (the page cache survives it); this layer can. Production uses [`OsStorage`].

mod os;
mod sim;

use std::fmt::Debug;
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub use os::OsStorage;
pub use sim::{Cut, SimulatedStorage};

/// A file system that holds pack files.
pub trait Storage: Send + Sync + Debug {
    /// Creates a new, empty file; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn PackFile>>;
    /// Opens an existing file for reading and appending.
    fn open(&self, path: &Path) -> io::Result<Box<dyn PackFile>>;
    /// Makes the directory's entries (file creations, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates the directory (and parents) if it is missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The regular files directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Removes a file; durable once its directory is synced. Mappings of it that
    /// readers hold stay valid.
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// One pack file. A pack has a single writer at a time; readers only ever map it.
pub trait PackFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Writes every byte of `bufs`, in order, at the end of the file.
    fn append(&self, bufs: &[IoSlice<'_>]) -> io::Result<()>;
    /// Overwrites bytes that already exist (used to fill in a record header).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the OS to start writing `len` bytes at `offset` to the device now, without
    /// waiting. It promises nothing (only [`PackFile::sync_data`] does); it lets a
    /// large upload's bytes reach the disk while the rest is still arriving, so the
    /// final sync has little left to write.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Cuts the file to `len` bytes; the next append continues there.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// The first `len` bytes, as one buffer that shares the file's pages where the
    /// storage allows it. `len` must not exceed the file's length.
    fn map(&self, len: u64) -> io::Result<Bytes>;
    /// Makes sure that `mapped`, a slice of a mapping of this file that starts at file
    /// offset `offset`, can be read. A mapped page the device cannot read kills the
    /// process that touches it (SIGBUS); storage whose mappings can fault reads the
    /// pages not in memory through the file first, so that such a failure is an error
    /// here, for this read alone. Readers call this before they hand mapped bytes on.
    fn ensure_readable(&self, mapped: &[u8], offset: u64) -> io::Result<()>;
    /// [`PackFile::map`], for callers that walk every byte (checks, rebuilds, backups,
    /// recovery): the whole mapping checked readable first, so a bad sector is this
    /// call's error and not the death of the process.
    fn map_readable(&self, len: u64) -> io::Result<Bytes> {
        let map = self.map(len)?;
        self.ensure_readable(&map, 0)?;
        Ok(map)
    }
    /// Fills `buf` with the bytes at `offset` (all of them, or an error), without
    /// mapping the file: whole-pack walks (compaction) stay out of the reader's memory.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Appends `len` bytes of `source` from `offset`, as [`PackFile::append`] would.
    /// Storage that can copies inside the kernel (compaction moves whole records).
    fn append_from(&self, source: &dyn PackFile, offset: u64, len: u64) -> io::Result<()>;
    /// The file descriptor, where there is one (for kernel-side copies).
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// [`PackFile::append_from`] the portable way: a MiB at a time through a buffer.
pub(crate) fn append_by_reading(
    dest: &dyn PackFile,
    source: &dyn PackFile,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
    let mut done = 0;
    while done < len {
        let n = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        source.read_at(&mut buf[..n], offset + done)?;
        dest.append(&[IoSlice::new(&buf[..n])])?;
        done += n as u64;
    }
    Ok(())
}
