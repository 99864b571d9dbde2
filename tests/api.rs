//! Black-box tests of the registry API against its contract, `http/PROTOCOL.md`: the
//! real `registry` binary on a loopback port, spoken to over plain HTTP/1.1. Every row
//! and every error code of the contract is checked by some test below. Each test starts
//! its own registry, so tests are independent and may run in parallel.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{Registry, Response, pseudo_random, sha256, sha512, with_query};
use serde_json::{Value, json};

// ---- media types and constants --------------------------------------------------------

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const MIB: usize = 1024 * 1024;

// ---- helpers: data, URLs --------------------------------------------------------------

/// The path of a URL-path-with-query (the part before `?`).
fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The `Range` header of an upload session that has received `received` bytes.
fn upload_range(received: usize) -> String {
    format!("0-{}", received.saturating_sub(1))
}

#[track_caller]
fn location(r: &Response) -> String {
    r.header("location")
        .unwrap_or_else(|| panic!("no Location header: {:?}", r.headers))
        .to_owned()
}

/// Asserts the whole error shape of the contract: `Content-Type: application/json` and
/// `{"errors":[{"code":C,"message":M,"detail":D}]}` with string code and message.
#[track_caller]
fn assert_error_body(r: &Response, what: &str) {
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let json: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", r.text()));
    let errors = json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors array: {json}"));
    assert!(!errors.is_empty(), "{what}: empty errors array");
    for error in errors {
        assert!(error["code"].is_string(), "{what}: {error}");
        assert!(error["message"].is_string(), "{what}: {error}");
        assert!(
            error.get("detail").is_some(),
            "{what}: no detail in {error}"
        );
    }
}

// ---- helpers: blob uploads ------------------------------------------------------------

/// An upload session as the client tracks it: the URL to use next and the session id.
struct Upload {
    name: String,
    location: String,
    uuid: String,
}

/// Checks the session headers of a 202 (POST, PATCH) or 204 (status) upload response:
/// `Location: /v2/<name>/blobs/uploads/<uuid>`, `Docker-Upload-UUID`, `Range: 0-<last>`.
#[track_caller]
fn check_session(r: &Response, name: &str, received: usize) -> Upload {
    let uuid = r
        .header("docker-upload-uuid")
        .unwrap_or_else(|| panic!("no Docker-Upload-UUID: {:?}", r.headers))
        .to_owned();
    assert!(!uuid.is_empty());
    let loc = location(r);
    assert_eq!(path_of(&loc), format!("/v2/{name}/blobs/uploads/{uuid}"));
    assert_eq!(
        r.header("range"),
        Some(upload_range(received).as_str()),
        "Range after {received} bytes"
    );
    Upload {
        name: name.to_owned(),
        location: loc,
        uuid,
    }
}

/// `POST /v2/<name>/blobs/uploads/`: 202 and a fresh session.
#[track_caller]
fn start_upload(reg: &Registry, name: &str) -> Upload {
    let r = reg
        .request("POST", &format!("/v2/{name}/blobs/uploads/"))
        .send();
    r.expect(202, None);
    check_session(&r, name, 0)
}

impl Upload {
    /// A PATCH with `body` (Content-Length framing) and an optional raw `Content-Range`.
    /// Follows the new `Location` on success.
    fn patch(&mut self, reg: &Registry, body: &[u8], content_range: Option<&str>) -> Response {
        let mut req = reg
            .request("PATCH", &self.location)
            .header("Content-Type", "application/octet-stream");
        if let Some(range) = content_range {
            req = req.header("Content-Range", range);
        }
        self.follow(req.body(body.to_vec()).send())
    }

    /// A streamed PATCH with `Transfer-Encoding: chunked` and no `Content-Range`.
    fn patch_chunked(&mut self, reg: &Registry, chunks: Vec<Vec<u8>>) -> Response {
        let r = reg
            .request("PATCH", &self.location)
            .header("Content-Type", "application/octet-stream")
            .chunked(chunks)
            .send();
        self.follow(r)
    }

    /// A PATCH of `data[start..end]` with `Content-Range: start-(end-1)`, expected to
    /// succeed with `Range: 0-(end-1)`.
    #[track_caller]
    fn patch_range(&mut self, reg: &Registry, data: &[u8], start: usize, end: usize) {
        let r = self.patch(
            reg,
            &data[start..end],
            Some(&format!("{start}-{}", end - 1)),
        );
        r.expect(202, None);
        let session = check_session(&r, &self.name, end);
        assert_eq!(session.uuid, self.uuid);
    }

    fn follow(&mut self, r: Response) -> Response {
        if r.status == 202
            && let Some(loc) = r.header("location")
        {
            self.location = loc.to_owned();
        }
        r
    }

    /// `GET` of the session's status.
    fn status(&self, reg: &Registry) -> Response {
        reg.request("GET", &self.location).send()
    }

    /// `PUT ?digest=` (when given) with an optional final body.
    fn put(&self, reg: &Registry, digest: Option<&str>, body: Option<&[u8]>) -> Response {
        let url = match digest {
            Some(d) => with_query(&self.location, &format!("digest={d}")),
            None => self.location.clone(),
        };
        let mut req = reg.request("PUT", &url);
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/octet-stream")
                .body(body.to_vec());
        }
        req.send()
    }

    /// Completes the session with `digest` and checks the 201.
    #[track_caller]
    fn finish(&self, reg: &Registry, digest: &str, body: Option<&[u8]>) {
        let r = self.put(reg, Some(digest), body);
        r.expect(201, None);
        assert_eq!(
            r.header("location"),
            Some(format!("/v2/{}/blobs/{digest}", self.name).as_str())
        );
        assert_eq!(r.header("docker-content-digest"), Some(digest));
    }
}

/// Monolithic `POST /v2/<name>/blobs/uploads/?digest=<d>` of `bytes`; checks the 201.
#[track_caller]
fn push_blob(reg: &Registry, name: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let r = reg
        .request("POST", &format!("/v2/{name}/blobs/uploads/?digest={d}"))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send();
    r.expect(201, None);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{name}/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    d
}

/// The status of `HEAD /v2/<name>/blobs/<digest>` (404s checked to be bodiless errors).
fn head_blob(reg: &Registry, name: &str, digest: &str) -> u16 {
    let r = reg
        .request("HEAD", &format!("/v2/{name}/blobs/{digest}"))
        .send();
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    r.status
}

/// `GET /v2/<name>/blobs/<digest>`: asserts 200, the headers of the contract and that the
/// body is exactly `bytes`.
#[track_caller]
fn assert_blob(reg: &Registry, name: &str, bytes: &[u8]) {
    let d = sha256(bytes);
    let r = reg.request("GET", &format!("/v2/{name}/blobs/{d}")).send();
    r.expect(200, None);
    assert_eq!(
        r.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body == bytes, "blob {d} in {name}: bytes differ");
}

// ---- helpers: manifests ---------------------------------------------------------------

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

fn empty_descriptor() -> Value {
    json!({"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": 2})
}

/// Pushes a config and a layer to `name`; returns an OCI image manifest that references
/// them (not pushed), pretty-printed so that byte identity is meaningful.
fn oci_image(reg: &Registry, name: &str, seed: u64) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = pseudo_random(seed, 1000 + seed as usize);
    push_blob(reg, name, &config);
    push_blob(reg, name, &layer);
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }))
    .unwrap()
}

/// As `oci_image`, for a Docker schema 2 image manifest.
fn docker_image(reg: &Registry, name: &str, seed: u64) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"arm64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = pseudo_random(seed + 1000, 2000 + seed as usize);
    push_blob(reg, name, &config);
    push_blob(reg, name, &layer);
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap()
}

