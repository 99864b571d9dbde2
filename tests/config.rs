//! Black-box tests of `registry serve config.yml`: the real binary started with a
//! docker/distribution configuration file.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Launch, Registry, free_port, run_registry as run};

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

/// Starts the server on `file` as LAIN's entry script does with auth off
/// (`REGISTRY_AUTH=""`), plus `env`.
fn launch_with(file: String, mut env: Vec<(&str, String)>) -> Registry {
    env.insert(0, ("REGISTRY_AUTH", String::new()));
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
    for key in ["notifications", "health", "log.fields", "storage.cache"] {
        assert!(lines[0].contains(key), "{key} not named: {}", lines[0]);
    }
    assert!(!lines[0].contains("auth"), "{}", lines[0]);
    // http.secret is applied (upload locations' state).
    assert!(!lines[0].contains("http.secret"), "{}", lines[0]);
    // http.headers are applied.
    let response = server.request("GET", "/v2/").send();
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
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

#[test]
fn token_auth_without_its_keys_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    // The file's rootcertbundle (/certs/auth.crt) does not exist.
    let file = config_file(dir.path(), "127.0.0.1:0", &root, None);
    let (code, text) = run(&["serve", &file], &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("auth.token"), "{text}");
    assert!(text.contains("line 23"), "{text}");
    assert!(text.contains("/certs/auth.crt"), "{text}");
    assert!(!root.exists(), "the engine was opened anyway");
    // The entry script's variables ask for it too.
    let (code, text) = run(
        &["serve"],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                root.to_str().expect("utf-8"),
            ),
            (
                "REGISTRY_AUTH_TOKEN_REALM",
                "https://console.lain.local/auth",
            ),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "auth server"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "lain.local"),
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("REGISTRY_AUTH_TOKEN"), "{text}");
    assert!(text.contains("neither rootcertbundle nor jwks"), "{text}");
    assert!(!root.exists(), "the engine was opened anyway");
    // htpasswd whose file is missing, and silly (not enforced), refuse too.
    for (name, text, needle) in [
        (
            "htpasswd.yml",
            "version: 0.1\nauth:\n  htpasswd:\n    realm: r\n    path: /nonexistent/htpasswd\n",
            "/nonexistent/htpasswd",
        ),
        (
            "silly.yml",
            "version: 0.1\nauth:\n  silly:\n    realm: r\n    service: s\n",
            "refuses to run without it",
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        let (code, text) = run(
            &["serve", file.to_str().expect("utf-8")],
            &[(
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                root.to_str().expect("utf-8"),
            )],
        );
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains(needle), "{text}");
        assert!(!root.exists(), "the engine was opened anyway");
    }
}

#[test]
fn a_misspelt_key_names_itself_and_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\n  delete:\n    enabeld: true\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    for args in [vec!["serve", file], vec!["config", "check", file]] {
        let (code, text) = run(&args, &[]);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("`storage.delete.enabeld`"), "{text}");
        assert!(text.contains("line 6"), "{text}");
        assert!(text.contains("unknown key"), "{text}");
    }
}

#[test]
fn config_check_prints_values_and_where_they_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let file = config_file(dir.path(), "127.0.0.1:5000", &root, Some(true));
    let (code, text) = run(
        &["config", "check", &file],
        &[
            ("REGISTRY_AUTH", ""),
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
            ("REGISTRY_PORT", "tcp://x"),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_owned()
    };
    assert!(line("http.addr").contains("127.0.0.1:6000"), "{text}");
    assert!(
        line("http.addr").contains("environment variable REGISTRY_HTTP_ADDR"),
        "{text}"
    );
    assert!(line("storage.delete.enabled").contains("true"), "{text}");
    assert!(
        line("storage.delete.enabled").contains("config.yml, line 12"),
        "{text}"
    );
    assert!(
        line("storage.engine.packsealsize").contains("(default)"),
        "{text}"
    );
    assert!(line("auth").contains("off"), "{text}");
    assert!(
        text.contains("REGISTRY_PORT names no configuration key"),
        "{text}"
    );
    // Secrets are never printed (http.secret is "local" in the file).
    assert!(!text.lines().any(|l| l.contains(" local ")), "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("http.secret"))
            .all(|l| l.contains("(redacted)")),
        "{text}"
    );
    assert!(text.contains("accepted, not applied:"), "{text}");
    // With the file's auth section, check says that serve would refuse.
    let (code, text) = run(&["config", "check", &file], &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("would refuse to start"), "{text}");
}

