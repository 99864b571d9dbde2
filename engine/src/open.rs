//! Opening a data directory: its lock, its format (refused if newer, upgraded in place
//! if older), the index rebuilt from the packs if it is missing, rolled forward to the
//! packs if it is behind them, uncommitted pack tails cut, retired packs removed. Above
//! every other module: it is where they are put together.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::collect::guard::LinkGuard;
use crate::engine::{Core, Counters, Engine, Options, RecoveryReport};
use crate::error::{Error, IoContext, Result};
use crate::group::queue::GroupCommit;
use crate::index::{Batch, Family, Index, IndexMemory, keys, values};
use crate::inflight::Inflight;
use crate::layout::{FORMAT_VERSION, Found, Layout};
use crate::lock::DirLock;
use crate::pack::{PackRecovery, Packs};
use crate::progress::Silent;
use crate::rebuild::{self, RebuildReport};
use crate::rollforward;
use crate::space::Space;
use crate::upgrade;
use crate::upload::session::Sessions;

impl Engine {
    /// Opens (creating if needed) the data directory `root`: takes its lock, rebuilds
    /// the index from the packs if it is missing, opens it, cuts uncommitted pack tails,
    /// drops the previous process's sessions, and upgrades a format-1 store in place.
    /// A second opener of the same directory gets [`Error::Locked`].
    pub fn open(root: &Path, options: Options) -> Result<Engine> {
        std::fs::create_dir_all(root).context("create", root)?;
        let dir_lock = DirLock::acquire(root)?;
        let layout = Layout::new(root);
        let found = layout.found()?;
        match found {
            Found::Empty => layout.write_format()?,
            Found::Store { version } if version > FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: format!(
                        "data format {version} is newer than this registry's ({FORMAT_VERSION})"
                    ),
                });
            }
            Found::Store { .. } => {}
        }
        let mut rebuilt = None;
        if found != Found::Empty && !layout.index().exists() {
            // Lost, deleted, or a rebuild was interrupted: the packs have it all.
            if found == (Found::Store { version: 1 }) {
                tracing::error!(
                    "{}: the index of a format-1 store is missing; its blobs are rebuilt \
                     from the packs, but its repositories, tags and manifests were only in \
                     the index and are gone",
                    root.display()
                );
            }
            let report = rebuild::rebuild(&layout, &options, &Silent)?;
            if report.packs > 0 {
                tracing::warn!(
                    ?report,
                    "index missing: rebuilt from the packs in {}",
                    root.display()
                );
            }
            rebuilt = Some(report);
        }
        rebuild::remove_dir_if_present(&layout.index_new())?;
        rebuild::remove_dir_if_present(&layout.index_old())?;
        for stale in layout.stale_checks() {
            rebuild::remove_dir_if_present(&stale)?;
        }
        let index = Index::open(
            &layout.index(),
            IndexMemory {
                block_cache_bytes: options.block_cache_bytes,
                write_buffer_bytes: options.write_buffer_bytes,
            },
        )?;

        let mut known = values::decode_packs(index.scan_all(Family::Packs)?)?;
        let mut sequence = index
            .get(Family::State, keys::SEQUENCE)?
            .map(|v| values::decode_sequence(&v))
            .transpose()?
            .unwrap_or(0);
        let rolled_forward = rollforward::roll_forward(
            &index,
            options.storage.as_ref(),
            &layout.packs(),
            options.pack_seal_size,
            &mut sequence,
            &mut known,
        )?;
        crate::collect::remove_retired(&index, options.storage.as_ref(), &layout.packs())?;
        let (packs, pack_report) = Packs::open(
            options.storage.clone(),
            layout.packs(),
            options.pack_seal_size,
            &known,
        )?;

        let stale = index.scan_all(Family::Uploads)?;
        let mut batch = Batch::default();
        for (key, _) in &stale {
            batch.delete(Family::Uploads, key);
        }
        index.commit(batch)?;

        let recovery = RecoveryReport {
            packs: pack_report,
            stale_uploads: stale.len(),
            rolled_forward,
            rebuilt,
            upgraded_from: None,
        };
        let options_reserve = options.reserved_space;
        let core = Core {
            options,
            index,
            packs: Arc::new(packs),
            inflight: Inflight::default(),
            group: GroupCommit::default(),
            sessions: Sessions::default(),
            stats: Counters::default(),
            sequence: AtomicU64::new(sequence),
            repo_locks: (0..64).map(|_| std::sync::RwLock::new(())).collect(),
            collection: LinkGuard::default(),
            maintenance: std::sync::Mutex::new(()),
            recovery,
            root: root.to_owned(),
            space: Space::new(root, options_reserve),
            _lock: dir_lock,
        };
        let mut engine = Engine {
            core: Arc::new(core),
        };
        if let Found::Store { version: 1 } = found {
            upgrade::from_format_1(&engine)?;
            layout.write_format()?;
            if let Some(core) = Arc::get_mut(&mut engine.core) {
                core.recovery.upgraded_from = Some(1);
            }
            tracing::info!(
                "upgraded {} from data format 1 to {FORMAT_VERSION}",
                root.display()
            );
        }
        let recovery = &engine.core.recovery;
        if recovery.packs != PackRecovery::default()
            || recovery.stale_uploads > 0
            || recovery.rolled_forward > 0
        {
            tracing::warn!(?recovery, "recovered data directory {}", root.display());
        }
        Ok(engine)
    }

    /// Whether `root` holds a store (a data directory this engine has written), without
    /// opening or creating anything.
    pub fn holds_store(root: &Path) -> Result<bool> {
        Layout::new(root).holds_store()
    }

    /// Rebuilds the index of the data directory `root` from its packs, replacing the
    /// index there (FORMAT.md, "Rebuilding the index"). Needs the directory to itself:
    /// a running server holds its lock ([`Error::Locked`]).
    pub fn rebuild_index(
        root: &Path,
        options: &Options,
        progress: &dyn crate::progress::Progress,
    ) -> Result<RebuildReport> {
        let _lock = DirLock::acquire(root)?;
        let layout = Layout::new(root);
        match layout.found()? {
            Found::Store { version } if version > FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: format!("data format {version} is newer than this registry's"),
                });
            }
            // Its packs hold no metadata: a rebuild would keep the blobs and drop every
            // repository, tag and manifest that its index alone holds.
            Found::Store { version: 1 } => {
                return Err(Error::UnsupportedFormat {
                    path: root.to_owned(),
                    detail: "data format 1 keeps its metadata in the index only, so it cannot \
                             be rebuilt from the packs: open it once (`registry serve` or \
                             `registry fsck`) to upgrade it in place, then repair"
                        .into(),
                });
            }
            _ => {}
        }
        rebuild::rebuild(&layout, options, progress)
    }
}