/// `PUT /v2/<name>/manifests/<reference>` with `Content-Type: media_type`.
fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Response {
    reg.request("PUT", &format!("/v2/{name}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .body(bytes.to_vec())
        .send()
}

/// Pushes a manifest and checks the 201: `Location` and `Docker-Content-Digest` name the
/// sha256 of the exact bytes. Returns that digest.
#[track_caller]
fn push_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> String {
    let r = put_manifest(reg, name, reference, media_type, bytes);
    r.expect(201, None);
    let d = sha256(bytes);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{name}/manifests/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    d
}

/// GET and HEAD of a manifest (with `Accept: media_type`) return it byte for byte, with
/// the stored media type, length, digest and ETag.
#[track_caller]
fn assert_manifest(reg: &Registry, name: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let d = sha256(bytes);
    let path = format!("/v2/{name}/manifests/{reference}");
    for method in ["GET", "HEAD"] {
        let r = reg
            .request(method, &path)
            .header("Accept", media_type)
            .send();
        r.expect(200, None);
        assert_eq!(
            r.header("content-type"),
            Some(media_type),
            "{method} {path}"
        );
        assert_eq!(
            r.header("content-length"),
            Some(bytes.len().to_string().as_str()),
            "{method} {path}"
        );
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        let etag = r.header("etag").expect("ETag");
        assert_eq!(etag.trim_matches('"'), d, "ETag");
        if method == "GET" {
            assert!(r.body == bytes, "{path}: manifest bytes differ");
        } else {
            assert!(r.body.is_empty());
        }
    }
}

/// `GET /v2/<name>/tags/list<query>` as JSON, asserting 200, and its `Link` header.
#[track_caller]
fn tags_page(reg: &Registry, name: &str, query: &str) -> (Vec<String>, Option<String>) {
    let r = reg
        .request("GET", &format!("/v2/{name}/tags/list{query}"))
        .send();
    r.expect(200, None);
    let json = r.json();
    assert_eq!(json["name"], name);
    let tags = json["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array: {json}"))
        .iter()
        .map(|t| t.as_str().expect("tag").to_owned())
        .collect();
    (tags, r.header("link").map(str::to_owned))
}

#[track_caller]
fn catalog_page(reg: &Registry, query: &str) -> (Vec<String>, Option<String>) {
    let r = reg.request("GET", &format!("/v2/_catalog{query}")).send();
    r.expect(200, None);
    let json = r.json();
    let repos = json["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("no repositories array: {json}"))
        .iter()
        .map(|t| t.as_str().expect("name").to_owned())
        .collect();
    (repos, r.header("link").map(str::to_owned))
}

// ---- helpers: raw connections ---------------------------------------------------------

/// Sends `request` on a new connection while reading the response concurrently, so a
/// server that answers before it has read the whole body is still heard.
fn send_racing(addr: &str, request: Vec<u8>) -> Response {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    common::read_response(&mut BufReader::new(stream), false)
}

/// Sends raw bytes (which need not be valid HTTP) and returns the status of whatever
/// the server answers, or `None` when it closes without an answer.
fn send_raw(addr: &str, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some(status)
}

// ---- base endpoint --------------------------------------------------------------------

#[test]
fn base_endpoint_get_and_head() {
    let reg = Registry::start();
    let r = reg.request("GET", "/v2/").send();
    r.expect(200, None);
    assert_eq!(r.text(), "{}");
    let r = reg.request("HEAD", "/v2/").send();
    r.expect(200, None);
    assert!(r.body.is_empty());
}

// ---- blob uploads ---------------------------------------------------------------------

#[test]
fn blob_upload_streamed_chunked_and_final_body() {
    let reg = Registry::start();
    let name = "uploads/flow";

    // POST, then the session's status: nothing received yet.
    let mut up = start_upload(&reg, name);
    let r = up.status(&reg);
    r.expect(204, None);
    assert_eq!(check_session(&r, name, 0).uuid, up.uuid);

    // Streamed PATCHes without Content-Range: one with Content-Length, one chunked.
    let data = pseudo_random(1, 300_000);
    let r = up.patch(&reg, &data[..100_000], None);
    r.expect(202, None);
    assert_eq!(check_session(&r, name, 100_000).uuid, up.uuid);
    let r = up.patch_chunked(
        &reg,
        vec![
            data[100_000..150_000].to_vec(),
            data[150_000..200_000].to_vec(),
        ],
    );
    r.expect(202, None);
    assert_eq!(check_session(&r, name, 200_000).uuid, up.uuid);
    let r = up.status(&reg);
    r.expect(204, None);
    check_session(&r, name, 200_000);

    // PUT with the rest as its body.
    let d = sha256(&data);
    assert_eq!(head_blob(&reg, name, &d), 404);
    up.finish(&reg, &d, Some(&data[200_000..]));
    assert_blob(&reg, name, &data);
    // The session is over.
    up.status(&reg).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));

    // PATCHes with Content-Range in order, then a PUT without a body.
    let data = pseudo_random(2, 250_000);
    let mut up = start_upload(&reg, name);
    up.patch_range(&reg, &data, 0, 100_000);
    up.patch_range(&reg, &data, 100_000, 200_000);
    up.patch_range(&reg, &data, 200_000, 250_000);
    let r = up.status(&reg);
    r.expect(204, None);
    check_session(&r, name, 250_000);
    up.finish(&reg, &sha256(&data), None);
    assert_blob(&reg, name, &data);

    // A PUT carrying the whole blob straight after the POST.
    let data = pseudo_random(3, 70_000);
    let up = start_upload(&reg, name);
    up.finish(&reg, &sha256(&data), Some(&data));
    assert_blob(&reg, name, &data);

    // The digest in the query may be percent-encoded, as Go clients send it.
    let data = pseudo_random(4, 5_000);
    let mut up = start_upload(&reg, name);
    up.patch(&reg, &data, None).expect(202, None);
    let d = sha256(&data);
    let r = up.put(&reg, Some(&d.replace(':', "%3A")), None);
    r.expect(201, None);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_blob(&reg, name, &data);
}

/// One request at a time writes a session: a PATCH that arrives while another is still
/// streaming its body is refused with 416 and the session's current `Range`, and the
/// first one's bytes are not interleaved with anything.
#[test]
fn concurrent_writes_to_one_session_are_refused() {
    let reg = Registry::start();
    let name = "uploads/concurrent";
    let data = pseudo_random(40, 2 << 20);
    let d = sha256(&data);
    let mut up = start_upload(&reg, name);

    let mut first = reg.send_head(
        "PATCH",
        &up.location,
        &[
            format!("Content-Range: 0-{}", data.len() - 1),
            format!("Content-Length: {}", data.len()),
        ],
    );
    first.write_all(&data[..1 << 20]).expect("send half");
    std::thread::sleep(Duration::from_millis(300));

    // While the first body is still arriving, a second writer, with or without a range.
    let r = up.patch(&reg, b"intruder", None);
    r.expect(416, Some("RANGE_INVALID"));
    assert!(
        r.header("range").is_some(),
        "416 without Range: {:?}",
        r.headers
    );
    let r = up.patch(&reg, b"intruder", Some("0-7"));
    r.expect(416, Some("RANGE_INVALID"));
    let r = up.put(&reg, Some(&d), None);
    r.expect(416, Some("RANGE_INVALID"));

    first.write_all(&data[1 << 20..]).expect("send the rest");
    let r = common::read_response(&mut BufReader::new(&first), false);
    r.expect(202, None);
    check_session(&r, name, data.len());
    up.finish(&reg, &d, None);
}

/// A chunked body sent with `Content-Range` must have the range's length: a shorter one
/// keeps what arrived, a longer one puts nothing past the range's end into the session.
#[test]
fn chunked_body_must_match_its_content_range() {
    let reg = Registry::start();
    let name = "uploads/chunked-range";
    let mut up = start_upload(&reg, name);
    let r = reg
        .request("PATCH", &up.location)
        .header("Content-Range", "0-99")
        .chunked(vec![vec![1u8; 60]])
        .send();
    r.expect(400, Some("BLOB_UPLOAD_INVALID"));
    // The session holds what did arrive, and says so (GET and HEAD alike).
    let status = up.status(&reg);
    status.expect(204, None);
    assert_eq!(status.header("range"), Some("0-59"));
    let head = reg.request("HEAD", &up.location).send();
    head.expect(204, None);
    assert_eq!(head.header("range"), Some("0-59"));
    assert_eq!(head.header("docker-upload-uuid"), Some(up.uuid.as_str()));

    // Longer than announced: refused, and the session is unchanged.
    let r = reg
        .request("PATCH", &up.location)
        .header("Content-Range", "60-69")
        .chunked(vec![vec![2u8; 100]])
        .send();
    r.expect(400, Some("BLOB_UPLOAD_INVALID"));
    assert_eq!(up.status(&reg).header("range"), Some("0-59"));

    // A range whose length does not fit in 64 bits.
    let fresh = start_upload(&reg, name);
    reg.request("PATCH", &fresh.location)
        .header("Content-Range", "0-18446744073709551615")
        .body(Vec::new())
        .send()
        .expect(400, Some("BLOB_UPLOAD_INVALID"));

    let r = reg
        .request("PATCH", &up.location)
        .header("Content-Range", "60-99")
        .chunked(vec![vec![1u8; 20], vec![1u8; 20]])
        .send();
    r.expect(202, None);
    up.follow(r);
    up.finish(&reg, &sha256(&[1u8; 100]), None);
}

