//! etcd as a configuration source, against a real etcd (Debian's `etcd-server`, started
//! here on free loopback ports with its data in a temporary directory): the LAIN auth
//! key and the override key are read at start and followed while serving, through the
//! v3 API and the v2 keys API.
//!
//! Until authentication is enforced (the next issue), "auth on" means the registry
//! refuses every request (403 `DENIED`) rather than serving without it; "auth off" means
//! it serves.

mod common;

use std::path::Path;
use std::time::Duration;

use common::etcd::{Etcd, eventually};
use common::free_port;
use common::{Launch, Registry};

const AUTH_KEY: &str = "/lain/config/auth/registry";
const CONFIG_KEY: &str = "/lain/config/registry";
const LAIN_AUTH: &str = r#"{"realm": "https://console.lain.local/api/v1/authorize/registry/", "issuer": "auth server", "service": "lain.local"}"#;
const READ_ONLY: &str = "storage:\n  maintenance:\n    readonly:\n      enabled: true\n";
/// How soon a change in etcd must show (the issue's bound).
const LIVE: Duration = Duration::from_secs(2);

/// `eventually` within [`LIVE`], with the registry's log in the failure.
fn within(registry: &Registry, what: &str, condition: impl FnMut() -> bool) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(LIVE, what, condition)
    }));
    if outcome.is_err() {
        panic!(
            "waited {LIVE:?} for {what}; registry log:\n{}",
            registry.log()
        );
    }
}

/// The registry on the embedded default, following `etcd` (v2 API when `v2`).
fn registry(endpoints: &str, v2: bool) -> Registry {
    let mut env = vec![("REGISTRY_ETCD_ENDPOINTS", endpoints.to_owned())];
    if v2 {
        env.push(("REGISTRY_ETCD_API", "v2".to_owned()));
    }
    Registry::launch(Launch {
        env,
        ..Launch::default()
    })
}

/// Runs `registry ARGS` to its end, following `etcd`, with its data in `data`.
fn run_with(etcd: &Etcd, data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let url = etcd.url();
    common::run_registry(
        args,
        &[
            ("REGISTRY_ETCD_ENDPOINTS", url.as_str()),
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().expect("utf-8"),
            ),
        ],
    )
}

fn status(registry: &Registry, method: &str, path: &str) -> u16 {
    registry.request(method, path).send().status
}

/// Auth on, off, on again, a malformed value, and read-only mode on and off, each
/// within two seconds, through `etcd`.
fn flips(etcd: &Etcd, v2: bool) {
    let registry = registry(&etcd.url(), v2);
    assert_eq!(status(&registry, "GET", "/v2/"), 200);

    etcd.put(AUTH_KEY, LAIN_AUTH);
    within(&registry, "auth on", || {
        status(&registry, "GET", "/v2/") == 403
    });
    let refused = registry.request("GET", "/v2/").send();
    refused.expect(403, Some("DENIED"));
    assert!(refused.text().contains(AUTH_KEY), "{}", refused.text());

    etcd.delete(AUTH_KEY);
    within(&registry, "auth off", || {
        status(&registry, "GET", "/v2/") == 200
    });

    etcd.put(AUTH_KEY, LAIN_AUTH);
    within(&registry, "auth on again", || {
        status(&registry, "GET", "/v2/") == 403
    });
    // Incomplete: LAIN's rule makes that "off".
    etcd.put(
        AUTH_KEY,
        r#"{"realm": "https://x/auth", "issuer": "", "service": "s"}"#,
    );
    within(&registry, "auth off (incomplete key)", || {
        status(&registry, "GET", "/v2/") == 200
    });
    etcd.put(AUTH_KEY, LAIN_AUTH);
    within(&registry, "auth on once more", || {
        status(&registry, "GET", "/v2/") == 403
    });
    // A malformed value keeps the last good state (on), and is logged.
    etcd.put(AUTH_KEY, "{not json");
    within(&registry, "the malformed value to be logged", || {
        registry
            .log()
            .contains("keeping the last good configuration")
    });
    assert_eq!(status(&registry, "GET", "/v2/"), 403);
    etcd.put(AUTH_KEY, "");
    within(&registry, "auth off (empty key)", || {
        status(&registry, "GET", "/v2/") == 200
    });

    // Read-only mode through the override key; reads go on.
    let uploads = "/v2/etcd/app/blobs/uploads/";
    assert_eq!(status(&registry, "POST", uploads), 202);
    etcd.put(CONFIG_KEY, READ_ONLY);
    within(&registry, "read-only on", || {
        status(&registry, "POST", uploads) == 405
    });
    assert_eq!(status(&registry, "GET", "/v2/etcd/app/tags/list"), 404);
    assert_eq!(status(&registry, "GET", "/v2/"), 200);
    // A key that needs a restart is named, not applied.
    etcd.put(CONFIG_KEY, "storage:\n  maintenance:\n    readonly:\n      enabled: true\n  engine:\n    blockcache: 64MiB\n");
    within(&registry, "the restart warning", || {
        registry
            .log()
            .contains("etcd changed storage.engine, which applies at the next start")
    });
    etcd.delete(CONFIG_KEY);
    within(&registry, "read-only off", || {
        status(&registry, "POST", uploads) == 202
    });
}

