//! Shared by the black-box tests: the real `registry` binary on a free loopback port,
//! and a plain HTTP/1.1 client small enough that a test controls every byte it sends
//! (odd paths, bad headers, chunked bodies) and sees every byte it gets back.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod cluster;
pub mod etcd;
pub mod layout;
pub mod skopeo;
pub mod tokens;
pub mod weed;

#[allow(unused_imports)] // each test binary uses its own part of this module
pub use lain_testkit::seed;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `registry serve`, stopped when dropped. Its output (stdout and stderr:
/// the start-up lines and one access-log line per request) is collected in `log`.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, as the server printed it.
    pub addr: String,
    /// The data directory; removed on drop when the registry created it.
    pub root: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

/// How to start a registry; `Registry::start()` is the default of everything.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra arguments after `serve` (a configuration file).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(&'a str, String)>,
    /// Data directory; a fresh temporary one when `None`.
    pub root: Option<PathBuf>,
    /// Set `REGISTRY_HTTP_ADDR=127.0.0.1:0` (a free port); false when the test's
    /// configuration file chooses the address itself.
    pub keep_addr: bool,
    /// Set `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`; false when the configuration
    /// file chooses it.
    pub keep_root: bool,
}

impl Registry {
    /// The embedded default on a free port with a fresh data directory.
    pub fn start() -> Registry {
        Registry::launch(Launch::default())
    }

    pub fn start_in(root: &Path) -> Registry {
        Registry::launch(Launch {
            root: Some(root.to_owned()),
            ..Launch::default()
        })
    }

    pub fn launch(launch: Launch<'_>) -> Registry {
        let (root, tempdir) = match launch.root {
            Some(root) => (root, None),
            None => {
                let dir = tempfile::tempdir().expect("tempdir");
                (dir.path().to_owned(), Some(dir))
            }
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_registry"));
        command.arg("serve").args(&launch.args);
        command.env_remove("REGISTRY_HTTP_ADDR");
        command.env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY");
        if !launch.keep_addr {
            command.env("REGISTRY_HTTP_ADDR", "127.0.0.1:0");
        }
        if !launch.keep_root {
            command.env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root);
        }
        command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(launch.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start registry");
        let log = Arc::new(Mutex::new(String::new()));
        // stderr is drained into the log on its own thread.
        let stderr = child.stderr.take().expect("stderr");
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                push_line(&err_log, &line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The start-up line names the bound address: "... listening on http://ADDR/v2/ ..."
        // (https:// with TLS, a prefix before /v2/ with http.prefix).
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "registry exited before listening; its output:\n{}",
                    log.lock().unwrap()
                );
            };
            push_line(&log, &line);
            if let Some(rest) = line.split("listening on ").nth(1)
                && let Some(rest) = rest
                    .strip_prefix("http://")
                    .or_else(|| rest.strip_prefix("https://"))
            {
                break rest.split('/').next().expect("address").to_owned();
            }
        };
        // Keep draining, so the server never blocks on a full pipe.
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                push_line(&out_log, &line);
            }
        });
        Registry {
            child,
            addr,
            root,
            _tempdir: tempdir,
            log,
        }
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request on a new connection.
    pub fn request(&self, method: &str, path: &str) -> Request<'_> {
        Request {
            addr: &self.addr,
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A new connection (60 s read timeout) on which the head of a request has been
    /// sent, with `Host` and the given header lines; the test writes the body itself
    /// (in pieces, with pauses) and reads the answer with [`read_response`].
    pub fn send_head(&self, method: &str, path: &str, headers: &[String]) -> TcpStream {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for line in headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send head");
        stream
    }

    /// Sends SIGTERM and returns whether the process exited successfully.
    pub fn terminate(self) -> bool {
        signal(self.child.id(), "TERM");
        self.wait()
    }

    /// Waits up to `limit` for the process to exit (it is killed on drop otherwise);
    /// returns whether it exited in time.
    pub fn wait_for(mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    pub fn wait(mut self) -> bool {
        let status = self.child.wait().expect("wait");
        status.success()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push_line(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap();
    log.push_str(line);
    log.push('\n');
}

/// Sends `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{sig} {pid} failed");
}

enum Body {
    Empty,
    /// Sent with `Content-Length`.
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, one chunk per element.
    Chunked(Vec<Vec<u8>>),
}

/// Whatever answers the registry API: one registry, or the cluster's proxy.
pub trait Api {
    fn request(&self, method: &str, path: &str) -> Request<'_>;
}

impl Api for Registry {
    fn request(&self, method: &str, path: &str) -> Request<'_> {
        Registry::request(self, method, path)
    }
}

impl Api for cluster::Proxy {
    fn request(&self, method: &str, path: &str) -> Request<'_> {
        request_to(&self.addr, method, path)
    }
}