/// A flood of new sessions never ends an upload in progress: at the session limit, new
/// sessions are refused with 429 (saying when to retry) until one has been idle long
/// enough to end.
#[test]
fn session_flood_never_ends_live_uploads() {
    let reg = Registry::launch(common::Launch {
        env: vec![("REGISTRY_STORAGE_ENGINE_UPLOADSESSIONS", "256".into())],
        ..common::Launch::default()
    });
    let data = pseudo_random(41, 3 << 20);
    let d = sha256(&data);
    let up = start_upload(&reg, "flood/live");
    let mut live = reg.send_head(
        "PATCH",
        &up.location,
        &[format!("Content-Length: {}", data.len())],
    );
    live.write_all(&data[..(3 << 19)]).expect("send half");

    let mut refused = 0;
    for _ in 0..300 {
        let r = reg.request("POST", "/v2/flood/other/blobs/uploads/").send();
        match r.status {
            202 => {}
            429 => {
                assert_eq!(r.header("retry-after"), Some("10"));
                r.expect(429, Some("TOOMANYREQUESTS"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // 256 sessions at most (the live one among them), the rest refused.
    assert_eq!(refused, 300 - 255);

    live.write_all(&data[(3 << 19)..]).expect("send the rest");
    let r = common::read_response(&mut BufReader::new(&live), false);
    r.expect(202, None);
    check_session(&r, "flood/live", data.len());
    up.finish(&reg, &d, None);
}

/// Upload bodies share one memory budget (`storage.engine.uploadmemory`, here its
/// minimum of 1 MiB): 48 clients pushing 3 MiB each in 1 MiB chunks at once all
/// succeed, byte for byte, while a client trickling its body a few bytes at a time
/// holds up none of them.
#[test]
fn many_uploads_share_the_body_budget() {
    let reg = Registry::launch(common::Launch {
        env: vec![("REGISTRY_STORAGE_ENGINE_UPLOADMEMORY", "1MiB".into())],
        ..common::Launch::default()
    });
    // The trickler: a PATCH announcing 64 KiB and sending 16 bytes every 20 ms.
    let slow = start_upload(&reg, "budget/slow");
    let mut trickle = reg.send_head(
        "PATCH",
        &slow.location,
        &[format!("Content-Length: {}", 64 << 10)],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < (64 << 10) {
                trickle.write_all(&[7u8; 16]).expect("trickle");
                sent += 16;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            trickle
        })
    };
    let pushes: Vec<_> = (0..48u64)
        .map(|i| {
            let addr = reg.addr.clone();
            std::thread::spawn(move || {
                let data = pseudo_random(1000 + i, 3 << 20);
                let name = format!("budget/app{}", i % 4);
                let r =
                    common::request_to(&addr, "POST", &format!("/v2/{name}/blobs/uploads/")).send();
                r.expect(202, None);
                let mut location = location(&r);
                for chunk in 0..3 {
                    let (start, end) = (chunk << 20, (chunk + 1) << 20);
                    let r = common::request_to(&addr, "PATCH", &location)
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", &format!("{start}-{}", end - 1))
                        .body(data[start..end].to_vec())
                        .send();
                    r.expect(202, None);
                    location = self::location(&r);
                }
                let d = sha256(&data);
                common::request_to(&addr, "PUT", &with_query(&location, &format!("digest={d}")))
                    .send()
                    .expect(201, None);
                (name, data)
            })
        })
        .collect();
    for push in pushes {
        let (name, data) = push.join().expect("push");
        assert_blob(&reg, &name, &data);
    }
    // The trickler was never refused; its session still takes its bytes.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let trickle = trickler.join().expect("trickler");
    drop(trickle);
    let status = slow.status(&reg);
    status.expect(204, None);
}

#[test]
fn blob_upload_content_range_errors() {
    let reg = Registry::start();
    let name = "uploads/ranges";
    let data = pseudo_random(5, 3000);

    let mut up = start_upload(&reg, name);
    up.patch_range(&reg, &data, 0, 1000);
    // Out of order, repeated and overlapping chunks: 416 with the session's Range.
    for (start, end) in [(2000, 3000), (0, 1000), (500, 1500), (1001, 2000)] {
        let r = up.patch(
            &reg,
            &data[start..end],
            Some(&format!("{start}-{}", end - 1)),
        );
        r.expect(416, Some("RANGE_INVALID"));
        assert_eq!(r.header("range"), Some("0-999"), "chunk {start}-{end}");
    }
    // The session is unharmed and still usable.
    let r = up.status(&reg);
    r.expect(204, None);
    check_session(&r, name, 1000);
    up.patch_range(&reg, &data, 1000, 2000);
    up.patch_range(&reg, &data, 2000, 3000);
    up.finish(&reg, &sha256(&data), None);
    assert_blob(&reg, name, &data);

    // A malformed Content-Range, or one that disagrees with Content-Length: 400.
    for bad in ["abc", "0-x", "10", "x-9", "0-9"] {
        let mut up = start_upload(&reg, name);
        let r = up.patch(&reg, &data[..5], Some(bad));
        r.expect(400, Some("BLOB_UPLOAD_INVALID"));
    }
    // Same after some bytes arrived: the range starts right but its length is wrong.
    let mut up = start_upload(&reg, name);
    up.patch_range(&reg, &data, 0, 100);
    let r = up.patch(&reg, &data[100..150], Some("100-199"));
    r.expect(400, Some("BLOB_UPLOAD_INVALID"));
}

#[test]
fn blob_upload_put_digest_errors() {
    let reg = Registry::start();
    let name = "uploads/digests";
    let data = pseudo_random(6, 10_000);
    let d = sha256(&data);
    let wrong = sha256(b"something else");
    let uppercase = d.to_uppercase().replace("SHA256", "sha256");
    // A digest that is missing or not a digest leaves the session as it was (the
    // client can retry the PUT); one that does not match the bytes ends it.
    let cases: [(&str, Option<&str>, u16); 5] = [
        ("missing", None, 204),
        ("malformed", Some("sha256:xyz"), 204),
        ("uppercase hex", Some(&uppercase), 204),
        (
            "unknown algorithm",
            Some("md5:d41d8cd98f00b204e9800998ecf8427e"),
            204,
        ),
        ("not matching", Some(&wrong), 404),
    ];
    // Check every case before asserting, so a failure names all the cases that differ.
    let mut wrong_outcomes = Vec::new();
    for (label, digest, session_after) in cases {
        let mut up = start_upload(&reg, name);
        up.patch(&reg, &data, None).expect(202, None);
        let r = up.put(&reg, digest, None);
        assert_eq!(r.status, 400, "{label}: {}", r.text());
        r.expect(400, Some("DIGEST_INVALID"));
        let after = up.status(&reg);
        if after.status != session_after {
            wrong_outcomes.push((label, after.status));
        }
        if after.status == 404 {
            after.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
        } else {
            reg.request("DELETE", &up.location).send().expect(204, None);
        }
        // Nothing was stored.
        assert_eq!(head_blob(&reg, name, &d), 404, "{label}");
        assert_eq!(head_blob(&reg, name, &wrong), 404, "{label}");
    }
    assert!(
        wrong_outcomes.is_empty(),
        "session state after a 400 DIGEST_INVALID PUT (case, status of a GET of it): {wrong_outcomes:?}"
    );
    // A final body that makes the whole hash to something else ends the session.
    let mut up = start_upload(&reg, name);
    up.patch(&reg, &data[..5000], None).expect(202, None);
    up.put(&reg, Some(&d), Some(b"not the rest"))
        .expect(400, Some("DIGEST_INVALID"));
    up.status(&reg).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(head_blob(&reg, name, &d), 404);

    // After a malformed digest the same session completes with the right one.
    let mut up = start_upload(&reg, name);
    up.patch(&reg, &data, None).expect(202, None);
    up.put(&reg, Some("sha256:xyz"), None)
        .expect(400, Some("DIGEST_INVALID"));
    up.put(&reg, Some(&d), None).expect(201, None);
    assert_eq!(head_blob(&reg, name, &d), 200);
}

#[test]
fn blob_upload_cancel_unknown_and_foreign_sessions() {
    let reg = Registry::start();
    let data = pseudo_random(7, 2000);
    let d = sha256(&data);

    // DELETE ends a session; every later use of it is BLOB_UPLOAD_UNKNOWN.
    let mut up = start_upload(&reg, "cancel/me");
    up.patch(&reg, &data[..1000], None).expect(202, None);
    reg.request("DELETE", &up.location).send().expect(204, None);
    up.status(&reg).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    up.patch(&reg, &data[1000..], None)
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    up.put(&reg, Some(&d), None)
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    reg.request("DELETE", &up.location)
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(head_blob(&reg, "cancel/me", &d), 404);

    // Session ids that never existed.
    for uuid in ["3f2b6a0e-1c1d-4c1e-9a53-0f1c2d3e4f50", "not-a-uuid"] {
        let path = format!("/v2/cancel/me/blobs/uploads/{uuid}");
        reg.request("GET", &path)
            .send()
            .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
        reg.request("PATCH", &path)
            .body(data.clone())
            .send()
            .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
        reg.request("PUT", &format!("{path}?digest={d}"))
            .send()
            .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
        reg.request("DELETE", &path)
            .send()
            .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    }

    // A session of `one/repo` is unknown under `two/repo`, for every method.
    let mut up = start_upload(&reg, "one/repo");
    up.patch(&reg, &data[..1000], None).expect(202, None);
    assert!(up.location.starts_with("/v2/one/repo/"));
    let foreign = up.location.replacen("/v2/one/repo/", "/v2/two/repo/", 1);
    reg.request("GET", &foreign)
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    reg.request("PATCH", &foreign)
        .body(data[1000..].to_vec())
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    reg.request("PUT", &with_query(&foreign, &format!("digest={d}")))
        .body(data[1000..].to_vec())
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    reg.request("DELETE", &foreign)
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(head_blob(&reg, "two/repo", &d), 404);
    // The session itself is untouched by all that.
    let r = up.status(&reg);
    r.expect(204, None);
    check_session(&r, "one/repo", 1000);
    up.finish(&reg, &d, Some(&data[1000..]));
    assert_blob(&reg, "one/repo", &data);
    assert_eq!(head_blob(&reg, "two/repo", &d), 404);
}

#[test]
fn restart_forgets_sessions_and_keeps_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::start_in(dir.path());
    let name = "restart/repo";
    let blob = pseudo_random(8, 50_000);
    let image = oci_image(&reg, name, 1);
    let d_image = push_manifest(&reg, name, "v1", OCI_MANIFEST, &image);
    push_blob(&reg, name, &blob);
    let mut up = start_upload(&reg, name);
    up.patch(&reg, &blob[..1000], None).expect(202, None);
    assert!(reg.terminate(), "registry did not exit cleanly on SIGTERM");

    // Sessions do not survive a restart; clients start again.
    let reg = Registry::start_in(dir.path());
    up.status(&reg).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    up.patch(&reg, &blob[1000..], None)
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    up.put(&reg, Some(&sha256(&blob[..1000])), None)
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    // Everything committed does.
    assert_blob(&reg, name, &blob);
    assert_manifest(&reg, name, "v1", OCI_MANIFEST, &image);
    assert_manifest(&reg, name, &d_image, OCI_MANIFEST, &image);
    assert_eq!(tags_page(&reg, name, "").0, ["v1"]);
    assert_eq!(catalog_page(&reg, "").0, [name]);
}

// ---- monolithic uploads and mounts ----------------------------------------------------

#[test]
fn monolithic_upload_and_cross_repository_mount() {
    let reg = Registry::start();
    let blob = pseudo_random(10, 5000);
    let d = push_blob(&reg, "mono/src", &blob);
    assert_blob(&reg, "mono/src", &blob);

    // sha512 digests and the empty blob.
    let other = pseudo_random(11, 3000);
    let d512 = sha512(&other);
    let r = reg
        .request(
            "POST",
            &format!("/v2/mono/src/blobs/uploads/?digest={d512}"),
        )
        .body(other.clone())
        .send();
    r.expect(201, None);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/mono/src/blobs/{d512}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    let r = reg
        .request("GET", &format!("/v2/mono/src/blobs/{d512}"))
        .send();
    r.expect(200, None);
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    assert!(r.body == other);
    let empty = push_blob(&reg, "mono/src", b"");
    let r = reg
        .request("HEAD", &format!("/v2/mono/src/blobs/{empty}"))
        .send();
    r.expect(200, None);
    assert_eq!(r.header("content-length"), Some("0"));

    // A percent-encoded digest in the query.
    let third = pseudo_random(12, 100);
    let d3 = sha256(&third);
    let r = reg
        .request(
            "POST",
            &format!(
                "/v2/mono/src/blobs/uploads/?digest={}",
                d3.replace(':', "%3A")
            ),
        )
        .body(third.clone())
        .send();
    r.expect(201, None);
    assert_eq!(r.header("docker-content-digest"), Some(d3.as_str()));
    assert_blob(&reg, "mono/src", &third);

    // A body that hashes to something else, and malformed digests: nothing stored.
    let wrong = pseudo_random(13, 100);
    for digest in [sha256(&wrong), "sha256:abc".to_owned(), "nope".to_owned()] {
        reg.request(
            "POST",
            &format!("/v2/mono/src/blobs/uploads/?digest={digest}"),
        )
        .body(blob[..100].to_vec())
        .send()
        .expect(400, Some("DIGEST_INVALID"));
    }
    assert_eq!(head_blob(&reg, "mono/src", &sha256(&wrong)), 404);
    assert_eq!(head_blob(&reg, "mono/src", &sha256(&blob[..100])), 404);

    // Mount from a repository that has the blob: 201, and the target can read it.
    assert_eq!(head_blob(&reg, "mono/dst", &d), 404);
    let r = reg
        .request(
            "POST",
            &format!("/v2/mono/dst/blobs/uploads/?mount={d}&from=mono/src"),
        )
        .send();
    r.expect(201, None);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/mono/dst/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(head_blob(&reg, "mono/dst", &d), 200);
    assert_blob(&reg, "mono/dst", &blob);

    // The same with the query percent-encoded, as Go clients send it.
    let r = reg
        .request(
            "POST",
            &format!(
                "/v2/mono/enc/blobs/uploads/?mount={}&from=mono%2Fsrc",
                d.replace(':', "%3A")
            ),
        )
        .send();
    r.expect(201, None);
    assert_eq!(head_blob(&reg, "mono/enc", &d), 200);

    // Mount from a repository that lacks the blob (though another one has it): 202 and
    // a usable session; nothing is linked.
    let r = reg
        .request(
            "POST",
            &format!("/v2/mono/other/blobs/uploads/?mount={d}&from=mono/empty"),
        )
        .send();
    r.expect(202, None);
    let mut up = check_session(&r, "mono/other", 0);
    assert_eq!(head_blob(&reg, "mono/other", &d), 404);
    up.patch(&reg, &blob, None).expect(202, None);
    up.finish(&reg, &d, None);
    assert_blob(&reg, "mono/other", &blob);

    // Mount without `from`: 201 when the registry holds the blob anywhere.
    let r = reg
        .request("POST", &format!("/v2/mono/third/blobs/uploads/?mount={d}"))
        .send();
    r.expect(201, None);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/mono/third/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_blob(&reg, "mono/third", &blob);
    // ... and 202 with a session when it does not.
    let unknown = sha256(b"never pushed");
    let r = reg
        .request(
            "POST",
            &format!("/v2/mono/fourth/blobs/uploads/?mount={unknown}"),
        )
        .send();
    r.expect(202, None);
    check_session(&r, "mono/fourth", 0);
    assert_eq!(head_blob(&reg, "mono/fourth", &unknown), 404);

    // A bad mount digest, with or without `from`, or a bad `from`: no mount, and (as the
    // spec asks) an upload session instead of an error.
    let bad_froms = ["Mono/Src", "mono//src", "-mono"].map(|f| format!("mount={d}&from={f}"));
    for query in [
        "mount=sha256:123&from=mono/src".to_owned(),
        "mount=latest&from=mono/src".to_owned(),
        "mount=sha256:123".to_owned(),
    ]
    .into_iter()
    .chain(bad_froms)
    {
        let r = reg
            .request("POST", &format!("/v2/mono/fifth/blobs/uploads/?{query}"))
            .send();
        r.expect(202, None);
        check_session(&r, "mono/fifth", 0);
    }
    assert_eq!(head_blob(&reg, "mono/fifth", &d), 404);
}

// ---- blob reads and deletes -----------------------------------------------------------

#[test]
fn blob_reads_ranges_and_unknown_blobs() {
    let reg = Registry::start();
    let blob = pseudo_random(20, 1000);
    let d = push_blob(&reg, "reads/a", &blob);
    push_blob(&reg, "reads/b", b"another blob");

    for method in ["HEAD", "GET"] {
        let r = reg
            .request(method, &format!("/v2/reads/a/blobs/{d}"))
            .send();
        r.expect(200, None);
        assert_eq!(r.header("content-length"), Some("1000"));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        if method == "GET" {
            assert!(r.body == blob);
        } else {
            assert!(r.body.is_empty());
        }
    }

    // Stored, but not in this repository (or in a repository that does not exist).
    for name in ["reads/b", "reads/nowhere"] {
        assert_eq!(head_blob(&reg, name, &d), 404);
        reg.request("GET", &format!("/v2/{name}/blobs/{d}"))
            .send()
            .expect(404, Some("BLOB_UNKNOWN"));
    }
    let unknown = sha256(b"unknown");
    assert_eq!(head_blob(&reg, "reads/a", &unknown), 404);
    reg.request("GET", &format!("/v2/reads/a/blobs/{unknown}"))
        .send()
        .expect(404, Some("BLOB_UNKNOWN"));
    for bad in ["sha256:abc", "latest", "sha256:ZZ", "sha1:0123456789abcdef"] {
        reg.request("GET", &format!("/v2/reads/a/blobs/{bad}"))
            .send()
            .expect(400, Some("DIGEST_INVALID"));
        let r = reg
            .request("HEAD", &format!("/v2/reads/a/blobs/{bad}"))
            .send();
        r.expect(400, None);
    }

    // Satisfiable ranges: 206 with exactly those bytes.
    for (range, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=0-999", 0, 999),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=900-5000", 900, 999),
    ] {
        let r = reg
            .request("GET", &format!("/v2/reads/a/blobs/{d}"))
            .header("Range", range)
            .send();
        r.expect(206, None);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((last - first + 1).to_string().as_str()),
            "{range}"
        );
        assert!(r.body == blob[first..=last], "{range}: bytes differ");
    }
    // Unsatisfiable ranges: 416 naming the size.
    for range in ["bytes=1000-", "bytes=2000-3000", "bytes=1000-1000"] {
        let r = reg
            .request("GET", &format!("/v2/reads/a/blobs/{d}"))
            .header("Range", range)
            .send();
        r.expect(416, Some("RANGE_INVALID"));
        assert_eq!(r.header("content-range"), Some("bytes */1000"), "{range}");
    }
    // Multi-range and unparsable ranges are ignored: the whole blob.
    for range in ["bytes=0-1,5-6", "chars=0-1", "bytes=x-y", "bytes"] {
        let r = reg
            .request("GET", &format!("/v2/reads/a/blobs/{d}"))
            .header("Range", range)
            .send();
        r.expect(200, None);
        assert!(r.body == blob, "{range}: whole blob expected");
    }
}

#[test]
fn blob_delete_unlinks_from_one_repository() {
    let reg = Registry::start();
    let blob = pseudo_random(30, 4000);
    let d = push_blob(&reg, "del/a", &blob);
    reg.request(
        "POST",
        &format!("/v2/del/b/blobs/uploads/?mount={d}&from=del/a"),
    )
    .send()
    .expect(201, None);

    reg.request("DELETE", &format!("/v2/del/a/blobs/{d}"))
        .send()
        .expect(202, None);
    assert_eq!(head_blob(&reg, "del/a", &d), 404);
    reg.request("GET", &format!("/v2/del/a/blobs/{d}"))
        .send()
        .expect(404, Some("BLOB_UNKNOWN"));
    reg.request("DELETE", &format!("/v2/del/a/blobs/{d}"))
        .send()
        .expect(404, Some("BLOB_UNKNOWN"));
    // The other repository still has it.
    assert_eq!(head_blob(&reg, "del/b", &d), 200);
    assert_blob(&reg, "del/b", &blob);

    reg.request(
        "DELETE",
        &format!("/v2/del/a/blobs/{}", sha256(b"never pushed")),
    )
    .send()
    .expect(404, Some("BLOB_UNKNOWN"));
    reg.request("DELETE", "/v2/del/a/blobs/sha256:abc")
        .send()
        .expect(400, Some("DIGEST_INVALID"));

    // Pushing it again links it again.
    push_blob(&reg, "del/a", &blob);
    assert_blob(&reg, "del/a", &blob);
}

#[test]
fn large_blobs_round_trip() {
    let reg = Registry::start();
    let name = "big/blob";
    let size = 20 * MIB;

    // One streamed PATCH (chunked transfer encoding, 64 KiB chunks).
    let data = pseudo_random(40, size);
    let mut up = start_upload(&reg, name);
    let r = up.patch_chunked(&reg, data.chunks(64 * 1024).map(<[u8]>::to_vec).collect());
    r.expect(202, None);
    check_session(&r, name, size);
    up.finish(&reg, &sha256(&data), None);
    assert_blob(&reg, name, &data);

    // Several PATCHes with Content-Range, at boundaries that align with nothing.
    let data = pseudo_random(41, size + 12_345);
    let mut up = start_upload(&reg, name);
    let step = 3_000_017;
    let mut start = 0;
    while start < data.len() {
        let end = (start + step).min(data.len());
        up.patch_range(&reg, &data, start, end);
        start = end;
    }
    up.finish(&reg, &sha256(&data), None);
    assert_blob(&reg, name, &data);
    // A range across a chunk boundary.
    let r = reg
        .request("GET", &format!("/v2/{name}/blobs/{}", sha256(&data)))
        .header("Range", &format!("bytes={}-{}", step - 100, step + 99))
        .send();
    r.expect(206, None);
    assert!(r.body == data[step - 100..step + 100]);

    // One streamed PATCH with Content-Length, and a monolithic POST.
    let data = pseudo_random(42, size);
    let mut up = start_upload(&reg, name);
    let r = up.patch(&reg, &data, None);
    r.expect(202, None);
    check_session(&r, name, size);
    up.finish(&reg, &sha256(&data), None);
    assert_blob(&reg, name, &data);
    let data = pseudo_random(43, size);
    push_blob(&reg, name, &data);
    assert_blob(&reg, name, &data);
    // The same bytes again in another repository (stored once, readable from both).
    push_blob(&reg, "big/copy", &data);
    assert_blob(&reg, "big/copy", &data);
    assert_blob(&reg, name, &data);
}

// ---- manifests ------------------------------------------------------------------------

#[test]
fn manifest_push_and_fetch_by_tag_and_digest() {
    let reg = Registry::start();
    let name = "app/web";

    // OCI image manifest by tag, Docker schema 2 by digest and then by tag.
    let oci = oci_image(&reg, name, 1);
    let d_oci = push_manifest(&reg, name, "v1", OCI_MANIFEST, &oci);
    assert_manifest(&reg, name, "v1", OCI_MANIFEST, &oci);
    assert_manifest(&reg, name, &d_oci, OCI_MANIFEST, &oci);
    let docker = docker_image(&reg, name, 2);
    let d_docker = sha256(&docker);
    assert_eq!(
        push_manifest(&reg, name, &d_docker, DOCKER_MANIFEST, &docker),
        d_docker
    );
    assert_manifest(&reg, name, &d_docker, DOCKER_MANIFEST, &docker);
    // Pushing by digest made no tag.
    assert_eq!(tags_page(&reg, name, "").0, ["v1"]);
    push_manifest(&reg, name, "d1", DOCKER_MANIFEST, &docker);
    assert_manifest(&reg, name, "d1", DOCKER_MANIFEST, &docker);
    assert_eq!(tags_page(&reg, name, "").0, ["d1", "v1"]);
    // No subject, no OCI-Subject.
    let r = put_manifest(&reg, name, "v1", OCI_MANIFEST, &oci);
    r.expect(201, None);
    assert_eq!(r.header("oci-subject"), None);

    // Accept negotiation by tag: a list without the stored type is MANIFEST_UNKNOWN.
    let get = |reference: &str, accept: &str| {
        reg.request("GET", &format!("/v2/{name}/manifests/{reference}"))
            .header("Accept", accept)
            .send()
    };
    get("v1", DOCKER_MANIFEST).expect(404, Some("MANIFEST_UNKNOWN"));
    get("v1", &format!("{DOCKER_MANIFEST}, {DOCKER_LIST}")).expect(404, Some("MANIFEST_UNKNOWN"));
    get("d1", OCI_MANIFEST).expect(404, Some("MANIFEST_UNKNOWN"));
    let r = reg
        .request("HEAD", &format!("/v2/{name}/manifests/v1"))
        .header("Accept", DOCKER_MANIFEST)
        .send();
    r.expect(404, None);
    for accept in [
        "*/*".to_owned(),
        OCI_MANIFEST.to_owned(),
        format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
        format!("{OCI_INDEX},{OCI_MANIFEST}"),
    ] {
        let r = get("v1", &accept);
        r.expect(200, None);
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST), "{accept}");
        assert!(r.body == oci, "{accept}");
    }
    // Several Accept headers, the stored type in the second.
    let r = reg
        .request("GET", &format!("/v2/{name}/manifests/v1"))
        .header("Accept", DOCKER_MANIFEST)
        .header("Accept", OCI_MANIFEST)
        .send();
    r.expect(200, None);
    assert!(r.body == oci);
    // By digest, Accept does not apply.
    let r = get(&d_oci, DOCKER_MANIFEST);
    r.expect(200, None);
    assert!(r.body == oci);

    // A tag moves to a new manifest; the old one stays fetchable by digest.
    let oci2 = oci_image(&reg, name, 3);
    push_manifest(&reg, name, "v1", OCI_MANIFEST, &oci2);
    assert_manifest(&reg, name, "v1", OCI_MANIFEST, &oci2);
    assert_manifest(&reg, name, &d_oci, OCI_MANIFEST, &oci);

    // The media type may come from Content-Type alone.
    let mut plain: Value = serde_json::from_slice(&oci).unwrap();
    plain.as_object_mut().unwrap().remove("mediaType");
    let plain = serde_json::to_vec(&plain).unwrap();
    push_manifest(&reg, name, "plain", OCI_MANIFEST, &plain);
    assert_manifest(&reg, name, "plain", OCI_MANIFEST, &plain);

    // Foreign layers (with urls) need not be blobs of the repository.
    let config = b"{\"foreign\":true}".to_vec();
    push_blob(&reg, name, &config);
    let foreign = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [{
            "mediaType": DOCKER_FOREIGN_LAYER,
            "digest": sha256(b"windows base layer"),
            "size": 18,
            "urls": ["https://example.com/layer.tar.gz"],
        }],
    }))
    .unwrap();
    push_manifest(&reg, name, "foreign", DOCKER_MANIFEST, &foreign);
    assert_manifest(&reg, name, "foreign", DOCKER_MANIFEST, &foreign);

    // Manifests belong to their repository.
    push_blob(&reg, "app/other", b"x");
    for reference in [d_oci.as_str(), "v1"] {
        reg.request("GET", &format!("/v2/app/other/manifests/{reference}"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .expect(404, Some("MANIFEST_UNKNOWN"));
    }
    // Unknown manifests, and a read of a reference that is neither digest nor tag.
    for reference in [
        "nope".to_owned(),
        sha256(b"no such manifest"),
        "-bad".to_owned(),
    ] {
        reg.request("GET", &format!("/v2/{name}/manifests/{reference}"))
            .header("Accept", "*/*")
            .send()
            .expect(404, Some("MANIFEST_UNKNOWN"));
        let r = reg
            .request("HEAD", &format!("/v2/{name}/manifests/{reference}"))
            .header("Accept", "*/*")
            .send();
        r.expect(404, None);
    }
}

#[test]
fn manifest_lists_and_indexes() {
    let reg = Registry::start();
    let name = "multi/arch";

    let amd = oci_image(&reg, name, 1);
    let arm = oci_image(&reg, name, 2);
    let d_amd = push_manifest(&reg, name, &sha256(&amd), OCI_MANIFEST, &amd);
    let d_arm = push_manifest(&reg, name, &sha256(&arm), OCI_MANIFEST, &arm);
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d_amd, "size": amd.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": d_arm, "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let d_index = push_manifest(&reg, name, "latest", OCI_INDEX, &index);
    assert_manifest(&reg, name, "latest", OCI_INDEX, &index);
    assert_manifest(&reg, name, &d_index, OCI_INDEX, &index);

    let docker = docker_image(&reg, name, 3);
    let d_docker = push_manifest(&reg, name, "docker-amd64", DOCKER_MANIFEST, &docker);
    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": d_docker, "size": docker.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    push_manifest(&reg, name, "docker", DOCKER_LIST, &list);
    assert_manifest(&reg, name, "docker", DOCKER_LIST, &list);
    // An index of an index.
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": d_index, "size": index.len()}],
    }))
    .unwrap();
    push_manifest(&reg, name, "nested", OCI_INDEX, &nested);
    assert_manifest(&reg, name, "nested", OCI_INDEX, &nested);
}

