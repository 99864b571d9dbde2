//! How long-running work (rebuild, check, upgrade) tells its caller how far it is. The
//! engine only counts; the command line decides whether that is a progress bar or
//! log lines.

/// Receives progress reports, from the threads doing the work (several at once, for
/// work shared among cores).
pub trait Progress: Sync {
    /// A new phase begins, with `total` units of work (bytes, records, entries).
    fn phase(&self, name: &str, total: u64);
    /// `units` more of the current phase are done.
    fn advance(&self, units: u64);
}

/// Reports to no one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}
