//! Pack files: where blob bytes live.
//!
//! A pack is append-only and has at most one writer at a time: a writer leases an open
//! pack from the pool ([`Packs::lease`]) and streams records into it sequentially, so
//! concurrent uploads never interleave. Readers map packs and slice the mapping, so a
//! read never copies blob bytes in user space.

pub mod format;

use std::collections::HashMap;
use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};
use crate::storage::{PackFile, Storage};
use crate::sync::{lock, read_lock, write_lock};
use format::{PACK_HEADER_LEN, encode_pack_header};

/// Where a blob's bytes are: the pack, the offset of the first byte, the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u64,
    pub offset: u64,
    pub length: u64,
    /// CRC32 of the bytes, as the record trailer holds it.
    pub crc: u32,
}

impl Location {
    /// Where the blob of `record`, a blob record of pack `pack`, is.
    pub fn of(pack: u64, record: &format::ScannedRecord) -> Location {
        Location {
            pack,
            offset: record.data_offset(),
            length: record.length,
            crc: record.crc,
        }
    }
}

/// The file name of pack `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:08}.pack")
}

/// The pack id a file name stands for, if it is a pack's name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".pack")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// All packs of a data directory: the pool of writable ones and the read mappings.
#[derive(Debug)]
pub struct Packs {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    seal_size: u64,
    next_id: AtomicU64,
    /// Unsealed packs that no writer holds right now.
    idle: Mutex<Vec<PackWriter>>,
    /// Every readable pack.
    open: RwLock<HashMap<u64, Arc<ReadView>>>,
}

/// One pack as readers see it. Each has its own lock, so remapping one pack never
/// stalls reads of another.
#[derive(Debug)]
struct ReadView {
    file: Arc<dyn PackFile>,
    /// Bytes known to be synced and indexed: a mapping never reaches past them.
    committed: AtomicU64,
    /// The newest mapping; it may be shorter than `committed` until a read needs more.
    map: RwLock<Bytes>,
}

impl ReadView {
    fn new(file: Arc<dyn PackFile>, committed: u64) -> Arc<ReadView> {
        Arc::new(ReadView {
            file,
            committed: AtomicU64::new(committed),
            map: RwLock::new(Bytes::new()),
        })
    }
}

/// Appends to a leased pack on behalf of its writer: lets an upload hash its next
/// piece while the previous one is being written. See [`PackWriter::appender`].
#[derive(Debug)]
pub struct Appender {
    path: PathBuf,
    file: Arc<dyn PackFile>,
}

impl Appender {
    pub fn append(&self, bufs: &[IoSlice<'_>]) -> Result<()> {
        self.file.append(bufs).context("append to", &self.path)
    }

    /// See [`PackFile::start_writeback`].
    pub fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        self.file
            .start_writeback(offset, len)
            .context("sync_file_range", &self.path)
    }
}

/// Exclusive write access to one unsealed pack.
#[derive(Debug)]
pub struct PackWriter {
    pub id: u64,
    /// For error messages.
    path: PathBuf,
    file: Arc<dyn PackFile>,
    /// End of the last committed record: where the next record starts.
    end: u64,
    /// Whether bytes past `end` may exist (and must go if the writer is released).
    dirty: bool,
}