impl<T: Api + ?Sized> Api for Arc<T> {
    fn request(&self, method: &str, path: &str) -> Request<'_> {
        T::request(self, method, path)
    }
}

impl Api for str {
    fn request(&self, method: &str, path: &str) -> Request<'_> {
        request_to(self, method, path)
    }
}

/// A request to another server on loopback (etcd's HTTP API, in the etcd tests).
pub fn request_to<'a>(addr: &'a str, method: &str, path: &str) -> Request<'a> {
    Request {
        addr,
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Body::Empty,
    }
}

/// A request being built; `send()` performs it.
pub struct Request<'a> {
    addr: &'a str,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Request<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body = Body::Chunked(chunks);
        self
    }

    /// The request's bytes on the wire.
    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.path, self.addr
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut out = out.into_bytes();
        match &self.body {
            Body::Empty => out.extend_from_slice(b"\r\n"),
            Body::Bytes(bytes) => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes(),
                );
                out.extend_from_slice(bytes);
            }
            Body::Chunked(chunks) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    }

    pub fn send(self) -> Response {
        self.try_send().expect("request")
    }

    /// The request, or why it got no whole response (the server went away: the crash
    /// tests kill it mid-request on purpose).
    pub fn try_send(self) -> std::io::Result<Response> {
        let head_only = self.method == "HEAD";
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(&self.encode())?;
        try_read_response(&mut BufReader::new(stream), head_only)
    }
}

/// A response as received.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `code` of the first error in a spec error body.
    pub fn error_code(&self) -> String {
        let json = self.json();
        json["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not a spec error body: {}", self.text()))
            .to_owned()
    }

    /// Asserts the status and, for errors, that the body is the spec's error JSON with
    /// `code`.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; headers {:?}, body {}",
            self.headers,
            self.text()
        );
        if let Some(code) = code {
            assert_eq!(self.error_code(), code, "body {}", self.text());
            assert_eq!(self.header("content-type"), Some("application/json"));
        }
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        self
    }
}

/// Reads one response (status line, headers, body framed by `Content-Length` or
/// chunked, or nothing for HEAD / 204 / 304).
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Response {
    try_read_response(reader, head_only).expect("response")
}

/// [`read_response`], failing instead of panicking on a broken or malformed response.
pub fn try_read_response(reader: &mut impl BufRead, head_only: bool) -> std::io::Result<Response> {
    use std::io::{Error, ErrorKind};
    let bad = |what: String| Error::new(ErrorKind::InvalidData, what);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(Error::new(ErrorKind::UnexpectedEof, "no response"));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "headers cut off"));
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {trimmed:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if !head_only && status != 204 && status != 304 {
        if let Some(len) = find("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("content-length {len}")))?;
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| bad(format!("chunk size {line:?}")))?;
                if size == 0 {
                    line.clear();
                    reader.read_line(&mut line)?;
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..])?;
                line.clear();
                reader.read_line(&mut line)?;
            }
        } else {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `url` with one more query parameter, whether or not it already has a query.
pub fn with_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64), different for each `seed`:
/// blobs that must be distinct and incompressible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `sha256:<hex>` of `bytes`, computed by the engine's digest code.
pub fn sha256(bytes: &[u8]) -> String {
    lain_engine::Algorithm::Sha256.digest(bytes).to_string()
}

