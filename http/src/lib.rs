//! `lain-http`: the Docker Registry HTTP API V2 / OCI Distribution v1.1 protocol on top of
//! `lain-engine`. `PROTOCOL.md` lists every endpoint with its status codes.

mod api;
pub mod auth;
mod body;
mod budget;
mod connections;
mod errors;
mod manifest;
mod names;
mod ranges;
mod route;
mod server;
mod unparsed;
mod upload_state;

use std::time::Duration;

pub use server::{TlsAcceptor, serve};

/// What the protocol layer needs from the configuration, fixed while it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The API is served under this path (`http.prefix`, as `/registry`; empty: at
    /// the root).
    pub prefix: String,
    /// How `Location` headers name this registry.
    pub locations: Locations,
    /// Added to every response (`http.headers`).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// How long in-flight requests may take to finish once shutdown begins
    /// (`http.draintimeout`).
    pub drain_timeout: Duration,
    /// Whether clients may speak HTTP/2 (`http.http2.disabled: false`).
    pub http2: bool,
    /// Memory for upload bodies in flight, all requests together
    /// (`storage.engine.uploadmemory`); see `budget.rs`.
    pub upload_memory: usize,
    /// Connections open at once, all clients together (`http.connections.max`); see
    /// `connections.rs`.
    pub max_connections: usize,
    /// Connections one client address may have open (`http.connections.perclient`).
    pub max_connections_per_client: usize,
    /// What upload locations are authenticated with (`http.secret`); a random key of
    /// this process when `None`.
    pub secret: Option<Vec<u8>>,
}

/// How `Location` (and `Link`) headers name this registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locations {
    /// `/v2/...` (with the prefix): every client resolves them against the URL it used.
    Relative,
    /// On this base URL (`http.host`).
    Absolute(String),
    /// On the scheme and host the request came with (`X-Forwarded-Proto`,
    /// `X-Forwarded-Host`, `Host`), as distribution does without `relativeurls`.
    FromRequest,
}

/// 8 MiB: room for a few uploads at full speed (each holds a batch being received and
/// one being written), which is what a disk and two cores take; more only grows memory
/// (`benches/UPLOADS.md`: a thousand concurrent uploads peak at about 100 MiB).
pub const DEFAULT_UPLOAD_MEMORY: usize = 8 << 20;

/// Connections open at once: each is a file descriptor and about 30 KiB of memory
/// (`benches/UPLOADS.md`), so 8,192 fit a 256 MiB container with room for bodies.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;

/// A client address's share: a node's Docker daemon pushing many layers of many images
/// at once stays far below it; a client opening connections without end does not.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 2048;

impl Default for Settings {
    /// The embedded default: deletes enabled (LAIN's weekly clean-up needs them), idle
    /// sessions purged after a day, checked every ten minutes.
    fn default() -> Settings {
        Settings {
            delete_enabled: true,
            upload_purge_age: Duration::from_secs(24 * 3600),
            upload_purge_interval: Some(Duration::from_secs(600)),
            prefix: String::new(),
            locations: Locations::Relative,
            headers: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            http2: true,
            upload_memory: DEFAULT_UPLOAD_MEMORY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            secret: None,
        }
    }
}

/// Settings that may change while the registry serves (from etcd). Each request runs
/// under the ones that held when it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Every write answers 405 `UNSUPPORTED`
    /// (`storage.maintenance.readonly.enabled`).
    pub read_only: bool,
    pub access: Access,
}

/// Who may use the API.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// Everyone.
    #[default]
    Open,
    /// No one: the configuration asks for authentication that cannot be enforced (a
    /// kind this build lacks, or keys that could not be loaded), so every request is
    /// refused rather than served unauthenticated.
    Closed { reason: String },
    /// Holders of a token that grants what each request needs.
    Token(std::sync::Arc<auth::TokenAuth>),
    /// Users of the htpasswd file, with all access (as in distribution).
    Basic(std::sync::Arc<auth::Htpasswd>),
}

impl PartialEq for Access {
    /// Token settings are the same when they are the same instance: a reload builds
    /// new ones.
    fn eq(&self, other: &Access) -> bool {
        match (self, other) {
            (Access::Open, Access::Open) => true,
            (Access::Closed { reason: a }, Access::Closed { reason: b }) => a == b,
            (Access::Token(a), Access::Token(b)) => std::sync::Arc::ptr_eq(a, b),
            (Access::Basic(a), Access::Basic(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Access {}

/// The blobs (config, layers) and child manifests a stored manifest references, as
/// its media type says to read it: a [`lain_store::ReferenceReader`].
pub fn manifest_references(
    bytes: &[u8],
    media_type: &str,
) -> Result<lain_store::References, String> {
    let parsed = manifest::parse(bytes, Some(media_type)).map_err(|e| e.message)?;
    Ok(lain_store::References {
        blobs: parsed.blobs,
        manifests: parsed.children,
    })
}

/// The parsers that see client bytes, for the cargo-fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::auth::{Htpasswd, TokenSettings};

    /// The user an `Authorization` header logs in as, checked as the server checks it
    /// but without counting failures (a fuzzer would only meet the rate limit).
    pub fn basic_login(users: &Htpasswd, header: &str) -> Option<String> {
        users.verify(Some(header))
    }

    /// Token checks against the certificates of a PEM bundle, with every algorithm of
    /// the allow-list.
    pub fn token_settings(bundle_pem: &[u8]) -> Option<TokenSettings> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let certificates: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bundle_pem)
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect();
        Some(TokenSettings {
            issuer: "fuzz".into(),
            service: "fuzz".into(),
            keys: crate::auth::TokenKeys::new(&certificates, None).ok()?,
            algorithms: crate::auth::jose::Algorithm::ALL.to_vec(),
        })
    }

    pub use crate::manifest::{accepts, parse as parse_manifest};
    pub use crate::names::{check_repository, parse_reference};
    pub use crate::ranges::{ReadRange, content_range, read_range};
    pub use crate::route::{Route, query_pairs};
}
