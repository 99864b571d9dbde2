//! What clients send that they should not: header values that are not ASCII, path
//! tricks in names and references, pagination at the limits of u64, and pushes that
//! are refused. Each gets a 4xx with the spec's JSON error body and the API version
//! header, never a 500, and a refused push leaves nothing behind.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;

use common::{Registry, Response};

/// Asserts a 4xx carrying the spec's error body and the API version header.
#[track_caller]
fn assert_client_error(r: &Response, what: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: status {} ({})",
        r.status,
        r.text()
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{what}"
    );
    if r.status != 405 || !r.body.is_empty() {
        let body = r.json();
        let code = body["errors"][0]["code"].as_str();
        assert!(
            code.is_some_and(|c| !c.is_empty()),
            "{what}: no error code in {}",
            r.text()
        );
    }
}

/// Sends `head` (request line and headers, raw bytes) and an empty body.
fn raw(reg: &Registry, head: &[u8]) -> Response {
    let mut stream = TcpStream::connect(&reg.addr).expect("connect");
    stream.write_all(head).expect("send");
    common::read_response(&mut BufReader::new(stream), false)
}

#[test]
fn header_values_that_are_not_ascii_are_a_400() {
    let reg = Registry::start();
    common::push_image(&reg, "hostile/app", "v1", 1);
    let digest = common::put_blob(&reg, "hostile/app", b"0123456789");
    let session = reg.request("POST", "/v2/hostile/app/blobs/uploads/").send();
    session.expect(202, None);
    let location = session.header("location").expect("location").to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Range on a blob GET",
            format!(
                "GET /v2/hostile/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-é\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "Content-Range on a PATCH",
            format!(
                "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Range: 0-é\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "Content-Type on a manifest PUT",
            b"PUT /v2/hostile/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
        ),
        (
            "Accept on a manifest GET",
            b"GET /v2/hostile/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAccept: \xfe\xff\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ];
    for (what, head) in cases {
        let r = raw(&reg, &head);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_client_error(&r, what);
    }
    // The session is untouched by the refused PATCH.
    let status = reg.request("GET", &location).send();
    status.expect(204, None);
    assert_eq!(status.header("range"), Some("0-0"));
}

/// Requests hyper refuses before the API sees them still get the spec's body and the
/// API version header, with the status that says what was wrong.
#[test]
fn requests_that_cannot_be_parsed_get_the_spec_error_body() {
    let reg = Registry::start();
    let many_headers: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "a method with a bad character",
            b"G(T /v2/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Content-Lengths",
            b"PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (
            "a Content-Length that is not a number",
            b"PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a header line without a colon",
            b"GET /v2/ HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a header of 40 KiB",
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000))
                .into_bytes(),
            431,
        ),
        (
            "200 headers",
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
        (
            "a URI of 70 KB",
            format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            431,
        ),
    ];
    for (what, bytes, status) in cases {
        let response = raw(&reg, &bytes);
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert_client_error(&response, what);
    }
    // A bad request after a good one on the same connection: the first answer is the
    // API's, untouched, the second the spec's error.
    let mut stream = TcpStream::connect(&reg.addr).expect("connect");
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let first = common::read_response(&mut reader, false);
    assert_eq!((first.status, first.text().as_str()), (200, "{}"));
    stream.write_all(b"GARBAGE\r\n\r\n").expect("send");
    let second = common::read_response(&mut reader, false);
    assert_eq!(second.status, 400);
    assert_client_error(&second, "a bad request after a good one");
}

