use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const FILE: &str = "/etc/registry/config.yml";

fn parse(text: &str) -> Result<Config, Error> {
    with_env(text, &[])
}

fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
    let tree = parse_file(text, Path::new(FILE))?;
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let (env, _) = env::overrides(&vars)?;
    let base = Base {
        file: Some(PathBuf::from(FILE)),
        tree,
        env,
        ignored_env: Vec::new(),
    };
    base.config(&[])
}

/// The key and line an error points at.
fn located(error: &Error) -> (String, u64) {
    match error {
        Error::Invalid {
            key,
            origin: Origin::File { line, .. },
            ..
        } => (key.clone(), *line),
        other => panic!("not an error at a line of the file: {other:?}"),
    }
}

/// LAIN's real file (paths adapted), as its entry script runs it.
const LAIN_FILE: &str = r#"version: 0.1
log:
  level: info
  fields:
    service: registry
    environment: production
storage:
  cache:
    layerinfo: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    uploadpurging:
      enabled: false
  delete:
    enabled: true
compatibility:
  schema1:
    disablesignaturestore: true
http:
  addr: :5000
  secret: lain-registry-secret
auth:
  token:
    realm: https://console.lain.local/api/v1/authorize/registry/
    issuer: auth server
    service: lain.local
    rootcertbundle: /lain/app/auth/server.crt
"#;

#[test]
fn lain_file_with_auth_cleared_by_the_environment() {
    let config = with_env(LAIN_FILE, &[("REGISTRY_AUTH", "")]).expect("parses");
    assert_eq!(config.addr, ListenAddr::new("", 5000));
    assert_eq!(config.root, PathBuf::from("/var/lib/registry"));
    assert!(config.http.delete_enabled);
    assert_eq!(config.http.upload_purge_interval, None);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.auth, None);
    config.refuse_unenforced().expect("no auth asked");
    assert_eq!(
        config.not_applied,
        ["compatibility", "log.fields", "storage.cache"]
    );
}

