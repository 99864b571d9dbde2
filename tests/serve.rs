//! Black-box test of `registry serve`: the real binary on a loopback port, spoken to
//! over plain HTTP/1.1.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Registry;

#[test]
fn base_endpoint_answers_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Registry::start_in(dir.path());

    let response = server.request("GET", "/v2/").send();
    response.expect(200, None);
    assert_eq!(response.text(), "{}");

    server
        .request("GET", "/v2/nothing/here")
        .send()
        .expect(404, Some("UNSUPPORTED"));

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

/// SIGTERM while an upload's body is still arriving: the server stops accepting new
/// connections, the request in flight completes (and its blob is durable), then the
/// process exits cleanly.
#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Registry::start_in(dir.path());
    let body = vec![7u8; 3 << 20];
    let digest = common::sha256(&body);

    let mut stream = server.send_head(
        "POST",
        &format!("/v2/lain/app/blobs/uploads/?digest={digest}"),
        &[format!("Content-Length: {}", body.len())],
    );
    let (first, rest) = body.split_at(1 << 20);
    stream.write_all(first).expect("send first MiB");
    std::thread::sleep(Duration::from_millis(200));

    common::signal(server.pid(), "TERM");
    // The listener closes: new connections are refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&server.addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stream.write_all(rest).expect("send the rest after SIGTERM");
    let response = common::read_response(&mut BufReader::new(&stream), false);
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        response.header("docker-content-digest"),
        Some(digest.as_str())
    );
    drop(stream);

    assert!(server.wait(), "registry did not exit cleanly");
    let engine = lain_engine::Engine::open(dir.path(), lain_engine::Options::default())
        .expect("data directory free after shutdown");
    let stored = engine
        .repo_blob("lain/app", &digest.parse().expect("digest"))
        .expect("lookup");
    assert_eq!(stored.map(|b| b.size), Some(body.len() as u64));
}

/// `http.draintimeout` bounds the wait for requests in flight: a client that stalls
/// mid-body after SIGTERM does not keep the server up past it.
#[test]
fn draintimeout_bounds_the_wait_for_a_stalled_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Registry::launch(common::Launch {
        env: vec![("REGISTRY_HTTP_DRAINTIMEOUT", "1s".to_owned())],
        root: Some(dir.path().to_owned()),
        ..common::Launch::default()
    });
    let mut stream = server.send_head(
        "POST",
        "/v2/lain/app/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &["Content-Length: 1048576".to_owned()],
    );
    stream.write_all(&[1u8; 1024]).expect("send a KiB");
    std::thread::sleep(Duration::from_millis(200));
    let signalled = std::time::Instant::now();
    common::signal(server.pid(), "TERM");
    // The default drain timeout is 30 s; this one is 1 s. Never sending the rest,
    // the process must be gone well before 30 s.
    let exited = server.wait_for(Duration::from_secs(20));
    assert!(
        exited,
        "still running 20 s after SIGTERM with draintimeout 1s"
    );
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "did not wait at all"
    );
    drop(stream);
}