#[test]
fn path_tricks_in_names_and_references_are_refused() {
    let reg = Registry::start();
    common::push_image(&reg, "hostile/app", "v1", 1);
    for path in [
        "/v2/../etc/passwd/manifests/latest",
        "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
        "/v2/hostile/%2e%2e/app/manifests/v1",
        "/v2/hostile%2Fapp/manifests/v1",
        "/v2/hostile/app/manifests/..%2Fv1",
        "/v2/hostile/app%00/tags/list",
        "/v2/hostile/app/manifests/v1%00",
        "/v2/%c0%ae%c0%ae/app/manifests/v1",
        "/v2/hostile/%ff%fe/tags/list",
        "/v2//etc/passwd/manifests/v1",
        "/v2/hostile/app/blobs/sha256:..%2F..%2Fetc",
        "/v2/hostile/app/blobs/sha256:00000000000000000000000000000000000000000000000000000000000000zz",
        "/v2/hostile/app/manifests/sha256:%2e%2e",
        "/v2/HOSTILE/app/tags/list",
    ] {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let r = reg
                .request(method, path)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body("{}")
                .send();
            assert!(
                r.status < 500,
                "{method} {path}: {} ({})",
                r.status,
                r.text()
            );
            assert!(r.status >= 400, "{method} {path}: {}", r.status);
            if method != "HEAD" {
                assert_client_error(&r, &format!("{method} {path}"));
            }
        }
    }
    // The real image is still there, and nothing else appeared.
    reg.request("GET", "/v2/hostile/app/manifests/v1")
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect(200, None);
    let catalog = reg.request("GET", "/v2/_catalog").send().json();
    assert_eq!(catalog["repositories"], serde_json::json!(["hostile/app"]));
}

#[test]
fn pagination_values_at_the_limits_of_u64() {
    let reg = Registry::start();
    common::push_image(&reg, "hostile/app", "v1", 1);
    for query in [
        "n=18446744073709551615",
        "n=18446744073709551616",
        "n=99999999999999999999999999999",
        "n=-1",
        "n=0",
        "n=1e3",
        "n=",
        "last=%ff%ff",
        &format!("last={}", "z".repeat(5000)),
        "n=1&last=v1&n=2",
    ] {
        for path in ["/v2/_catalog", "/v2/hostile/app/tags/list"] {
            let r = reg.request("GET", &format!("{path}?{query}")).send();
            assert!(
                r.status == 200 || (400..500).contains(&r.status),
                "{path}?{query}: {} ({})",
                r.status,
                r.text()
            );
            if r.status != 200 {
                assert_client_error(&r, &format!("{path}?{query}"));
            }
        }
    }
}

/// A manifest that fails validation creates no repository, links nothing and adds
/// nothing to the catalog.
#[test]
fn a_refused_push_leaves_no_trace() {
    let reg = Registry::start();
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let refused = [
        "not json".to_owned(),
        r#"{"schemaVersion":2}"#.to_owned(),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{unknown}","size":2}},"layers":[]}}"#
        ),
        "[".repeat(100_000),
    ];
    for body in &refused {
        let r = reg
            .request("PUT", "/v2/ghost/repo/manifests/v1")
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send();
        assert_eq!(r.status, 400, "{}", r.text());
        assert_client_error(&r, "refused manifest");
    }
    let catalog = reg.request("GET", "/v2/_catalog").send();
    catalog.expect(200, None);
    assert_eq!(catalog.json()["repositories"], serde_json::json!([]));
    let tags = reg.request("GET", "/v2/ghost/repo/tags/list").send();
    tags.expect(404, Some("NAME_UNKNOWN"));
}

/// `http.connections.perclient`: idle connections past a client's share do not lock
/// the server up; the next one is answered 429 with `Retry-After` and the spec's body,
/// and once one closes the client is served again.
#[test]
fn a_client_past_its_share_of_connections_is_told_to_retry() {
    let reg = Registry::launch(common::Launch {
        env: vec![("REGISTRY_HTTP_CONNECTIONS_PERCLIENT", "4".into())],
        ..common::Launch::default()
    });
    // Four idle connections: the whole share.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&reg.addr).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = reg.request("GET", "/v2/").send();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_client_error(&r, "past the share");
    drop(idle);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = reg.request("GET", "/v2/").send();
        if r.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", r.status);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `http.connections.max`: past the total, a new connection waits (it is not
/// accepted) until one closes, then is served.
#[test]
fn past_the_total_a_connection_waits_for_a_place() {
    let reg = Registry::launch(common::Launch {
        env: vec![("REGISTRY_HTTP_CONNECTIONS_MAX", "3".into())],
        ..common::Launch::default()
    });
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&reg.addr).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let addr = reg.addr.clone();
    let waiting = std::thread::spawn(move || common::request_to(&addr, "GET", "/v2/").send());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!waiting.is_finished(), "served past the total");
    drop(idle);
    let r = waiting.join().expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `storage.engine.uploadsessionsperclient`: a client that opens sessions without end
