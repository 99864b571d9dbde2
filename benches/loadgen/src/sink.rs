//! `loadgen sink ADDR`: a server that speaks just enough of the V2 API for every
//! scenario, stores no blob bytes, and answers from memory. Running the scenarios
//! against it measures the load generator's own ceiling on this machine: a registry
//! cannot be shown faster than the client that drives it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Blob sizes by digest, and manifests by "name:reference".
#[derive(Default)]
struct State {
    blobs: HashMap<String, u64>,
    manifests: HashMap<String, Vec<u8>>,
    tags: HashMap<String, Vec<String>>,
}

static ZEROES: [u8; 1 << 20] = [0; 1 << 20];

pub fn run(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let state = Arc::new(Mutex::new(State::default()));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let _ = serve(stream, &state);
        });
    }
    Ok(())
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut scratch = vec![0u8; 256 * 1024];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut length = 0u64;
        let mut range = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("range") {
                    range = value.strip_prefix("bytes=").and_then(|r| {
                        let (a, b) = r.split_once('-')?;
                        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
                    });
                }
            }
        }
        // Keep manifest bodies; discard everything else as it arrives.
        let mut body = Vec::new();
        let keep = target.contains("/manifests/");
        let mut left = length;
        while left > 0 {
            let want = scratch.len().min(left as usize);
            let n = reader.read(&mut scratch[..want])?;
            if n == 0 {
                return Ok(());
            }
            if keep {
                body.extend_from_slice(&scratch[..n]);
            }
            left -= n as u64;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let name = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                ["/blobs/", "/manifests/", "/tags/list"]
                    .iter()
                    .find_map(|m| p.find(m).map(|i| &p[..i]))
            })
            .unwrap_or("")
            .to_owned();
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let (status, headers, payload): (u16, String, Payload) = match method.as_str() {
            "POST" if param("mount").is_some() => (201, String::new(), Payload::None),
            "POST" if param("digest").is_some() => {
                st.blobs.insert(param("digest").unwrap_or_default(), length);
                (201, String::new(), Payload::None)
            }
            "POST" => (
                202,
                format!("Location: /v2/{name}/blobs/uploads/s\r\nRange: 0-0\r\n"),
                Payload::None,
            ),
            "PATCH" => (
                202,
                format!("Location: /v2/{name}/blobs/uploads/s\r\n"),
                Payload::None,
            ),
            "PUT" if path.contains("/manifests/") => {
                let reference = path.rsplit('/').next().unwrap_or("").to_owned();
                st.tags
                    .entry(name.clone())
                    .or_default()
                    .push(reference.clone());
                st.manifests.insert(format!("{name}:{reference}"), body);
                (201, String::new(), Payload::None)
            }
            "PUT" => {
                st.blobs.insert(param("digest").unwrap_or_default(), length);
                (201, String::new(), Payload::None)
            }
            "GET" | "HEAD" if path.contains("/manifests/") => {
                let reference = path.rsplit('/').next().unwrap_or("");
                match st.manifests.get(&format!("{name}:{reference}")) {
                    Some(m) => (
                        200,
                        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                        Payload::Bytes(m.clone()),
                    ),
                    None => (404, String::new(), Payload::None),
                }
            }
            "GET" if path.ends_with("/tags/list") => {
                let tags = st.tags.get(&name).cloned().unwrap_or_default();
                let json = serde_json::json!({ "name": name, "tags": tags });
                (
                    200,
                    String::new(),
                    Payload::Bytes(json.to_string().into_bytes()),
                )
            }
            "GET" | "HEAD" if path.contains("/blobs/") => {
                let digest = path.rsplit('/').next().unwrap_or("");
                let size = st.blobs.get(digest).copied().unwrap_or(0);
                match range {
                    Some((a, b)) if a < size => {
                        let end = b.min(size - 1);
                        (
                            206,
                            format!("Content-Range: bytes {a}-{end}/{size}\r\n"),
                            Payload::Zeroes(end - a + 1),
                        )
                    }
                    _ => (200, String::new(), Payload::Zeroes(size)),
                }
            }
            _ => (200, String::new(), Payload::Bytes(b"{}".to_vec())),
        };
        drop(st);
        let length = payload.len();
        // The head and a small body leave in one write: the sink should cost as little
        // per request as a server can.
        let mut out = format!("HTTP/1.1 {status} X\r\n{headers}Content-Length: {length}\r\n\r\n")
            .into_bytes();
        if method != "HEAD"
            && let Payload::Bytes(b) = &payload
        {
            out.extend_from_slice(b);
        }
        writer.write_all(&out)?;
        if method != "HEAD" {
            match payload {
                Payload::None | Payload::Bytes(_) => {}
                Payload::Zeroes(mut n) => {
                    while n > 0 {
                        let take = n.min(ZEROES.len() as u64) as usize;
                        writer.write_all(&ZEROES[..take])?;
                        n -= take as u64;
                    }
                }
            }
        }
    }
}

enum Payload {
    None,
    Bytes(Vec<u8>),
    Zeroes(u64),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::None => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::Zeroes(n) => *n,
        }
    }
}
