//! The servers under test: started as processes on a free loopback port with a fresh
//! data directory, watched from /proc while they run, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Conn, Request};

/// Which server a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This registry (`registry serve`).
    Ours,
    /// Debian's docker-registry (distribution 2.8).
    Reference,
    /// `loadgen sink`: answers every request without storing anything, to show the
    /// client's own ceiling.
    Sink,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "lain",
            Kind::Reference => "distribution 2.8",
            Kind::Sink => "sink (client ceiling)",
        }
    }
}

/// Where the programs are.
pub struct Programs {
    pub ours: PathBuf,
    pub reference: PathBuf,
    /// The reference is an earlier build of this registry (`--baseline`): it gets this
    /// registry's configuration, and the report names it so.
    pub reference_is_baseline: bool,
    pub loadgen: PathBuf,
}

impl Programs {
    /// The reference's name in the report.
    pub fn reference_label(&self) -> &'static str {
        if self.reference_is_baseline {
            "baseline"
        } else {
            Kind::Reference.label()
        }
    }
}

/// Peak memory seen by the sampler, in KiB.
#[derive(Default)]
pub struct Peaks {
    pub rss_anon: AtomicU64,
    pub rss_file: AtomicU64,
}

/// A running server.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    pub peaks: Arc<Peaks>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
    /// From spawning the process to the first 200 from `/v2/`.
    pub ready_after: Duration,
    /// Whether stopping leaves the data directory in place.
    pub keep_data: bool,
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

const REFERENCE_CONFIG: &str = "version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ROOT
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: ADDR
";

const OUR_CONFIG: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: ROOT
  delete:
    enabled: true
http:
  addr: ADDR
";

impl Server {
    /// Starts `kind` with a new data directory under `scratch` and waits until `/v2/`
    /// answers.
    pub fn start(kind: Kind, programs: &Programs, scratch: &Path) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let dir = scratch.join(format!("{kind:?}-{port}").to_lowercase());
        Server::start_in(kind, programs, &dir, port)
    }

    /// Starts `kind` on `dir` (its data in `dir/data`, created or reused) on `port`.
    pub fn start_in(
        kind: Kind,
        programs: &Programs,
        dir: &Path,
        port: u16,
    ) -> Result<Server, String> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = dir.to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("config.yml");
        let root = dir.join("data");
        let template = match kind {
            Kind::Reference if !programs.reference_is_baseline => REFERENCE_CONFIG,
            _ => OUR_CONFIG,
        };
        let text = template
            .replace("ROOT", &root.display().to_string())
            .replace("ADDR", &addr.to_string());
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.join("server.log"))
            .map_err(|e| format!("server log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("server log: {e}"))?;
        let mut command = match kind {
            Kind::Ours => {
                let mut c = Command::new(&programs.ours);
                c.arg("serve").arg(&config);
                c
            }
            Kind::Reference => {
                let mut c = Command::new(&programs.reference);
                c.arg("serve").arg(&config);
                c
            }
            Kind::Sink => {
                let mut c = Command::new(&programs.loadgen);
                c.arg("sink").arg(addr.to_string());
                c
            }
        };
        let spawned = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("starting {kind:?}: {e}"))?;
        let mut server = Server {
            kind,
            addr,
            dir,
            child,
            peaks: Arc::new(Peaks::default()),
            stop: Arc::new(AtomicBool::new(false)),
            sampler: None,
            ready_after: Duration::ZERO,
            keep_data: false,
        };
        server.wait_ready()?;
        server.ready_after = spawned.elapsed();
        server.start_sampler();
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{:?} exited at start ({status}); see {}",
                    self.kind,
                    self.dir.join("server.log").display()
                ));
            }
            if TcpStream::connect(self.addr).is_ok() {
                let mut conn = Conn::new(self.addr);
                let req = Request {
                    method: "GET",
                    path: "/v2/",
                    headers: &[],
                    body: &[],
                    keep_body: false,
                };
                if conn.send(&req).is_ok_and(|r| r.status == 200) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!("{:?} did not answer /v2/ within 30 s", self.kind))
    }

    fn start_sampler(&mut self) {
        let pid = self.child.id();
        let peaks = Arc::clone(&self.peaks);
        let stop = Arc::clone(&self.stop);
        self.sampler = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some((anon, file)) = memory_kib(pid) {
                    peaks.rss_anon.fetch_max(anon, Ordering::Relaxed);
                    peaks.rss_file.fetch_max(file, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id()).unwrap_or(0.0)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and removes its data unless
    /// `keep_data` is set.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        // SAFETY: kill(2) on our own child's pid; the child has not been reaped yet, so
        // the pid cannot belong to another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.sampler.is_some() {
            self.shutdown();
        }
    }
}

/// (RssAnon, RssFile) in KiB from /proc/PID/status.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    Some((
        field("RssAnon:")?,
        field("RssFile:")? + field("RssShmem:").unwrap_or(0),
    ))
}

/// utime + stime of PID in seconds, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// CPU seconds the calling thread has used.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
