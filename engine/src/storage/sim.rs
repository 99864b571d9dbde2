//! An in-memory [`Storage`] that models what a power cut keeps: a file's bytes as of its
//! last `sync_data`, and only files whose creation was made durable by `sync_dir`.
//! Tests use it to prove that every acknowledged blob was synced before it was indexed.

use std::collections::{HashMap, HashSet};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{PackFile, Storage};
use crate::sync::lock;

#[derive(Debug, Default)]
pub struct SimulatedStorage {
    shared: Arc<Shared>,
}

/// What the storage and its open files share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    faults: Faults,
    /// While recording ([`SimulatedStorage::record_cuts`]), what a power cut would
    /// leave, taken at every sync.
    cuts: Mutex<Option<Vec<Cut>>>,
}

impl Shared {
    /// What a power cut now would leave. Locks the state, then each file.
    fn cut(&self) -> Cut {
        let state = lock(&self.state);
        let files = state
            .files
            .iter()
            .chain(&state.removed)
            .filter(|(path, _)| state.durable_entries.contains(*path))
            .map(|(path, file)| (path.clone(), lock(&file.bytes).durable.clone()))
            .collect();
        Cut {
            files,
            dirs: state.dirs.clone(),
        }
    }

    fn synced(&self) {
        if lock(&self.cuts).is_some() {
            let cut = self.cut();
            if let Some(cuts) = lock(&self.cuts).as_mut() {
                cuts.push(cut);
            }
        }
    }
}

/// What a power cut at one moment leaves: each durable file's synced bytes.
#[derive(Debug, Clone)]
pub struct Cut {
    files: Vec<(PathBuf, Arc<Vec<u8>>)>,
    dirs: HashSet<PathBuf>,
}

impl Cut {
    /// The same cut with its files under `to` instead of `from` (their data
    /// directory), so that several cuts can be opened at once in different places.
    pub fn moved(&self, from: &Path, to: &Path) -> Cut {
        let place = |path: &Path| match path.strip_prefix(from) {
            Ok(rest) => to.join(rest),
            Err(_) => path.to_owned(),
        };
        Cut {
            files: self
                .files
                .iter()
                .map(|(path, bytes)| (place(path), bytes.clone()))
                .collect(),
            dirs: self.dirs.iter().map(|dir| place(dir)).collect(),
        }
    }

    /// A storage holding exactly what the cut left, as the machine finds it on boot.
    pub fn restore(&self) -> SimulatedStorage {
        let storage = SimulatedStorage::new();
        {
            let mut state = lock(&storage.shared.state);
            state.dirs = self.dirs.clone();
            for (path, bytes) in &self.files {
                let file = SimFile {
                    bytes: Mutex::new(FileBytes {
                        current: bytes.to_vec(),
                        durable: bytes.clone(),
                    }),
                };
                state.files.insert(path.clone(), Arc::new(file));
                state.durable_entries.insert(path.clone());
            }
        }
        storage
    }
}

/// Failures to inject into the next operations.
#[derive(Debug, Default)]
struct Faults {
    /// The next append writes this many bytes, then fails as a full disk would.
    short_append: Mutex<Option<usize>>,
    /// Byte strings whose every copy in any file sits on sectors the device cannot
    /// read: a read that overlaps one fails with EIO.
    unreadable: Mutex<Vec<Vec<u8>>>,
}