/// is held to its share, and another client (here from 127.0.0.2, through curl) still
/// starts uploads.
#[test]
fn one_client_opening_sessions_without_end_leaves_the_rest_to_others() {
    let reg = Registry::launch(common::Launch {
        env: vec![(
            "REGISTRY_STORAGE_ENGINE_UPLOADSESSIONSPERCLIENT",
            "3".into(),
        )],
        ..common::Launch::default()
    });
    for _ in 0..3 {
        reg.request("POST", "/v2/flood/app/blobs/uploads/")
            .send()
            .expect(202, None);
    }
    let refused = reg.request("POST", "/v2/flood/app/blobs/uploads/").send();
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert_client_error(&refused, "past the client's share");
    let other = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
            "-X",
            "POST",
            &format!("http://{}/v2/other/app/blobs/uploads/", reg.addr),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&other.stdout), "202");
}

/// A subject's referrers with large annotations come in pages of about 1 MiB, linked
/// with `Link`; following the links lists each referrer exactly once.
#[test]
fn referrers_with_large_annotations_are_paged() {
    let reg = Registry::start();
    let name = "hostile/refs";
    common::push_image(&reg, name, "v1", 3);
    let subject = reg
        .request("GET", &format!("/v2/{name}/manifests/v1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send();
    subject.expect(200, None);
    let subject_digest = common::sha256(&subject.body);
    let empty = common::put_blob(&reg, name, b"{}");
    let mut pushed = std::collections::BTreeSet::new();
    for i in 0..5 {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject_digest, "size": subject.body.len()},
            "annotations": {"big": format!("{i}{}", "x".repeat(400 << 10))},
        })
        .to_string();
        let digest = common::sha256(manifest.as_bytes());
        reg.request("PUT", &format!("/v2/{name}/manifests/{digest}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()
            .expect(201, None);
        pushed.insert(digest);
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!(
        "/v2/{name}/referrers/{subject_digest}?artifactType=application%2Fvnd.example%2Bjson"
    ));
    while let Some(path) = next.take() {
        let r = reg.request("GET", &path).send();
        r.expect(200, None);
        assert!(r.body.len() < 2 << 20, "a page of {} bytes", r.body.len());
        for m in r.json()["manifests"].as_array().expect("manifests") {
            listed.push(m["digest"].as_str().expect("digest").to_owned());
        }
        next = r.header("link").map(|link| {
            link.trim_start_matches('<')
                .split_once('>')
                .expect("link")
                .0
                .to_owned()
        });
        pages += 1;
    }
    assert!(pages >= 2, "one page for 2 MiB of annotations");
    let unique: std::collections::BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a referrer listed twice: {listed:?}"
    );
    assert_eq!(unique, pushed);
}

