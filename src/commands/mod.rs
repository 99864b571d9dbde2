//! The maintenance commands. Each runs against an open [`Engine`] and reports through an
//! [`Output`]: in this process when the command holds the data directory, or inside a
//! running server that holds it, with its output streamed back over the control socket
//! (`crate::control`). Either way the same code runs and prints the same lines.

pub mod backup;
pub mod collect;
pub mod fsck;
pub mod prune;

use lain_engine::progress::Progress;

/// Where a command's progress and lines go.
pub trait Output: Progress {
    /// One line of the command's report.
    fn line(&self, text: &str);
}

/// What a command concluded: whether it found the store as it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Done, nothing wrong.
    Clean,
    /// Done, and it found problems (fsck's exit code 1).
    Problems,
}

/// A number of bytes for people.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
