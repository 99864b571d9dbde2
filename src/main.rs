//! `registry`: the LAIN container image registry.
//!
//! This file only wires: it reads the command line and environment, opens the engine,
//! and hands both to the HTTP layer.

mod config;

use std::path::Path;
use std::process::ExitCode;

use config::Config;
use lain_engine::{Engine, Options};
use tokio::net::TcpListener;

const USAGE: &str = "usage: registry serve [config.yml]
       registry --version

With a configuration file (docker/distribution's config.yml) the registry applies
http.addr (\":5000\" is every interface), storage.filesystem.rootdirectory,
storage.delete.enabled (off unless set) and storage.maintenance.uploadpurging
(enabled, age, interval); every other key is accepted and logged as not applied.
Without a file it runs on its embedded default: data in ./registry-data, listening
on 127.0.0.1:5000, deletes enabled. In both cases REGISTRY_HTTP_ADDR,
REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY and REGISTRY_STORAGE_DELETE_ENABLED
override those.";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") if args.len() <= 2 => serve(args.get(1).map(Path::new)),
        Some("--version" | "-V") => {
            println!("registry {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("registry: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(file: Option<&Path>) -> Result<(), String> {
    let mut config =
        Config::load(file, |name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    config.log_not_applied();
    let engine = Engine::open(&config.root, Options::default())
        .map_err(|e| format!("cannot open {}: {e}", config.root.display()))?;
    // The directory exists now; print where the data really is.
    if let Ok(absolute) = config.root.canonicalize() {
        config.root = absolute;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
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
        tracing::info!(
            config = %config.file.as_deref().map_or("(embedded default)".into(), |f| f.display().to_string()),
            data = %config.root.display(),
            %addr,
            delete_enabled = config.http.delete_enabled,
            upload_purge = %purge,
            "registry listening on http://{addr}/v2/ with data in {}",
            config.root.display()
        );
        lain_http::serve(listener, engine, config.http.clone(), shutdown)
            .await
            .map_err(|e| e.to_string())
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