impl PackWriter {
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Appends bytes after whatever this writer appended since its last commit.
    pub fn append(&mut self, bufs: &[IoSlice<'_>]) -> Result<()> {
        self.dirty = true;
        self.file.append(bufs).context("append to", &self.path)
    }

    /// Appends `len` bytes of another pack, from `offset` (compaction's copies).
    pub fn append_from(&mut self, source: &dyn PackFile, offset: u64, len: u64) -> Result<()> {
        self.dirty = true;
        self.file
            .append_from(source, offset, len)
            .context("copy into", &self.path)
    }

    /// See [`PackFile::start_writeback`].
    pub fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        self.file
            .start_writeback(offset, len)
            .context("sync_file_range", &self.path)
    }

    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.dirty = true;
        self.file
            .write_at(buf, offset)
            .context("write to", &self.path)
    }

    /// A handle that appends to this pack from another thread. Whoever holds the
    /// writer must wait for the handle's work to finish before it touches the pack
    /// again (appends go to the end in call order).
    pub fn appender(&mut self) -> Appender {
        self.dirty = true;
        Appender {
            path: self.path.clone(),
            file: Arc::clone(&self.file),
        }
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().context("fdatasync", &self.path)
    }

    /// Maps everything written so far, committed or not (used to re-hash an upload).
    pub fn map_written(&self, len: u64) -> Result<Bytes> {
        self.file.map_readable(len).context("map", &self.path)
    }

    /// A copy of `len` written bytes at `offset`: for small reads, cheaper than a map
    /// (no mapping to set up and tear down on every thread's TLB).
    pub fn read_written(&self, offset: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file
            .read_at(&mut buf, offset)
            .context("read", &self.path)?;
        Ok(Bytes::from(buf))
    }

    /// Records that everything up to `end` is committed.
    fn set_committed(&mut self, end: u64) {
        self.end = end;
        self.dirty = false;
    }

    /// Drops every byte past the last commit.
    pub fn discard_uncommitted(&mut self) -> Result<()> {
        if self.dirty {
            self.file
                .truncate(self.end)
                .context("truncate", &self.path)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// What the pack layer learned while opening a data directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackRecovery {
    /// Packs whose uncommitted tail was cut off, with the bytes removed.
    pub truncated: Vec<(u64, u64)>,
    /// Packs shorter than their committed length or with a bad header: some blobs in
    /// them are unreadable and reads report `CorruptPack`.
    pub damaged: Vec<(u64, String)>,
    /// Files in the pack directory the index does not know; left untouched.
    pub unknown_files: Vec<PathBuf>,
}

/// A pack as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub committed: u64,
    pub sealed: bool,
}

