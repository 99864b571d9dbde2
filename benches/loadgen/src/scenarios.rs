//! The scenarios, in the order they run against one fresh server. Later ones read what
//! earlier ones stored (pulls read the pushed blobs, mounts the small blobs, tag
//! listing the tags the manifest scenario made).
//!
//! Every request's status is checked: a scenario that gets an unexpected answer fails
//! the whole run rather than report a rate for errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::client::{ClientError, Conn, Request, Result as ClientResult};
use crate::data::{LargeSet, SmallSet, pseudo_random, sha256_digest};

/// How much each scenario moves.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub large_count: usize,
    pub large_size: usize,
    pub chunk: usize,
    pub chunked_count: usize,
    pub small_count: usize,
    pub small_size: usize,
    pub small_concurrency: usize,
    pub range_reads: usize,
    pub range_size: usize,
    pub range_concurrency: usize,
    pub manifests: usize,
    pub manifest_gets: usize,
    pub tag_page: usize,
    pub tag_walks: usize,
    pub skopeo_layers: usize,
    pub skopeo_layer_size: usize,
}

impl Sizes {
    /// The figures in benches/RESULTS.md.
    pub fn full() -> Sizes {
        Sizes {
            large_count: 4,
            large_size: 256 << 20,
            chunk: 8 << 20,
            chunked_count: 2,
            small_count: 2000,
            small_size: 4096,
            small_concurrency: 32,
            range_reads: 2000,
            range_size: 1 << 20,
            range_concurrency: 4,
            manifests: 1000,
            manifest_gets: 5000,
            tag_page: 100,
            tag_walks: 200,
            skopeo_layers: 8,
            skopeo_layer_size: 8 << 20,
        }
    }

    /// The small-object scenarios only (the scale comparison): large blobs shrunk to
    /// almost nothing, the rest as in `full`.
    pub fn small_objects(&self) -> Sizes {
        Sizes {
            large_count: 0,
            large_size: 1 << 16,
            chunked_count: 0,
            skopeo_layers: 1,
            skopeo_layer_size: 1 << 10,
            ..self.clone()
        }
    }

    /// A few seconds in all: for checking that the benchmark itself works.
    pub fn quick() -> Sizes {
        Sizes {
            large_count: 2,
            large_size: 8 << 20,
            chunk: 1 << 20,
            chunked_count: 1,
            small_count: 100,
            small_size: 4096,
            small_concurrency: 8,
            range_reads: 50,
            range_size: 64 << 10,
            range_concurrency: 2,
            manifests: 30,
            manifest_gets: 60,
            tag_page: 7,
            tag_walks: 5,
            skopeo_layers: 2,
            skopeo_layer_size: 1 << 20,
        }
    }
}

/// What a scenario's figure counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// MiB per second: higher is better.
    MibPerSec,
    /// Operations per second: higher is better.
    OpsPerSec,
    /// Seconds for the whole scenario: lower is better.
    Seconds,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::MibPerSec => "MiB/s",
            Unit::OpsPerSec => "ops/s",
            Unit::Seconds => "s",
        }
    }
}

/// The data every run pushes: made once, the same for every server.
pub struct Fixture {
    pub sizes: Sizes,
    pub large_c1: LargeSet,
    pub large_c4: LargeSet,
    pub chunked: LargeSet,
    pub small: SmallSet,
    /// The config and layer every benchmark manifest refers to.
    pub manifest_blobs: SmallSet,
    /// An OCI layout holding a multi-layer image, for skopeo.
    pub layout: PathBuf,
    /// The first component of every repository the scenarios use: rounds against one
    /// long-lived store use fresh repositories, as rounds against fresh stores do.
    pub namespace: String,
}

impl Fixture {
    /// The data for `sizes`; `seed` varies the small blobs and manifests, so rounds
    /// against one long-lived store push new content rather than duplicates.
    pub fn new(sizes: Sizes, scratch: &Path, seed: u64) -> std::result::Result<Fixture, String> {
        let base = pseudo_random(1, sizes.large_size);
        let layout = scratch.join("layout");
        write_layout(&layout, &sizes).map_err(|e| format!("writing the OCI layout: {e}"))?;
        Ok(Fixture {
            large_c1: LargeSet::new(&base, 1, sizes.large_count),
            large_c4: LargeSet::new(&base, 2, sizes.large_count),
            chunked: LargeSet::new(&base, 3, sizes.chunked_count),
            small: SmallSet::new(4 + 1000 * seed, sizes.small_count, sizes.small_size),
            manifest_blobs: SmallSet::new(5 + 1000 * seed, 2, 1024),
            layout,
            sizes,
            namespace: if seed == 0 {
                "bench".into()
            } else {
                format!("bench{seed}")
            },
        })
    }
}

