//! `loadgen soak`: this registry under mixed traffic for a bounded time, on loopback.
//! Each client owns a repository and loops over pushes (monolithic and chunked blobs
//! of 1 KiB to 1 MiB, then a manifest under one of five tags), pulls of what it pushed
//! (manifest by tag, every blob, sizes checked), deletes of its manifests and
//! listings, 20 ms apart; a collector runs `registry garbage-collect --grace 30s
//! --delete-untagged` through the server every 20 s. Every request is valid, so every
//! unexpected answer is an error. The report: requests and errors per kind, latency
//! percentiles, and the server's RSS and open file descriptors sampled over time, with
//! their means by third of the run (the first third is the warm-up).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lain_engine::Algorithm;

use crate::client::{Conn, Request};
use crate::data::pseudo_random;
use crate::servers::{Kind, Programs, Server, memory_kib};

/// How long and how many.
pub struct Soak {
    pub seconds: u64,
    pub clients: usize,
}

/// Latencies (µs) and errors of one kind of request.
#[derive(Default)]
struct Tally {
    micros: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Default)]
struct Tallies(Mutex<BTreeMap<&'static str, Tally>>);

impl Tallies {
    fn record<T>(&self, kind: &'static str, started: Instant, outcome: &Result<T, String>) {
        let micros = started.elapsed().as_micros() as u64;
        if let Ok(mut all) = self.0.lock() {
            let tally = all.entry(kind).or_default();
            tally.micros.push(micros);
            if let Err(e) = outcome {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
}

/// One sample of the server process.
struct Sample {
    at: Duration,
    anon_kib: u64,
    file_kib: u64,
    fds: usize,
    threads: usize,
}

fn sample(pid: u32, at: Duration) -> Option<Sample> {
    let (anon_kib, file_kib) = memory_kib(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count();
    Some(Sample {
        at,
        anon_kib,
        file_kib,
        fds,
        threads,
    })
}

/// What a client pushed and may pull: tag -> (manifest digest, blobs as (digest, size)).
type Pushed = BTreeMap<String, (String, Vec<(String, usize)>)>;

struct Client {
    conn: Conn,
    repo: String,
    n: u64,
    pushed: Pushed,
    pool: Arc<Vec<u8>>,
    tallies: Arc<Tallies>,
}

impl Client {
    fn send(&mut self, req: &Request, expected: u16) -> Result<crate::client::Response, String> {
        let response = self.conn.send(req).map_err(|e| e.to_string())?;
        if response.status != expected {
            return Err(format!(
                "{} {}: {} ({})",
                req.method,
                req.path,
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        Ok(response)
    }

    /// A blob of `size` bytes that no other push has: a window of the pool with the
    /// client's counter over its first bytes.
    fn blob(&mut self, size: usize) -> Vec<u8> {
        self.n += 1;
        let start = (self.n as usize * 7919) % (self.pool.len() - size);
        let mut bytes = self.pool[start..start + size].to_vec();
        let tag = format!("{}:{}:", self.repo, self.n).into_bytes();
        let len = tag.len().min(bytes.len());
        bytes[..len].copy_from_slice(&tag[..len]);
        bytes
    }

    fn push_blob(&mut self, bytes: &[u8], chunked: bool) -> Result<String, String> {
        let digest = Algorithm::Sha256.digest(bytes).to_string();
        if !chunked {
            let path = format!("/v2/{}/blobs/uploads/?digest={digest}", self.repo);
            self.send(
                &Request {
                    method: "POST",
                    path: &path,
                    headers: &[("Content-Type", "application/octet-stream")],
                    body: &[bytes],
                    keep_body: true,
                },
                201,
            )?;
            return Ok(digest);
        }
        let start = format!("/v2/{}/blobs/uploads/", self.repo);
        let opened = self.send(
            &Request {
                method: "POST",
                path: &start,
                headers: &[],
                body: &[],
                keep_body: true,
            },
            202,
        )?;
        let mut location = opened.header("location").ok_or("no Location")?.to_owned();
        let half = bytes.len() / 2;
        for (from, to) in [(0, half), (half, bytes.len())] {
            let range = format!("{from}-{}", to.max(from + 1) - 1);
            let patched = self.send(
                &Request {
                    method: "PATCH",
                    path: &location,
                    headers: &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", &range),
                    ],
                    body: &[&bytes[from..to]],
                    keep_body: true,
                },
                202,
            )?;
            location = patched.header("location").ok_or("no Location")?.to_owned();
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let finish = format!("{location}{sep}digest={digest}");
        self.send(
            &Request {
                method: "PUT",
                path: &finish,
                headers: &[],
                body: &[],
                keep_body: true,
            },
            201,
        )?;
        Ok(digest)
    }

    fn push(&mut self) -> Result<(), String> {
        let sizes = [1 << 10, 16 << 10, 256 << 10, 1 << 20];
        let layers = 1 + (self.n % 3) as usize;
        let mut blobs = Vec::new();
        let config = self.blob(300);
        let started = Instant::now();
        let config_digest = self.push_blob(&config, false);
        self.tallies.record("push blob", started, &config_digest);
        let config_digest = config_digest?;
        for i in 0..layers {
            let size = sizes[(self.n as usize + i) % sizes.len()];
            let bytes = self.blob(size);
            let started = Instant::now();
            let pushed = self.push_blob(&bytes, (self.n + i as u64).is_multiple_of(2));
            self.tallies.record("push blob", started, &pushed);
            blobs.push((pushed?, size));
        }
        let manifest = lain_testkit::image_manifest(
            (config_digest.as_str(), config.len()),
            blobs.iter().map(|(d, size)| (d.as_str(), *size)),
        );
        let tag = format!("t{}", self.n % 5);
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let started = Instant::now();
        let put = self.send(
            &Request {
                method: "PUT",
                path: &path,
                headers: &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                body: &[manifest.as_bytes()],
                keep_body: true,
            },
            201,
        );
        self.tallies.record("push manifest", started, &put);
        put?;
        let digest = Algorithm::Sha256.digest(manifest.as_bytes()).to_string();
        blobs.insert(0, (config_digest, config.len()));
        self.pushed.insert(tag, (digest, blobs));
        Ok(())
    }

    fn pull(&mut self) -> Result<(), String> {
        let Some((tag, (digest, blobs))) = self
            .pushed
            .iter()
            .nth(self.n as usize % self.pushed.len().max(1))
            .map(|(t, v)| (t.clone(), v.clone()))
        else {
            return Ok(());
        };
        self.n += 1;
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let started = Instant::now();
        let got = self.send(
            &Request {
                method: "GET",
                path: &path,
                headers: &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                body: &[],
                keep_body: true,
            },
            200,
        );
        let checked = got.and_then(|r| {
            let served = Algorithm::Sha256.digest(&r.body).to_string();
            (served == digest)
                .then_some(())
                .ok_or_else(|| format!("{path}: served {served}, pushed {digest}"))
        });
        self.tallies.record("pull manifest", started, &checked);
        checked?;
        for (blob, size) in blobs {
            let path = format!("/v2/{}/blobs/{blob}", self.repo);
            let started = Instant::now();
            let got = self.send(
                &Request {
                    method: "GET",
                    path: &path,
                    headers: &[],
                    body: &[],
                    keep_body: false,
                },
                200,
            );
            let checked = got.and_then(|r| {
                (r.body_len == size as u64)
                    .then_some(())
                    .ok_or_else(|| format!("{path}: {} bytes, pushed {size}", r.body_len))
            });
            self.tallies.record("pull blob", started, &checked);
            checked?;
        }
        Ok(())
    }

    fn delete(&mut self) -> Result<(), String> {
        let Some(tag) = self.pushed.keys().next().cloned() else {
            return Ok(());
        };
        let Some((digest, _)) = self.pushed.get(&tag).cloned() else {
            return Ok(());
        };
        let path = format!("/v2/{}/manifests/{digest}", self.repo);
        let started = Instant::now();
        let deleted = self.send(
            &Request {
                method: "DELETE",
                path: &path,
                headers: &[],
                body: &[],
                keep_body: true,
            },
            202,
        );
        self.tallies.record("delete manifest", started, &deleted);
        deleted?;
        self.pushed.retain(|_, (d, _)| *d != digest);
        Ok(())
    }

    fn list(&mut self) -> Result<(), String> {
        let path = format!("/v2/{}/tags/list", self.repo);
        let started = Instant::now();
        let listed = self.send(
            &Request {
                method: "GET",
                path: &path,
                headers: &[],
                body: &[],
                keep_body: true,
            },
            200,
        );
        self.tallies.record("list tags", started, &listed);
        listed.map(|_| ())
    }
}

/// A client's pause between operations.
const THINK: Duration = Duration::from_millis(20);

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)] as f64 / 1000.0
}

pub fn run(soak: &Soak, programs: &Programs, scratch: &Path) -> Result<String, String> {
    let server = Server::start(Kind::Ours, programs, scratch)?;
    let pid = server.pid();
    let addr: SocketAddr = server.addr;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(soak.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = Arc::new(Tallies::default());
    let pool = Arc::new(pseudo_random(0x736f_616b, 8 << 20));

    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.extend(sample(pid, started.elapsed()));
                std::thread::sleep(Duration::from_secs(2));
            }
            samples
        })
    };
    let collector = {
        let (stop, tallies) = (Arc::clone(&stop), Arc::clone(&tallies));
        let registry = programs.ours.clone();
        let config = server.dir.join("config.yml");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let began = Instant::now();
                let out = std::process::Command::new(&registry)
                    .args(["garbage-collect", "--grace", "30s", "--delete-untagged"])
                    .arg(&config)
                    .output();
                let outcome = match out {
                    Ok(out) if out.status.success() => Ok(()),
                    Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
                    Err(e) => Err(e.to_string()),
                };
                tallies.record("garbage-collect", began, &outcome);
            }
        })
    };
    let clients: Vec<_> = (0..soak.clients)
        .map(|i| {
            let (tallies, pool) = (Arc::clone(&tallies), Arc::clone(&pool));
            std::thread::spawn(move || {
                let mut client = Client {
                    conn: Conn::new(addr),
                    repo: format!("soak/client{i}"),
                    n: i as u64 * 1_000_003,
                    pushed: Pushed::new(),
                    pool,
                    tallies,
                };
                let mut step = 0u64;
                while Instant::now() < deadline {
                    step += 1;
                    // Errors are tallied where they happen; the loop goes on.
                    let _ = match step % 20 {
                        0..=7 => client.push(),
                        8..=16 => client.pull(),
                        17 | 18 => client.delete(),
                        _ => client.list(),
                    };
                    // Clients think between requests; the soak is about time, not rate.
                    std::thread::sleep(THINK);
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.join();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = collector.join();
    let samples = sampler.join().unwrap_or_default();
    let cpu = server.cpu_seconds();
    // After the load: one more collection, then the server idles (it trims its heap
    // every 5 s); where memory and descriptors settle.
    let began = Instant::now();
    let last = std::process::Command::new(&programs.ours)
        .args(["garbage-collect", "--grace", "0s", "--delete-untagged"])
        .arg(server.dir.join("config.yml"))
        .output();
    let last_collection = began.elapsed();
    let last_ok = last.is_ok_and(|out| out.status.success());
    std::thread::sleep(Duration::from_secs(12));
    let settled = sample(pid, started.elapsed());
    server.stop();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak: {} s, {} clients, this registry (collections with --delete-untagged every 20 s, grace 30 s)\n",
        soak.seconds, soak.clients
    );
    let _ = writeln!(
        out,
        "| request | count | errors | p50 ms | p90 ms | p99 ms | max ms |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    let (mut total, mut errors) = (0u64, 0u64);
    let mut firsts = Vec::new();
    if let Ok(mut all) = tallies.0.lock() {
        for (kind, tally) in all.iter_mut() {
            tally.micros.sort_unstable();
            total += tally.micros.len() as u64;
            errors += tally.errors;
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                tally.micros.len(),
                tally.errors,
                percentile(&tally.micros, 0.5),
                percentile(&tally.micros, 0.9),
                percentile(&tally.micros, 0.99),
                percentile(&tally.micros, 1.0),
            );
            if let Some(e) = &tally.first_error {
                firsts.push(format!("{kind}: {e}"));
            }
        }
    }
    let _ = writeln!(
        out,
        "\nerrors: {errors} of {total} requests ({:.4}%); server CPU {cpu:.0} s",
        errors as f64 * 100.0 / total.max(1) as f64
    );
    for first in firsts {
        let _ = writeln!(out, "first error of {first}");
    }
    let _ = writeln!(
        out,
        "\n| time s | RssAnon MiB | RssFile MiB | open fds | threads |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    let every = (samples.len() / 12).max(1);
    for s in samples.iter().step_by(every) {
        let _ = writeln!(
            out,
            "| {:.0} | {:.1} | {:.1} | {} | {} |",
            s.at.as_secs_f64(),
            s.anon_kib as f64 / 1024.0,
            s.file_kib as f64 / 1024.0,
            s.fds,
            s.threads
        );
    }
    if settled.is_none() {
        let _ = writeln!(
            out,
            "\nafter the load: the server process is gone (last collection {})",
            if last_ok { "ok" } else { "FAILED" }
        );
    }
    if let Some(s) = &settled {
        let _ = writeln!(
            out,
            "\nafter the load, a last collection ({}, {:.0} s) and 12 s idle: RssAnon {:.1} MiB, RssFile {:.1} MiB, {} open fds, {} threads",
            if last_ok { "ok" } else { "FAILED" },
            last_collection.as_secs_f64(),
            s.anon_kib as f64 / 1024.0,
            s.file_kib as f64 / 1024.0,
            s.fds,
            s.threads
        );
    }
    if samples.len() >= 6 {
        let third = samples.len() / 3;
        let mean = |part: &[Sample], f: fn(&Sample) -> f64| {
            part.iter().map(f).sum::<f64>() / part.len() as f64
        };
        let thirds = [
            &samples[..third],
            &samples[third..samples.len() - third],
            &samples[samples.len() - third..],
        ];
        let anon = |s: &Sample| s.anon_kib as f64 / 1024.0;
        let fds = |s: &Sample| s.fds as f64;
        let [a, b, c] = thirds.map(|part| mean(part, anon));
        let [x, y, z] = thirds.map(|part| mean(part, fds));
        // The first third includes the warm-up (caches filling from an empty server):
        // growth is the middle third against the last.
        let _ = writeln!(
            out,
            "
means by third of the run: RssAnon {a:.1}, {b:.1}, {c:.1} MiB; open fds {x:.0}, {y:.0}, {z:.0}"
        );
    }
    Ok(out)
}
