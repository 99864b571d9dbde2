//! `loadgen many-uploads`: many clients push at once, as a cluster does when deploys
//! start together. Each client opens an upload session, sends its blob in chunks (a
//! PATCH each, a pause between them, as a client on a slow link or one sending several
//! layers in turn), then the PUT. All sessions are open at the same time. Each server
//! runs on its own fresh data directory; the table says how many pushes each accepted,
//! how many it refused, its peak anonymous memory and the aggregate rate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lain_engine::Algorithm;

use crate::client::{Conn, Request};
use crate::data::pseudo_random;
use crate::servers::{Kind, Programs, Server, memory_kib};

/// The shape of the load.
pub struct Load {
    pub clients: usize,
    pub chunks: usize,
    pub chunk_bytes: usize,
    pub pause: Duration,
}

/// What one server did under the load.
struct Outcome {
    kind: Kind,
    ok: u64,
    refused: u64,
    failed: u64,
    first_failure: Option<String>,
    seconds: f64,
    bytes: u64,
    peak_anon_kib: u64,
    /// RssAnon before the load, and 5 s after it.
    idle_anon_kib: (u64, u64),
    cpu: f64,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// Client `i`'s blob is the shared buffer with its last 16 bytes made its own.
const SUFFIX: usize = 16;

fn suffix(i: usize) -> [u8; SUFFIX] {
    let mut s = [0u8; SUFFIX];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s[8..].copy_from_slice(&0x6c61_696e_5f75_706cu64.to_le_bytes());
    s
}

pub fn run(
    load: &Load,
    kinds: &[Kind],
    programs: &Programs,
    scratch: &Path,
) -> Result<String, String> {
    let size = load.chunks * load.chunk_bytes;
    if size <= SUFFIX {
        return Err("the blob must be longer than 16 bytes".into());
    }
    let shared = Arc::new(pseudo_random(0x6d61_6e79, size));
    // The digests, before any clock: the shared prefix hashed once, each suffix after.
    let mut prefix = Algorithm::Sha256.hasher();
    prefix.update(&shared[..size - SUFFIX]);
    let digests: Arc<Vec<String>> = Arc::new(
        (0..load.clients)
            .map(|i| {
                let mut h = prefix.clone();
                h.update(&suffix(i));
                h.finish().to_string()
            })
            .collect(),
    );
    let mut outcomes = Vec::new();
    for &kind in kinds {
        let server = Server::start(kind, programs, scratch)?;
        let counts = Arc::new(Counts::default());
        let failure = Arc::new(std::sync::Mutex::new(None::<String>));
        let barrier = Arc::new(Barrier::new(load.clients + 1));
        let cpu_before = server.cpu_seconds();
        let anon = || memory_kib(server.pid()).map_or(0, |(anon, _)| anon);
        let idle_before = anon();
        let threads: Vec<_> = (0..load.clients)
            .map(|i| {
                let (shared, digests) = (Arc::clone(&shared), Arc::clone(&digests));
                let (counts, failure, barrier) = (
                    Arc::clone(&counts),
                    Arc::clone(&failure),
                    Arc::clone(&barrier),
                );
                let (addr, chunk, chunks, pause) =
                    (server.addr, load.chunk_bytes, load.chunks, load.pause);
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || {
                        barrier.wait();
                        match push(addr, i, &shared, &digests[i], chunk, chunks, pause) {
                            Ok(()) => counts.ok.fetch_add(1, Ordering::Relaxed),
                            Err(Refusal::TooMany) => counts.refused.fetch_add(1, Ordering::Relaxed),
                            Err(Refusal::Failed(why)) => {
                                if let Ok(mut first) = failure.lock() {
                                    first.get_or_insert(why);
                                }
                                counts.failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    })
                    .map_err(|e| format!("client thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        barrier.wait();
        let started = Instant::now();
        for thread in threads {
            let _ = thread.join();
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = server.cpu_seconds() - cpu_before;
        // Whether memory goes back once the spike is over.
        std::thread::sleep(Duration::from_secs(5));
        let idle_after = anon();
        let ok = counts.ok.load(Ordering::Relaxed);
        outcomes.push(Outcome {
            kind,
            ok,
            refused: counts.refused.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            first_failure: failure.lock().ok().and_then(|f| f.clone()),
            seconds,
            bytes: ok * size as u64,
            peak_anon_kib: server.peaks.rss_anon.load(Ordering::Relaxed),
            idle_anon_kib: (idle_before, idle_after),
            cpu,
        });
        server.stop();
    }
    Ok(render(load, programs, &outcomes))
}

enum Refusal {
    TooMany,
    Failed(String),
}

fn push(
    addr: SocketAddr,
    i: usize,
    shared: &[u8],
    digest: &str,
    chunk: usize,
    chunks: usize,
    pause: Duration,
) -> Result<(), Refusal> {
    let failed = |what: &str, e: &dyn std::fmt::Display| Refusal::Failed(format!("{what}: {e}"));
    let mut conn = Conn::new(addr);
    let repo = format!("many/app{}", i % 50);
    let start_path = format!("/v2/{repo}/blobs/uploads/");
    let started = conn
        .send(&Request {
            method: "POST",
            path: &start_path,
            headers: &[],
            body: &[],
            keep_body: true,
        })
        .map_err(|e| failed("POST", &e))?;
    if started.status == 429 {
        return Err(Refusal::TooMany);
    }
    let started = started
        .expect(202, "POST")
        .map_err(|e| failed("POST", &e))?;
    let mut location = started
        .header("location")
        .ok_or_else(|| failed("POST", &"no Location"))?
        .to_owned();
    let own = suffix(i);
    for c in 0..chunks {
        if c > 0 {
            std::thread::sleep(pause);
        }
        let (from, to) = (c * chunk, (c + 1) * chunk);
        let last = c + 1 == chunks;
        let head = if last {
            &shared[from..to - SUFFIX]
        } else {
            &shared[from..to]
        };
        let parts: Vec<&[u8]> = if last { vec![head, &own] } else { vec![head] };
        let range = format!("{from}-{}", to - 1);
        let path = path_of(&location);
        let r = conn
            .send(&Request {
                method: "PATCH",
                path: &path,
                headers: &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                ],
                body: &parts,
                keep_body: true,
            })
            .map_err(|e| failed("PATCH", &e))?;
        if r.status == 429 {
            return Err(Refusal::TooMany);
        }
        let r = r.expect(202, "PATCH").map_err(|e| failed("PATCH", &e))?;
        if let Some(next) = r.header("location") {
            location = next.to_owned();
        }
    }
    let path = path_of(&location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = format!("{path}{sep}digest={digest}");
    conn.send(&Request {
        method: "PUT",
        path: &put,
        headers: &[],
        body: &[],
        keep_body: true,
    })
    .and_then(|r| r.expect(201, "PUT"))
    .map_err(|e| failed("PUT", &e))?;
    Ok(())
}

/// The path of a `Location` that may be absolute.
fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

fn render(load: &Load, programs: &Programs, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{} clients at once, each: POST, {} PATCHes of {} KiB {} ms apart, PUT\n\n\
         | server | pushed | refused (429) | failed | seconds | MiB/s | server CPU s | RssAnon MiB: before, peak, 5 s after |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        load.clients,
        load.chunks,
        load.chunk_bytes >> 10,
        load.pause.as_millis()
    );
    for o in outcomes {
        let label = match o.kind {
            Kind::Reference => programs.reference_label(),
            kind => kind.label(),
        };
        out.push_str(&format!(
            "| {label} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.0}, {:.0}, {:.0} |\n",
            o.ok,
            o.refused,
            o.failed,
            o.seconds,
            o.bytes as f64 / o.seconds / (1 << 20) as f64,
            o.cpu,
            o.idle_anon_kib.0 as f64 / 1024.0,
            o.peak_anon_kib as f64 / 1024.0,
            o.idle_anon_kib.1 as f64 / 1024.0,
        ));
    }
    for o in outcomes.iter().filter(|o| o.first_failure.is_some()) {
        if let Some(why) = &o.first_failure {
            out.push_str(&format!("\n{:?}: first failure: {why}\n", o.kind));
        }
    }
    out
}
