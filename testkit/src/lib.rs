//! Helpers that the engine's tests and the registry's black-box tests both use. A
//! crate of its own (a dev-dependency of both) so that each helper exists once.

use std::path::Path;

/// A randomized test's seed: `LAIN_TEST_SEED` when set (to repeat a run's choices),
/// otherwise the clock; printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("LAIN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("LAIN_TEST_SEED={seed}");
    seed
}

/// A temporary directory in memory (tmpfs) where the machine has one: for tests whose
/// many syncs (index rebuilds, thousands of commits) would only measure the disk.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir")
}