#[test]
fn manifest_push_errors() {
    let reg = Registry::start();
    let name = "bad/push";
    let config = b"{\"config\":1}".to_vec();
    let layer = pseudo_random(50, 500);
    push_blob(&reg, name, &config);
    push_blob(&reg, name, &layer);
    let elsewhere = pseudo_random(51, 500);
    push_blob(&reg, "bad/elsewhere", &elsewhere);
    let missing = pseudo_random(52, 500);

    let image = |media_type: &str, config_desc: Value, layers: Vec<Value>| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config_desc,
            "layers": layers,
        }))
        .unwrap()
    };

    // Config or layer blobs that are not in the repository.
    for (media_type, config_type, layer_type) in [
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
    ] {
        for (label, body) in [
            (
                "missing layer",
                image(
                    media_type,
                    descriptor(config_type, &config),
                    vec![
                        descriptor(layer_type, &layer),
                        descriptor(layer_type, &missing),
                    ],
                ),
            ),
            (
                "layer in another repository",
                image(
                    media_type,
                    descriptor(config_type, &config),
                    vec![descriptor(layer_type, &elsewhere)],
                ),
            ),
            (
                "missing config",
                image(
                    media_type,
                    descriptor(config_type, &missing),
                    vec![descriptor(layer_type, &layer)],
                ),
            ),
        ] {
            let r = put_manifest(&reg, name, "t", media_type, &body);
            assert_eq!(r.status, 400, "{media_type} {label}: {}", r.text());
            r.expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
        }
    }
    reg.request("GET", &format!("/v2/{name}/manifests/t"))
        .header("Accept", "*/*")
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));

    // Indexes whose children are missing, or only in another repository.
    let good = image(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, &config),
        vec![descriptor(OCI_LAYER, &layer)],
    );
    let d_good = push_manifest(&reg, name, "good", OCI_MANIFEST, &good);
    let other_image = oci_image(&reg, "bad/elsewhere", 53);
    let d_other = push_manifest(&reg, "bad/elsewhere", "x", OCI_MANIFEST, &other_image);
    let d_missing = sha256(b"no such manifest");
    let good_child = json!({"mediaType": OCI_MANIFEST, "digest": d_good, "size": good.len()});
    for (media_type, child_type) in [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)] {
        for child in [&d_missing, &d_other] {
            let bad_child = json!({"mediaType": child_type, "digest": child, "size": 100});
            let children = if media_type == OCI_INDEX {
                json!([good_child, bad_child])
            } else {
                json!([bad_child])
            };
            let body = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "manifests": children,
            }))
            .unwrap();
            // The spec's code for an unknown reference, blob or manifest alike.
            put_manifest(&reg, name, "idx", media_type, &body)
                .expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
        }
    }

    // Not JSON, the wrong shape for the media type, unsupported media types.
    let cfg = descriptor(OCI_CONFIG, &config);
    let lay = descriptor(OCI_LAYER, &layer);
    let invalid: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not JSON", OCI_MANIFEST, b"{not json".to_vec()),
        ("empty body", OCI_MANIFEST, Vec::new()),
        ("JSON array", OCI_MANIFEST, b"[]".to_vec()),
        ("JSON string", OCI_MANIFEST, b"\"manifest\"".to_vec()),
        (
            "schemaVersion 1",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [lay]})).unwrap(),
        ),
        (
            "no schemaVersion",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"mediaType": OCI_MANIFEST, "config": cfg, "layers": [lay]})).unwrap(),
        ),
        (
            "no config",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [lay]})).unwrap(),
        ),
        (
            "layers not an array",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": lay})).unwrap(),
        ),
        (
            "no layers",
            DOCKER_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": cfg})).unwrap(),
        ),
        (
            "descriptor with a negative size",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&layer), "size": -1}]})).unwrap(),
        ),
        (
            "descriptor with a string size",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&layer), "size": "500"}]})).unwrap(),
        ),
        (
            "descriptor without mediaType",
            OCI_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                "layers": [{"digest": sha256(&layer), "size": 500}]})).unwrap(),
        ),
        (
            "index without manifests",
            OCI_INDEX,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX})).unwrap(),
        ),
        (
            "index with manifests not an array",
            OCI_INDEX,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}})).unwrap(),
        ),
        (
            "unknown media type",
            "application/vnd.example.unknown+json",
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json", "config": cfg, "layers": [lay]})).unwrap(),
        ),
        (
            "schema 1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            serde_json::to_vec(&json!({"schemaVersion": 1, "name": name, "tag": "t", "fsLayers": [], "history": []})).unwrap(),
        ),
        (
            "body and Content-Type disagree",
            DOCKER_MANIFEST,
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [lay]})).unwrap(),
        ),
    ];
    // All cases are tried before asserting, so a failure lists every case that differs.
    let mut wrong_answers = Vec::new();
    for (label, content_type, body) in invalid {
        let r = put_manifest(&reg, name, "invalid", content_type, &body);
        if r.status == 400 && r.error_code() == "MANIFEST_INVALID" {
            r.expect(400, Some("MANIFEST_INVALID"));
        } else {
            wrong_answers.push((label, r.status, r.text()));
        }
    }
    // A descriptor whose digest is not a digest: DIGEST_INVALID, as the `<digest>` rule
    // says (and as distribution 2.8 answers).
    for field in ["config", "layer"] {
        let bad = json!({"mediaType": OCI_LAYER, "digest": "sha256:zz", "size": 1});
        let body = if field == "config" {
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": bad, "layers": [lay]})
        } else {
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [bad]})
        };
        let body = serde_json::to_vec(&body).unwrap();
        put_manifest(&reg, name, "invalid", OCI_MANIFEST, &body)
            .expect(400, Some("DIGEST_INVALID"));
    }
    if wrong_answers.is_empty() {
        reg.request("GET", &format!("/v2/{name}/manifests/invalid"))
            .header("Accept", "*/*")
            .send()
            .expect(404, Some("MANIFEST_UNKNOWN"));
    }

    // No media type in the body and a generic Content-Type: the shape decides (OCI
    // makes `mediaType` optional), and the stored type is the OCI one.
    let untyped =
        serde_json::to_vec(&json!({"schemaVersion": 2, "config": cfg, "layers": [lay]})).unwrap();
    put_manifest(&reg, name, "untyped", "application/json", &untyped).expect(201, None);
    let fetched = reg
        .request("GET", &format!("/v2/{name}/manifests/untyped"))
        .send();
    fetched.expect(200, None);
    assert_eq!(fetched.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(fetched.body, untyped);

    // Pushed by digest, but the bytes hash to something else.
    let other = image(OCI_MANIFEST, descriptor(OCI_CONFIG, &config), vec![]);
    put_manifest(&reg, name, &sha256(&other), OCI_MANIFEST, &good)
        .expect(400, Some("DIGEST_INVALID"));
    reg.request("GET", &format!("/v2/{name}/manifests/{}", sha256(&other)))
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));

    // Tags: at most 128 characters of the grammar.
    let longest = format!("_{}", "a".repeat(127));
    push_manifest(&reg, name, &longest, OCI_MANIFEST, &good);
    assert_manifest(&reg, name, &longest, OCI_MANIFEST, &good);
    let too_long = "a".repeat(129);
    for tag in ["-x", ".x", "a+b", "a%21b", too_long.as_str()] {
        let r = put_manifest(&reg, name, tag, OCI_MANIFEST, &good);
        assert_eq!(r.status, 400, "tag {tag}: {}", r.text());
        r.expect(400, Some("TAG_INVALID"));
    }

    // The size limit: exactly 4 MiB is accepted, one byte more is 413.
    let padded = |len: usize| {
        let build = |pad: usize| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config),
                "layers": [descriptor(OCI_LAYER, &layer)],
                "annotations": {"pad": "x".repeat(pad)},
            }))
            .unwrap()
        };
        let body = build(len - build(0).len());
        assert_eq!(body.len(), len);
        body
    };
    let max = padded(4 * MIB);
    push_manifest(&reg, name, "max", OCI_MANIFEST, &max);
    assert_manifest(&reg, name, "max", OCI_MANIFEST, &max);
    let over = padded(4 * MIB + 1);
    let mut request = format!(
        "PUT /v2/{name}/manifests/over HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        reg.addr,
        over.len()
    )
    .into_bytes();
    request.extend_from_slice(&over);
    send_racing(&reg.addr, request).expect(413, Some("SIZE_INVALID"));
    // The same without a Content-Length (chunked).
    let mut request = format!(
        "PUT /v2/{name}/manifests/over HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n",
        reg.addr
    )
    .into_bytes();
    for chunk in over.chunks(MIB) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    send_racing(&reg.addr, request).expect(413, Some("SIZE_INVALID"));
    reg.request("GET", &format!("/v2/{name}/manifests/over"))
        .header("Accept", "*/*")
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));

    assert!(
        wrong_answers.is_empty(),
        "invalid manifests not answered 400 MANIFEST_INVALID (case, status, body): {wrong_answers:#?}"
    );
}