impl Fixture {
    /// Repository `name` in this fixture's namespace.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }
}

/// One scenario's result: how much it did, in how long.
pub struct Measure {
    pub amount: f64,
    pub seconds: f64,
}

impl Measure {
    /// The same run counted in MiB moved instead of operations.
    fn in_mib(self, bytes: u64) -> Measure {
        Measure {
            amount: bytes as f64 / (1 << 20) as f64,
            ..self
        }
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub unit: Unit,
    /// Whether the sink can stand in for a registry here (it cannot for skopeo).
    pub on_sink: bool,
    /// Small blobs, manifests, tags, mounts: the rates the scale comparison repeats
    /// on a store holding a million blobs.
    pub small_object: bool,
    pub run: fn(&Target, &Fixture) -> std::result::Result<Measure, String>,
}

/// The server a scenario drives.
pub struct Target {
    pub addr: SocketAddr,
    /// Whether responses carry real bytes to check (the sink sends zeroes).
    pub verify: bool,
    pub scratch: PathBuf,
}

pub fn all() -> Vec<Scenario> {
    use Unit::{MibPerSec, OpsPerSec, Seconds};
    let large = |name, unit, run| Scenario {
        name,
        unit,
        on_sink: true,
        small_object: false,
        run,
    };
    let small = |name, run| Scenario {
        small_object: true,
        ..large(name, OpsPerSec, run)
    };
    let client = |name, run| Scenario {
        on_sink: false,
        ..large(name, Seconds, run)
    };
    vec![
        large(
            "push large blobs, monolithic, 1 stream",
            MibPerSec,
            push_large_c1,
        ),
        large(
            "push large blobs, monolithic, 4 streams",
            MibPerSec,
            push_large_c4,
        ),
        large(
            "push large blobs, chunked (PATCH per chunk)",
            MibPerSec,
            push_chunked,
        ),
        small("push small blobs (POST + PUT)", push_small),
        large("pull large blobs, 1 stream", MibPerSec, pull_large_c1),
        large("pull large blobs, 4 streams", MibPerSec, pull_large_c4),
        large("range reads at random offsets", OpsPerSec, range_reads),
        small("pull small blobs", pull_small),
        small("manifest PUT by tag", manifest_put),
        small("manifest GET by tag", manifest_get),
        small("tag list, paginated walk", tag_walk),
        small("cross-repository mount", mount),
        client("skopeo copy to the registry", skopeo_push),
        client("skopeo copy from the registry", skopeo_pull),
    ]
}

/// A scenario's description with its sizes, for the report.
pub fn describe(name: &str, sizes: &Sizes) -> String {
    let mib = |b: usize| b >> 20;
    match name {
        n if n.starts_with("push large blobs, monolithic") => {
            format!("{} × {} MiB", sizes.large_count, mib(sizes.large_size))
        }
        n if n.starts_with("push large blobs, chunked") => format!(
            "{} × {} MiB in {} MiB PATCHes",
            sizes.chunked_count,
            mib(sizes.large_size),
            mib(sizes.chunk)
        ),
        n if n.starts_with("pull large") => {
            format!("{} × {} MiB", sizes.large_count, mib(sizes.large_size))
        }
        "push small blobs (POST + PUT)" | "pull small blobs" => format!(
            "{} × {} KiB, {} connections",
            sizes.small_count,
            sizes.small_size >> 10,
            sizes.small_concurrency
        ),
        "range reads at random offsets" => format!(
            "{} × {} KiB, {} connections",
            sizes.range_reads,
            sizes.range_size >> 10,
            sizes.range_concurrency
        ),
        "manifest PUT by tag" => format!(
            "{} manifests, {} connections",
            sizes.manifests, sizes.small_concurrency
        ),
        "manifest GET by tag" => format!(
            "{} GETs, {} connections",
            sizes.manifest_gets, sizes.small_concurrency
        ),
        "tag list, paginated walk" => format!(
            "walks of {} tags, n={}; ops = walks",
            sizes.manifests, sizes.tag_page
        ),
        "cross-repository mount" => format!(
            "{} blobs, {} connections",
            sizes.small_count, sizes.small_concurrency
        ),
        n if n.starts_with("skopeo") => format!(
            "{} layers × {} MiB + config",
            sizes.skopeo_layers,
            mib(sizes.skopeo_layer_size)
        ),
        _ => String::new(),
    }
}

/// Runs `op(conn, i)` for every `i < items` on `concurrency` connections; measures
/// one operation per item.
fn parallel<F>(target: &Target, concurrency: usize, items: usize, op: F) -> Result<Measure, String>
where
    F: Fn(&mut Conn, usize) -> ClientResult<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(items).max(1) {
            scope.spawn(|| {
                let mut conn = Conn::new(target.addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items {
                        return;
                    }
                    if let Err(e) = op(&mut conn, i) {
                        let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert_with(|| format!("item {i}: {e}"));
                        next.store(items, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(Measure {
            amount: items as f64,
            seconds,
        }),
    }
}

pub(crate) fn request<'a>(method: &'a str, path: &'a str, body: &'a [&'a [u8]]) -> Request<'a> {
    Request {
        method,
        path,
        headers: &[],
        body,
        keep_body: false,
    }
}

/// The path (and query) of a Location header, which may be an absolute URL.
pub(crate) fn location(resp: &crate::client::Response) -> ClientResult<String> {
    let loc = resp
        .header("location")
        .ok_or_else(|| ClientError::Protocol("no Location".into()))?;
    Ok(match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest.find('/')
                .map_or("/".to_owned(), |p| rest[p..].to_owned())
        }
        None => loc.to_owned(),
    })
}

fn with_param(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}

/// POST a session, then PUT the whole blob with its digest.
pub(crate) fn push_monolithic(
    conn: &mut Conn,
    repo: &str,
    body: &[&[u8]],
    digest: &str,
) -> ClientResult<()> {
    let start = format!("/v2/{repo}/blobs/uploads/");
    let resp = conn
        .send(&request("POST", &start, &[]))?
        .expect(202, "POST upload")?;
    let put = with_param(&location(&resp)?, "digest", digest);
    let req = Request {
        headers: &[("Content-Type", "application/octet-stream")],
        ..request("PUT", &put, body)
    };
    conn.send(&req)?.expect(201, "PUT blob")?;
    Ok(())
}

fn push_set(
    target: &Target,
    set: &LargeSet,
    concurrency: usize,
    repo: &str,
) -> Result<Measure, String> {
    parallel(target, concurrency, set.len(), |conn, i| {
        push_monolithic(conn, repo, &set.parts(i), &set.digests[i])
    })
    .map(|m| m.in_mib(set.len() as u64 * set.size()))
}

fn push_large_c1(target: &Target, f: &Fixture) -> Result<Measure, String> {
    push_set(target, &f.large_c1, 1, &f.repo("large"))
}

fn push_large_c4(target: &Target, f: &Fixture) -> Result<Measure, String> {
    push_set(target, &f.large_c4, 4, &f.repo("large"))
}

fn push_chunked(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let set = &f.chunked;
    let chunk = f.sizes.chunk;
    let size = set.size() as usize;
    parallel(target, 1, set.len(), |conn, i| {
        let resp = conn
            .send(&request(
                "POST",
                &format!("/v2/{}/blobs/uploads/", f.repo("chunked")),
                &[],
            ))?
            .expect(202, "POST upload")?;
        let mut next = location(&resp)?;
        let mut offset = 0;
        while offset < size {
            let end = (offset + chunk).min(size);
            let range = format!("{}-{}", offset, end - 1);
            let parts = set.slice(i, offset, end);
            let req = Request {
                headers: &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                ],
                ..request("PATCH", &next, &parts)
            };
            let resp = conn.send(&req)?.expect(202, "PATCH chunk")?;
            next = location(&resp)?;
            offset = end;
        }
        let put = with_param(&next, "digest", &set.digests[i]);
        conn.send(&request("PUT", &put, &[]))?
            .expect(201, "PUT to finish")?;
        Ok(())
    })
    .map(|m| m.in_mib((set.len() * size) as u64))
}

fn push_small(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let set = &f.small;
    parallel(
        target,
        f.sizes.small_concurrency,
        set.blobs.len(),
        |conn, i| push_monolithic(conn, &f.repo("small"), &[&set.blobs[i]], &set.digests[i]),
    )
}

fn pull_set(
    target: &Target,
    set: &LargeSet,
    repo: &str,
    concurrency: usize,
) -> Result<Measure, String> {
    parallel(target, concurrency, set.len(), |conn, i| {
        let path = format!("/v2/{repo}/blobs/{}", set.digests[i]);
        let resp = conn
            .send(&request("GET", &path, &[]))?
            .expect(200, "GET blob")?;
        if resp.body_len != set.size() {
            return Err(ClientError::Protocol(format!(
                "blob of {} bytes, expected {}",
                resp.body_len,
                set.size()
            )));
        }
        Ok(())
    })
    .map(|m| m.in_mib(set.len() as u64 * set.size()))
}

fn pull_large_c1(target: &Target, f: &Fixture) -> Result<Measure, String> {
    pull_set(target, &f.large_c1, &f.repo("large"), 1)
}

fn pull_large_c4(target: &Target, f: &Fixture) -> Result<Measure, String> {
    pull_set(target, &f.large_c4, &f.repo("large"), 4)
}

fn range_reads(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let set = &f.large_c1;
    let len = f.sizes.range_size as u64;
    let span = set.size() - len;
    parallel(
        target,
        f.sizes.range_concurrency,
        f.sizes.range_reads,
        |conn, i| {
            // A reproducible pseudo-random offset for read i.
            let blob = i % set.len();
            let offset = (pseudo_u64(i as u64) % span) as usize;
            let range = format!("bytes={}-{}", offset, offset as u64 + len - 1);
            let path = format!("/v2/{}/blobs/{}", f.repo("large"), set.digests[blob]);
            // Every read's length is checked, the bytes of one read in 64 (checking
            // all would make the client, not the server, the limit).
            let verify = target.verify && i % 64 == 0;
            let req = Request {
                headers: &[("Range", &range)],
                keep_body: verify,
                ..request("GET", &path, &[])
            };
            let resp = conn.send(&req)?.expect(206, "GET range")?;
            if resp.body_len != len {
                return Err(ClientError::Protocol(format!(
                    "range {range}: {} bytes",
                    resp.body_len
                )));
            }
            if verify && resp.body != set.slice(blob, offset, offset + len as usize).concat() {
                return Err(ClientError::Protocol(format!(
                    "range {range} has other bytes"
                )));
            }
            Ok(())
        },
    )
}

fn pseudo_u64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pull_small(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let set = &f.small;
    parallel(
        target,
        f.sizes.small_concurrency,
        set.blobs.len(),
        |conn, i| {
            let path = format!("/v2/{}/blobs/{}", f.repo("small"), set.digests[i]);
            let resp = conn
                .send(&request("GET", &path, &[]))?
                .expect(200, "GET blob")?;
            if resp.body_len != set.blobs[i].len() as u64 {
                return Err(ClientError::Protocol("small blob of the wrong size".into()));
            }
            Ok(())
        },
    )
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest_body(f: &Fixture, i: usize) -> Vec<u8> {
    let b = &f.manifest_blobs;
    let desc = |media: &str, k: usize| serde_json::json!({ "mediaType": media, "digest": b.digests[k], "size": b.blobs[k].len() });
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", 0),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", 1)],
        "annotations": { "bench.n": i.to_string() },
    })
    .to_string()
    .into_bytes()
}

