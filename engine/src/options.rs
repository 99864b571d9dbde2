//! The engine's tunables, apart from the engine so that what reads them (a rebuild,
//! the wiring) needs nothing else of it.

use crate::storage::{OsStorage, Storage};
use std::sync::Arc;
use std::time::Duration;

/// Tunables. The defaults suit a registry on one node with a few hundred MiB of RAM.
#[derive(Debug, Clone)]
pub struct Options {
    /// A pack stops taking new records once it reaches this size.
    pub pack_seal_size: u64,
    /// RocksDB block cache (data, index and filter blocks).
    pub block_cache_bytes: usize,
    /// RocksDB memtables, all column families together.
    pub write_buffer_bytes: usize,
    /// An upload writes once this many bytes have gathered (one vectored write).
    pub upload_flush_bytes: usize,
    /// Reads are delivered in pieces of at most this size.
    pub read_piece_bytes: usize,
    /// At most this many upload sessions are kept. Starting one more ends the session
    /// that has received nothing for the longest, if it has been idle for at least
    /// `upload_evict_idle`; otherwise the start is refused ([`Error::TooManyUploads`]).
    /// A session between chunks holds no buffer ([`Engine::upload_pause`]), only its
    /// hash state and, once it has bytes, a leased pack (an open file): this bounds
    /// what abandoned sessions cost, and a live upload is never ended for a new one.
    /// Memory for bytes in flight is the caller's to bound (the HTTP layer's budget).
    pub max_upload_sessions: usize,
    /// See `max_upload_sessions`.
    pub upload_evict_idle: Duration,
    /// When the table is full and no session has been idle for `upload_evict_idle`, an
    /// owner with more sessions than the one starting gives up its least active one
    /// idle for this long (fair shares).
    pub upload_fair_share_idle: Duration,
    /// At most this many of those sessions may belong to one owner (the HTTP layer
    /// names a session's owner by its client's address), so that one client opening
    /// sessions without end leaves the rest to everyone else. An owner at its share
    /// gets its own least active session ended (if idle for `upload_evict_idle`) or
    /// [`Error::TooManyUploadsFrom`].
    pub max_upload_sessions_per_owner: usize,
    /// While clients are committing uploads, garbage collection copies records at
    /// most this fast (bytes per second; 0: no limit), leaving the disk to them;
    /// otherwise at full speed.
    pub compaction_busy_rate: u64,
    /// Clients' bytes (blobs, manifests) may not leave less than this free on the
    /// data directory's file system ([`Error::StorageFull`]; 0: no reserve), so that
    /// a disk filled by pushes still takes deletes, index writes and a collection.
    pub reserved_space: u64,
    /// Where pack bytes go; tests substitute [`crate::storage::SimulatedStorage`].
    pub storage: Arc<dyn Storage>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pack_seal_size: 1 << 30,
            block_cache_bytes: 16 << 20,
            write_buffer_bytes: 16 << 20,
            upload_flush_bytes: 1 << 20,
            read_piece_bytes: 256 << 10,
            max_upload_sessions: 4096,
            upload_evict_idle: Duration::from_secs(120),
            upload_fair_share_idle: Duration::from_secs(10),
            max_upload_sessions_per_owner: 1024,
            compaction_busy_rate: 16 << 20,
            reserved_space: 256 << 20,
            storage: Arc::new(OsStorage),
        }
    }
}