#[test]
fn manifest_delete_by_tag_and_by_digest() {
    let reg = Registry::start();
    let name = "del/manifests";
    let image = oci_image(&reg, name, 1);
    let d = push_manifest(&reg, name, "a", OCI_MANIFEST, &image);
    push_manifest(&reg, name, "b", OCI_MANIFEST, &image);
    let keep = oci_image(&reg, name, 2);
    push_manifest(&reg, name, "keep", OCI_MANIFEST, &keep);
    assert_eq!(tags_page(&reg, name, "").0, ["a", "b", "keep"]);

    // By tag: only the tag goes.
    reg.request("DELETE", &format!("/v2/{name}/manifests/a"))
        .send()
        .expect(202, None);
    reg.request("GET", &format!("/v2/{name}/manifests/a"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));
    assert_eq!(tags_page(&reg, name, "").0, ["b", "keep"]);
    assert_manifest(&reg, name, &d, OCI_MANIFEST, &image);
    assert_manifest(&reg, name, "b", OCI_MANIFEST, &image);
    reg.request("DELETE", &format!("/v2/{name}/manifests/a"))
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));

    // By digest: the manifest and every tag on it.
    reg.request("DELETE", &format!("/v2/{name}/manifests/{d}"))
        .send()
        .expect(202, None);
    for reference in [d.as_str(), "b"] {
        reg.request("GET", &format!("/v2/{name}/manifests/{reference}"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .expect(404, Some("MANIFEST_UNKNOWN"));
        let r = reg
            .request("HEAD", &format!("/v2/{name}/manifests/{reference}"))
            .header("Accept", OCI_MANIFEST)
            .send();
        r.expect(404, None);
    }
    assert_eq!(tags_page(&reg, name, "").0, ["keep"]);
    assert_manifest(&reg, name, "keep", OCI_MANIFEST, &keep);
    reg.request("DELETE", &format!("/v2/{name}/manifests/{d}"))
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));
    reg.request("DELETE", &format!("/v2/{name}/manifests/never"))
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));
    // The manifest's blobs are not deleted with it.
    let parsed: Value = serde_json::from_slice(&image).unwrap();
    let layer = parsed["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(head_blob(&reg, name, layer), 200);
    // And it can be pushed again.
    push_manifest(&reg, name, "b", OCI_MANIFEST, &image);
    assert_manifest(&reg, name, "b", OCI_MANIFEST, &image);
}