fn tag(i: usize) -> String {
    format!("t{i:06}")
}

fn manifest_put(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let b = &f.manifest_blobs;
    let mut conn = Conn::new(target.addr);
    for k in 0..2 {
        push_monolithic(&mut conn, &f.repo("app"), &[&b.blobs[k]], &b.digests[k])
            .map_err(|e| format!("config and layer: {e}"))?;
    }
    let bodies: Vec<Vec<u8>> = (0..f.sizes.manifests)
        .map(|i| manifest_body(f, i))
        .collect();
    parallel(
        target,
        f.sizes.small_concurrency,
        bodies.len(),
        |conn, i| {
            let path = format!("/v2/{}/manifests/{}", f.repo("app"), tag(i));
            let body: [&[u8]; 1] = [&bodies[i]];
            let req = Request {
                headers: &[("Content-Type", OCI_MANIFEST)],
                ..request("PUT", &path, &body)
            };
            conn.send(&req)?.expect(201, "PUT manifest")?;
            Ok(())
        },
    )
}

fn manifest_get(target: &Target, f: &Fixture) -> Result<Measure, String> {
    parallel(
        target,
        f.sizes.small_concurrency,
        f.sizes.manifest_gets,
        |conn, i| {
            let n = i % f.sizes.manifests;
            let path = format!("/v2/{}/manifests/{}", f.repo("app"), tag(n));
            // The bytes of one GET in 64 are checked (all would make the client the
            // limit).
            let verify = target.verify && i % 64 == 0;
            let req = Request {
                headers: &[("Accept", OCI_MANIFEST)],
                keep_body: verify,
                ..request("GET", &path, &[])
            };
            let resp = conn.send(&req)?.expect(200, "GET manifest")?;
            if verify && resp.body != manifest_body(f, n) {
                return Err(ClientError::Protocol("manifest bytes differ".into()));
            }
            Ok(())
        },
    )
}