#[test]
fn token_auth_is_read_and_the_kinds_not_enforced_are_refused() {
    let config = parse(LAIN_FILE).expect("parses");
    let auth = config.auth.clone().expect("auth asked");
    assert_eq!(auth.key, "auth.token");
    let token = auth.token.expect("token settings");
    assert_eq!(
        token.realm,
        "https://console.lain.local/api/v1/authorize/registry/"
    );
    assert_eq!(token.issuer, "auth server");
    assert_eq!(token.service, "lain.local");
    assert_eq!(
        token.rootcertbundle,
        Some(PathBuf::from("/lain/app/auth/server.crt"))
    );
    config.refuse_unenforced().expect("token auth is enforced");
    // Until the keys are loaded (by the wiring), token auth closes the registry.
    assert!(matches!(
        config.live.access,
        lain_http::Access::Closed { .. }
    ));
    // The entry script's three variables turn it on from the environment alone.
    let config = with_env(
        "version: 0.1\n",
        &[
            ("REGISTRY_AUTH_TOKEN_REALM", "https://console/auth"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "auth server"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "lain.local"),
        ],
    )
    .unwrap();
    let auth = config.auth.expect("auth from the environment");
    assert!(
        matches!(auth.origin, Origin::Env { .. }),
        "{:?}",
        auth.origin
    );
    // A token section without realm, service or issuer is an error naming the key.
    let e = parse("auth:\n  token:\n    realm: https://r/\n    service: s\n").unwrap_err();
    assert_eq!(located(&e).0, "auth.token.issuer");
    let e = parse("auth:\n  token:\n    realm: https://r/\n    service: s\n    issuer: i\n    signingalgorithms: [RS256, HS256]\n").unwrap_err();
    assert!(e.to_string().contains("HMAC"), "{e}");
    // htpasswd is read (its users are loaded by the wiring); silly is refused.
    let config = parse("auth:\n  htpasswd:\n    realm: r\n    path: /p\n").unwrap();
    let auth = config.auth.clone().expect("htpasswd");
    assert_eq!(auth.htpasswd, Some(("r".to_owned(), PathBuf::from("/p"))));
    config.refuse_unenforced().expect("htpasswd is enforced");
    let e = parse("auth:\n  htpasswd:\n    realm: r\n").unwrap_err();
    assert_eq!(located(&e).0, "auth.htpasswd.path");
    let config = parse("auth:\n  silly:\n    realm: r\n    service: s\n").unwrap();
    let message = config.refuse_unenforced().expect_err("refused").to_string();
    assert!(message.contains("auth.silly"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("REGISTRY_AUTH=\"\""), "{message}");
    // Two kinds at once is distribution's error.
    let e = parse("auth:\n  htpasswd: {}\n  token: {}\n").unwrap_err();
    assert_eq!(located(&e), ("auth".into(), 1));
}

#[test]
fn distribution_defaults_when_keys_are_missing() {
    let config = parse("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n").expect("parses");
    assert_eq!(config.addr, ListenAddr::new("", 5000));
    assert_eq!(config.root, PathBuf::from(DISTRIBUTION_ROOT));
    assert!(
        !config.http.delete_enabled,
        "deletes are off unless enabled"
    );
    assert_eq!(config.http.upload_purge_age, 168 * HOUR);
    assert_eq!(config.http.upload_purge_interval, Some(24 * HOUR));
    assert_eq!(config.not_applied, ["storage.gcs"]);
    assert!(!config.live.read_only);
    assert_eq!(config.http.locations, lain_http::Locations::Relative);
    // Empty sections are as good as absent.
    let config = parse("http:\nstorage:\n  delete:\n  maintenance:\n").expect("parses");
    assert!(!config.http.delete_enabled);
    assert!(config.not_applied.is_empty());
}

#[test]
fn upload_purging_and_read_only() {
    let purging = |body: &str| {
        parse(&format!(
            "storage:\n  maintenance:\n    uploadpurging:\n{body}"
        ))
    };
    let config = purging("      enabled: false\n      age: 1h\n      interval: 1h\n").unwrap();
    assert_eq!(config.http.upload_purge_interval, None);
    let config = purging("      enabled: true\n").unwrap();
    assert_eq!(config.http.upload_purge_age, 168 * HOUR);
    assert_eq!(config.http.upload_purge_interval, Some(24 * HOUR));
    let config = purging("      age: 30m\n      dryrun: true\n").unwrap();
    assert_eq!(config.http.upload_purge_age, Duration::from_secs(1800));
    assert!(config.purge_dry_run);
    let e = purging("      interval: 0s\n").unwrap_err();
    assert_eq!(
        located(&e),
        ("storage.maintenance.uploadpurging.interval".into(), 4)
    );
    let e = purging("      age: 7d\n").unwrap_err().to_string();
    assert!(e.contains("\"7d\""), "{e}");
    assert!(e.contains(FILE), "{e}");
    let config = parse("storage:\n  maintenance:\n    readonly:\n      enabled: true\n").unwrap();
    assert!(config.live.read_only);
}

#[test]
fn yaml_11_booleans_and_numbers_as_strings_as_yaml_v2_reads_them() {
    let config = parse("storage:\n  delete:\n    enabled: yes\n").unwrap();
    assert!(config.http.delete_enabled);
    let config = parse("storage:\n  delete:\n    enabled: \"off\"\n").unwrap();
    assert!(!config.http.delete_enabled);
    let config = parse("storage:\n  filesystem:\n    rootdirectory: 2024\n").unwrap();
    assert_eq!(config.root, PathBuf::from("2024"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key_and_its_line() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "version: 0.1\nstorage:\n  delete:\n    enabeld: true\n",
            "storage.delete.enabeld",
            4,
        ),
        ("http:\n  adr: :5000\n", "http.adr", 2),
        ("version: 0.1\nlogs:\n  level: info\n", "logs", 2),
        (
            "storage:\n  delete:\n    enabled: 1\n",
            "storage.delete.enabled",
            3,
        ),
        (
            "storage:\n  delete:\n    enabled: maybe\n",
            "storage.delete.enabled",
            3,
        ),
        ("storage:\n  delete: true\n", "storage.delete", 2),
        ("http:\n  addr: [\":5000\"]\n", "http.addr", 2),
        ("http: :5000\n", "http", 1),
        (
            "storage:\n  maintenance:\n    uploadpurging:\n      age: 24\n",
            "storage.maintenance.uploadpurging.age",
            4,
        ),
        (
            "notifications:\n  endpoints:\n    - name: a\n      urll: http://x\n",
            "notifications.endpoints.0.urll",
            4,
        ),
        ("http:\n  addr: localhost\n", "http.addr", 2),
        ("http:\n  net: unix\n", "http.net", 2),
        (
            "storage:\n  filesystem:\n    rootdirectory: ''\n",
            "storage.filesystem.rootdirectory",
            3,
        ),
        (
            "storage:\n  engine:\n    collection:\n      compactthreshold: 1.5\n",
            "storage.engine.collection.compactthreshold",
            4,
        ),
        (
            "storage:\n  engine:\n    packsealsize: lots\n",
            "storage.engine.packsealsize",
            3,
        ),
        ("storage:\n  filesystem: {}\n  s3: {}\n", "storage", 1),
        ("version: 0.2\n", "version", 1),
        ("log:\n  level: chatty\n", "log.level", 2),
        ("http:\n  prefix: registry\n", "http.prefix", 2),
        ("http:\n  host: registry.lain.local\n", "http.host", 2),
        ("http:\n  tls:\n    certificate: /c\n", "http.tls.key", 2),
        (
            "http:\n  tls:\n    clientcas: [/ca]\n",
            "http.tls.clientcas",
            3,
        ),
        (
            "http:\n  tls:\n    letsencrypt:\n      email: a@b\n",
            "http.tls.letsencrypt",
            3,
        ),
        ("etcd:\n  endpoints: 127.0.0.1:2379\n", "etcd.endpoints", 2),
    ];
    for (text, key, line) in cases {
        let error = parse(text).expect_err(text);
        assert_eq!(
            located(&error),
            ((*key).to_owned(), *line),
            "{text:?}: {error}"
        );
        let message = error.to_string();
        assert!(message.contains(FILE), "{message}");
        assert!(message.contains(&format!("`{key}`")), "{message}");
    }
    let message = parse("storage:\n  delete:\n    enabeld: true\n")
        .unwrap_err()
        .to_string();
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn malformed_yaml_names_the_file() {
    for text in [
        "http:\n  addr: :5000\n   net: tcp\n",
        "storage: {filesystem: [\n",
        "a: b\na: c\n",
        "- version\n- 0.1\n",
        "",
    ] {
        let error = parse(text).expect_err(text);
        let message = error.to_string();
        assert!(message.contains(FILE), "{message}");
    }
}

#[test]
fn environment_overrides_win_and_clear_sections() {
    let text = "version: 0.1\nhttp:\n  addr: :5000\nstorage:\n  delete:\n    enabled: false\n";
    let config = with_env(
        text,
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}"),
        ],
    )
    .unwrap();
    assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 6000));
    assert!(config.http.delete_enabled);
    assert_eq!(config.root, PathBuf::from("/data"));
    assert!(config.live.read_only);
    assert_eq!(
        config.tree.origin_of(&["http", "addr"]),
        Origin::Env {
            var: "REGISTRY_HTTP_ADDR".into()
        }
    );
    let e = with_env(text, &[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")]).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("REGISTRY_STORAGE_DELETE_ENABLED"),
        "{message}"
    );
    // REGISTRY_AUTH="" then token variables: the section is cleared first, so the
    // file's rootcertbundle is gone too.
    let config = with_env(
        LAIN_FILE,
        &[
            ("REGISTRY_AUTH", ""),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://x/auth"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "i"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "s"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.tree.get(&["auth"]).map(Node::to_json),
        Some(
            serde_json::json!({"token": {"realm": "https://x/auth", "issuer": "i", "service": "s"}})
        )
    );
    // A realm alone is an incomplete token section, named with its source.
    let e = with_env(
        LAIN_FILE,
        &[
            ("REGISTRY_AUTH", ""),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://x/auth"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("auth.token.service"), "{e}");
    assert!(e.contains("REGISTRY_AUTH_TOKEN_REALM"), "{e}");
}

#[test]
fn embedded_default() {
    let config = Base::read(None, &[]).unwrap().config(&[]).unwrap();
    assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 5000));
    assert_eq!(config.root, PathBuf::from("registry-data"));
    assert!(config.http.delete_enabled);
    assert_eq!(config.http.upload_purge_age, 24 * HOUR);
    assert_eq!(
        config.http.upload_purge_interval,
        Some(Duration::from_secs(600))
    );
    assert_eq!(config.file, None);
    assert_eq!(config.tree.origin_of(&["http", "addr"]), Origin::Default);
}

#[test]
fn engine_and_collection_settings() {
    let config = parse(
        "storage:\n  engine:\n    packsealsize: 256MiB\n    blockcache: 64MiB\n    memtable: 33554432\n    \
         uploadsessions: 1000\n    compactionrate: 8MiB\n    collection:\n      grace: 10m\n      compactthreshold: 0.5\n",
    )
    .unwrap();
    let options = config.engine.options();
    assert_eq!(options.pack_seal_size, 256 << 20);
    assert_eq!(options.block_cache_bytes, 64 << 20);
    assert_eq!(options.write_buffer_bytes, 32 << 20);
    assert_eq!(options.max_upload_sessions, 1000);
    assert_eq!(options.compaction_busy_rate, 8 << 20);
    assert_eq!(config.collect.grace, Duration::from_secs(600));
    assert_eq!(config.collect.compact_threshold, 0.5);
    let defaults = parse("version: 0.1\n").unwrap();
    assert_eq!(defaults.collect, CollectSettings::default());
    assert_eq!(
        defaults.engine.options().pack_seal_size,
        lain_engine::Options::default().pack_seal_size
    );
}

#[test]
fn http_prefix_host_headers_and_drain() {
    let config = parse(
        "http:\n  prefix: /registry/\n  host: https://registry.lain.local/\n  draintimeout: 5s\n  \
         headers:\n    X-Content-Type-Options: [nosniff]\n  http2:\n    disabled: true\n",
    )
    .unwrap();
    assert_eq!(config.http.prefix, "/registry");
    assert_eq!(
        config.http.locations,
        lain_http::Locations::Absolute("https://registry.lain.local".into())
    );
    assert_eq!(
        config.http.headers,
        [(
            hyper::header::HeaderName::from_static("x-content-type-options"),
            hyper::header::HeaderValue::from_static("nosniff")
        )]
    );
    assert_eq!(config.http.drain_timeout, Duration::from_secs(5));
    assert!(!config.http.http2);
    let relative = parse("http:\n  host: https://r.local\n  relativeurls: true\n").unwrap();
    assert_eq!(relative.http.locations, lain_http::Locations::Relative);
    let from_request = parse("http:\n  relativeurls: false\n").unwrap();
    assert_eq!(
        from_request.http.locations,
        lain_http::Locations::FromRequest
    );
}

#[test]
fn tls_settings() {
    let config = parse(
        "http:\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    clientcas: [/ca.pem]\n    minimumtls: tls1.3\n",
    )
    .unwrap();
    assert_eq!(
        config.tls,
        Some(Tls {
            certificate: "/c.pem".into(),
            key: "/k.pem".into(),
            client_cas: vec!["/ca.pem".into()],
            tls13_only: true,
        })
    );
    let e = parse("http:\n  tls:\n    certificate: /c\n    key: /k\n    minimumtls: ssl3\n")
        .unwrap_err();
    assert_eq!(located(&e), ("http.tls.minimumtls".into(), 5));
}

#[test]
fn etcd_settings() {
    let config = with_env(
        "etcd:\n  api: v2\n",
        &[(
            "REGISTRY_ETCD_ENDPOINTS",
            "http://127.0.0.1:2379, http://127.0.0.1:22379",
        )],
    )
    .unwrap();
    let etcd = config.etcd.expect("etcd configured");
    assert_eq!(
        etcd.endpoints,
        ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
    );
    assert_eq!(etcd.api, EtcdApi::V2);
    assert_eq!(etcd.auth_key, LAIN_AUTH_KEY);
    assert_eq!(etcd.config_key, DEFAULT_CONFIG_KEY);
    assert!(
        parse("etcd:\n  api: v2\n").unwrap().etcd.is_none(),
        "no endpoints: no etcd"
    );
}

#[test]
fn etcd_changes_lie_between_the_file_and_the_environment() {
    let tree = parse_file(LAIN_FILE, Path::new(FILE)).unwrap();
    let etcd_origin = Origin::Etcd { key: "/k".into() };
    let fragment = Node::parse_yaml(
        "storage:\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: :6000\n",
        &|_| etcd_origin.clone(),
    )
    .unwrap();
    let base = Base {
        file: Some(PathBuf::from(FILE)),
        tree,
        env: env::overrides(&[("REGISTRY_HTTP_ADDR".into(), ":7000".into())])
            .unwrap()
            .0,
        ignored_env: Vec::new(),
    };
    let config = base
        .config(&[
            Override::Merge(fragment),
            Override::Remove {
                path: vec!["auth".into()],
            },
        ])
        .unwrap();
    assert!(config.live.read_only);
    assert_eq!(
        config.addr,
        ListenAddr::new("", 7000),
        "the environment wins"
    );
    assert_eq!(config.auth, None);
    assert_eq!(
        config
            .tree
            .origin_of(&["storage", "maintenance", "readonly", "enabled"]),
        etcd_origin
    );
}

#[test]
fn hostile_files_are_errors_not_crashes() {
    // Aliases that expand a billion times.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        bomb.push_str(&format!(
            "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    assert!(parse(&bomb).is_err());
    // Nesting deep enough to overflow a recursive reader's stack.
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let deep = format!("x: {}1{}\n", open.repeat(100_000), close.repeat(100_000));
        assert!(parse(&deep).is_err());
    }
    // Odd keys and values in every section.
    for text in [
        "? [a, b]\n: c\n",
        "http: {addr: !!binary aGVsbG8=}\n",
        "storage: {filesystem: {rootdirectory: ~}}\n",
        "http: {headers: {\"bad header\": [x]}}\n",
        "http: {headers: {X-A: [\"a\\nb\"]}}\n",
        "storage: {engine: {packsealsize: 18446744073709551615TiB}}\n",
        "storage: {engine: {uploadsessions: -1}}\n",
        "etcd: {endpoints: [1, 2]}\n",
        "\u{feff}version: 0.1\n",
        "version: 0.1\n---\nversion: 0.1\n",
    ] {
        let _ = parse(text);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Whatever the text, the parser answers with a configuration or an error.
    #[test]
    fn any_text_parses_or_errs(text in "(\\PC|[:{}\\[\\],&*!|>'\"%@`#\\-? \n])*") {
        let _ = parse(&text);
    }

    /// Every key of a section with a random scalar: typed or refused, never a panic.
    #[test]
    fn random_values_in_known_keys(
        key in proptest::sample::select(vec![
            "http.addr", "http.prefix", "http.host", "http.draintimeout", "http.tls.minimumtls",
            "storage.delete.enabled", "storage.maintenance.uploadpurging.age",
            "storage.engine.packsealsize", "storage.engine.collection.compactthreshold",
            "log.level", "etcd.endpoints", "etcd.api", "auth.token.realm", "version",
        ]),
        value in "(\\PC{0,12}|-?[0-9]{1,25}(\\.[0-9]+)?|true|no|~|\\[\\]|\\{\\})",
    ) {
        let parts: Vec<&str> = key.split('.').collect();
        let mut text = String::new();
        for (depth, part) in parts.iter().enumerate() {
            text.push_str(&"  ".repeat(depth));
            text.push_str(part);
            text.push(':');
            if depth + 1 < parts.len() {
                text.push('\n');
            }
        }
        text.push_str(&format!(" {value}\n"));
        let _ = parse(&text);
    }
}

#[test]
fn a_list_where_a_section_belongs_is_an_error() {
    for text in [
        "storage: [not, a, mapping]\n",
        "http: [1, 2]\n",
        "storage:\n  delete: [true]\n",
    ] {
        let e = parse(text).expect_err(text);
        assert!(
            e.to_string().contains("line 1") || e.to_string().contains("line 2"),
            "{e}"
        );
    }
}

#[test]
fn storage_s3_with_etcd_is_cluster_mode_with_distributions_keys() {
    let file = "storage:\n  s3:\n    accesskey: AK\n    secretkey: SK\n    region: eu-west-1\n    \
                regionendpoint: http://127.0.0.1:8333\n    bucket: registry\n    \
                rootdirectory: /lain\n    secure: false\n    chunksize: 10485760\n    \
                storageclass: STANDARD\n\
                etcd:\n  endpoints: [http://127.0.0.1:2379]\n  prefix: /lain/registry-b/\n";
    let config = parse(file).expect("parses");
    let cluster = config.cluster.expect("cluster mode");
    assert_eq!(cluster.bucket.bucket, "registry");
    assert_eq!(cluster.bucket.region, "eu-west-1");
    assert_eq!(
        cluster.bucket.endpoint.as_deref(),
        Some("http://127.0.0.1:8333")
    );
    assert_eq!(
        (
            cluster.bucket.access_key.as_str(),
            cluster.bucket.secret_key.as_str()
        ),
        ("AK", "SK")
    );
    assert!(!cluster.bucket.secure);
    assert!(
        !cluster.bucket.virtual_hosted,
        "an endpoint of its own is addressed by path"
    );
    assert_eq!(cluster.options.root, "/lain");
    assert_eq!(cluster.options.part_size, 10 << 20);
    assert_eq!(cluster.options.prefix, "/lain/registry-b/");
    assert_eq!(config.not_applied, ["storage.s3.storageclass"]);
    // The embedded default stays the local engine.
    assert!(parse("version: 0.1\n").expect("parses").cluster.is_none());
}

#[test]
fn storage_s3_without_etcd_or_with_small_parts_is_refused() {
    let s3 = "storage:\n  s3:\n    accesskey: AK\n    secretkey: SK\n    bucket: b\n";
    let e = parse(s3).expect_err("metadata needs etcd");
    assert_eq!(located(&e).0, "storage.s3");
    let etcd = "etcd:\n  endpoints: [http://127.0.0.1:2379]\n";
    let small = format!("{s3}    chunksize: 1048576\n{etcd}");
    assert_eq!(
        located(&parse(&small).expect_err("parts below 5MiB")).0,
        "storage.s3.chunksize"
    );
    let keyless = format!("storage:\n  s3:\n    bucket: b\n{etcd}");
    assert_eq!(
        located(&parse(&keyless).expect_err("no keys")).0,
        "storage.s3.accesskey"
    );
    let bucketless = format!("storage:\n  s3:\n    accesskey: AK\n    secretkey: SK\n{etcd}");
    assert_eq!(
        located(&parse(&bucketless).expect_err("no bucket")).0,
        "storage.s3.bucket"
    );
}