#[test]
fn read_only_mode_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    // A blob pushed while writable.
    let digest = {
        let server = launch_with(
            config_file(dir.path(), "127.0.0.1:0", &root, Some(true)),
            Vec::new(),
        );
        let digest = common::put_blob(&server, "ro/app", b"kept while read-only");
        assert!(server.terminate());
        digest
    };
    let server = launch_with(
        config_file(dir.path(), "127.0.0.1:0", &root, Some(true)),
        vec![(
            "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED",
            "true".to_owned(),
        )],
    );
    let blob = format!("/v2/ro/app/blobs/{digest}");
    let got = server.request("GET", &blob).send();
    got.expect(200, None);
    assert_eq!(got.body, b"kept while read-only");
    server
        .request("POST", "/v2/ro/app/blobs/uploads/")
        .send()
        .expect(405, Some("UNSUPPORTED"));
    server
        .request("DELETE", &blob)
        .send()
        .expect(405, Some("UNSUPPORTED"));
    server
        .request("PUT", "/v2/ro/app/manifests/v1")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .expect(405, Some("UNSUPPORTED"));
    server.request("GET", "/v2/ro/app/tags/list").send();
    assert!(server.terminate());
}

#[test]
fn prefix_and_host_shape_the_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let server = launch_with(
        config_file(dir.path(), "127.0.0.1:0", &root, Some(true)),
        vec![
            ("REGISTRY_HTTP_PREFIX", "/registry/".to_owned()),
            (
                "REGISTRY_HTTP_HOST",
                "https://registry.lain.local".to_owned(),
            ),
        ],
    );
    server.request("GET", "/v2/").send().expect(404, None);
    server
        .request("GET", "/registry/v2/")
        .send()
        .expect(200, None);
    let started = server
        .request("POST", "/registry/v2/p/app/blobs/uploads/")
        .send();
    started.expect(202, None);
    let location = started.header("location").expect("Location").to_owned();
    assert!(
        location.starts_with("https://registry.lain.local/registry/v2/p/app/blobs/uploads/"),
        "{location}"
    );
    assert!(server.terminate());
}

/// LAIN's real file, paths adapted, as its entry script starts it with auth off.
#[test]
fn lains_file_starts_with_auth_cleared_and_names_what_it_does_not_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("registry");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nlog:\n  level: info\n  fields:\n    service: registry\n    environment: production\n\
             storage:\n  cache:\n    layerinfo: inmemory\n  filesystem:\n    rootdirectory: {}\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n  delete:\n    enabled: true\n\
             compatibility:\n  schema1:\n    disablesignaturestore: true\n\
             http:\n  addr: 127.0.0.1:0\n  secret: lain-secret\n\
             auth:\n  token:\n    realm: https://console.lain.local/api/v1/authorize/registry/\n    \
             issuer: auth server\n    service: lain.local\n    rootcertbundle: {}\n",
            root.display(),
            dir.path().join("auth.crt").display()
        ),
    )
    .expect("write");
    let server = launch_with(file.display().to_string(), Vec::new());
    server.request("GET", "/v2/").send().expect(200, None);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("not applied"))
        .unwrap_or_else(|| panic!("no not-applied line in\n{log}"));
    assert!(
        line.ends_with("compatibility, log.fields, storage.cache"),
        "{line}"
    );
    assert!(root.join("LOCK").exists());
    assert!(server.terminate());
}

/// `config check` of a cluster configuration: the bucket and etcd's prefix shown, the
/// secret key never.
#[test]
fn config_check_shows_cluster_mode_without_its_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.yml");
    std::fs::write(
        &file,
        "version: 0.1\nhttp:\n  secret: sup3r-s3cret-http\nstorage:\n  s3:\n    accesskey: AKIDLAIN\n    \
         secretkey: sup3r-s3cret-key\n    bucket: lain-bucket\n    regionendpoint: http://127.0.0.1:1\n\
         etcd:\n  endpoints: [http://127.0.0.1:1]\n  prefix: /lain/cluster-a/\n",
    )
    .expect("write");
    let (code, text) = run(&["config", "check", &file.display().to_string()], &[]);
    assert_eq!(code, Some(0), "{text}");
    for shown in [
        "lain-bucket",
        "AKIDLAIN",
        "/lain/cluster-a/",
        "http://127.0.0.1:1",
    ] {
        assert!(text.contains(shown), "{shown} missing: {text}");
    }
    assert!(!text.contains("sup3r-s3cret"), "a secret printed: {text}");
    assert!(!text.contains("storage.filesystem.rootdirectory"), "{text}");
}
