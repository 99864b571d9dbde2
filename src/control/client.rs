//! The command line's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{Message, Request, socket_path};
use crate::commands::{Outcome, Output};

/// Sends `request` to the server that holds `root` and relays what it reports to `out`.
pub fn request(root: &Path, request: &Request, out: &dyn Output) -> Result<Outcome, String> {
    let path = socket_path(root);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "{} is held by another process, and its control socket {} does not answer ({e})",
            root.display(),
            path.display()
        )
    })?;
    let mut text = serde_json::to_string(request).map_err(|e| e.to_string())?;
    text.push('\n');
    stream
        .write_all(text.as_bytes())
        .map_err(|e| format!("control socket: {e}"))?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("control socket: {e}"))?;
        let message: Message =
            serde_json::from_str(&line).map_err(|e| format!("control socket: {e}: {line}"))?;
        match message {
            Message::Phase { name, total } => out.phase(&name, total),
            Message::Advance(units) => out.advance(units),
            Message::Line(text) => out.line(&text),
            Message::Done(outcome) => return Ok(outcome),
            Message::Failed(message) => return Err(message),
        }
    }
    Err("the server closed the control connection before the command finished".into())
}
