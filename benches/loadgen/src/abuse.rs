//! `loadgen abuse`: hostile clients against a server while a well-behaved one keeps
//! pushing and pulling, phase by phase: slowloris heads (trickled a byte at a time),
//! slowloris bodies, idle keep-alive connections, oversized header sets, and upload
//! sessions opened by the ten thousand and abandoned. The hostile clients come from
//! other loopback addresses (127.0.0.2 and up) than the well-behaved one (127.0.0.1),
//! as they would from other hosts. For each phase: the well-behaved client's pushes
//! and pulls (done, failed, latency) and the server's peak RssAnon and open file
//! descriptors.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lain_engine::Algorithm;

use crate::client::{Conn, Request};
use crate::data::pseudo_random;
use crate::servers::{Kind, Programs, Server, memory_kib};

/// How long each phase lasts (at least).
const PHASE: Duration = Duration::from_secs(20);

/// The phase whose attack has a set size: it lasts until the attack is done.
const SIZED: &str = "abandoned sessions";

/// A TCP connection to `to` from the local address `from` (any 127.0.0.0/8 address is
/// this host's).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed
    // to TcpStream (or closed on error); the sockaddr structs are fully initialized.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let address = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let local = address(from, 0);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let SocketAddr::V4(to) = to else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        let remote = address(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// The n-th hostile source address: 127.0.0.2, 127.0.0.3, ... (100 of them).
fn hostile(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (n / 250 % 100) as u8, 2 + (n % 250) as u8)
}

/// What the well-behaved client saw during one phase.
#[derive(Default)]
struct Good {
    done: u64,
    failed: u64,
    micros: Vec<u64>,
    first_failure: Option<String>,
}

