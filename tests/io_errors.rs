//! A device that cannot read some of a pack, seen through the server: the HTTP layer on
//! an engine whose storage seam injects read errors ([`SimulatedStorage::fail_reads_of`]).
//! The server runs in this process, on loopback, because the fault sits below the file
//! system: a real disk with bad sectors cannot be made here.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{pseudo_random, request_to, sha256};
use lain_engine::storage::SimulatedStorage;
use lain_engine::{Engine, Options};

/// The log, kept for the assertions.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_unreadable_blob_is_a_500_for_that_blob_alone() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(SimulatedStorage::new());
    let piece = 64 << 10;
    let engine = Engine::open(
        dir.path(),
        Options {
            storage: storage.clone(),
            read_piece_bytes: piece,
            ..Options::default()
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_live_sender, live) = tokio::sync::watch::channel(lain_http::Live::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(lain_http::serve(
        listener,
        std::sync::Arc::new(engine),
        lain_http::Settings::default(),
        live,
        None,
        async {
            let _ = stopped.await;
        },
    ));

    let push = |bytes: &[u8]| {
        let digest = sha256(bytes);
        request_to(
            &addr,
            "POST",
            &format!("/v2/lib/app/blobs/uploads/?digest={digest}"),
        )
        .body(bytes.to_vec())
        .send()
        .expect(201, None);
        digest
    };
    let healthy = pseudo_random(11, 200_000);
    let bad = pseudo_random(21, 200_000);
    let bad_later = pseudo_random(31, 6 * piece);
    let (healthy_digest, bad_digest, later_digest) = (push(&healthy), push(&bad), push(&bad_later));
    storage.fail_reads_of(&bad[1000..1010]);
    storage.fail_reads_of(&bad_later[4 * piece..4 * piece + 10]);

    // The blob whose first bytes cannot be read: a 500 in the spec's format, logged
    // with the pack and the offset.
    let get = |digest: &str| request_to(&addr, "GET", &format!("/v2/lib/app/blobs/{digest}"));
    get(&bad_digest).send().expect(500, Some("UNKNOWN"));
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("cannot be read at offset") && logged.contains("pack 1"),
        "{logged}"
    );
    // A range of it that avoids the bad bytes is served.
    let part = get(&bad_digest)
        .header("Range", "bytes=100000-100999")
        .send();
    part.expect(206, None);
    assert_eq!(part.body, bad[100_000..101_000]);

    // A blob that fails past its first piece: the answer has begun, so the connection is
    // cut short; the client never gets a whole body of wrong bytes.
    match get(&later_digest).try_send() {
        Ok(response) => panic!(
            "a {} with {} of {} bytes: {}",
            response.status,
            response.body.len(),
            bad_later.len(),
            String::from_utf8_lossy(&log.0.lock().unwrap())
        ),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
    }

    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("blob read failed during its response"),
        "{logged}"
    );

    // Everything else, and the server itself, carries on.
    let whole = get(&healthy_digest).send();
    whole.expect(200, None);
    assert_eq!(whole.body, healthy);
    let more = pseudo_random(41, 10_000);
    let more_digest = push(&more);
    assert_eq!(get(&more_digest).send().body, more);

    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
}