// ---- artifacts and referrers ----------------------------------------------------------

#[test]
fn artifacts_subject_and_referrers() {
    let reg = Registry::start();
    let name = "art/app";
    assert_eq!(sha256(b"{}"), EMPTY_DIGEST);

    let subject = oci_image(&reg, name, 1);
    let sd = push_manifest(&reg, name, "v1", OCI_MANIFEST, &subject);
    let subject_desc = json!({"mediaType": OCI_MANIFEST, "digest": sd, "size": subject.len()});

    // An artifact with the empty config, which the client never uploaded.
    assert_eq!(head_blob(&reg, name, EMPTY_DIGEST), 404);
    let signature = b"signature bytes".to_vec();
    push_blob(&reg, name, &signature);
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": empty_descriptor(),
        "layers": [descriptor("application/vnd.example.signature.v1", &signature)],
        "subject": subject_desc,
        "annotations": {"org.example.signer": "test"},
    }))
    .unwrap();
    let sig_d = sha256(&sig);
    let r = put_manifest(&reg, name, &sig_d, OCI_MANIFEST, &sig);
    r.expect(201, None);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{name}/manifests/{sig_d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(sig_d.as_str()));
    assert_eq!(r.header("oci-subject"), Some(sd.as_str()));
    assert_manifest(&reg, name, &sig_d, OCI_MANIFEST, &sig);
    // The registry stored the empty descriptor's two bytes.
    let r = reg
        .request("HEAD", &format!("/v2/{name}/blobs/{EMPTY_DIGEST}"))
        .send();
    r.expect(200, None);
    assert_eq!(r.header("content-length"), Some("2"));
    assert_blob(&reg, name, b"{}");

    // An image manifest referrer without artifactType: reported by its config type.
    let sbom_type = "application/vnd.example.sbom.config+json";
    let sbom_config = b"{\"sbom\":true}".to_vec();
    push_blob(&reg, name, &sbom_config);
    let sbom = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(sbom_type, &sbom_config),
        "layers": [empty_descriptor()],
        "subject": subject_desc,
    }))
    .unwrap();
    let sbom_d = sha256(&sbom);
    let r = put_manifest(&reg, name, "sbom", OCI_MANIFEST, &sbom);
    r.expect(201, None);
    assert_eq!(r.header("oci-subject"), Some(sd.as_str()));

    let referrers = |query: &str| {
        let r = reg
            .request("GET", &format!("/v2/{name}/referrers/{sd}{query}"))
            .send();
        r.expect(200, None);
        assert_eq!(r.header("content-type"), Some(OCI_INDEX));
        let json = r.json();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], OCI_INDEX);
        let mut entries: Vec<(String, u64, String, String)> = json["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("no manifests array: {json}"))
            .iter()
            .map(|m| {
                (
                    m["digest"].as_str().expect("digest").to_owned(),
                    m["size"].as_u64().expect("size"),
                    m["mediaType"].as_str().expect("mediaType").to_owned(),
                    m["artifactType"].as_str().expect("artifactType").to_owned(),
                )
            })
            .collect();
        entries.sort();
        (entries, r.header("oci-filters-applied").map(str::to_owned))
    };
    let sig_entry = (
        sig_d.clone(),
        sig.len() as u64,
        OCI_MANIFEST.to_owned(),
        "application/vnd.example.signature".to_owned(),
    );
    let sbom_entry = (
        sbom_d.clone(),
        sbom.len() as u64,
        OCI_MANIFEST.to_owned(),
        sbom_type.to_owned(),
    );
    let mut both = vec![sig_entry.clone(), sbom_entry.clone()];
    both.sort();
    assert_eq!(referrers(""), (both, None));
    assert_eq!(
        referrers("?artifactType=application/vnd.example.signature"),
        (vec![sig_entry], Some("artifactType".to_owned()))
    );
    assert_eq!(
        referrers("?artifactType=application%2Fvnd.example.sbom.config%2Bjson"),
        (vec![sbom_entry.clone()], Some("artifactType".to_owned()))
    );
    assert_eq!(
        referrers("?artifactType=application/vnd.example.none"),
        (vec![], Some("artifactType".to_owned()))
    );

    // A subject with no referrers, one that does not exist, and bad digests.
    for subject in [sig_d.clone(), sha256(b"no such subject")] {
        let r = reg
            .request("GET", &format!("/v2/{name}/referrers/{subject}"))
            .send();
        r.expect(200, None);
        assert_eq!(r.header("content-type"), Some(OCI_INDEX));
        assert_eq!(r.json()["manifests"], json!([]));
    }
    for bad in ["sha256:abc", "latest", "v1"] {
        reg.request("GET", &format!("/v2/{name}/referrers/{bad}"))
            .send()
            .expect(400, Some("DIGEST_INVALID"));
    }

    // A referrer may arrive before its subject (an index this time).
    let absent = sha256(b"subject pushed later");
    let late = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sd, "size": subject.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": absent, "size": 123},
    }))
    .unwrap();
    let r = put_manifest(&reg, name, &sha256(&late), OCI_INDEX, &late);
    r.expect(201, None);
    assert_eq!(r.header("oci-subject"), Some(absent.as_str()));
    let r = reg
        .request("GET", &format!("/v2/{name}/referrers/{absent}"))
        .send();
    r.expect(200, None);
    let listed = &r.json()["manifests"];
    assert_eq!(listed[0]["digest"], sha256(&late));
    assert_eq!(listed[0]["mediaType"], OCI_INDEX);
    assert_eq!(listed[0]["artifactType"], "application/vnd.example.bundle");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // Deleting a referrer removes it from the list.
    reg.request("DELETE", &format!("/v2/{name}/manifests/{sig_d}"))
        .send()
        .expect(202, None);
    assert_eq!(referrers(""), (vec![sbom_entry], None));
}

