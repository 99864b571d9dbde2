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

/// An OCI image manifest naming a config blob and layer blobs by digest and size, as
/// the tests and the load generator push them.
pub fn image_manifest<D: std::fmt::Display>(
    config: (D, usize),
    layers: impl IntoIterator<Item = (D, usize)>,
) -> String {
    let descriptor = |media_type: &str, (digest, size): (D, usize)| {
        format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
    };
    let layers: Vec<String> = layers
        .into_iter()
        .map(|layer| descriptor("application/vnd.oci.image.layer.v1.tar", layer))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", config),
        layers.join(",")
    )
}
