//! The RocksDB index: every piece of metadata, one column family per kind of record.
//! Keys are built in [`keys`], values in [`values`]; this module only opens the database
//! and moves bytes in and out.

pub mod keys;
pub mod values;

use std::path::Path;

use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::error::{Error, Result};

/// The column families. Names are part of the on-disk format (FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// digest -> where the blob's bytes are.
    Blobs,
    /// repository, digest -> (empty): which repositories may read which blobs.
    Links,
    /// repository, digest -> manifest media type, size, subject, artifact type.
    Manifests,
    /// repository, tag -> manifest digest, time pushed.
    Tags,
    /// repository, subject digest, referrer digest -> the referrer's descriptor.
    Referrers,
    /// repository -> (empty): the catalog.
    Repos,
    /// upload id -> repository, start time: sessions in flight.
    Uploads,
    /// pack id -> committed length, sealed flag.
    Packs,
    /// Single values about the store: the newest metadata record's sequence number.
    State,
    /// pack id -> bytes of the pack's records that nothing needs any more (merged sums).
    Usage,
}

impl Family {
    /// The families a rebuild derives from the packs, which must equal the live index's
    /// (`uploads` is dropped at every start; `state`, the newest sequence applied, is
    /// where a replay of the log starts rather than what it derives).
    pub const FROM_PACKS: [Family; 8] = [
        Family::Blobs,
        Family::Links,
        Family::Manifests,
        Family::Tags,
        Family::Referrers,
        Family::Repos,
        Family::Packs,
        Family::Usage,
    ];

    pub const ALL: [Family; 10] = [
        Family::Blobs,
        Family::Links,
        Family::Manifests,
        Family::Tags,
        Family::Referrers,
        Family::Repos,
        Family::Uploads,
        Family::Packs,
        Family::State,
        Family::Usage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Blobs => "blobs",
            Family::Links => "links",
            Family::Manifests => "manifests",
            Family::Tags => "tags",
            Family::Referrers => "referrers",
            Family::Repos => "repos",
            Family::Uploads => "uploads",
            Family::Packs => "packs",
            Family::State => "state",
            Family::Usage => "usage",
        }
    }
}

/// Memory the index may use.
#[derive(Debug, Clone, Copy)]
pub struct IndexMemory {
    /// Shared LRU cache for data, index and filter blocks.
    pub block_cache_bytes: usize,
    /// Upper bound for all memtables together.
    pub write_buffer_bytes: usize,
}

/// A key and its value, as a scan returns them.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Key-value pairs as a scan returns them.
pub type Entries = Vec<Entry>;