// ---- tags and catalog -----------------------------------------------------------------

#[test]
fn tags_list_order_and_pagination() {
    let reg = Registry::start();
    let name = "tags/repo";
    let image = oci_image(&reg, name, 1);
    // Pushed out of order; listed in byte order.
    for tag in ["latest", "b", "A", "c", "_u", "1.0", "a"] {
        push_manifest(&reg, name, tag, OCI_MANIFEST, &image);
    }
    let all = ["1.0", "A", "_u", "a", "b", "c", "latest"];
    assert_eq!(
        tags_page(&reg, name, ""),
        (all.map(String::from).to_vec(), None)
    );

    let link = |n: usize, last: &str| {
        Some(format!(
            "</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""
        ))
    };
    assert_eq!(
        tags_page(&reg, name, "?n=3"),
        (vec!["1.0".into(), "A".into(), "_u".into()], link(3, "_u"))
    );
    assert_eq!(
        tags_page(&reg, name, "?n=3&last=_u"),
        (vec!["a".into(), "b".into(), "c".into()], link(3, "c"))
    );
    // The last page has no Link, also when it is full.
    assert_eq!(
        tags_page(&reg, name, "?n=3&last=c"),
        (vec!["latest".into()], None)
    );
    assert_eq!(
        tags_page(&reg, name, "?n=7"),
        (all.map(String::from).to_vec(), None)
    );
    assert_eq!(
        tags_page(&reg, name, "?n=2&last=c"),
        (vec!["latest".into()], None)
    );
    assert_eq!(
        tags_page(&reg, name, "?n=1&last=c"),
        (vec!["latest".into()], None)
    );
    assert_eq!(
        tags_page(&reg, name, "?n=100"),
        (all.map(String::from).to_vec(), None)
    );
    // `last` need not be a tag; without `n`, everything after it.
    assert_eq!(
        tags_page(&reg, name, "?last=bb"),
        (vec!["c".into(), "latest".into()], None)
    );
    assert_eq!(tags_page(&reg, name, "?last=latest"), (vec![], None));

    reg.request("GET", "/v2/tags/unknown/tags/list")
        .send()
        .expect(404, Some("NAME_UNKNOWN"));
    for query in ["?n=abc", "?n=abc&last=a", "?n=1x"] {
        reg.request("GET", &format!("/v2/{name}/tags/list{query}"))
            .send()
            .expect(400, Some("PAGINATION_NUMBER_INVALID"));
    }
}

#[test]
fn catalog_order_and_pagination() {
    let reg = Registry::start();
    assert_eq!(catalog_page(&reg, ""), (vec![], None));
    for name in ["gamma/one", "delta", "alpha", "epsilon", "beta"] {
        push_blob(&reg, name, name.as_bytes());
    }
    let all: Vec<String> = ["alpha", "beta", "delta", "epsilon", "gamma/one"]
        .map(String::from)
        .to_vec();
    assert_eq!(catalog_page(&reg, ""), (all.clone(), None));
    let link =
        |n: usize, last: &str| Some(format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
    assert_eq!(
        catalog_page(&reg, "?n=2"),
        (vec!["alpha".into(), "beta".into()], link(2, "beta"))
    );
    assert_eq!(
        catalog_page(&reg, "?n=2&last=beta"),
        (vec!["delta".into(), "epsilon".into()], link(2, "epsilon"))
    );
    assert_eq!(
        catalog_page(&reg, "?n=2&last=epsilon"),
        (vec!["gamma/one".into()], None)
    );
    assert_eq!(catalog_page(&reg, "?n=5"), (all.clone(), None));
    assert_eq!(
        catalog_page(&reg, "?last=delta"),
        (vec!["epsilon".into(), "gamma/one".into()], None)
    );
    reg.request("GET", "/v2/_catalog?n=abc")
        .send()
        .expect(400, Some("PAGINATION_NUMBER_INVALID"));
}

#[test]
fn catalog_default_page_is_1000() {
    let reg = Registry::start();
    let d = push_blob(&reg, "r0000", b"shared");
    // 1000 more repositories, by mounts (cheap), from a few threads.
    std::thread::scope(|s| {
        for t in 0..4 {
            let reg = &reg;
            let d = &d;
            s.spawn(move || {
                for i in (1..=1000).filter(|i| i % 4 == t) {
                    reg.request(
                        "POST",
                        &format!("/v2/r{i:04}/blobs/uploads/?mount={d}&from=r0000"),
                    )
                    .send()
                    .expect(201, None);
                }
            });
        }
    });
    let (page, link) = catalog_page(&reg, "");
    let expected: Vec<String> = (0..1000).map(|i| format!("r{i:04}")).collect();
    assert_eq!(page, expected);
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=1000&last=r0999>; rel=\"next\"")
    );
    assert_eq!(
        catalog_page(&reg, "?n=1000&last=r0999"),
        (vec!["r1000".into()], None)
    );
}

// ---- names and routing ----------------------------------------------------------------

#[test]
fn repository_names_grammar_and_routing() {
    let reg = Registry::start();
    let blob = b"name test".to_vec();
    let d = sha256(&blob);

    // Valid names, including separators and the 255-character limit.
    let long = "a".repeat(255);
    let long_multi = format!("{}/{}", "b".repeat(127), "c".repeat(127));
    for name in [
        "a/b/c",
        "a.b",
        "a-b",
        "a--b",
        "a_b",
        "a__b",
        "0/1/2/3/4/5/6/7/8/9",
        long.as_str(),
        long_multi.as_str(),
    ] {
        push_blob(&reg, name, &blob);
        assert_eq!(head_blob(&reg, name, &d), 200, "{name}");
    }
    let image = oci_image(&reg, "a/b/c", 1);
    push_manifest(&reg, "a/b/c", "v1", OCI_MANIFEST, &image);
    assert_manifest(&reg, "a/b/c", "v1", OCI_MANIFEST, &image);
    assert_eq!(tags_page(&reg, "a/b/c", "").0, ["v1"]);

    // Invalid names: 400 NAME_INVALID on every endpoint.
    let too_long = "a".repeat(256);
    let too_long_multi = format!("{}/{}", "b".repeat(127), "c".repeat(128));
    for name in [
        "Upper",
        "a/B",
        "a/../b",
        "..",
        "/a",
        "a//b",
        "a/",
        "-a",
        "a-",
        "a_",
        ".a",
        "a___b",
        "a.-b",
        "a..b",
        too_long.as_str(),
        too_long_multi.as_str(),
    ] {
        for (method, path) in [
            ("GET", format!("/v2/{name}/tags/list")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("GET", format!("/v2/{name}/blobs/{d}")),
            ("DELETE", format!("/v2/{name}/blobs/{d}")),
            ("GET", format!("/v2/{name}/manifests/v1")),
            ("DELETE", format!("/v2/{name}/manifests/v1")),
            ("GET", format!("/v2/{name}/referrers/{d}")),
        ] {
            let r = reg.request(method, &path).send();
            assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
            r.expect(400, Some("NAME_INVALID"));
        }
        let r = reg.request("HEAD", &format!("/v2/{name}/blobs/{d}")).send();
        assert_eq!(r.status, 400, "HEAD blob in {name:?}");
        put_manifest(&reg, name, "v1", OCI_MANIFEST, &image).expect(400, Some("NAME_INVALID"));
        reg.request("POST", &format!("/v2/{name}/blobs/uploads/?digest={d}"))
            .body(blob.clone())
            .send()
            .expect(400, Some("NAME_INVALID"));
    }

    // Components named like the routes' keywords: the path is read from its end.
    for name in [
        "x/blobs/y",
        "x/manifests/y",
        "blobs/uploads",
        "a/tags/list",
        "manifests",
        "blobs",
        "uploads",
        "tags",
        "referrers",
    ] {
        let mut up = start_upload(&reg, name);
        up.patch(&reg, &blob, None).expect(202, None);
        up.finish(&reg, &d, None);
        assert_blob(&reg, name, &blob);
        let img = oci_image(&reg, name, 2);
        let md = push_manifest(&reg, name, "v1", OCI_MANIFEST, &img);
        assert_manifest(&reg, name, "v1", OCI_MANIFEST, &img);
        assert_manifest(&reg, name, &md, OCI_MANIFEST, &img);
        assert_eq!(tags_page(&reg, name, ""), (vec!["v1".into()], None));
        let r = reg
            .request("GET", &format!("/v2/{name}/referrers/{md}"))
            .send();
        r.expect(200, None);
        assert_eq!(r.json()["manifests"], json!([]));
        reg.request("DELETE", &format!("/v2/{name}/manifests/v1"))
            .send()
            .expect(202, None);
        reg.request("DELETE", &format!("/v2/{name}/blobs/{d}"))
            .send()
            .expect(202, None);
        assert_eq!(head_blob(&reg, name, &d), 404, "{name}");
        assert_eq!(head_blob(&reg, "a/b/c", &d), 200, "{name}");
    }
    let (catalog, _) = catalog_page(&reg, "");
    for name in ["x/blobs/y", "blobs/uploads", "a/tags/list", "manifests"] {
        assert!(
            catalog.contains(&name.to_owned()),
            "{name} not in {catalog:?}"
        );
    }

    // Path segments are percent-decoded.
    assert_eq!(
        tags_page(&reg, "a/b/c", "").0,
        tags_page_of(&reg, "/v2/%61/b/%63/tags/list")
    );
    let r = reg
        .request("GET", &format!("/v2/a/b/c/blobs/{}", d.replace(':', "%3A")))
        .send();
    r.expect(200, None);
    assert!(r.body == blob);
}

/// The tags of a raw tags-list path.
#[track_caller]
fn tags_page_of(reg: &Registry, path: &str) -> Vec<String> {
    let r = reg.request("GET", path).send();
    r.expect(200, None);
    r.json()["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag").to_owned())
        .collect()
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let reg = Registry::start();
    let d = push_blob(&reg, "x", b"blob");

    for path in [
        "/",
        "/v1/",
        "/v3/",
        "/v2/x",
        "/v2/x/",
        "/v2/x/foo",
        "/v2/x/foo/bar",
        "/v2/x/blobs",
        "/v2/x/tags",
        "/v2/x/tags/other",
        "/favicon.ico",
    ] {
        let r = reg.request("GET", path).send();
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        r.expect(404, Some("UNSUPPORTED"));
        assert_error_body(&r, path);
    }

    for (method, path, allowed) in [
        ("PATCH", "/v2/x/manifests/latest".to_owned(), "GET"),
        ("POST", "/v2/x/manifests/latest".to_owned(), "PUT"),
        ("POST", "/v2/x/tags/list".to_owned(), "GET"),
        ("DELETE", "/v2/x/tags/list".to_owned(), "GET"),
        ("PUT", format!("/v2/x/blobs/{d}"), "GET"),
        ("POST", format!("/v2/x/blobs/{d}"), "HEAD"),
        ("PUT", "/v2/x/blobs/uploads/".to_owned(), "POST"),
        ("POST", "/v2/_catalog".to_owned(), "GET"),
        ("DELETE", "/v2/".to_owned(), "GET"),
        ("POST", format!("/v2/x/referrers/{d}"), "GET"),
        (
            "POST",
            "/v2/x/blobs/uploads/3f2b6a0e-1c1d-4c1e-9a53-0f1c2d3e4f50".to_owned(),
            "PATCH",
        ),
    ] {
        let r = reg.request(method, &path).send();
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        r.expect(405, Some("UNSUPPORTED"));
        assert_error_body(&r, &path);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == method),
            "{method} {path}: Allow {allow:?} lists {method}"
        );
    }
}