/// Follows `Link` from page to page until the last; checks that every tag came back.
fn tag_walk(target: &Target, f: &Fixture) -> Result<Measure, String> {
    parallel(target, 4, f.sizes.tag_walks, |conn, _| {
        let mut next = Some(format!(
            "/v2/{}/tags/list?n={}",
            f.repo("app"),
            f.sizes.tag_page
        ));
        let mut seen = 0;
        while let Some(path) = next.take() {
            let req = Request {
                keep_body: true,
                ..request("GET", &path, &[])
            };
            let resp = conn.send(&req)?.expect(200, "GET tags/list")?;
            let doc: serde_json::Value = serde_json::from_slice(&resp.body)
                .map_err(|e| ClientError::Protocol(format!("tags/list JSON: {e}")))?;
            seen += doc["tags"].as_array().map_or(0, Vec::len);
            next = resp.header("link").and_then(|link| {
                let url = &link[link.find('<')? + 1..link.find('>')?];
                Some(match url.find("://") {
                    Some(i) => url[i + 3..][url[i + 3..].find('/')?..].to_owned(),
                    None => url.to_owned(),
                })
            });
        }
        if seen != f.sizes.manifests {
            return Err(ClientError::Protocol(format!(
                "tag walk saw {seen} tags, expected {}",
                f.sizes.manifests
            )));
        }
        Ok(())
    })
}

