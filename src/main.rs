//! `registry`: the LAIN container image registry.
//!
//! This file only wires: it reads the command line and environment, opens the engine,
//! and hands both to the HTTP layer or to a maintenance command.

mod access;
mod commands;
mod control;
mod etcd;
mod progress;
mod storage;
mod tls;
mod token_server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{Outcome, Output};
use control::Request;
use lain_engine::Engine;
use lain_registry::config::{self, Config};
use tokio::net::TcpListener;

/// The LAIN container image registry (Docker Registry HTTP API V2, OCI Distribution
/// v1.1).
#[derive(Debug, Parser)]
#[command(
    name = "registry",
    version,
    after_help = "Exit codes: 0 success; 1 failure, or (fsck) problems found; 2 a usage error.\n\
                  Every command reads docker/distribution's config.yml (or, without one, the\n\
                  embedded default: data in ./registry-data, 127.0.0.1:5000) and the\n\
                  REGISTRY_* variables that override it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the registry over HTTP (or HTTPS, with http.tls).
    ///
    /// Reads docker/distribution's config.yml (every key of version 0.1; those that mean
    /// nothing to this registry are named once at start), or without a file the
    /// embedded default: data in ./registry-data, listening on 127.0.0.1:5000, deletes
    /// enabled. etcd (the etcd section) overrides the file and REGISTRY_* variables
    /// override both; etcd's changes apply while serving. README.md lists every key.
    Serve {
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
    /// Runs a small Docker token server (users from htpasswd, a grant table, a signing
    /// key), for trying token authentication without LAIN Console.
    #[command(name = "token-server")]
    TokenServer {
        /// The token server's YAML file: addr, issuer, key, certificate, kid
        /// (libtrust | thumbprint | x5c), users, grants, expiration.
        config: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Checks the data directory: packs, index entries, repository metadata, and the
    /// metadata log in the packs against the index.
    ///
    /// Each problem is printed with the repositories and tags it affects; the exit code
    /// is 1 when anything is wrong. While `registry serve` runs on the data directory,
    /// the check runs inside it (through its control socket) while pushes go on, and
    /// sees the store as of one moment. --repair needs the server stopped.
    Fsck {
        /// Rebuild the whole index from the packs first (the packs are the source of
        /// truth; the index is derived from them), then check.
        #[arg(long)]
        repair: bool,
        /// Also re-hash every blob against its digest.
        #[arg(long)]
        deep: bool,
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
    /// Copies the store into DEST, consistently, while it serves.
    ///
    /// Packs are copied up to their committed lengths (sealed ones hard-linked when DEST
    /// is on the same file system); a second backup into the same DEST copies only what
    /// is new. To restore, run `registry serve` with DEST as its data directory: the
    /// index is rebuilt from the packs at its first start.
    Backup {
        /// The backup directory.
        dest: PathBuf,
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
    /// Removes what no kept manifest needs and frees its disk space, while the registry
    /// serves.
    ///
    /// Keeps every manifest (with --delete-untagged, those that tags reach, their child
    /// manifests and the referrers of kept subjects) and every blob they reference;
    /// removes the other repository links and manifests, then rewrites the packs whose
    /// dead bytes pass the threshold and deletes the old ones. Blobs uploaded within
    /// the grace period that no manifest has referenced yet are kept. While `registry
    /// serve` runs on the data directory, the collection runs inside it (through its
    /// control socket) and pushes and pulls go on.
    #[command(name = "garbage-collect")]
    GarbageCollect {
        /// Print what would be removed; change nothing.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Also remove manifests that no tag reaches.
        #[arg(short = 'm', long)]
        delete_untagged: bool,
        /// Keep blobs that no manifest has referenced yet for this long after their
        /// upload (e.g. 1h, 30m, 0s).
        #[arg(long, value_parser = parse_duration)]
        grace: Option<std::time::Duration>,
        /// Rewrite packs with at least this fraction of dead bytes (0 to 1).
        #[arg(long, value_parser = parse_fraction)]
        compact_threshold: Option<f64>,
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
    /// Keeps the newest tags of each repository and deletes the rest, then collects
    /// garbage.
    ///
    /// A tag's manifest is deleted with it unless a kept tag points at it too. Works
    /// while `registry serve` runs (through its control socket), as garbage-collect
    /// does.
    Prune {
        /// How many tags of each repository to keep.
        #[arg(long, value_name = "N")]
        keep_last: usize,
        /// Only repositories whose name matches this pattern (`*`, `?`).
        #[arg(long, value_name = "GLOB")]
        repo: Option<String>,
        /// Which tags are the newest: by push time, or by name in natural order
        /// (digit runs compare as numbers), as LAIN's weekly script did.
        #[arg(long, value_enum, default_value = "pushed")]
        order: Order,
        /// Print what would be removed; change nothing.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Do not collect garbage afterwards.
        #[arg(long)]
        no_collect: bool,
        /// The collection's grace period (see garbage-collect).
        #[arg(long, value_parser = parse_duration)]
        grace: Option<std::time::Duration>,
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Prints the effective configuration (secrets redacted) and where each value came
    /// from: default, file (with its line), etcd, environment. Exits 1 on an error.
    Check {
        /// docker/distribution's config.yml.
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Order {
    Pushed,
    Name,
}

/// The blocking pool's size (see `serve`).
const BLOCKING_THREADS: usize = 64;
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    config::parse_go_duration(text).map_err(|e| e.to_string())
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a fraction between 0 and 1")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs to standard output, as before; a maintenance command's standard
    // output is its report, so its log lines go to standard error.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.command {
        // The server sets up its log from its configuration (log.level, log.formatter).
        Command::Serve { .. } => {}
        Command::TokenServer { .. } => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
    let result = match cli.command {
        Command::Serve { config } => serve(config.as_deref()).map(|()| ExitCode::SUCCESS),
        Command::Config {
            action: ConfigAction::Check { config },
        } => config_check(config.as_deref()),
        Command::TokenServer { config } => token_server::run(&config).map(|()| ExitCode::SUCCESS),
        Command::Fsck {
            repair,
            deep,
            config,
        } => load(config.as_deref()).and_then(|config| fsck(&config, repair, deep)),
        Command::Backup { dest, config } => {
            load(config.as_deref()).and_then(|config| backup(&config, &dest))
        }
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            grace,
            compact_threshold,
            config,
        } => load(config.as_deref()).and_then(|config| {
            let settings = commands::collect::Collect {
                delete_untagged,
                dry_run,
                grace: grace.unwrap_or(config.collect.grace),
                compact_threshold: compact_threshold.unwrap_or(config.collect.compact_threshold),
            };
            collect(&config, settings)
        }),
        Command::Prune {
            keep_last,
            repo,
            order,
            dry_run,
            no_collect,
            grace,
            config,
        } => load(config.as_deref()).and_then(|config| {
            let then_collect = (!no_collect).then(|| commands::collect::Collect {
                delete_untagged: false,
                dry_run,
                grace: grace.unwrap_or(config.collect.grace),
                compact_threshold: config.collect.compact_threshold,
            });
            let settings = commands::prune::Prune {
                keep_last,
                repo,
                by_name: matches!(order, Order::Name),
                dry_run,
                then_collect,
            };
            prune(&config, settings)
        }),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("registry: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses a directory that holds no store (a typo in the configuration), rather than
/// creating an empty one.
fn existing_store(root: &Path) -> Result<(), String> {
    match Engine::holds_store(root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{} holds no registry data", root.display())),
        Err(e) => Err(format!("{}: {e}", root.display())),
    }
}

fn fsck(config: &Config, repair: bool, deep: bool) -> Result<ExitCode, String> {
    let root = &config.root;
    existing_store(root)?;
    let out = progress::reporter();
    if repair {
        commands::fsck::repair(root, &config.engine.options(), &*out).map_err(|e| match e {
            lain_engine::Error::Locked { .. } => format!(
                "{} is in use by a running `registry serve`: stop it to repair (a repair \
                 replaces the index the server reads)",
                root.display()
            ),
            e => format!("cannot rebuild the index of {}: {e}", root.display()),
        })?;
    }
    maintain(config, Request::Fsck { deep }, &*out, |engine| {
        commands::fsck::check(engine, deep, &*out)
    })
}

fn backup(config: &Config, dest: &Path) -> Result<ExitCode, String> {
    existing_store(&config.root)?;
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let dest = dest
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let out = progress::reporter();
    let request = Request::Backup { dest: dest.clone() };
    maintain(config, request, &*out, |engine| {
        commands::backup::backup(engine, &dest, &*out)
    })
}

fn collect(config: &Config, settings: commands::collect::Collect) -> Result<ExitCode, String> {
    let out = progress::reporter();
    if let Some(cluster) = &config.cluster {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let store = storage::open_cluster(config, cluster).await?;
            commands::collect::collect_cluster(&store, &settings, &*out).await
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    existing_store(&config.root)?;
    let request = Request::GarbageCollect(settings.clone());
    maintain(config, request, &*out, |engine| {
        commands::collect::collect(engine, &settings, &*out)
    })
}

fn prune(config: &Config, settings: commands::prune::Prune) -> Result<ExitCode, String> {
    let out = progress::reporter();
    if let Some(cluster) = &config.cluster {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let store = storage::open_cluster(config, cluster).await?;
            commands::prune::prune_cluster(&store, &settings, &*out).await
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    existing_store(&config.root)?;
    let request = Request::Prune(settings.clone());
    maintain(config, request, &*out, |engine| {
        commands::prune::prune(engine, &settings, &*out)
    })
}

/// Runs a maintenance command here when the data directory is free, or in the server
/// that holds it, through its control socket.
fn maintain(
    config: &Config,
    request: Request,
    out: &dyn Output,
    here: impl FnOnce(&Engine) -> Result<Outcome, String>,
) -> Result<ExitCode, String> {
    let root = &config.root;
    let outcome = match Engine::open(root, config.engine.options()) {
        Ok(engine) => here(&engine)?,
        Err(lain_engine::Error::Locked { .. }) => control::client::request(root, &request, out)?,
        Err(e) => return Err(format!("cannot open {}: {e}", root.display())),
    };
    Ok(match outcome {
        Outcome::Clean => ExitCode::SUCCESS,
        Outcome::Problems => ExitCode::FAILURE,
    })
}

/// The process's environment, for the `REGISTRY_*` overrides.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The configuration every command runs with: the file (or the embedded default), etcd
/// when it is configured (read once), the environment.
struct Resolved {
    base: config::Base,
    config: Config,
    /// etcd's settings (from the file and environment, never from etcd itself) and
    /// what its keys held, when it answered.
    etcd: Option<(config::Etcd, Option<etcd::Values>)>,
    /// What became of etcd, for the log and `config check`.
    note: Option<String>,
}

/// Reads every source. etcd being unreachable is not an error (the note says so); a
/// value in etcd that this registry cannot use is, as a bad key in the file is.
fn resolve(file: Option<&Path>) -> Result<Resolved, String> {
    let base = config::Base::read(file, &environment()).map_err(|e| e.to_string())?;
    let config = base.config(&[]).map_err(|e| e.to_string())?;
    let Some(settings) = config.etcd.clone() else {
        return Ok(Resolved {
            base,
            config,
            etcd: None,
            note: None,
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let endpoints = settings.endpoints.join(",");
    Ok(match runtime.block_on(etcd::read_once(&settings)) {
        Ok(values) => {
            let config = values
                .overrides(&settings)
                .and_then(|overrides| base.config(&overrides))
                .map_err(|e| e.to_string())?;
            Resolved {
                base,
                config,
                etcd: Some((settings, Some(values))),
                note: Some(format!("read from {endpoints}")),
            }
        }
        Err(e) => Resolved {
            base,
            config,
            etcd: Some((settings, None)),
            note: Some(format!(
                "{endpoints} is unreachable ({e}); the file and environment only"
            )),
        },
    })
}

/// The configuration a maintenance command runs with.
fn load(file: Option<&Path>) -> Result<Config, String> {
    let resolved = resolve(file)?;
    if let Some(note) = &resolved.note {
        tracing::info!("etcd: {note}");
    }
    Ok(resolved.config)
}

/// `registry config check`.
fn config_check(file: Option<&Path>) -> Result<ExitCode, String> {
    let Resolved {
        base, config, note, ..
    } = resolve(file)?;
    print!("{}", config::check::render(&config, note.as_deref()));
    for name in &base.ignored_env {
        println!("ignored: environment variable {name} names no configuration key");
    }
    if let Err(e) = config.refuse_unenforced() {
        println!("registry serve would refuse to start: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if let lain_http::Access::Closed { reason } = access::live(&config).access {
        println!("registry serve would refuse to start: {reason}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets up the server's log from `log.level` (RUST_LOG wins) and `log.formatter`.
fn init_server_log(log: &config::Log) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| log.level.as_str().into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if log.json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
}

/// Raises the soft limit on open files to the hard one, as Go's runtime does for
/// distribution: every connection is a descriptor, and so is every pack an upload
/// writes, so a thousand concurrent pushes need more than the usual soft 1024.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let before = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            tracing::debug!(from = before, to = limit.rlim_max, "open file limit raised");
        }
    }
}

/// Allocations above 1 MiB (a collection's large temporary maps) get their own
/// mappings, returned to the system when freed; upload buffers (at most 1 MiB) stay in
/// the heap. glibc's own threshold moves up to 32 MiB after large frees, so those maps
/// end up inside its heaps, where their freed pages stay fragmented. Automatic trimming
/// is left to `return_free_memory` (each trim at the top of the heap would otherwise
/// cost a system call per freed upload buffer). Measured with `loadgen soak 180 16`
/// (`benches/SOAK.md`): RssAnon after the load 92 MiB with glibc's defaults, 61 MiB
/// with these; a 128 KiB threshold gave 41-46 MiB but cost large pushes 20-30% (every
/// upload buffer its own mapping); with these, pushes are as fast as before.
///
/// Arenas: glibc gives threads up to eight arenas a core, and each keeps its own
/// partly used pages that no trim can return; the server's threads (workers, up to 64
/// blocking, RocksDB's) spread over 16 of them on 2 cores. One arena a core (at least
/// two) held RssAnon after `loadgen soak 240 16` at 42 MiB instead of 68 MiB, with the
/// same throughput (`benches/SOAK.md`).
fn tune_allocator() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes the allocator's tunables; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, (1 << 20) + (64 << 10));
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Hands memory freed after a load spike back to the system, every few seconds. glibc
/// returns only the top of each heap on its own; what a thousand concurrent uploads
/// left free in the middle would otherwise stay resident for good (measured in
/// `benches/UPLOADS.md`, where glibc also peaked lower than jemalloc and mimalloc).
async fn return_free_memory() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // SAFETY: malloc_trim only walks and releases the allocator's free memory.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

fn serve(file: Option<&Path>) -> Result<(), String> {
    tune_allocator();
    let Resolved {
        base,
        mut config,
        etcd,
        note,
    } = resolve(file)?;
    init_server_log(&config.log);
    // Authentication asked for by the file, the environment or etcd refuses the start.
    config.refuse_unenforced().map_err(|e| e.to_string())?;
    if let Some(note) = &note {
        match etcd {
            Some((_, Some(_))) => tracing::info!("etcd: {note}"),
            _ => tracing::warn!("etcd: {note}; retrying while serving"),
        }
    }
    for name in &base.ignored_env {
        tracing::warn!("environment variable {name} names no configuration key; ignored");
    }
    config.log_not_applied();
    raise_file_limit();
    let tls = match &config.tls {
        Some(settings) => Some(tls::acceptor(settings, config.http.http2)?),
        None => None,
    };
    // Token auth's keys, loaded now: if they cannot be, the start is refused.
    let live_settings = access::live(&config);
    if let lain_http::Access::Closed { reason } = &live_settings.access {
        return Err(reason.clone());
    }
    // Engine calls run on the blocking pool. More threads than this add no speed on a
    // few cores (hashing and writing are CPU- and disk-bound), only memory: each thread
    // has its stack and allocator caches, and a thousand concurrent uploads would
    // otherwise grow the pool to tokio's default of 512.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .map_err(|e| e.to_string())?;
    let opened = match &config.cluster {
        None => {
            let engine = Engine::open(&config.root, config.engine.options())
                .map_err(|e| format!("cannot open {}: {e}", config.root.display()))?;
            // The directory exists now; print where the data really is.
            if let Ok(absolute) = config.root.canonicalize() {
                config.root = absolute;
            }
            storage::Opened::Local(engine)
        }
        Some(cluster) => {
            let store = runtime.block_on(storage::open_cluster(&config, cluster))?;
            if config.http.secret.is_none() {
                // Instances must agree on it: without http.secret, etcd keeps one.
                let secret = runtime
                    .block_on(store.shared_secret())
                    .map_err(|e| format!("cannot read the cluster's shared secret: {e}"))?;
                config.http.secret = Some(secret);
            }
            storage::Opened::Cluster(store)
        }
    };
    let (live_tx, live) = tokio::sync::watch::channel(live_settings);
    let live_tx = std::sync::Arc::new(live_tx);
    runtime.block_on(async {
        tokio::spawn(return_free_memory());
        // Local data has a control socket, through which commands reach it while it
        // is locked by this server; the cluster's commands open the cluster themselves.
        let control = match &opened {
            storage::Opened::Local(engine) => {
                let mut control = control::server::bind(&config.root).map_err(|e| {
                    format!(
                        "cannot create the control socket in {}: {e}",
                        config.root.display()
                    )
                })?;
                let control_engine = engine.clone();
                Some(tokio::spawn(async move { control.run(control_engine).await }))
            }
            storage::Opened::Cluster(_) => None,
        };
        // Installed before the address is announced, so that a signal arriving at any
        // moment after a client could have connected stops the server cleanly.
        let shutdown = shutdown_signal()
            .map_err(|e| format!("cannot install the SIGINT/SIGTERM handlers: {e}"))?;
        let listener = TcpListener::bind(config.addr.bind_target())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let purge = match config.http.upload_purge_interval {
            Some(every) => format!(
                "after {} idle, checked every {}",
                config::format_duration(config.http.upload_purge_age),
                config::format_duration(every)
            ),
            None => "off".to_owned(),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let data = opened.describe(&config);
        tracing::info!(
            config = %config.file.as_deref().map_or("(embedded default)".into(), |f| f.display().to_string()),
            %data,
            %addr,
            delete_enabled = config.http.delete_enabled,
            read_only = config.live.read_only,
            upload_purge = %purge,
            "registry listening on {scheme}://{addr}{}/v2/ with data in {data}",
            config.http.prefix,
        );
        let files = tokio::spawn(access::follow_files(config.clone(), live_tx.clone()));
        let watcher = etcd.map(|(settings, values)| {
            tokio::spawn(etcd::follow(settings, base, config.clone(), values, live_tx))
        });
        let served = lain_http::serve(listener, opened.store(), config.http.clone(), live, tls, shutdown)
            .await
            .map_err(|e| e.to_string());
        files.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        // Dropping the control task closes and removes the socket.
        if let Some(control) = control {
            control.abort();
            let _ = control.await;
        }
        served
    })?;
    tracing::info!("registry stopped");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on
/// either signal.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