// ---- robustness -----------------------------------------------------------------------

#[test]
fn malformed_input_never_yields_500() {
    let reg = Registry::start();
    let blob = pseudo_random(60, 100);
    let d = push_blob(&reg, "x", &blob);
    let up = start_upload(&reg, "x");
    let uuid = up.uuid.clone();

    let paths = [
        "/v2/%00/tags/list".to_owned(),
        "/v2/a%00b/tags/list".to_owned(),
        "/v2/%2F/tags/list".to_owned(),
        "/v2/a%2Fb/tags/list".to_owned(),
        "/v2/a%2F%2Fb/tags/list".to_owned(),
        "/v2/%2e%2e/tags/list".to_owned(),
        "/v2/%/tags/list".to_owned(),
        "/v2/%zz/tags/list".to_owned(),
        "/v2/%C3%28/tags/list".to_owned(),
        "/v2/%FF%FE/manifests/latest".to_owned(),
        "/v2/../../etc/passwd".to_owned(),
        "/v2/x/blobs/sha256:".to_owned(),
        "/v2/x/blobs/sha256:%00".to_owned(),
        "/v2/x/blobs/sha512:abc".to_owned(),
        format!("/v2/x/blobs/{}", d.to_uppercase()),
        format!("/v2/x/blobs/{d}%00"),
        "/v2/x/manifests/".to_owned(),
        "/v2/x/manifests/sha256:".to_owned(),
        "/v2/x/manifests/%00".to_owned(),
        "/v2/x/manifests/%FF".to_owned(),
        "/v2/x/blobs/uploads/..%2F..".to_owned(),
        "/v2/x/blobs/uploads/%00".to_owned(),
        format!("/v2/x/blobs/uploads/{uuid}%00"),
        format!("/v2/x/blobs/uploads/{uuid}?digest=%FF"),
        format!("/v2/x/blobs/uploads/{uuid}?_state=%FF%00"),
        "/v2/x/blobs/uploads/?mount=%FF&from=%FF".to_owned(),
        "/v2/x/blobs/uploads/?digest=%00".to_owned(),
        format!("/v2/x/blobs/uploads/?mount={d}&from=%00"),
        format!("/v2/x/blobs/uploads/?mount={d}&from="),
        "/v2/_catalog?n=-1".to_owned(),
        "/v2/_catalog?n=0".to_owned(),
        "/v2/_catalog?n=99999999999999999999999".to_owned(),
        "/v2/_catalog?n=".to_owned(),
        "/v2/_catalog?last=%FF".to_owned(),
        "/v2/_catalog?n=1&n=2&last=&last=%00".to_owned(),
        "/v2/x/tags/list?n=%FF%FE".to_owned(),
        "/v2/x/tags/list?n=-5&last=%C3%28".to_owned(),
        "/v2/x/tags/list?n=18446744073709551616".to_owned(),
        format!("/v2/x/referrers/{d}?artifactType=%FF"),
        format!("/v2/x/referrers/{d}?artifactType="),
        "/v2/x/referrers/".to_owned(),
        "/v2/x/referrers/sha256:%zz".to_owned(),
        "/v2/_catalog/x".to_owned(),
        "/v2//".to_owned(),
        "/v2///blobs/uploads/".to_owned(),
        "//v2/".to_owned(),
        "/v2/?%".to_owned(),
        format!("/v2/{}/tags/list", "a/".repeat(2000)),
        format!("/v2/x/manifests/{}", "t".repeat(5000)),
    ];
    let mut statuses = Vec::new();
    for path in &paths {
        for method in [
            "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "FOO",
        ] {
            let r = reg.request(method, path).body(b"junk".to_vec()).send();
            let what = format!("{method} {path}");
            // Every answer is the API's: the version header, and errors in the spec's shape.
            assert_eq!(
                r.header("docker-distribution-api-version"),
                Some("registry/2.0"),
                "{what}"
            );
            if r.status >= 400 && method != "HEAD" {
                assert_error_body(&r, &what);
            }
            statuses.push((r.status, what));
        }
    }

    // Bad Range headers on a blob, bad Content-Range on an upload.
    for range in [
        "bytes=",
        "bytes=-",
        "bytes=-0",
        "bytes=5-2",
        "bytes=99999999999999999999-",
        "bytes=0-99999999999999999999",
        "bytes=-99999999999999999999",
        "bytes=18446744073709551615-18446744073709551615",
        "bytes=0-0,",
        "bytes=,",
        "bytes= 1 - 2 ",
        "bytes=\u{1}-2",
        "",
    ] {
        let r = reg
            .request("GET", &format!("/v2/x/blobs/{d}"))
            .header("Range", range)
            .send();
        statuses.push((r.status, format!("Range {range:?}")));
    }
    for content_range in [
        "-",
        "0-18446744073709551615",
        "18446744073709551615-18446744073709551616",
        "18446744073709551615-0",
        "bytes 0-3/4",
        "bytes */4",
        "0--3",
        "",
    ] {
        let up = start_upload(&reg, "x");
        let r = reg
            .request("PATCH", &up.location)
            .header("Content-Range", content_range)
            .body(b"junk".to_vec())
            .send();
        statuses.push((r.status, format!("Content-Range {content_range:?}")));
    }
    // Odd manifests: deep nesting, huge numbers, odd unicode.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        deep.into_bytes(),
        b"{\"schemaVersion\":1e400,\"mediaType\":\"x\"}".to_vec(),
        b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"\\ud800\",\"digest\":\"sha256:\",\"size\":18446744073709551616},\"layers\":[]}".to_vec(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let r = put_manifest(&reg, "x", "odd", OCI_MANIFEST, &body);
        statuses.push((r.status, "odd manifest".to_owned()));
    }

    // Requests that are not UTF-8 or not well-formed HTTP at all.
    let raw: Vec<Vec<u8>> = vec![
        b"GET /v2/x/tags/list?n=\xff\xfe HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /v2/\xc3\x28/tags/list HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /v2/_catalog?last=\xff HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
        [
            format!("GET /v2/x/blobs/{d} HTTP/1.1\r\nHost: h\r\nRange: bytes=").as_bytes(),
            b"\xff-\r\nConnection: close\r\n\r\n",
        ]
        .concat(),
        b"GET /v2/ HTTP/1.1\r\nHost: h\r\nX-Bad: \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET http://h/v2/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
        b"PATCH /v2/x/blobs/uploads/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nabcde".to_vec(),
        b"PATCH /v2/x/blobs/uploads/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(),
        b"PUT /v2/x/manifests/t HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}".to_vec(),
    ];
    for request in &raw {
        if let Some(status) = send_raw(&reg.addr, request) {
            statuses.push((
                status,
                format!("raw {:?}", String::from_utf8_lossy(request)),
            ));
        }
    }

    let failures: Vec<_> = statuses.iter().filter(|(s, _)| *s >= 500).collect();
    assert!(failures.is_empty(), "5xx answers: {failures:#?}");
    // And the server is still fine.
    reg.request("GET", "/v2/").send().expect(200, None);
    assert_blob(&reg, "x", &blob);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let reg = Registry::start();
    let stream = TcpStream::connect(&reg.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let host = &reg.addr;

    // GET /v2/, then a monolithic upload with a body, then an error, one after the other.
    write!(
        writer,
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    let r = common::read_response(&mut reader, false);
    r.expect(200, None);
    assert_eq!(r.text(), "{}");

    let blob = pseudo_random(70, 10_000);
    let d = sha256(&blob);
    write!(
        writer,
        "POST /v2/keep/alive/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {host}\r\n\
         Connection: keep-alive\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    writer.write_all(&blob).unwrap();
    let r = common::read_response(&mut reader, false);
    r.expect(201, None);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    write!(
        writer,
        "GET /v2/keep/alive/blobs/{} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n",
        sha256(b"missing")
    )
    .unwrap();
    common::read_response(&mut reader, false).expect(404, Some("BLOB_UNKNOWN"));

    // Two pipelined requests in one write: a HEAD (no body) and a GET.
    write!(
        writer,
        "HEAD /v2/keep/alive/blobs/{d} HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET /v2/keep/alive/blobs/{d} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = common::read_response(&mut reader, true);
    r.expect(200, None);
    assert_eq!(r.header("content-length"), Some("10000"));
    let r = common::read_response(&mut reader, false);
    r.expect(200, None);
    assert!(r.body == blob);
}
