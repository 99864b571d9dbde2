//! A real etcd (Debian's etcd-server) on free loopback ports with its data in a
//! temporary directory, for the tests that follow it; killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tokens::base64_std;
use super::{free_port, request_to};

/// A real etcd on loopback, killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client: u16,
    peer: u16,
    v2: bool,
}

impl Etcd {
    /// On free ports. Ports are found free a moment before etcd binds them, so a
    /// parallel test may take one first: etcd then exits, and it is started again on
    /// others.
    pub fn start(v2: bool) -> Etcd {
        (0..5)
            .find_map(|_| Etcd::try_start(free_port(), v2))
            .expect("etcd did not start on five sets of free ports")
    }

    /// With its client port `client` (its peer port free).
    pub fn start_on(client: u16, v2: bool) -> Etcd {
        (0..5)
            .find_map(|_| Etcd::try_start(client, v2))
            .unwrap_or_else(|| panic!("etcd did not start on port {client}"))
    }

    fn try_start(client: u16, v2: bool) -> Option<Etcd> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client,
            peer: free_port(),
            v2,
        };
        etcd.launch().then_some(etcd)
    }

    /// The member name, unique to this etcd (its peer port).
    fn name(&self) -> String {
        format!("lain-test-{}", self.peer)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Restarts the process on the same ports and data.
    pub fn run(&mut self) {
        assert!(self.launch(), "etcd did not start again on {}", self.addr());
    }

    /// Starts the process; whether it answers (false if it exited, e.g. on a port
    /// taken meanwhile).
    fn launch(&mut self) -> bool {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut command = Command::new("etcd");
        command
            .args(["--name", &self.name(), "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("{}={peer}", self.name())])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.v2 {
            command.arg("--enable-v2");
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run etcd ({e}); scripts/test installs it (apt-get install etcd-server)")
        });
        let addr = self.addr();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            // Healthy, and this very etcd (not another test's on a port taken
            // meanwhile): the member list names it.
            if std::net::TcpStream::connect(&addr).is_ok()
                && request_to(&addr, "GET", "/health")
                    .send()
                    .text()
                    .contains("true")
                && request_to(&addr, "POST", "/v3/cluster/member/list")
                    .body("{}")
                    .send()
                    .text()
                    .contains(&format!("\"{}\"", self.name()))
            {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets `key` through the API the registry follows.
    pub fn put(&self, key: &str, value: &str) {
        let addr = self.addr();
        let response = if self.v2 {
            request_to(&addr, "PUT", &format!("/v2/keys{key}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("value={}", form_encode(value)))
                .send()
        } else {
            request_to(&addr, "POST", "/v3/kv/put")
                .body(
                    serde_json::json!({"key": base64_std(key.as_bytes()), "value": base64_std(value.as_bytes())})
                        .to_string(),
                )
                .send()
        };
        assert!(
            matches!(response.status, 200 | 201),
            "put {key}: {}",
            response.text()
        );
    }

    pub fn delete(&self, key: &str) {
        let addr = self.addr();
        let response = if self.v2 {
            request_to(&addr, "DELETE", &format!("/v2/keys{key}")).send()
        } else {
            request_to(&addr, "POST", "/v3/kv/deleterange")
                .body(serde_json::json!({"key": base64_std(key.as_bytes())}).to_string())
                .send()
        };
        assert!(
            matches!(response.status, 200 | 404),
            "delete {key}: {}",
            response.text()
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `condition` until it holds, failing the test after `within`.
pub fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