/// The well-behaved client: a 64 KiB blob pushed, then pulled and checked, over and
/// over until `stop`.
fn behave(addr: SocketAddr, stop: &AtomicBool, seed: u64) -> Good {
    let mut good = Good::default();
    let mut conn = Conn::new(addr);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut blob = pseudo_random(seed.wrapping_add(n), 64 << 10);
        blob[..8].copy_from_slice(&n.to_le_bytes());
        let digest = Algorithm::Sha256.digest(&blob).to_string();
        let started = Instant::now();
        let push = format!("/v2/good/app/blobs/uploads/?digest={digest}");
        let pull = format!("/v2/good/app/blobs/{digest}");
        let outcome = conn
            .send(&Request {
                method: "POST",
                path: &push,
                headers: &[],
                body: &[&blob],
                keep_body: true,
            })
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if r.status != 202 {
                    return r.expect(201, "push").map_err(|e| e.to_string());
                }
                // A server that takes no body with the POST (distribution) opened a
                // session: the bytes go with the closing PUT.
                let location = r.header("location").ok_or("no Location")?.to_owned();
                let sep = if location.contains('?') { '&' } else { '?' };
                let finish = format!("{location}{sep}digest={digest}");
                conn.send(&Request {
                    method: "PUT",
                    path: &finish,
                    headers: &[],
                    body: &[&blob],
                    keep_body: true,
                })
                .map_err(|e| e.to_string())?
                .expect(201, "PUT")
                .map_err(|e| e.to_string())
            })
            .and_then(|_| {
                conn.send(&Request {
                    method: "GET",
                    path: &pull,
                    headers: &[],
                    body: &[],
                    keep_body: true,
                })
                .map_err(|e| e.to_string())
            })
            .and_then(|r| {
                (r.status == 200 && r.body == blob)
                    .then_some(())
                    .ok_or_else(|| format!("pull: {}", r.status))
            });
        match outcome {
            Ok(()) => {
                good.done += 1;
                good.micros.push(started.elapsed().as_micros() as u64);
            }
            Err(e) => {
                good.failed += 1;
                good.first_failure.get_or_insert(e);
                conn = Conn::new(addr);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    good
}

/// One attack: runs until `stop`, returns a line saying what it did.
type Attack = fn(SocketAddr, &AtomicBool) -> String;

/// 1,000 connections sending a request head one byte every 500 ms.
fn slow_heads(addr: SocketAddr, stop: &AtomicBool) -> String {
    let head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    trickle(addr, stop, 1000, head, "slowloris heads")
}

/// 500 connections announcing a 10 MiB upload and sending it a byte every 500 ms.
fn slow_bodies(addr: SocketAddr, stop: &AtomicBool) -> String {
    let digest = format!("sha256:{}", "0".repeat(64));
    let head = format!(
        "POST /v2/abuse/body/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 10485760\r\n\r\n"
    );
    let mut bytes = head.into_bytes();
    bytes.extend(std::iter::repeat_n(b'x', 4096));
    trickle(addr, stop, 500, &bytes, "slowloris bodies")
}

/// `count` connections, each sending `bytes` one byte at a time, 500 ms apart; a
/// connection the server closes is opened again.
fn trickle(addr: SocketAddr, stop: &AtomicBool, count: usize, bytes: &[u8], what: &str) -> String {
    let mut conns: Vec<(Option<TcpStream>, usize)> = (0..count).map(|_| (None, 0)).collect();
    let (mut opened, mut closed_by_server) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        for (i, (conn, sent)) in conns.iter_mut().enumerate() {
            if conn.is_none() {
                if let Ok(stream) = connect_from(hostile(i), addr) {
                    let _ = stream.set_nonblocking(true);
                    *conn = Some(stream);
                    *sent = 0;
                    opened += 1;
                }
                continue;
            }
            let Some(stream) = conn.as_mut() else {
                continue;
            };
            let byte = [bytes[*sent % bytes.len()]];
            match stream.write(&byte) {
                Ok(_) => *sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    *conn = None;
                    closed_by_server += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    format!("{what}: {count} at a time, {opened} opened, {closed_by_server} closed by the server")
}

/// 2,000 connections that each make one request and then sit idle.
fn idle_keepalive(addr: SocketAddr, stop: &AtomicBool) -> String {
    let mut open = Vec::new();
    let mut answered = 0;
    for i in 0..2000 {
        if let Ok(mut stream) = connect_from(hostile(i), addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream
                .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .is_ok()
            {
                let mut buf = [0u8; 512];
                if stream.read(&mut buf).is_ok_and(|n| n > 0) {
                    answered += 1;
                }
            }
            open.push(stream);
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    format!(
        "idle keep-alive: {} connections open, {answered} answered, then idle",
        open.len()
    )
}

/// Four clients sending 200-header and 15 KiB-header requests back to back.
fn huge_headers(addr: SocketAddr, stop: &AtomicBool) -> String {
    let answers = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for t in 0..4 {
            let answers = Arc::clone(&answers);
            scope.spawn(move || {
                let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
                let big = format!("X-Big: {}\r\n", "b".repeat(15 << 10));
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let extra = if n.is_multiple_of(2) { &many } else { &big };
                    let Ok(mut stream) = connect_from(hostile(t * 7 + n % 7), addr) else {
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let request = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
                    let mut buf = [0u8; 64];
                    if stream.write_all(request.as_bytes()).is_ok()
                        && stream.read(&mut buf).is_ok_and(|n| n > 0)
                    {
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    format!(
        "huge header sets: {} requests answered",
        answers.load(Ordering::Relaxed)
    )
}

/// Upload sessions opened from 100 addresses as fast as the server answers, never
/// finished, until 100,000 were asked for (the phase lasts until then).
fn abandoned_sessions(addr: SocketAddr, _stop: &AtomicBool) -> String {
    let (opened, refused, failed) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for t in 0..4usize {
            let (opened, refused, failed) = (&opened, &refused, &failed);
            scope.spawn(move || {
                let mut conns: Vec<Option<TcpStream>> = (0..25).map(|_| None).collect();
                let mut n = 0usize;
                while n < 25_000 {
                    let slot = n % 25;
                    n += 1;
                    if conns[slot].is_none() {
                        conns[slot] = connect_from(hostile(t * 25 + slot), addr).ok();
                    }
                    let Some(stream) = conns[slot].as_mut() else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let request = format!(
                        "POST /v2/abuse/s{}/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                        t * 25 + slot
                    );
                    let mut buf = [0u8; 1024];
                    let status = stream
                        .write_all(request.as_bytes())
                        .and_then(|()| stream.read(&mut buf))
                        .ok()
                        .and_then(|len| std::str::from_utf8(&buf[..len]).ok().map(str::to_owned))
                        .and_then(|text| text.get(9..12).map(str::to_owned));
                    match status.as_deref() {
                        Some("202") => opened.fetch_add(1, Ordering::Relaxed),
                        Some("429") => refused.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            conns[slot] = None;
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    });
    format!(
        "abandoned sessions: {} opened, {} refused (429), {} failed",
        opened.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    )
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

pub fn run(kinds: &[Kind], programs: &Programs, scratch: &Path) -> Result<String, String> {
    let phases: [(&str, Option<Attack>); 6] = [
        ("none (baseline)", None),
        ("slowloris heads", Some(slow_heads)),
        ("slowloris bodies", Some(slow_bodies)),
        ("idle keep-alive", Some(idle_keepalive)),
        ("huge header sets", Some(huge_headers)),
        ("abandoned sessions", Some(abandoned_sessions)),
    ];
    let mut out = String::new();
    for &kind in kinds {
        let server = Server::start(kind, programs, scratch)?;
        let pid = server.pid();
        let _ = writeln!(
            out,
            "\n{}: each phase {} s\n",
            kind.label(),
            PHASE.as_secs()
        );
        let _ = writeln!(
            out,
            "| attack | good push+pull done | failed | p50 ms | p99 ms | peak RssAnon MiB | peak fds | RssAnon after MiB |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut notes = Vec::new();
        for (i, (name, attack)) in phases.iter().enumerate() {
            let stop = AtomicBool::new(false);
            let (peak_anon, peak_fds) = (AtomicU64::new(0), AtomicU64::new(0));
            let (mut good, said) = std::thread::scope(|scope| {
                let attacker = attack.map(|attack| {
                    let (stop, addr) = (&stop, server.addr);
                    scope.spawn(move || attack(addr, stop))
                });
                // The attack settles in before the well-behaved client starts.
                std::thread::sleep(Duration::from_secs(2));
                let sampler = scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some((anon, _)) = memory_kib(pid) {
                            peak_anon.fetch_max(anon, Ordering::Relaxed);
                        }
                        peak_fds.fetch_max(open_fds(pid) as u64, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
                let behaving = scope.spawn(|| behave(server.addr, &stop, i as u64 * 1_000_000));
                std::thread::sleep(PHASE);
                // An attack of a set size runs to its end.
                while attacker.as_ref().is_some_and(|a| !a.is_finished()) && *name == SIZED {
                    std::thread::sleep(Duration::from_millis(100));
                }
                stop.store(true, Ordering::Relaxed);
                let good = behaving.join().unwrap_or_default();
                let _ = sampler.join();
                let said = attacker.and_then(|a| a.join().ok());
                (good, said)
            });
            // The attack's connections are gone; the server settles.
            std::thread::sleep(Duration::from_secs(6));
            let after = memory_kib(pid).map_or(0, |(anon, _)| anon);
            good.micros.sort_unstable();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} |",
                good.done,
                good.failed,
                percentile(&good.micros, 0.5),
                percentile(&good.micros, 0.99),
                peak_anon.load(Ordering::Relaxed) as f64 / 1024.0,
                peak_fds.load(Ordering::Relaxed),
                after as f64 / 1024.0
            );
            notes.extend(said);
            if let Some(failure) = good.first_failure {
                notes.push(format!("{name}: first good-client failure: {failure}"));
            }
        }
        server.stop();
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    Ok(out)
}
