//! The control socket: how `registry fsck|backup|garbage-collect|prune` reach a `registry serve` that holds the data directory. A Unix socket at
//! `<root>/control.sock`, owner-only; one request per connection, as one JSON line; the
//! server answers with JSON lines (progress, report lines) ending in `Done` or `Failed`.

pub mod client;
pub mod server;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::commands::Outcome;

pub fn socket_path(root: &Path) -> PathBuf {
    root.join("control.sock")
}

/// What a client asks the server to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    Fsck {
        deep: bool,
    },
    /// `dest` is absolute: the server's working directory is not the client's.
    Backup {
        dest: PathBuf,
    },
    GarbageCollect(crate::commands::collect::Collect),
    Prune(crate::commands::prune::Prune),
}

/// What the server sends back while and after it runs a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Message {
    Phase { name: String, total: u64 },
    Advance(u64),
    Line(String),
    Done(Outcome),
    Failed(String),
}