/// `sha512:<hex>` of `bytes`, computed by the engine's digest code.
pub fn sha512(bytes: &[u8]) -> String {
    lain_engine::Algorithm::Sha512.digest(bytes).to_string()
}

// ---- images over HTTP, and the maintenance commands ----------------------------

/// Runs `registry ARGS` on the data directory `root`.
pub fn registry(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root)
        .env("NO_COLOR", "1")
        .output()
        .expect("run registry")
}

/// `registry garbage-collect` arguments that take everything at once: no grace period,
/// every pack with anything dead rewritten.
pub const COLLECT_EVERYTHING: [&str; 5] = [
    "garbage-collect",
    "--grace",
    "0s",
    "--compact-threshold",
    "0",
];

/// Runs `registry garbage-collect` on `root` with [`COLLECT_EVERYTHING`] and `extra`.
pub fn collect_everything(root: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = COLLECT_EVERYTHING.iter().chain(extra).copied().collect();
    registry(root, &args)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn put_blob(reg: &(impl Api + ?Sized), repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    reg.request(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
    )
    .header("Content-Type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()
    .expect(201, None);
    digest
}

/// Pushes an image of two layers and a config, tagged `tag`; returns its manifest
/// digest.
pub fn push_image(reg: &(impl Api + ?Sized), repo: &str, tag: &str, seed: u64) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let config_digest = put_blob(reg, repo, config.as_bytes());
    let layers: Vec<(String, usize)> = (0..2)
        .map(|i| {
            let len = 1000 + ((seed * 7919 + i * 104_729) % 300_000) as usize;
            let layer: Vec<u8> = (0..len)
                .map(|j| (j as u64 * (seed + i + 3)) as u8)
                .collect();
            (put_blob(reg, repo, &layer), len)
        })
        .collect();
    let manifest = lain_testkit::image_manifest(
        (config_digest.as_str(), config.len()),
        layers.iter().map(|(d, len)| (d.as_str(), *len)),
    );
    reg.request("PUT", &format!("/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .expect(201, None);
    sha256(manifest.as_bytes())
}

/// What a registry serves for `repos`: each tag's manifest bytes and every blob the
/// manifest names, fetched over HTTP.
pub fn served(reg: &(impl Api + ?Sized), repos: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for repo in repos {
        let tags = reg.request("GET", &format!("/v2/{repo}/tags/list")).send();
        tags.expect(200, None);
        let list = tags.json()["tags"].clone();
        out.insert(format!("{repo} tags"), list.to_string().into_bytes());
        for tag in list.as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            image(reg, repo, tag, &mut out);
        }
    }
    out
}

pub fn image(
    reg: &(impl Api + ?Sized),
    repo: &str,
    reference: &str,
    out: &mut BTreeMap<String, Vec<u8>>,
) {
    let manifest = reg
        .request("GET", &format!("/v2/{repo}/manifests/{reference}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send();
    manifest.expect(200, None);
    let json = manifest.json();
    let mut digests = vec![json["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in json["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    out.insert(format!("{repo}:{reference}"), manifest.body.clone());
    for d in digests {
        let blob = reg.request("GET", &format!("/v2/{repo}/blobs/{d}")).send();
        blob.expect(200, None);
        assert_eq!(sha256(&blob.body), d);
        out.insert(format!("{repo}@{d}"), blob.body);
    }
}

/// Runs `registry ARGS` to its end with `env` and no inherited `REGISTRY_*` variables;
/// returns the exit code and what it printed (standard output, then standard error).
/// A command that should have stopped but serves instead is killed after 30 s and fails
/// the test, rather than hanging it.
pub fn run_registry(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    const LIMIT: Duration = Duration::from_secs(30);
    let mut command = Command::new(env!("CARGO_BIN_EXE_registry"));
    command.args(args).env("NO_COLOR", "1");
    for (name, _) in std::env::vars() {
        if name.starts_with("REGISTRY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run registry");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<_>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<_>));
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    let Some(status) = status else {
        panic!(
            "registry {} still running after {LIMIT:?}:\n{text}",
            args.join(" ")
        );
    };
    assert!(!text.contains("panicked"), "{text}");
    (status.code(), text)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}
