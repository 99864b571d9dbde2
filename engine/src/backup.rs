//! `Engine::backup`: a consistent copy of the store while it keeps taking writes.
//!
//! The packs are the whole store (the index is derived from them), and everything up to
//! a pack's committed length is immutable. So a backup reads every pack's committed
//! length from one consistent view of the index, and copies each pack up to there:
//! everything acknowledged before that read is in the copy, whole, and nothing torn.
//! A sealed pack is hard-linked when the destination is on the same file system (it
//! never changes again); a pack the destination already holds a prefix of gets only
//! its new bytes. The destination has no index: starting a server on it rebuilds one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::index::{Family, values};
use crate::layout::{Layout, sync_dir};
use crate::lock::DirLock;
use crate::pack;
use crate::progress::Progress;
use crate::rebuild::remove_dir_if_present;

/// What a backup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub packs: u64,
    /// Bytes of the store as of the backup (the committed lengths).
    pub store_bytes: u64,
    /// Bytes written to the destination (new packs and the new ends of grown ones).
    pub copied_bytes: u64,
    /// Sealed packs hard-linked instead of copied, and their bytes.
    pub linked_packs: u64,
    pub linked_bytes: u64,
    /// Packs the destination already held whole.
    pub unchanged_packs: u64,
    /// Packs in the destination that the store no longer has, removed.
    pub removed_packs: u64,
}

impl Engine {
    /// Backs the store up into the directory `dest` (created if needed; a previous
    /// backup of this store there is brought up to date). Safe while other threads
    /// write: see the module documentation.
    pub fn backup(&self, dest: &Path, progress: &dyn Progress) -> Result<BackupReport> {
        // Not while a collection deletes packs.
        let _maintenance = crate::sync::lock(&self.core.maintenance);
        // One iterator is one consistent view: a pack's length and the lengths of the
        // packs holding what its records refer to were committed in one batch.
        let cuts = values::decode_packs(self.core.index.scan_all(Family::Packs)?)?;
        fs::create_dir_all(dest).context("create", dest)?;
        let _lock = DirLock::acquire(dest)?;
        let layout = Layout::new(dest);
        let dest_packs = layout.packs();
        fs::create_dir_all(&dest_packs).context("create", &dest_packs)?;
        // A server started on an earlier backup may have written an index (and more):
        // the copy's index is always rebuilt from its packs.
        remove_dir_if_present(&layout.index())?;

        let mut report = BackupReport::default();
        let total = cuts.iter().map(|(_, entry)| entry.committed).sum();
        progress.phase("copying packs", total);
        let source_dir = self.core.root.join("packs");
        for &(id, entry) in &cuts {
            let name = pack::file_name(id);
            let target = dest_packs.join(&name);
            let have = match fs::metadata(&target) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e).context("stat", &target),
            };
            report.packs += 1;
            report.store_bytes += entry.committed;
            if have > entry.committed {
                return Err(Error::BackupMismatch {
                    path: target,
                    detail: format!(
                        "{have} bytes there, but this store has committed only {} of that pack: \
                         the destination holds another store",
                        entry.committed
                    ),
                });
            }
            if have == 0 && entry.sealed && fs::hard_link(source_dir.join(&name), &target).is_ok() {
                report.linked_packs += 1;
                report.linked_bytes += entry.committed;
            } else {
                let (map, _) = self.core.packs.map_prefix(id, entry.committed)?;
                if (map.len() as u64) < entry.committed {
                    return Err(Error::CorruptPack {
                        pack: id,
                        detail: "shorter than its committed length".into(),
                    });
                }
                let mut file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&target)
                    .context("open", &target)?;
                same_prefix(&mut file, &target, have, &map)?;
                if have == entry.committed {
                    report.unchanged_packs += 1;
                } else {
                    file.write_all(&map[have as usize..])
                        .context("write", &target)?;
                    file.sync_all().context("fsync", &target)?;
                    report.copied_bytes += entry.committed - have;
                }
            }
            progress.advance(entry.committed);
        }
        // Packs the store no longer has (collected since the last backup) must not come
        // back in a restore.
        let kept: std::collections::HashSet<String> =
            cuts.iter().map(|(id, _)| pack::file_name(*id)).collect();
        for entry in fs::read_dir(&dest_packs).context("list", &dest_packs)? {
            let entry = entry.context("list", &dest_packs)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if pack::parse_file_name(&name).is_some() && !kept.contains(&name) {
                let path = entry.path();
                fs::remove_file(&path).context("remove", &path)?;
                report.removed_packs += 1;
            }
        }
        sync_dir(&dest_packs)?;
        layout.write_format()?;
        Ok(report)
    }
}

/// Checks that `file`'s first `at` bytes are a copy of `pack`'s (their last 64 KiB are
/// compared), and leaves the file's position at `at`.
fn same_prefix(file: &mut File, path: &Path, at: u64, pack: &[u8]) -> Result<()> {
    let at = at as usize;
    let from = at.saturating_sub(64 << 10);
    let mut tail = vec![0u8; at - from];
    file.seek(SeekFrom::Start(from as u64))
        .context("seek", path)?;
    file.read_exact(&mut tail).context("read", path)?;
    if tail != pack[from..at] {
        return Err(Error::BackupMismatch {
            path: path.to_owned(),
            detail: "its bytes differ from this store's pack of the same name".into(),
        });
    }
    Ok(())
}