impl Packs {
    /// Opens every pack the index knows, cuts uncommitted tails, and fills the pool
    /// with the unsealed ones.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        seal_size: u64,
        known: &[(u64, PackEntry)],
    ) -> Result<(Packs, PackRecovery)> {
        storage.create_dir_all(&dir).context("create", &dir)?;
        let mut report = PackRecovery::default();
        let mut open = HashMap::new();
        let mut idle = Vec::new();
        let mut max_id = 0;
        for &(id, entry) in known {
            max_id = max_id.max(id);
            let path = dir.join(file_name(id));
            let file: Arc<dyn PackFile> = match storage.open(&path) {
                Ok(f) => Arc::from(f),
                Err(e) => {
                    report.damaged.push((id, format!("cannot open: {e}")));
                    continue;
                }
            };
            let len = file.size().context("stat", &path)?;
            // What readers may map: never past the end of the file.
            let mut readable = entry.committed;
            if len < entry.committed {
                // Committed bytes are gone (a disk that lied about a sync, or a hand
                // edit). Records before the cut stay readable; the rest read as damaged.
                report.damaged.push((
                    id,
                    format!("{len} bytes on disk, {} committed", entry.committed),
                ));
                readable = len;
            } else {
                if len > entry.committed {
                    // An upload in flight, or a write torn by a crash: the valid records
                    // before it were rolled forward into the index already, so nothing
                    // here was acknowledged.
                    report.truncated.push((id, len - entry.committed));
                    file.truncate(entry.committed).context("truncate", &path)?;
                    file.sync_data().context("fdatasync", &path)?;
                }
                let header = file
                    .map_readable(PACK_HEADER_LEN.min(len))
                    .context("map", &path)?;
                let version = match format::check_pack_header(&header) {
                    Ok(version) => version,
                    Err(detail) => {
                        // Not a pack this version can read: refuse it entirely.
                        report.damaged.push((id, detail));
                        continue;
                    }
                };
                // A format-1 pack holds blob records only and takes no more records:
                // metadata records go to packs whose header says they may hold them.
                if !entry.sealed && version == format::PACK_VERSION {
                    idle.push(PackWriter {
                        id,
                        path: path.clone(),
                        file: file.clone(),
                        end: entry.committed,
                        dirty: false,
                    });
                }
            }
            open.insert(id, ReadView::new(file, readable));
        }
        for path in storage.list(&dir).context("list", &dir)? {
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name);
            if let Some(id) = id {
                max_id = max_id.max(id);
            }
            if id.is_none_or(|id| !open.contains_key(&id)) {
                report.unknown_files.push(path);
            }
        }
        let packs = Packs {
            storage,
            dir,
            seal_size,
            next_id: AtomicU64::new(max_id + 1),
            idle: Mutex::new(idle),
            open: RwLock::new(open),
        };
        Ok((packs, report))
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// How the index records a pack whose committed length is `committed`: sealed once
    /// it reaches the seal size.
    pub fn entry(&self, committed: u64) -> PackEntry {
        PackEntry {
            committed,
            sealed: committed >= self.seal_size,
        }
    }

    /// Takes an idle writable pack, or `None` if the pool is empty.
    pub fn take_idle(&self) -> Option<PackWriter> {
        lock(&self.idle).pop()
    }

    /// Takes pack `id` out of the pool, if it is there (not leased by a writer), so no
    /// writer gets it while it is being compacted.
    pub fn take_idle_id(&self, id: u64) -> Option<PackWriter> {
        let mut idle = lock(&self.idle);
        let at = idle.iter().position(|w| w.id == id)?;
        Some(idle.swap_remove(at))
    }

    /// Deletes pack `id` (compaction has moved everything it held that is needed):
    /// readers stop finding it, then the file goes and the removal is made durable.
    /// Slices of it that readers already hold stay valid (they map the file).
    pub fn remove(&self, id: u64) -> Result<()> {
        write_lock(&self.open).remove(&id);
        let path = self.path(id);
        match self.storage.remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context("remove", &path);
            }
            _ => {}
        }
        self.storage
            .sync_dir(&self.dir)
            .context("fsync directory", &self.dir)
    }

    /// Creates a new pack file, durable (header synced, directory entry synced) before it
    /// is returned. The caller records it in the index before writing records to it.
    pub fn create(&self) -> Result<PackWriter> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = self.path(id);
        let file: Arc<dyn PackFile> =
            Arc::from(self.storage.create_new(&path).context("create", &path)?);
        file.append(&[IoSlice::new(&encode_pack_header())])
            .context("write header of", &path)?;
        file.sync_data().context("fdatasync", &path)?;
        self.storage
            .sync_dir(&self.dir)
            .context("fsync directory", &self.dir)?;
        write_lock(&self.open).insert(id, ReadView::new(file.clone(), PACK_HEADER_LEN));
        Ok(PackWriter {
            id,
            path,
            file,
            end: PACK_HEADER_LEN,
            dirty: false,
        })
    }

    /// Gives a writer back. Its uncommitted bytes are dropped; a pack past the seal size
    /// is not pooled again (the committer marks it sealed in the index).
    pub fn release(&self, mut writer: PackWriter) {
        if let Err(e) = writer.discard_uncommitted() {
            // Do not reuse a pack whose tail we could not cut: recovery will at next open.
            tracing::error!(pack = writer.id, error = %e, "dropping pack from the write pool");
            return;
        }
        if writer.end < self.seal_size {
            lock(&self.idle).push(writer);
        }
    }

    /// Settles a writer once the index write meant to commit its synced records up to
    /// `end` has returned. On success the bytes become readable and the writer comes
    /// back for more records, unless the pack is now sealed. On failure the records'
    /// fate is unknown (RocksDB may yet replay the write from its log), so they are
    /// neither cut nor overwritten: the pack is retired until the next open, which
    /// keeps or cuts them according to what the index then says.
    pub fn settle(&self, mut writer: PackWriter, end: u64, indexed: bool) -> Option<PackWriter> {
        if !indexed {
            tracing::error!(
                pack = writer.id,
                "index write failed after the pack was synced; pack retired until restart"
            );
            return None;
        }
        writer.set_committed(end);
        if let Some(view) = read_lock(&self.open).get(&writer.id) {
            view.committed.fetch_max(end, Ordering::Release);
        }
        (end < self.seal_size).then_some(writer)
    }

    /// Records that `writer`'s bytes up to `end` are synced and about to be indexed by
    /// its holder, who keeps it (unlike [`Packs::settle`]) for more writes.
    pub fn advance(&self, writer: &mut PackWriter, end: u64) {
        writer.set_committed(end);
        if let Some(view) = read_lock(&self.open).get(&writer.id) {
            view.committed.fetch_max(end, Ordering::Release);
        }
    }

    /// The first `committed` bytes of pack `id`, or as many as the file has; and the
    /// file's length. For checks, which read whole packs.
    pub fn map_prefix(&self, id: u64, committed: u64) -> Result<(Bytes, u64)> {
        let view = self.view(id)?;
        let path = self.path(id);
        let len = view.file.size().context("stat", &path)?;
        let map = view
            .file
            .map_readable(committed.min(len))
            .context("map", &path)?;
        Ok((map, len))
    }

    /// Pack `id`'s file, for reads that do not map it.
    pub fn file(&self, id: u64) -> Result<Arc<dyn PackFile>> {
        Ok(self.view(id)?.file.clone())
    }

    fn view(&self, id: u64) -> Result<Arc<ReadView>> {
        read_lock(&self.open)
            .get(&id)
            .cloned()
            .ok_or_else(|| damaged(id, "pack is missing or unreadable"))
    }

    /// The committed bytes `[loc.offset, loc.offset + loc.length)` as a slice of the
    /// pack's memory mapping, with the file that checks them before they are touched.
    pub fn read(&self, loc: &Location) -> Result<Mapped> {
        let end = loc
            .offset
            .checked_add(loc.length)
            .ok_or_else(|| damaged(loc.pack, "length overflows"))?;
        let slice = |map: &Bytes| -> Option<Bytes> {
            let start = usize::try_from(loc.offset).ok()?;
            let end = usize::try_from(end).ok()?;
            (end <= map.len()).then(|| map.slice(start..end))
        };
        let view = self.view(loc.pack)?;
        let mapped = |bytes: Bytes| Mapped {
            pack: loc.pack,
            offset: loc.offset,
            bytes,
            file: view.file.clone(),
        };
        if let Some(bytes) = slice(&read_lock(&view.map)) {
            return Ok(mapped(bytes));
        }
        // The cached mapping is too short (or absent): map the committed length again.
        // Only the index hands out locations, and it does so only for synced bytes, so
        // mapping up to `end` never reaches past the end of the file.
        let mut map = write_lock(&view.map);
        if (map.len() as u64) < end {
            let want = view.committed.load(Ordering::Acquire).max(end);
            *map = view
                .file
                .map(want)
                .map_err(|e| damaged(loc.pack, &format!("cannot map {want} bytes: {e}")))?;
        }
        slice(&map)
            .map(mapped)
            .ok_or_else(|| damaged(loc.pack, "record lies past the end of the pack"))
    }
}

