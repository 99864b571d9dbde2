//! Black-box test of `registry serve`: the real binary on a loopback port, spoken to
//! over plain HTTP/1.1.

mod common;

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
