//! `lain-http`: the Docker Registry HTTP API V2 / OCI Distribution v1.1 protocol on top of
//! `lain-engine`. `PROTOCOL.md` lists every endpoint with its status codes.

mod api;
mod body;
mod errors;
mod manifest;
mod names;
mod ranges;
mod route;
mod server;

use std::time::Duration;

pub use server::serve;

/// What the protocol layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether blobs and manifests may be deleted (distribution's `storage.delete.enabled`).
    /// When false, deletes answer 405 `UNSUPPORTED`.
    pub delete_enabled: bool,
    /// Upload sessions idle for longer than this are cancelled
    /// (distribution's `storage.maintenance.uploadpurging.age`).
    pub upload_purge_age: Duration,
    /// How often the purge runs (`storage.maintenance.uploadpurging.interval`); `None`
    /// disables purging (`uploadpurging.enabled: false`).
    pub upload_purge_interval: Option<Duration>,
}

impl Default for Settings {
    /// The embedded default: deletes enabled (LAIN's weekly clean-up needs them), idle
    /// sessions purged after a day, checked every ten minutes.
    fn default() -> Settings {
        Settings {
            delete_enabled: true,
            upload_purge_age: Duration::from_secs(24 * 3600),
            upload_purge_interval: Some(Duration::from_secs(600)),
        }
    }
}

/// The blobs (config, layers) and child manifests a stored manifest references, as
/// its media type says to read it: the engine's [`lain_engine::ReferenceReader`].
pub fn manifest_references(
    bytes: &[u8],
    media_type: &str,
) -> Result<lain_engine::References, String> {
    let parsed = manifest::parse(bytes, Some(media_type)).map_err(|e| e.message)?;
    Ok(lain_engine::References {
        blobs: parsed.blobs,
        manifests: parsed.children,
    })
}

/// The parsers that see client bytes, for the cargo-fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::manifest::{accepts, parse as parse_manifest};
    pub use crate::names::{check_repository, parse_reference};
    pub use crate::ranges::{ReadRange, content_range, read_range};
    pub use crate::route::{Route, query_pairs};
}