pub struct Index {
    /// Batches written, to compare with the WAL syncs.
    writes: std::sync::atomic::AtomicU64,
    db: DB,
    options: Options,
    synced: WriteOptions,
    unsynced: WriteOptions,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

impl Index {
    pub fn open(path: &Path, memory: IndexMemory) -> Result<Index> {
        let cache = Cache::new_lru_cache(memory.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Point lookups (HEAD, dedup checks) skip files that cannot hold the key.
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks count against the cache, so memory stays bounded as
        // the number of files grows.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // ...in small partitions under a pinned top level. Whole-file index and filter
        // blocks grow to a MiB each with a million keys; in a small cache they were
        // evicted and read back (and checksummed) on nearly every lookup, halving write
        // and lookup rates on a large store. Partitions load 4 KiB at a time.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);

        let per_family = (memory.write_buffer_bytes / Family::ALL.len()).max(1 << 20);
        let family_options = || {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_compression_type(DBCompressionType::None);
            o.set_write_buffer_size(per_family);
            o.set_max_write_buffer_number(2);
            o
        };

        let mut options = family_options();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_db_write_buffer_size(memory.write_buffer_bytes);
        options.set_max_total_wal_size(4 * memory.write_buffer_bytes as u64);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        options.set_max_log_file_size(4 << 20);
        options.enable_statistics();
        options.set_statistics_level(StatsLevel::ExceptTimers);

        let families = Family::ALL.iter().map(|&f| {
            let mut o = family_options();
            if f == Family::Usage {
                // Counters that concurrent writers add to without reading them first.
                o.set_merge_operator_associative("lain-add-u64", values::merge_add);
            }
            ColumnFamilyDescriptor::new(f.name(), o)
        });
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        Ok(Index {
            writes: Default::default(),
            db,
            options,
            synced,
            unsynced: WriteOptions::default(),
        })
    }

    fn cf(&self, family: Family) -> &ColumnFamily {
        // Every family is created at open, so the handle always exists.
        self.db
            .cf_handle(family.name())
            .expect("column family created at open")
    }

    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(family), key)?
            .map(|v| v.to_vec()))
    }

    pub fn contains(&self, family: Family, key: &[u8]) -> Result<bool> {
        Ok(self.db.get_pinned_cf(self.cf(family), key)?.is_some())
    }

    /// The values of `keys` in one family, in order, read as one batch (cheaper than
    /// one lookup each).
    pub fn get_many(&self, family: Family, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.db
            .batched_multi_get_cf(self.cf(family), keys.iter().copied(), false)
            .into_iter()
            .map(|v| Ok(v?.map(|v| v.to_vec())))
            .collect()
    }

    /// Applies `batch` atomically and returns once it is durable (the WAL is synced).
    /// Concurrent callers are grouped by RocksDB's write thread and share one sync.
    pub fn commit(&self, batch: Batch) -> Result<()> {
        self.write(batch, &self.synced)
    }

    /// Batches written so far, synced or not.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies `batch` atomically without waiting for durability: for state that is
    /// discarded after a crash anyway (upload sessions), or that the packs hold durably
    /// already (commits; opening rolls the index forward to the packs).
    pub fn apply(&self, batch: Batch) -> Result<()> {
        self.write(batch, &self.unsynced)
    }

    fn write(&self, batch: Batch, options: &WriteOptions) -> Result<()> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut raw = WriteBatch::default();
        for (family, key, op) in batch.ops {
            match op {
                Op::Put(value) => raw.put_cf(self.cf(family), key, value),
                Op::Delete => raw.delete_cf(self.cf(family), key),
                Op::Merge(operand) => raw.merge_cf(self.cf(family), key, operand),
            }
        }
        self.db.write_opt(raw, options).map_err(Error::from)
    }

    /// Entries whose key starts with `prefix`, in key order, starting after the key
    /// `prefix + after` when `after` is given, at most `limit` of them.
    pub fn scan(
        &self,
        family: Family,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries> {
        let mut start = prefix.to_vec();
        if let Some(after) = after {
            start.extend_from_slice(after);
        }
        // The iterator stops at the first key past the prefix by itself, without
        // reading the block that holds it (in a large store, another repository's).
        let mut options = ReadOptions::default();
        if let Some(bound) = prefix_end(prefix) {
            options.set_iterate_upper_bound(bound);
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(family),
            options,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for entry in iter {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            if after.is_some() && *key == *start {
                continue;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Every entry of a family, in key order, one at a time (bounded memory, for
    /// whole-index walks).
    pub fn iter(&self, family: Family) -> impl Iterator<Item = Result<Entry>> + '_ {
        self.db
            .iterator_cf(self.cf(family), IteratorMode::Start)
            .map(|entry| entry.map_err(Error::from))
    }

    /// Every entry of a family, in key order.
    pub fn scan_all(&self, family: Family) -> Result<Entries> {
        self.scan(family, &[], None, usize::MAX)
    }

    /// A consistent view of the whole index as of now, which writes after this call do
    /// not change.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            index: self,
            inner: self.db.snapshot(),
        }
    }

    /// Compacts every family completely, waiting until it is done.
    pub fn compact(&self) {
        for family in Family::ALL {
            self.db
                .compact_range_cf(self.cf(family), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// How many times RocksDB has synced its write-ahead log. Compared with
    /// [`Index::writes`] it shows how many writes needed no sync of their own.
    pub fn wal_syncs(&self) -> u64 {
        self.options.get_ticker_count(Ticker::WalFileSynced)
    }
}

/// A read-only view of the index as of one moment: see [`Index::snapshot`].
pub struct Snapshot<'a> {
    index: &'a Index,
    inner: rocksdb::Snapshot<'a>,
}

impl Snapshot<'_> {
    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .get_pinned_cf(self.index.cf(family), key)?
            .map(|v| v.to_vec()))
    }

    pub fn contains(&self, family: Family, key: &[u8]) -> Result<bool> {
        Ok(self
            .inner
            .get_pinned_cf(self.index.cf(family), key)?
            .is_some())
    }

    /// Every entry of a family, in key order, one at a time.
    pub fn iter(&self, family: Family) -> impl Iterator<Item = Result<Entry>> + '_ {
        self.inner
            .iterator_cf(self.index.cf(family), IteratorMode::Start)
            .map(|entry| entry.map_err(Error::from))
    }

    /// Every entry of a family, in key order.
    pub fn scan_all(&self, family: Family) -> Result<Entries> {
        self.iter(family).collect()
    }
}

/// An atomic group of index changes, applied by [`Index::commit`]. It owns its
/// operations, so batches built on different threads can be merged into one write.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<(Family, Vec<u8>, Op)>,
}

#[derive(Debug)]
enum Op {
    Put(Vec<u8>),
    Delete,
    /// An operand for the family's merge operator (only `usage` has one).
    Merge(Vec<u8>),
}

impl Batch {
    pub fn put(&mut self, family: Family, key: &[u8], value: &[u8]) {
        self.ops
            .push((family, key.to_vec(), Op::Put(value.to_vec())));
    }

    pub fn delete(&mut self, family: Family, key: &[u8]) {
        self.ops.push((family, key.to_vec(), Op::Delete));
    }

    /// Adds `operand` to the value at `key` with the family's merge operator.
    pub fn merge(&mut self, family: Family, key: &[u8], operand: &[u8]) {
        debug_assert_eq!(family, Family::Usage);
        self.ops
            .push((family, key.to_vec(), Op::Merge(operand.to_vec())));
    }

    /// Appends another batch's operations after this one's.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// The smallest key greater than every key that starts with `prefix`, if there is one
/// (none for an empty prefix or one of only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab\x00"), Some(b"ab\x01".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