/// Manifest bodies in flight share one budget of four of the largest: a dozen 3 MiB
/// manifests pushed at once all land (some wait their turn), each byte for byte.
#[test]
fn large_manifests_pushed_at_once_share_the_manifest_budget() {
    let reg = Registry::start();
    let name = "hostile/big";
    let config = common::put_blob(&reg, name, b"{}");
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let (addr, config) = (reg.addr.clone(), config.clone());
            std::thread::spawn(move || {
                let manifest = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
                    "layers": [],
                    "annotations": {"big": format!("{i}{}", "y".repeat(3 << 20))},
                })
                .to_string();
                let r = common::request_to(&addr, "PUT", &format!("/v2/{name}/manifests/t{i}"))
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(manifest.clone())
                    .send();
                (r.status, manifest)
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (status, manifest) = t.join().expect("push");
        assert_eq!(status, 201, "manifest {i}");
        let r = reg
            .request("GET", &format!("/v2/{name}/manifests/t{i}"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send();
        r.expect(200, None);
        assert!(r.body == manifest.as_bytes(), "manifest {i}: other bytes");
    }
}

/// A repository with more tags than a page holds: the list without `n` stops at 10,000
/// and names the rest with `Link`, so no response grows with what clients pushed.
#[test]
fn a_tag_list_without_n_is_paged_too() {
    use lain_engine::{Engine, ManifestMeta, Options, Reference, References};
    // Built through the engine (10,001 tags over HTTP would take a while), in memory.
    let dir = lain_testkit::memory_tempdir();
    {
        let engine = Engine::open(dir.path(), Options::default()).expect("open");
        let meta = ManifestMeta {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            subject: None,
            artifact_type: None,
            annotations: vec![],
        };
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let record = engine
            .put_manifest(
                "many/tags",
                bytes::Bytes::from_static(index),
                &Reference::Tag("t00000".into()),
                meta,
                &References::default(),
            )
            .expect("manifest");
        for i in 1..=10_000 {
            engine
                .tag("many/tags", &format!("t{i:05}"), &record.digest)
                .expect("tag");
        }
    }
    let reg = Registry::start_in(dir.path());
    let first = reg.request("GET", "/v2/many/tags/tags/list").send();
    first.expect(200, None);
    let tags = first.json()["tags"].as_array().expect("tags").len();
    assert_eq!(tags, 10_000);
    let link = first.header("link").expect("Link").to_owned();
    assert!(link.contains("last=t09999"), "{link}");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("target")
        .to_owned();
    let rest = reg.request("GET", &next).send();
    rest.expect(200, None);
    assert_eq!(rest.json()["tags"], serde_json::json!(["t10000"]));
    assert!(rest.header("link").is_none());
}

/// A body must keep a pace (Apache's default rule: 20 s of grace, then 500 bytes a
/// second on average, counting only the time spent waiting for the client): one that
/// trickles a byte every 250 ms is cut with 408 past the grace, while one sending 1 KiB
/// a second for longer than the grace goes through. Without the rule the trickle would
/// hold its connection and session for hours, never idle for the 120 s idle limit.
#[test]
fn a_body_that_trickles_is_cut_and_one_that_keeps_pace_is_not() {
    use std::io::BufReader;
    use std::time::{Duration, Instant};
    let reg = Registry::start();
    let session = |repo: &str| {
        let r = reg
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"))
            .send();
        r.expect(202, None);
        r.header("location").expect("location").to_owned()
    };
    /// Sends `total` bytes on `stream`, `piece` at a time, `every` apart, until done or
    /// the server stops reading.
    fn trickle(mut stream: TcpStream, total: usize, piece: usize, every: Duration) {
        let mut sent = 0;
        while sent < total {
            let n = piece.min(total - sent);
            if stream.write_all(&vec![b'x'; n]).is_err() {
                return;
            }
            sent += n;
            std::thread::sleep(every);
        }
    }

    let slow = session("pace/slow");
    let fast = session("pace/steady");
    const TRICKLED: usize = 100_000;
    const STEADY: usize = 25 * 1024;
    let head = |len: usize| vec![format!("Content-Length: {len}")];
    let started = Instant::now();
    let slow_stream = reg.send_head("PATCH", &slow, &head(TRICKLED));
    let fast_stream = reg.send_head("PATCH", &fast, &head(STEADY));
    let writers = [
        (slow_stream.try_clone().expect("clone"), TRICKLED, 1),
        (fast_stream.try_clone().expect("clone"), STEADY, 1024),
    ]
    .map(|(stream, total, piece)| {
        let every = if piece == 1 {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        std::thread::spawn(move || trickle(stream, total, piece, every))
    });

    let cut = common::read_response(&mut BufReader::new(slow_stream), false);
    let after = started.elapsed();
    assert_eq!(cut.status, 408, "{}", cut.text());
    assert_client_error(&cut, "a trickled body");
    assert_eq!(cut.error_code(), "BLOB_UPLOAD_INVALID");
    assert!(
        cut.text().contains("slower than 500 bytes a second"),
        "{}",
        cut.text()
    );
    assert!(after < Duration::from_secs(60), "cut after {after:?}");

    let steady = common::read_response(&mut BufReader::new(fast_stream), false);
    steady.expect(202, None);
    assert_eq!(steady.header("range"), Some(&*format!("0-{}", STEADY - 1)));
    assert!(
        started.elapsed() > Duration::from_secs(20),
        "the steady body beat the grace"
    );
    for writer in writers {
        writer.join().expect("writer");
    }
    let digest = common::sha256(&vec![b'x'; STEADY]);
    reg.request(
        "PUT",
        &common::with_query(&fast, &format!("digest={digest}")),
    )
    .send()
    .expect(201, None);
}