/// Stored bytes as a slice of their pack's mapping. Touching a mapped page the device
/// cannot read kills the process, so whoever hands the bytes on checks them first with
/// [`Mapped::ensure_readable`] (the blob reader does, piece by piece).
#[derive(Debug, Clone)]
pub struct Mapped {
    pub pack: u64,
    /// The file offset of `bytes[0]`.
    pub offset: u64,
    pub bytes: Bytes,
    pub file: Arc<dyn PackFile>,
}

impl Mapped {
    /// Checks that the first `len` bytes can be read ([`PackFile::ensure_readable`]).
    pub fn ensure_readable(&self, len: usize) -> Result<()> {
        let len = len.min(self.bytes.len());
        self.file
            .ensure_readable(&self.bytes[..len], self.offset)
            .map_err(|source| Error::Unreadable {
                pack: self.pack,
                offset: self.offset,
                source,
            })
    }

    /// Drops the first `n` bytes.
    pub fn advance(&mut self, n: usize) -> Bytes {
        let n = n.min(self.bytes.len());
        self.offset += n as u64;
        self.bytes.split_to(n)
    }
}

fn damaged(pack: u64, detail: &str) -> Error {
    Error::CorruptPack {
        pack,
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(7), "00000007.pack");
        assert_eq!(parse_file_name("00000007.pack"), Some(7));
        assert_eq!(parse_file_name("123456789.pack"), Some(123_456_789));
        assert_eq!(parse_file_name("7.pack"), None);
        assert_eq!(parse_file_name("0000000x.pack"), None);
        assert_eq!(parse_file_name("00000007.tmp"), None);
    }
}
