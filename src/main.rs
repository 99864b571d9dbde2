//! `registry`: the LAIN container image registry.
//!
//! This file only wires: it reads the command line and environment, opens the engine,
//! and hands both to the HTTP layer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use lain_engine::{Engine, Options};
use tokio::net::TcpListener;

const USAGE: &str = "usage: registry serve [config.yml]
       registry --version

Without a configuration file the registry runs on its embedded default: data in
./registry-data, listening on 127.0.0.1:5000. REGISTRY_HTTP_ADDR and
REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY override those.";

/// What `serve` runs with.
#[derive(Debug)]
struct ServeSettings {
    addr: SocketAddr,
    root: PathBuf,
}

impl ServeSettings {
    fn embedded_default() -> ServeSettings {
        ServeSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            root: PathBuf::from("registry-data"),
        }
    }

    fn apply_env(&mut self) -> Result<(), String> {
        if let Ok(addr) = std::env::var("REGISTRY_HTTP_ADDR") {
            self.addr = addr
                .parse()
                .map_err(|e| format!("REGISTRY_HTTP_ADDR={addr}: {e}"))?;
        }
        if let Ok(root) = std::env::var("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") {
            self.root = PathBuf::from(root);
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") if args.len() == 1 => serve(),
        Some("serve") => Err(format!(
            "configuration files are not read yet ({}); run `registry serve` for the embedded default",
            args[1]
        )),
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

fn serve() -> Result<(), String> {
    let mut settings = ServeSettings::embedded_default();
    settings.apply_env()?;
    let engine = Engine::open(&settings.root, Options::default())
        .map_err(|e| format!("cannot open {}: {e}", settings.root.display()))?;
    // The directory exists now; print where the data really is.
    if let Ok(absolute) = settings.root.canonicalize() {
        settings.root = absolute;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = TcpListener::bind(settings.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(
            data = %settings.root.display(),
            %addr,
            "registry listening on http://{addr}/v2/ with data in {}",
            settings.root.display()
        );
        lain_http::serve(listener, engine, lain_http::Settings::default(), shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })?;
    tracing::info!("registry stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the registry with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
