//! The production [`Storage`]: plain files, `writev`, `fdatasync`, `mmap`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memmap2::MmapOptions;

use super::{PackFile, Storage, append_by_reading};

#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn PackFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn PackFile>> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Box::new(OsFile { file }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        Ok(files)
    }
}

/// A pack file. Appends go through the file's own cursor (a plain `writev`), which stays
/// at the end because the single writer is the only one that moves it.
#[derive(Debug)]
struct OsFile {
    file: File,
}

impl PackFile for OsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn append(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        // `write_all_vectored` is unstable; this is its loop, on a copy of the slice list
        // so that a partial write can advance it.
        let mut owned: Vec<IoSlice<'_>> = bufs.to_vec();
        let mut slices = &mut owned[..];
        loop {
            // Drops leading empty slices, so a zero-byte write below really means failure.
            IoSlice::advance_slices(&mut slices, 0);
            if slices.is_empty() {
                return Ok(());
            }
            match (&self.file).write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: sync_file_range only reads the descriptor, which `self.file` keeps open.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        (&self.file).seek(SeekFrom::Start(len))?;
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.file.as_raw_fd())
    }

    /// `copy_file_range`: the bytes never enter user space (and file systems that can
    /// share extents do). Falls back to reading and appending where the kernel cannot.
    fn append_from(&self, source: &dyn PackFile, offset: u64, len: u64) -> io::Result<()> {
        let Some(from) = source.raw_fd() else {
            return append_by_reading(self, source, offset, len);
        };
        let mut off_in =
            libc::off64_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut left = len;
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            // SAFETY: both descriptors stay open for the call (`self.file`, and the
            // source's file, which the caller holds); `off_in` is a valid pointer and the
            // output offset is the file's own (the append cursor).
            let n = unsafe {
                libc::copy_file_range(
                    from,
                    &mut off_in,
                    self.file.as_raw_fd(),
                    std::ptr::null_mut(),
                    chunk,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Not supported here (an old kernel, across file systems): the rest
                    // the slow way.
                    Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                        if left == len =>
                    {
                        return append_by_reading(self, source, offset, len);
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            left -= n as u64;
        }
        Ok(())
    }

    fn ensure_readable(&self, mapped: &[u8], offset: u64) -> io::Result<()> {
        if in_memory(mapped) {
            return Ok(());
        }
        // Reading the bytes through the file brings them into the page cache (where the
        // mapping then finds them) or returns the device's error. Only cold bytes pay
        // this copy, and they are waiting for the disk anyway.
        let mut scratch = vec![0u8; mapped.len().min(256 << 10)];
        let mut done = 0;
        while done < mapped.len() {
            let n = scratch.len().min(mapped.len() - done);
            self.read_at(&mut scratch[..n], offset + done as u64)?;
            done += n;
        }
        Ok(())
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        if len > self.size()? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "mapping past the end of the file",
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: the engine maps only committed bytes, which are never truncated or
        // rewritten while the data directory is locked by this process; the length was
        // checked against the file above, so no page of the mapping lies past its end.
        let map = unsafe { MmapOptions::new().len(len).map(&self.file)? };
        Ok(Bytes::from_owner(map))
    }
}

/// Whether every page under `bytes` is in memory (`mincore`), so that touching them
/// cannot fault to the device. Any doubt answers no.
fn in_memory(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    let page = *PAGE.get_or_init(|| {
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
    });
    let start = bytes.as_ptr() as usize & !(page - 1);
    let span = bytes.as_ptr() as usize + bytes.len() - start;
    // A read piece (256 KiB) spans at most 65 pages: no allocation on the read path.
    let mut on_stack = [0u8; 128];
    let mut on_heap = Vec::new();
    let count = span.div_ceil(page);
    let pages: &mut [u8] = if count <= on_stack.len() {
        &mut on_stack[..count]
    } else {
        on_heap.resize(count, 0);
        &mut on_heap
    };
    // SAFETY: [start, start + span) lies within the mapping `bytes` came from (rounded
    // down to its page); mincore only reads the page tables and writes one byte per
    // page into `pages`, which has room for every page of the span.
    let status = unsafe { libc::mincore(start as *mut libc::c_void, span, pages.as_mut_ptr()) };
    status == 0 && pages.iter().all(|page| page & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check that keeps a failing device from killing the process must see pages
    /// that left memory, and read them back in through the file.
    #[test]
    fn pages_that_left_memory_are_read_back_in_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.pack");
        let file = OsStorage.create_new(&path).unwrap();
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        file.append(&[IoSlice::new(&data)]).unwrap();
        file.sync_data().unwrap();
        let map = file.map(data.len() as u64).unwrap();
        assert!(in_memory(&map), "just written");

        let fd = file.raw_fd().unwrap();
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        assert_eq!(
            unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) },
            0
        );
        assert!(!in_memory(&map), "dropped from the page cache");
        file.ensure_readable(&map[1 << 20..3 << 20], 1 << 20)
            .unwrap();
        assert!(in_memory(&map[1 << 20..3 << 20]), "read back in");
        assert_eq!(&map[..], &data[..]);
    }
}