#[test]
fn v3_flips_auth_and_read_only_live() {
    let etcd = Etcd::start(false);
    flips(&etcd, false);
}

#[test]
fn v2_flips_auth_and_read_only_live() {
    let etcd = Etcd::start(true);
    flips(&etcd, true);
}

#[test]
fn auth_in_etcd_at_start_refuses_to_start_and_config_check_shows_its_origin() {
    let etcd = Etcd::start(false);
    etcd.put(AUTH_KEY, LAIN_AUTH);
    etcd.put(CONFIG_KEY, READ_ONLY);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| run_with(&etcd, &dir.path().join("data"), args);
    let (code, text) = run(&["serve"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("etcd key {AUTH_KEY}")), "{text}");
    assert!(
        !Path::new(&dir.path().join("data")).exists(),
        "the engine was opened anyway"
    );
    let (code, text) = run(&["config", "check"]);
    assert_eq!(code, Some(1), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("auth.*.realm").contains(&format!("(etcd key {AUTH_KEY})")),
        "{text}"
    );
    assert!(
        line("storage.maintenance.readonly.enabled")
            .contains(&format!("true  (etcd key {CONFIG_KEY})")),
        "{text}"
    );
}

/// etcd away at start: the registry serves on its file and finds etcd once it comes.
fn down_at_start(v2: bool) {
    let port = free_port();
    let registry = registry(&format!("http://127.0.0.1:{port}"), v2);
    assert_eq!(status(&registry, "GET", "/v2/"), 200);
    assert!(
        registry.log().contains("is unreachable"),
        "{}",
        registry.log()
    );
    // etcd arrives on that port; the registry finds it (backoff of at most 5 s).
    let etcd = Etcd::start_on(port, v2);
    etcd.put(CONFIG_KEY, READ_ONLY);
    eventually(
        Duration::from_secs(10),
        "read-only from a late etcd",
        || status(&registry, "POST", "/v2/late/app/blobs/uploads/") == 405,
    );
}

/// etcd stopped and started again while the registry serves: requests go on under the
/// last configuration, and the registry follows the restarted etcd.
fn restarted(v2: bool) {
    let mut etcd = Etcd::start(v2);
    let registry = registry(&etcd.url(), v2);
    etcd.put(CONFIG_KEY, READ_ONLY);
    within(&registry, "read-only on", || {
        status(&registry, "POST", "/v2/r/app/blobs/uploads/") == 405
    });
    etcd.stop();
    // Pulls and pushes are never blocked by etcd: the last configuration stays.
    assert_eq!(status(&registry, "GET", "/v2/"), 200);
    assert_eq!(status(&registry, "POST", "/v2/r/app/blobs/uploads/"), 405);
    etcd.run();
    etcd.delete(CONFIG_KEY);
    eventually(
        Duration::from_secs(10),
        "read-only off after etcd's restart",
        || status(&registry, "POST", "/v2/r/app/blobs/uploads/") == 202,
    );
}

