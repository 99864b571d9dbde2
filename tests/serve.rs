//! Black-box test of `registry serve`: the real binary on a loopback port, spoken to
//! over plain HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `registry serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(root: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
            .arg("serve")
            .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start registry");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The start-up line names the bound address: "... listening on http://ADDR/v2/ ...".
        let addr = loop {
            let line = lines
                .next()
                .expect("registry exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().expect("address").to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, addr }
    }

    fn request(&self, method: &str, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("receive");
        let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    /// Sends SIGTERM and returns whether the process exited successfully.
    fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = self.child.wait().expect("wait");
        status.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn base_endpoint_answers_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());

    let (status, head, body) = server.request("GET", "/v2/");
    assert_eq!(status, 200);
    assert_eq!(body, "{}");
    assert!(head.contains("docker-distribution-api-version: registry/2.0"));

    let (status, head, body) = server.request("GET", "/v2/nothing/here");
    assert_eq!(status, 404);
    assert!(head.contains("docker-distribution-api-version: registry/2.0"));
    assert!(
        body.contains(r#""errors":[{"code":"UNSUPPORTED""#),
        "{body}"
    );

    // The engine holds the data directory while the server runs.
    assert!(matches!(
        lain_engine::Engine::open(dir.path(), lain_engine::Options::default()),
        Err(lain_engine::Error::Locked { .. })
    ));
    assert!(
        server.terminate(),
        "registry did not exit cleanly on SIGTERM"
    );
    // And releases it on shutdown.
    lain_engine::Engine::open(dir.path(), lain_engine::Options::default())
        .expect("data directory free after shutdown");
}
