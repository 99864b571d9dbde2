//! The server's side of the control socket: runs each request's command against the
//! server's own engine, on the blocking pool, streaming its output to the client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lain_engine::Engine;
use lain_engine::progress::Progress;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::{Message, Request, socket_path};
use crate::commands::{self, Output};

/// The bound socket; the file is removed when this is dropped.
pub struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `<root>/control.sock`, readable and writable by its owner only. The caller
/// holds the data directory's lock, so a socket file already there is a dead server's.
/// The socket is bound inside a new directory only its owner can enter, given its
/// permissions there, and only then renamed into place: no one else can ever connect
/// to it while it is open to others.
pub fn bind(root: &Path) -> std::io::Result<ControlSocket> {
    use std::os::unix::fs::DirBuilderExt;
    let path = socket_path(root);
    let private = root.join(format!(".control.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staging = private.join("control.sock");
    let bound = UnixListener::bind(&staging).and_then(|listener| {
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staging, &path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir(&private);
    Ok(ControlSocket {
        listener: Some(bound?),
        path,
    })
}

/// A request is one JSON line of at most this many bytes.
const MAX_REQUEST: u64 = 64 << 10;

impl ControlSocket {
    /// Serves requests until the runtime stops.
    pub async fn run(&mut self, engine: Engine) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, engine.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn handle(stream: UnixStream, engine: Engine) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let (sender, mut receiver) = unbounded_channel();
    match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            tracing::info!(?request, "control socket: running");
            let out = Channel(sender);
            tokio::task::spawn_blocking(move || {
                let outcome = match &request {
                    Request::Fsck { deep } => commands::fsck::check(&engine, *deep, &out),
                    Request::Backup { dest } => commands::backup::backup(&engine, dest, &out),
                    Request::GarbageCollect(settings) => {
                        commands::collect::collect(&engine, settings, &out)
                    }
                    Request::Prune(settings) => commands::prune::prune(&engine, settings, &out),
                };
                let last = match outcome {
                    Ok(outcome) => Message::Done(outcome),
                    Err(message) => Message::Failed(message),
                };
                let _ = out.0.send(last);
            });
        }
        Err(e) => {
            let _ = sender.send(Message::Failed(format!("not a request: {e}")));
        }
    }
    // The command goes on if the client hangs up; its remaining output is dropped.
    while let Some(message) = receiver.recv().await {
        let Ok(mut text) = serde_json::to_string(&message) else {
            continue;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// A command's output, sent to the connection's writer.
struct Channel(UnboundedSender<Message>);

impl Progress for Channel {
    fn phase(&self, name: &str, total: u64) {
        let _ = self.0.send(Message::Phase {
            name: name.to_owned(),
            total,
        });
    }
    fn advance(&self, units: u64) {
        let _ = self.0.send(Message::Advance(units));
    }
}

impl Output for Channel {
    fn line(&self, text: &str) {
        let _ = self.0.send(Message::Line(text.to_owned()));
    }
}