impl Faults {
    /// EIO if `[offset, offset + len)` of `current` overlaps an unreadable byte string.
    fn check_read(&self, current: &[u8], offset: u64, len: usize) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start.saturating_add(len);
        for needle in lock(&self.unreadable).iter() {
            if needle.is_empty() {
                continue;
            }
            let hit = current
                .windows(needle.len())
                .enumerate()
                .any(|(at, window)| window == needle && at < end && start < at + needle.len());
            if hit {
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<PathBuf, Arc<SimFile>>,
    dirs: HashSet<PathBuf>,
    /// Files whose directory entry is durable.
    durable_entries: HashSet<PathBuf>,
    /// Removed files whose removal is not durable yet: a power cut brings them back.
    removed: HashMap<PathBuf, Arc<SimFile>>,
}

#[derive(Debug, Default)]
struct SimFile {
    bytes: Mutex<FileBytes>,
}

#[derive(Debug, Default)]
struct FileBytes {
    current: Vec<u8>,
    durable: Arc<Vec<u8>>,
}

impl SimulatedStorage {
    pub fn new() -> SimulatedStorage {
        SimulatedStorage::default()
    }

    /// Forgets every byte that was not synced and every file whose creation was not
    /// made durable, as a machine that lost power would.
    pub fn power_cut(&self) {
        let mut state = lock(&self.shared.state);
        let State {
            files,
            durable_entries,
            removed,
            ..
        } = &mut *state;
        files.extend(removed.drain());
        files.retain(|path, _| durable_entries.contains(path));
        for file in files.values() {
            let mut bytes = lock(&file.bytes);
            bytes.current = bytes.durable.to_vec();
        }
    }

    /// From now on, keeps what a power cut at each sync (of a file or a directory)
    /// would leave; [`SimulatedStorage::recorded_cuts`] hands them over.
    pub fn record_cuts(&self) {
        lock(&self.shared.cuts).get_or_insert_with(Vec::new);
    }

    /// The cuts recorded so far, oldest first; recording goes on.
    pub fn recorded_cuts(&self) -> Vec<Cut> {
        lock(&self.shared.cuts)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How many cuts have been recorded (a clock: an operation that returns before it
    /// reads N is in every cut from the N-th on).
    pub fn cuts_recorded(&self) -> usize {
        lock(&self.shared.cuts).as_ref().map_or(0, Vec::len)
    }

    /// Makes the next append to any file write only `bytes` bytes and then fail with
    /// "no space left on device", as a filling disk does.
    pub fn fail_next_append_after(&self, bytes: usize) {
        *lock(&self.shared.faults.short_append) = Some(bytes);
    }

    /// Makes every stored copy of `bytes`, now and later, unreadable, as a failing
    /// device's bad sectors are: reads that overlap one fail with EIO.
    pub fn fail_reads_of(&self, bytes: &[u8]) {
        lock(&self.shared.faults.unreadable).push(bytes.to_vec());
    }

    /// Bytes written but not yet synced, summed over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = lock(&self.shared.state);
        state
            .files
            .values()
            .map(|f| {
                let b = lock(&f.bytes);
                b.current.len().abs_diff(b.durable.len()) as u64
            })
            .sum()
    }
}

impl Storage for SimulatedStorage {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn PackFile>> {
        let mut state = lock(&self.shared.state);
        if state.files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let file = Arc::new(SimFile::default());
        state.files.insert(path.to_owned(), file.clone());
        Ok(Box::new(SimHandle(file, self.shared.clone())))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn PackFile>> {
        let state = lock(&self.shared.state);
        let file = state.files.get(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(Box::new(SimHandle(file.clone(), self.shared.clone())))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        let in_dir: Vec<PathBuf> = state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect();
        state.durable_entries.extend(in_dir);
        let gone: Vec<PathBuf> = state
            .removed
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect();
        for path in gone {
            state.removed.remove(&path);
            state.durable_entries.remove(&path);
        }
        drop(state);
        self.shared.synced();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        let file = state.files.remove(path).ok_or(io::ErrorKind::NotFound)?;
        state.removed.insert(path.to_owned(), file);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        lock(&self.shared.state).dirs.insert(dir.to_owned());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = lock(&self.shared.state);
        if !state.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
}

#[derive(Debug)]
struct SimHandle(Arc<SimFile>, Arc<Shared>);

impl PackFile for SimHandle {
    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.0.bytes).current.len() as u64)
    }

    fn append(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut budget = lock(&self.1.faults.short_append).take();
        let mut bytes = lock(&self.0.bytes);
        for buf in bufs {
            match budget.as_mut() {
                Some(left) if *left < buf.len() => {
                    bytes.current.extend_from_slice(&buf[..*left]);
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                Some(left) => *left -= buf.len(),
                None => {}
            }
            bytes.current.extend_from_slice(buf);
        }
        Ok(())
    }

    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        // Writeback that has started may or may not finish before a power cut: the
        // simulation keeps treating those bytes as unsynced, the stricter reading.
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut bytes = lock(&self.0.bytes);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + buf.len();
        if end > bytes.current.len() {
            bytes.current.resize(end, 0);
        }
        bytes.current[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut bytes = lock(&self.0.bytes);
            bytes.durable = Arc::new(bytes.current.clone());
        }
        self.1.synced();
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        lock(&self.0.bytes).current.resize(len, 0);
        Ok(())
    }

    fn append_from(&self, source: &dyn PackFile, offset: u64, len: u64) -> io::Result<()> {
        super::append_by_reading(self, source, offset, len)
    }

    fn ensure_readable(&self, mapped: &[u8], offset: u64) -> io::Result<()> {
        self.1
            .faults
            .check_read(&lock(&self.0.bytes).current, offset, mapped.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = lock(&self.0.bytes);
        self.1
            .faults
            .check_read(&bytes.current, offset, buf.len())?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let src = bytes
            .current
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        let bytes = lock(&self.0.bytes);
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let data = bytes
            .current
            .get(..len)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(Bytes::copy_from_slice(data))
    }
}