fn mount(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let set = &f.small;
    parallel(
        target,
        f.sizes.small_concurrency,
        set.blobs.len(),
        |conn, i| {
            let path = format!(
                "/v2/{}/blobs/uploads/?mount={}&from={}",
                f.repo("mounted"),
                set.digests[i],
                f.repo("small")
            );
            conn.send(&request("POST", &path, &[]))?
                .expect(201, "POST mount")?;
            Ok(())
        },
    )
}

/// An OCI layout with one image: `layers` random layers and a config.
fn write_layout(dir: &Path, sizes: &Sizes) -> std::io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let put = |bytes: &[u8], media: &str| -> std::io::Result<serde_json::Value> {
        let digest = sha256_digest(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes)?;
        Ok(serde_json::json!({ "mediaType": media, "digest": digest, "size": bytes.len() }))
    };
    let mut layers = Vec::new();
    for i in 0..sizes.skopeo_layers {
        let bytes = pseudo_random(100 + i as u64, sizes.skopeo_layer_size);
        layers.push(put(&bytes, "application/vnd.oci.image.layer.v1.tar")?);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>() },
    });
    let config = put(
        config.to_string().as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    )?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    let mut desc = put(manifest.to_string().as_bytes(), OCI_MANIFEST)?;
    desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "latest" });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [desc] });
    std::fs::write(dir.join("index.json"), index.to_string())
}

/// Runs skopeo with its state kept under `root` and only 127.0.0.1 in reach.
fn skopeo(root: &Path, args: &[String]) -> Result<f64, String> {
    for sub in ["home", "tmp", "registries.d"] {
        std::fs::create_dir_all(root.join(sub)).map_err(|e| e.to_string())?;
    }
    let conf = root.join("registries.conf");
    std::fs::write(
        &conf,
        "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
    )
    .map_err(|e| e.to_string())?;
    let r = |sub: &str| root.join(sub).display().to_string();
    let start = Instant::now();
    let output = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "--registries.d",
            &r("registries.d"),
            "--tmpdir",
            &r("tmp"),
        ])
        .args(args)
        .env("HOME", r("home"))
        .env("TMPDIR", r("tmp"))
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running skopeo (apt-get install skopeo): {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "skopeo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(seconds)
}

fn skopeo_push(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let seconds = skopeo(
        &target.scratch.join("skopeo-push"),
        &[
            "copy".into(),
            "--preserve-digests".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:latest", f.layout.display()),
            format!("docker://{}/{}:latest", target.addr, f.repo("skopeo")),
        ],
    )?;
    Ok(Measure {
        amount: 1.0,
        seconds,
    })
}

fn skopeo_pull(target: &Target, f: &Fixture) -> Result<Measure, String> {
    let out = target.scratch.join("skopeo-pulled");
    let _ = std::fs::remove_dir_all(&out);
    let seconds = skopeo(
        &target.scratch.join("skopeo-pull"),
        &[
            "copy".into(),
            "--preserve-digests".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{}/{}:latest", target.addr, f.repo("skopeo")),
            format!("oci:{}:latest", out.display()),
        ],
    )?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(Measure {
        amount: 1.0,
        seconds,
    })
}
