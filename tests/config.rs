//! Black-box tests of `registry serve config.yml`: the real binary started with a
//! docker/distribution configuration file.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Launch, Registry};

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// A distribution-style file with the sections LAIN's has, which this registry accepts
/// without applying them.
fn config_file(dir: &Path, addr: &str, root: &Path, delete_enabled: Option<bool>) -> String {
    let delete = match delete_enabled {
        Some(enabled) => format!("  delete:\n    enabled: {enabled}\n"),
        None => String::new(),
    };
    let text = format!(
        r#"version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {root}
{delete}  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
http:
  addr: {addr}
  secret: local
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  token:
    realm: http://console.lain.local/api/v1/authorize/registry/
    service: lain.local
    issuer: auth server
    rootcertbundle: /certs/auth.crt
notifications:
  endpoints:
    - name: console
      url: http://console.lain.local/api/v1/notify/
      timeout: 500ms
      threshold: 5
      backoff: 1s
health:
  storagedriver:
    enabled: true
"#,
        root = root.display()
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

fn launch_with(file: String, env: Vec<(&str, String)>) -> Registry {
    Registry::launch(Launch {
        args: vec![file],
        env,
        root: None,
        keep_addr: true,
        keep_root: true,
    })
}

#[test]
fn listens_and_stores_where_the_file_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let port = free_port();
    let file = config_file(dir.path(), &format!("127.0.0.1:{port}"), &root, None);
    let server = launch_with(file, Vec::new());

    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    server.request("GET", "/v2/").send().expect(200, None);
    assert!(
        root.join("LOCK").exists(),
        "no engine LOCK in {}",
        root.display()
    );
    assert!(
        root.join("index").is_dir(),
        "no index/ in {}",
        root.display()
    );
    // The keys that are accepted but not applied are named once.
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("not applied")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    for key in [
        "auth",
        "notifications",
        "health",
        "log",
        "http.secret",
        "storage.cache",
    ] {
        assert!(lines[0].contains(key), "{key} not named: {}", lines[0]);
    }
    assert!(
        server.terminate(),
        "registry did not exit cleanly on SIGTERM"
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_root = dir.path().join("from-file");
    let env_root = dir.path().join("from-env");
    let port = free_port();
    let file = config_file(dir.path(), &format!("127.0.0.1:{port}"), &file_root, None);
    let server = launch_with(
        file,
        vec![
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                env_root.display().to_string(),
            ),
        ],
    );
    assert_ne!(server.addr, format!("127.0.0.1:{port}"));
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    server.request("GET", "/v2/").send().expect(200, None);
    assert!(env_root.join("LOCK").exists());
    assert!(!file_root.exists(), "the file's directory was used");
}

#[test]
fn malformed_file_exits_non_zero_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "http:\n  addr: :5000\n   net: [tcp\n").expect("write");
    let wrong_type = dir.path().join("wrong-type.yml");
    std::fs::write(&wrong_type, "storage:\n  delete:\n    enabled: sometimes\n").expect("write");
    for (file, needle) in [
        (&bad, "not valid YAML"),
        (&wrong_type, "storage.delete.enabled"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_registry"))
            .arg("serve")
            .arg(file)
            .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
            .env(
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                dir.path().join("data"),
            )
            .env("NO_COLOR", "1")
            .output()
            .expect("run registry");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "exited 0 with {}", file.display());
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "the engine was opened anyway"
    );
}

const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn deletes_are_off_unless_the_file_enables_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = format!("/v2/x/manifests/{ZERO_DIGEST}");
    for (enabled, status, code) in [
        (None, 405, "UNSUPPORTED"),
        (Some(false), 405, "UNSUPPORTED"),
        (Some(true), 404, "MANIFEST_UNKNOWN"),
    ] {
        let root = dir.path().join(format!("data-{enabled:?}"));
        let file = config_file(dir.path(), "127.0.0.1:0", &root, enabled);
        let server = launch_with(file, Vec::new());
        let response = server.request("DELETE", &path).send();
        response.expect(status, Some(code));
        if status == 405 {
            // A 405 names what is allowed: everything but DELETE.
            assert_eq!(response.header("allow"), Some("GET, HEAD, PUT"));
            let blob = server
                .request("DELETE", &format!("/v2/x/blobs/{ZERO_DIGEST}"))
                .send();
            blob.expect(405, Some("UNSUPPORTED"));
            assert_eq!(blob.header("allow"), Some("GET, HEAD"));
        }
    }
}