/// A 256 MiB blob pushed in one request never sits in the server's memory: its peak
/// resident set stays far below the blob's size.
#[test]
fn large_bodies_stream_through_without_buffering() {
    const SIZE: usize = 256 << 20;
    let server = Registry::start();
    // A deterministic pattern, hashed as it is generated, sent in 1 MiB writes.
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut hasher = lain_engine::Algorithm::Sha256.hasher();
    for _ in 0..SIZE / chunk.len() {
        hasher.update(&chunk);
    }
    let digest = hasher.finish().to_string();

    let mut stream = server.send_head(
        "POST",
        &format!("/v2/big/blobs/uploads/?digest={digest}"),
        &[format!("Content-Length: {SIZE}")],
    );
    for _ in 0..SIZE / chunk.len() {
        stream.write_all(&chunk).expect("send body");
    }
    let response = common::read_response(&mut BufReader::new(&stream), false);
    assert_eq!(response.status, 201, "{}", response.text());

    let peak_kib = peak_rss_kib(server.pid());
    eprintln!(
        "peak resident set after a 256 MiB push: {} MiB",
        peak_kib >> 10
    );
    assert!(
        peak_kib < 128 << 10,
        "peak resident set {peak_kib} KiB: the body was buffered"
    );

    // And the bytes are all there.
    let head = server
        .request("HEAD", &format!("/v2/big/blobs/{digest}"))
        .send();
    head.expect(200, None);
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A client trickling a body one byte per frame: each frame arrives as a slice of the
/// connection's read buffer, and keeping those slices would pin a buffer (kilobytes)
/// per byte. The server copies them, so 40,000 one-byte frames cost about 40 kB.
#[test]
fn trickled_bodies_do_not_pin_memory() {
    const FRAMES: usize = 40_000;
    let server = Registry::start();
    let body = vec![b'x'; FRAMES];
    let digest = common::sha256(&body);
    let mut stream = server.send_head(
        "POST",
        &format!("/v2/trickle/blobs/uploads/?digest={digest}"),
        &["Transfer-Encoding: chunked".to_owned()],
    );
    stream.set_nodelay(true).expect("nodelay");
    let before_kib = peak_rss_kib(server.pid());
    for _ in 0..FRAMES {
        stream.write_all(b"1\r\nx\r\n").expect("send a frame");
        // Apart enough that most frames arrive in reads of their own.
        std::thread::sleep(Duration::from_micros(20));
    }
    stream.write_all(b"0\r\n\r\n").expect("send the end");
    let response = common::read_response(&mut BufReader::new(&stream), false);
    assert_eq!(response.status, 201, "{}", response.text());

    let grown_kib = peak_rss_kib(server.pid()).saturating_sub(before_kib);
    eprintln!("peak resident set grew by {grown_kib} KiB for {FRAMES} one-byte frames");
    assert!(
        grown_kib < 16 << 10,
        "peak resident set grew by {grown_kib} KiB: body frames were kept"
    );
}

/// h2c (HTTP/2 without TLS, prior knowledge) with a real client: GET and HEAD, with and
/// without a body in the response (a HEAD answer must carry none on h2).
#[test]
fn h2c_serves_get_and_head() {
    let server = Registry::start();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "--max-time", "20"])
            .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
            .args(args)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("http://{}", server.addr);
    let missing = format!("{base}/v2/h2/blobs/sha256:{}", "0".repeat(64));
    assert_eq!(curl(&[&format!("{base}/v2/")]), "2 200");
    assert_eq!(curl(&["-I", &format!("{base}/v2/")]), "2 200");
    assert_eq!(curl(&[&missing]), "2 404");
    assert_eq!(curl(&["-I", &missing]), "2 404");
    assert_eq!(
        curl(&["-I", &format!("{base}/v2/h2/manifests/latest")]),
        "2 404"
    );
}

/// hyper's h2 layer reads request DATA ahead of the handlers up to the windows it
/// grants, outside the upload memory budget: connections opened while few are open get
/// wide windows (1 MiB), those opened past 32 open the protocol's default (64 KiB), so
/// a thousand h2c uploaders cannot make the server hold a MiB each. Read from the
/// SETTINGS a real client (nghttp) receives.
#[test]
fn h2_connections_opened_past_the_first_32_get_narrow_windows() {
    let server = Registry::start();
    let settings = || {
        let out = std::process::Command::new("nghttp")
            .args(["-nv", "-t", "20", &format!("http://{}/v2/", server.addr)])
            .output()
            .expect("run nghttp (Debian's nghttp2-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The server's SETTINGS: the first received, up to the next frame.
        let from = text.find("recv SETTINGS").expect("server SETTINGS");
        let rest = &text[from..];
        let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
        rest[..end].to_owned()
    };
    let window = "SETTINGS_INITIAL_WINDOW_SIZE(0x04)";
    let wide = settings();
    assert!(wide.contains(&format!("{window}:1048576")), "{wide}");
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    let narrow = settings();
    assert!(
        !narrow.contains("1048576")
            && (!narrow.contains(window) || narrow.contains(&format!("{window}:65535"))),
        "{narrow}"
    );
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = settings();
        if again.contains(&format!("{window}:1048576")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "windows still narrow after the connections closed: {again}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGINT (Ctrl-C in a terminal) stops the server as cleanly as SIGTERM.
#[test]
fn sigint_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Registry::start_in(dir.path());
    server.request("GET", "/v2/").send().expect(200, None);
    common::signal(server.pid(), "INT");
    assert!(server.wait(), "registry did not exit cleanly on SIGINT");
    lain_engine::Engine::open(dir.path(), lain_engine::Options::default())
        .expect("data directory free after shutdown");
}