#[test]
fn v3_down_at_start_still_serves_and_is_followed_once_it_comes() {
    down_at_start(false);
}

#[test]
fn v2_down_at_start_still_serves_and_is_followed_once_it_comes() {
    down_at_start(true);
}

#[test]
fn v3_restarted_mid_run_is_watched_again() {
    restarted(false);
}

#[test]
fn v2_restarted_mid_run_is_watched_again() {
    restarted(true);
}

/// The LAIN auth key governs token auth only: htpasswd from the file stays in force
/// when etcd says nothing about auth (here its file is missing, so the start is
/// refused rather than served open); and a malformed value in etcd at start refuses
/// it too, as a bad key in the file does.
#[test]
fn etcd_never_opens_what_the_file_protects() {
    let etcd = Etcd::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: r\n    path: {}\n",
            dir.path().join("htpasswd").display()
        ),
    )
    .expect("write");
    let run = |args: &[&str]| run_with(&etcd, &dir.path().join("data"), args);
    let (code, text) = run(&["serve", file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("auth.htpasswd"), "{text}");
    etcd.put(CONFIG_KEY, "storage:\n  delete:\n    enabled: sometimes\n");
    let (code, text) = run(&["serve"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("etcd key {CONFIG_KEY}")), "{text}");
    assert!(
        !dir.path().join("data").exists(),
        "the engine was opened anyway"
    );
}

/// LAIN's setup: the file names the bundle, etcd's auth key turns token auth on (with
/// its realm, issuer and service) and off while the registry serves. On, a request
/// without a token gets the challenge and a token from that issuer is honoured; off,
/// the registry is open again.
#[test]
fn the_lain_auth_key_turns_token_auth_on_and_off() {
    use common::tokens::{ISSUER, SERVICE, bundle, token};
    let etcd = Etcd::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nauth:\n  token:\n    realm: https://file.realm/token\n    service: file\n    \
             issuer: file\n    rootcertbundle: {}\n",
            bundle(dir.path()).display()
        ),
    )
    .expect("write");
    let registry = Registry::launch(Launch {
        args: vec![file.display().to_string()],
        env: vec![("REGISTRY_ETCD_ENDPOINTS", etcd.url())],
        ..Launch::default()
    });
    // No key in etcd: LAIN's rule turns the file's token auth off.
    assert_eq!(status(&registry, "GET", "/v2/"), 200);
    let realm = "https://console.lain.local/api/v1/authorize/registry/";
    etcd.put(
        AUTH_KEY,
        &serde_json::json!({"realm": realm, "issuer": ISSUER, "service": SERVICE}).to_string(),
    );
    within(&registry, "token auth on", || {
        status(&registry, "GET", "/v2/") == 401
    });
    let challenge = registry.request("GET", "/v2/").send();
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"").as_str())
    );
    let pull = token("alice", &[("repository", "lain/app", &["pull"])], 300);
    registry
        .request("GET", "/v2/lain/app/tags/list")
        .header("authorization", &format!("Bearer {pull}"))
        .send()
        .expect(404, Some("NAME_UNKNOWN"));
    etcd.delete(AUTH_KEY);
    within(&registry, "token auth off", || {
        status(&registry, "GET", "/v2/") == 200
    });
    // Token auth asked for in a form that cannot be used closes the registry; it does
    // not keep the last (open) configuration.
    etcd.put(
        AUTH_KEY,
        &serde_json::json!({"realm": "not a url", "issuer": ISSUER, "service": SERVICE})
            .to_string(),
    );
    within(&registry, "closed on an unusable auth key", || {
        status(&registry, "GET", "/v2/") == 403
    });
    etcd.delete(AUTH_KEY);
    within(&registry, "open again", || {
        status(&registry, "GET", "/v2/") == 200
    });
}
