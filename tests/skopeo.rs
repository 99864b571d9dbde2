//! A real client against the real registry: skopeo pushes an OCI image and a
//! multi-architecture index from an OCI layout written here, pulls them back into a
//! second layout, and the two layouts must agree byte for byte (manifests, configs,
//! layers, digests). A second push of the same content must move no blob bytes.
//!
//! skopeo runs with `--preserve-digests`, so it never re-compresses or rewrites
//! anything: a digest that changed on the way is a failure, not a silent conversion.
//! Every skopeo run gets its own HOME, registries.conf, auth file and registries.d in a
//! temporary directory (only the registry on 127.0.0.1 is ever contacted) and is killed
//! after `SKOPEO_TIMEOUT`. (Run as root, skopeo 1.9 still keeps its blob-info cache, the
//! known locations of blobs, in /var/lib/containers/cache; stale entries there only cost
//! a HEAD.)

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::skopeo::{Run, Skopeo};
use serde_json::{Value, json};

use common::layout::{LayoutWriter, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, REF_NAME, layout_blobs};
use common::pseudo_random;

/// What the input layout holds.
struct Input {
    /// Every blob of the layout, by digest.
    blobs: BTreeMap<String, Vec<u8>>,
    /// The single-platform image (`oci:DIR:image`).
    image: Value,
    /// The multi-architecture index (`oci:DIR:multi`).
    multi: Value,
    /// The layer descriptors of `image`, and of every manifest of `multi`.
    image_layers: Vec<Value>,
    multi_layers: Vec<Value>,
    /// The digests of the manifests `multi` lists.
    multi_manifests: Vec<String>,
}

impl Input {
    fn bytes(&self, desc: &Value) -> &[u8] {
        &self.blobs[desc["digest"].as_str().unwrap()]
    }
}

fn write_input(dir: &Path) -> Input {
    let mut layout = LayoutWriter::new(dir);
    const MIB: usize = 1024 * 1024;
    // Not tar archives: with `--preserve-digests` skopeo copies layer bytes as they
    // are, which is what a registry must do too.
    let big = layout.blob(OCI_LAYER, pseudo_random(1, 6 * MIB + 12_345));
    let medium = layout.blob(OCI_LAYER, pseudo_random(2, 300 * 1024 + 1));
    let small = layout.blob(OCI_LAYER, pseudo_random(3, 517));
    let tiny = layout.blob(OCI_LAYER, pseudo_random(4, 1));
    let amd64_only = layout.blob(OCI_LAYER, pseudo_random(5, MIB + 3));
    let arm64_only = layout.blob(OCI_LAYER, pseudo_random(6, 2 * MIB - 7));

    let image_layers = vec![big.clone(), medium.clone(), small.clone(), tiny.clone()];
    let image = layout.image("amd64", &image_layers);

    // The index shares `big` and `small` with the image, and `small` between its
    // two platforms.
    let amd64_layers = [big.clone(), amd64_only.clone(), small.clone()];
    let arm64_layers = [arm64_only.clone(), small.clone()];
    let mut amd64 = layout.image("amd64", &amd64_layers);
    let mut arm64 = layout.image("arm64", &arm64_layers);
    amd64["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    arm64["platform"] = json!({ "architecture": "arm64", "os": "linux", "variant": "v8" });
    let multi_manifests = vec![
        amd64["digest"].as_str().unwrap().to_owned(),
        arm64["digest"].as_str().unwrap().to_owned(),
    ];
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd64, arm64],
        "annotations": { "org.opencontainers.image.title": "lain multi" },
    });
    let multi = layout.blob(OCI_INDEX, serde_json::to_vec_pretty(&index).unwrap());
    let multi_layers = vec![big, amd64_only, small, arm64_only];

    let blobs = layout.finish(&[(&image, "image"), (&multi, "multi")]);
    Input {
        blobs,
        image,
        multi,
        image_layers,
        multi_layers,
        multi_manifests,
    }
}

/// `(digest of the manifest named `name`, its media type)` in a layout's index.json.
fn layout_ref(dir: &Path, name: &str) -> (String, String) {
    let bytes = std::fs::read(dir.join("index.json")).expect("read index.json");
    let index: Value = serde_json::from_slice(&bytes).expect("index.json is JSON");
    let entries: Vec<&Value> = index["manifests"]
        .as_array()
        .expect("index.json manifests")
        .iter()
        .filter(|m| m["annotations"][REF_NAME] == name)
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "{name:?} in {}",
        String::from_utf8_lossy(&bytes)
    );
    (
        entries[0]["digest"].as_str().unwrap().to_owned(),
        entries[0]["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Asserts `out` holds `expected` byte for byte (and nothing else).
#[track_caller]
fn assert_same_blobs(expected: &BTreeMap<String, Vec<u8>>, out: &Path) {
    let got = layout_blobs(out);
    for (digest, bytes) in expected {
        let Some(copy) = got.get(digest) else {
            panic!(
                "blob {digest} ({} bytes) missing from {}; it has {:?}",
                bytes.len(),
                out.display(),
                got.keys().collect::<Vec<_>>()
            );
        };
        assert!(
            copy == bytes,
            "blob {digest} differs: {} bytes expected, {} bytes got (sha256 of the copy {})",
            bytes.len(),
            copy.len(),
            common::sha256(copy)
        );
    }
    let extra: Vec<&String> = got.keys().filter(|d| !expected.contains_key(*d)).collect();
    assert!(
        extra.is_empty(),
        "unexpected blobs in {}: {extra:?}",
        out.display()
    );
}

/// The blobs reachable from the manifest or index `root` (itself included).
fn closure(input: &Input, root: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.clone()];
    while let Some(desc) = todo.pop() {
        let digest = desc["digest"].as_str().unwrap().to_owned();
        let bytes = input.blobs[&digest].clone();
        let media_type = desc["mediaType"].as_str().unwrap();
        if media_type == OCI_MANIFEST || media_type == OCI_INDEX {
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(config) = doc.get("config") {
                todo.push(config.clone());
            }
            for key in ["layers", "manifests"] {
                if let Some(list) = doc.get(key).and_then(Value::as_array) {
                    todo.extend(list.iter().cloned());
                }
            }
        }
        out.insert(digest, bytes);
    }
    out
}

/// One access-log line: `(method, path)`, from its `method=` and `path=` fields.
fn access(line: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    Some((field("method=")?, field("path=")?))
}

/// The access-log lines of `log` (from its `from`th byte on) that upload blob bytes:
/// a `PATCH` or `PUT` to `/blobs/uploads/`.
fn uploads(log: &str, from: usize) -> Vec<String> {
    log[from..]
        .lines()
        .filter(|line| {
            access(line).is_some_and(|(method, path)| {
                (method == "PATCH" || method == "PUT") && path.contains("/blobs/uploads/")
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The registry's log once it holds every request made so far: the access-log lines
/// reach the log through a pipe and a thread, so a marker request is sent and awaited.
fn settled_log(registry: &common::Registry) -> String {
    static MARKERS: AtomicUsize = AtomicUsize::new(0);
    let marker = format!(
        "/v2/skopeo-test-marker-{}/tags/list",
        MARKERS.fetch_add(1, Ordering::Relaxed)
    );
    registry.request("GET", &marker).send();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = registry.log();
        if let Some(at) = log.find(&marker) {
            // Up to the end of the marker's line.
            let end = log[at..].find('\n').map_or(log.len(), |i| at + i + 1);
            return log[..end].to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the registry never logged {marker}\n--- registry log ---\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts skopeo's `--debug` output says it skipped every one of `blobs` because the
/// registry already had it (in the repository, or mounted from another one).
#[track_caller]
fn assert_skipped(run: &Run, blobs: &[Value]) {
    for blob in blobs {
        let digest = blob["digest"].as_str().unwrap();
        let skipped = format!("Skipping blob {digest} (already present)");
        assert!(
            run.stderr.contains(&skipped),
            "skopeo did not reuse {digest}\n{}",
            run.output()
        );
    }
}

/// The digests of the blobs skopeo's `--debug` output says it uploaded.
fn uploaded(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|line| line.split("Upload of layer ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn skopeo_round_trips_images_and_indexes_byte_for_byte() {
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let oci = |dir: &Path, name: &str| format!("oci:{}:{name}", dir.display());
    let image_manifest = input.bytes(&input.image).to_vec();
    let multi_index = input.bytes(&input.multi).to_vec();
    let image_digest = input.image["digest"].as_str().unwrap();
    let multi_digest = input.multi["digest"].as_str().unwrap();
    let image_doc: Value = serde_json::from_slice(&image_manifest).unwrap();

    // The layout itself is valid: skopeo reads both references back as written, and
    // copies them into another layout unchanged.
    for (name, bytes) in [("image", &image_manifest), ("multi", &multi_index)] {
        let run = skopeo.ok(None, "inspect", &["--raw", &oci(&input_dir, name)]);
        assert!(
            run.stdout.as_bytes() == bytes.as_slice(),
            "skopeo reads {name} differently\n{}",
            run.output()
        );
    }
    let local = work.path().join("local");
    skopeo.ok(
        None,
        "copy",
        &[&oci(&input_dir, "image"), &oci(&local, "image")],
    );
    skopeo.ok(
        None,
        "copy",
        &["--all", &oci(&input_dir, "multi"), &oci(&local, "multi")],
    );
    assert_eq!(layout_ref(&local, "image").0, image_digest);
    assert_eq!(layout_ref(&local, "multi").0, multi_digest);
    assert_same_blobs(&input.blobs, &local);

    let registry = common::Registry::start();
    let reg = Some(&registry);
    let addr = registry.addr.clone();
    let docker = |reference: &str| format!("docker://{addr}/{reference}");
    // `oci:input:NAME` to `docker://ADDR/DEST` (with every manifest of an index).
    let push = |name: &str, dest: &str| {
        skopeo.ok(
            reg,
            "copy",
            &[
                "--all",
                "--dest-tls-verify=false",
                &oci(&input_dir, name),
                &docker(dest),
            ],
        )
    };
    let inspect = |reference: &str, extra: &[&str]| {
        let target = docker(reference);
        let mut args = vec!["--raw", "--tls-verify=false"];
        args.extend(extra);
        args.push(&target);
        skopeo.ok(reg, "inspect", &args).stdout
    };

    // Push the image, and the index with all its manifests. Every config and layer is
    // uploaded once: the layers the index shares with the image are mounted from
    // lain/app, or found by HEAD.
    let runs = [push("image", "lain/app:v1"), push("multi", "lain/multi:v1")];
    let sent_by_skopeo: Vec<String> = runs.iter().flat_map(uploaded).collect();
    let mut distinct = sent_by_skopeo.clone();
    distinct.sort();
    distinct.dedup();
    let blobs: Vec<&String> = input
        .blobs
        .keys()
        .filter(|d| *d != image_digest && *d != multi_digest)
        .filter(|d| !input.multi_manifests.contains(d))
        .collect();
    assert_eq!(
        distinct.iter().collect::<Vec<_>>(),
        blobs,
        "skopeo did not upload every config and layer\n{}\n{}",
        runs[0].output(),
        runs[1].output()
    );
    // The access log shows those uploads (one finishing PUT each): the checks on the
    // log below are not vacuous.
    let log = settled_log(&registry);
    let puts = uploads(&log, 0)
        .iter()
        .filter(|line| line.contains("method=PUT"))
        .count();
    assert_eq!(
        puts,
        sent_by_skopeo.len(),
        "one PUT to /blobs/uploads/ per blob skopeo uploaded ({sent_by_skopeo:?})\n--- registry log ---\n{log}"
    );

    // The registry serves the manifests exactly as pushed, by tag and by digest, and
    // the config as pushed.
    for (reference, expected) in [
        ("lain/app:v1".to_owned(), &image_manifest),
        (format!("lain/app@{image_digest}"), &image_manifest),
        ("lain/multi:v1".to_owned(), &multi_index),
        (format!("lain/multi@{multi_digest}"), &multi_index),
    ] {
        let got = inspect(&reference, &[]);
        assert!(
            got.as_bytes() == expected.as_slice(),
            "manifest of {reference} differs from the pushed one\nexpected:\n{}\ngot:\n{got}",
            String::from_utf8_lossy(expected)
        );
    }
    let config = inspect("lain/app:v1", &["--config"]);
    assert!(
        config.as_bytes() == input.bytes(&image_doc["config"]),
        "config differs: {config}"
    );

    // Pull both back into a fresh layout: same digests, same bytes, nothing else.
    let out = work.path().join("out");
    let pull = |src: &str, name: &str| {
        skopeo.ok(
            reg,
            "copy",
            &[
                "--all",
                "--src-tls-verify=false",
                &docker(src),
                &oci(&out, name),
            ],
        )
    };
    pull("lain/app:v1", "image");
    assert_eq!(
        layout_ref(&out, "image"),
        (image_digest.to_owned(), OCI_MANIFEST.to_owned())
    );
    assert_same_blobs(&closure(&input, &input.image), &out);
    pull("lain/multi:v1", "multi");
    assert_eq!(
        layout_ref(&out, "multi"),
        (multi_digest.to_owned(), OCI_INDEX.to_owned())
    );
    assert_same_blobs(&input.blobs, &out);

    // Pushing the same content again moves no blob bytes: to another tag of the same
    // repositories, every blob (configs included) is found by HEAD.
    let before = settled_log(&registry).len();
    let runs = [push("image", "lain/app:v2"), push("multi", "lain/multi:v2")];
    assert_skipped(&runs[0], &input.image_layers);
    assert_skipped(&runs[1], &input.multi_layers);
    for run in &runs {
        assert!(
            uploaded(run).is_empty(),
            "skopeo uploaded blobs again\n{}",
            run.output()
        );
    }
    let log = settled_log(&registry);
    let sent = uploads(&log, before);
    assert!(
        sent.is_empty(),
        "second push to the same repositories uploaded blob bytes:\n{}\n--- registry log ---\n{log}",
        sent.join("\n")
    );
    assert_eq!(inspect("lain/app:v2", &[]), inspect("lain/app:v1", &[]));
    assert_eq!(inspect("lain/multi:v2", &[]), inspect("lain/multi:v1", &[]));

    // To a fresh repository, skopeo mounts every layer it pushed before (POST
    // ?mount=&from=) instead of sending it. skopeo 1.9 never tries to mount a config,
    // so the config's few hundred bytes (one upload session) are the only ones sent.
    let before = settled_log(&registry).len();
    let run = push("image", "lain/other:v1");
    assert_skipped(&run, &input.image_layers);
    let config_digest = image_doc["config"]["digest"].as_str().unwrap();
    let sent_by_skopeo = uploaded(&run);
    assert!(
        sent_by_skopeo.iter().all(|d| d == config_digest),
        "skopeo uploaded {sent_by_skopeo:?} to a fresh repository, not only the config {config_digest}\n{}",
        run.output()
    );
    let log = settled_log(&registry);
    let sent = uploads(&log, before);
    let puts = sent.iter().filter(|l| l.contains("method=PUT")).count();
    let patches = sent.len() - puts;
    assert!(
        puts <= sent_by_skopeo.len() && patches <= sent_by_skopeo.len(),
        "push to a fresh repository uploaded more than the config:\n{}\n{}\n--- registry log ---\n{log}",
        sent.join("\n"),
        run.output()
    );
    assert_eq!(
        inspect("lain/other:v1", &[]).as_bytes(),
        image_manifest.as_slice()
    );
}

/// What a collection keeps still pulls byte for byte: the image and the index (with its
/// children) stay tagged in their repositories while copies of both are deleted from
/// others; `garbage-collect --delete-untagged` runs through the running server with
/// every pack rewritten, and skopeo pulls the kept ones back unchanged.
#[test]
fn skopeo_pulls_what_a_collection_keeps_byte_for_byte() {
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let oci = |dir: &Path, name: &str| format!("oci:{}:{name}", dir.display());
    let data = tempfile::tempdir().expect("tempdir");
    let registry = common::Registry::start_in(data.path());
    let reg = Some(&registry);
    let addr = registry.addr.clone();
    let docker = |reference: &str| format!("docker://{addr}/{reference}");
    let push = |name: &str, dest: &str| {
        let args = [
            "--all",
            "--dest-tls-verify=false",
            &oci(&input_dir, name),
            &docker(dest),
        ];
        skopeo.ok(reg, "copy", &args);
    };
    push("image", "lain/app:v1");
    push("multi", "lain/multi:v1");
    push("image", "lain/gone:v1");
    push("multi", "lain/untagged:v1");
    let image_digest = input.image["digest"].as_str().unwrap();
    registry
        .request("DELETE", &format!("/v2/lain/gone/manifests/{image_digest}"))
        .send()
        .expect(202, None);
    registry
        .request("DELETE", "/v2/lain/untagged/manifests/v1")
        .send()
        .expect(202, None);

    let run = common::collect_everything(data.path(), &["-m"]);
    assert!(run.status.success(), "{run:?}");
    let text = common::stdout(&run);
    // The untagged index and its children (3 manifests) are removed.
    assert!(text.contains("removed 3 manifests"), "{text}");
    assert!(!text.contains("rewrote 0 packs"), "{text}");
    for (repo, digest) in [
        ("lain/gone", image_digest),
        ("lain/untagged", input.multi["digest"].as_str().unwrap()),
    ] {
        registry
            .request("GET", &format!("/v2/{repo}/manifests/{digest}"))
            .send()
            .expect(404, None);
    }

    let out = work.path().join("out");
    for (src, name) in [("lain/app:v1", "image"), ("lain/multi:v1", "multi")] {
        let args = [
            "--all",
            "--src-tls-verify=false",
            &docker(src),
            &oci(&out, name),
        ];
        skopeo.ok(reg, "copy", &args);
    }
    assert_eq!(layout_ref(&out, "image").0, image_digest);
    assert_eq!(
        layout_ref(&out, "multi").0,
        input.multi["digest"].as_str().unwrap()
    );
    assert_same_blobs(&input.blobs, &out);
}

/// Runs `openssl ARGS` in `dir` (the test's certificate authority).
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, all signed
/// by the CA, in `dir`: ca.crt, server.crt/key, client.cert/key.
fn certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lain test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write");
    for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=lain client")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
}

/// `http.tls` end to end: skopeo pushes and pulls over HTTPS, verifying the server
/// against the test CA and presenting a client certificate that the registry requires
/// (`clientcas`); without a client certificate the handshake is refused.
#[test]
fn skopeo_round_trips_over_tls_with_client_certificates() {
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let pki = work.path().join("pki");
    certificates(&pki);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    // containers' cert-dir convention: *.crt are CAs, *.cert + *.key a client identity.
    let certs = work.path().join("skopeo/certs.d");
    std::fs::copy(pki.join("ca.crt"), certs.join("ca.crt")).expect("copy");
    std::fs::copy(pki.join("client.crt"), certs.join("client.cert")).expect("copy");
    std::fs::copy(pki.join("client.key"), certs.join("client.key")).expect("copy");

    let config = work.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:0\n  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n    minimumtls: tls1.2\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
            pki.join("server.crt").display(),
            pki.join("server.key").display(),
            pki.join("ca.crt").display(),
            work.path().join("data").display(),
        ),
    )
    .expect("write config");
    let registry = common::Registry::launch(common::Launch {
        args: vec![config.display().to_string()],
        keep_addr: true,
        keep_root: true,
        ..common::Launch::default()
    });
    assert!(
        registry.log().contains("listening on https://"),
        "{}",
        registry.log()
    );
    let reg = Some(&registry);
    let target = format!("docker://{}/tls/app:v1", registry.addr);
    let source = format!("oci:{}:image", input_dir.display());
    skopeo.ok(reg, "copy", &["--dest-tls-verify=true", &source, &target]);
    let out = work.path().join("out");
    let pulled = format!("oci:{}:image", out.display());
    skopeo.ok(reg, "copy", &["--src-tls-verify=true", &target, &pulled]);
    assert_same_blobs(&closure(&input, &input.image), &out);

    // Without the client certificate, the registry refuses the connection.
    std::fs::remove_file(certs.join("client.cert")).expect("rm");
    std::fs::remove_file(certs.join("client.key")).expect("rm");
    let refused = skopeo.run("inspect", &["--raw", "--tls-verify=true", &target]);
    assert!(
        !refused.success,
        "served without a client certificate\n{}",
        refused.output()
    );
    // Nor does a plain-HTTP request get an answer.
    let plain = std::net::TcpStream::connect(&registry.addr).and_then(|mut s| {
        use std::io::Write;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    });
    let answer = plain.unwrap_or_default();
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered over TLS"
    );
}

/// skopeo through htpasswd (`--dest-creds`) and through token auth (a Bearer token
/// from the test's own signing, `--dest-registry-token`): pushes and pulls with the
/// right credentials, and refusals with wrong ones or a token that grants only pull.
#[test]
fn skopeo_logs_in_with_htpasswd_and_with_tokens() {
    use common::tokens::{ISSUER, SERVICE, bundle, token};
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let source = format!("oci:{}:image", input_dir.display());
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let users = work.path().join("htpasswd");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("write");
    let configs = [
        format!(
            "auth:\n  htpasswd:\n    realm: lain\n    path: {}\n",
            users.display()
        ),
        format!(
            "auth:\n  token:\n    realm: https://console.lain.local/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            bundle(work.path()).display()
        ),
    ];
    for (n, auth) in configs.iter().enumerate() {
        let config = work.path().join(format!("config-{n}.yml"));
        std::fs::write(&config, format!("version: 0.1\n{auth}")).expect("write");
        let registry = common::Registry::launch(common::Launch {
            args: vec![config.display().to_string()],
            ..common::Launch::default()
        });
        let reg = Some(&registry);
        let target = format!("docker://{}/login/app:v1", registry.addr);
        let out = work.path().join(format!("out-{n}"));
        let pulled = format!("oci:{}:image", out.display());
        let (good, bad): (Vec<String>, Vec<String>) = if n == 0 {
            (
                vec!["--dest-creds".into(), "alice:s3cret".into()],
                vec!["--dest-creds".into(), "alice:wrong".into()],
            )
        } else {
            let push = token(
                "alice",
                &[("repository", "login/app", &["pull", "push"])],
                600,
            );
            let pull = token("alice", &[("repository", "login/app", &["pull"])], 600);
            (
                vec!["--dest-registry-token".into(), push],
                vec!["--dest-registry-token".into(), pull],
            )
        };
        let args = |creds: &[String], from: &str, to: &str| -> Vec<String> {
            let mut args = vec!["--dest-tls-verify=false".to_owned()];
            args.extend(creds.iter().cloned());
            args.push(from.to_owned());
            args.push(to.to_owned());
            args
        };
        let refused = {
            let a = args(&bad, &source, &target);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            skopeo.run("copy", &a)
        };
        assert!(
            !refused.success,
            "pushed with bad credentials\n{}",
            refused.output()
        );
        let a = args(&good, &source, &target);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        skopeo.ok(reg, "copy", &a);
        // Pull back with the same kind of credentials.
        let src_creds: Vec<String> = good
            .iter()
            .map(|s| s.replace("--dest-", "--src-"))
            .collect();
        let mut a = vec!["--src-tls-verify=false".to_owned()];
        a.extend(src_creds);
        a.push(target.clone());
        a.push(pulled.clone());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        skopeo.ok(reg, "copy", &a);
        assert_same_blobs(&closure(&input, &input.image), &out);
        assert!(
            registry.log().contains("subject=alice"),
            "{}",
            registry.log()
        );
    }
}

/// `registry token-server` in front of the registry, as LAIN Console is: skopeo with
/// `--creds` follows the registry's challenge to the token server, logs in there and
/// gets tokens with the scopes the grant table allows, for each way of naming the
/// signing key (libtrust kid, thumbprint kid, x5c chain), and with an ES512 key.
#[test]
fn skopeo_through_the_token_server() {
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let source = format!("oci:{}:image", input_dir.display());
    let users = work.path().join("users");
    let alice = bcrypt::hash("alice-pw", 4).expect("bcrypt");
    let bob = bcrypt::hash("bob-pw", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{alice}\nbob:{bob}\n")).expect("write");
    // The registry trusts the test root (for x5c) and the RSA key's certificate.
    let bundle = common::tokens::bundle(work.path());
    for (n, (kid, key, cert)) in [
        ("libtrust", "rsa.key", "rsa.crt"),
        ("thumbprint", "rsa.key", "rsa.crt"),
        ("x5c", "leaf-ec.key", "leaf-ec.crt"),
        // ES512: P-521, which jsonwebtoken lacks.
        ("libtrust", "ec521.key", "ec521.crt"),
    ]
    .into_iter()
    .enumerate()
    {
        let token_server = common::tokens::TokenServer::start(
            work.path(),
            kid,
            (key, cert),
            &users,
            "  - user: alice\n    repository: \"lain/*\"\n    actions: [pull, push]\n  - user: bob\n    repository: \"lain/*\"\n    actions: [pull]\n",
        );
        let config = work.path().join(format!("registry-{n}.yml"));
        std::fs::write(
            &config,
            format!("version: 0.1\n{}", token_server.registry_auth(&bundle)),
        )
        .expect("write");
        let registry = common::Registry::launch(common::Launch {
            args: vec![config.display().to_string()],
            ..common::Launch::default()
        });
        let reg = Some(&registry);
        let target = format!("docker://{}/lain/app:v{n}", registry.addr);
        // bob may only pull: his push is refused.
        let refused = skopeo.run(
            "copy",
            &[
                "--dest-tls-verify=false",
                "--dest-creds",
                "bob:bob-pw",
                &source,
                &target,
            ],
        );
        assert!(!refused.success, "bob pushed ({kid})\n{}", refused.output());
        let wrong = skopeo.run(
            "copy",
            &[
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:nope",
                &source,
                &target,
            ],
        );
        assert!(
            !wrong.success,
            "a wrong password pushed ({kid})\n{}",
            wrong.output()
        );
        skopeo.ok(
            reg,
            "copy",
            &[
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:alice-pw",
                &source,
                &target,
            ],
        );
        let out = work.path().join(format!("out-{n}"));
        let pulled = format!("oci:{}:image", out.display());
        skopeo.ok(
            reg,
            "copy",
            &[
                "--src-tls-verify=false",
                "--src-creds",
                "bob:bob-pw",
                &target,
                &pulled,
            ],
        );
        assert_same_blobs(&closure(&input, &input.image), &out);
    }
}

/// A skopeo push loop while token auth is turned on and off through etcd (LAIN's key):
/// each request is judged by the settings in force when it arrived — pushes while auth
/// is on are refused (their token grants only pull), pushes while it is off go through
/// — and no push half-succeeds: every tag the registry holds afterwards has its whole
/// image, and no request failed with a server error.
#[test]
fn pushes_while_token_auth_flips_through_etcd() {
    use common::etcd::{Etcd, eventually};
    use common::tokens::{ISSUER, SERVICE, bundle, token};
    const AUTH_KEY: &str = "/lain/config/auth/registry";
    let work = tempfile::tempdir().expect("tempdir");
    let input_dir = work.path().join("input");
    let input = write_input(&input_dir);
    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let source = format!("oci:{}:image", input_dir.display());
    let etcd = Etcd::start(false);
    let config = work.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  token:\n    realm: https://console.lain.local/token\n    service: file\n    \
             issuer: file\n    rootcertbundle: {}\n",
            bundle(work.path()).display()
        ),
    )
    .expect("write");
    let registry = common::Registry::launch(common::Launch {
        args: vec![config.display().to_string()],
        env: vec![("REGISTRY_ETCD_ENDPOINTS", etcd.url())],
        ..common::Launch::default()
    });
    let on = || {
        etcd.put(
            AUTH_KEY,
            &json!({"realm": "https://console.lain.local/token", "issuer": ISSUER, "service": SERVICE})
                .to_string(),
        )
    };
    let status = || registry.request("GET", "/v2/").send().status;
    let pull_only = token("ci", &[("repository", "flip/app", &["pull"])], 600);
    let push = |n: usize| {
        let target = format!("docker://{}/flip/app:v{n}", registry.addr);
        skopeo
            .run(
                "copy",
                &[
                    "--dest-tls-verify=false",
                    "--dest-registry-token",
                    &pull_only,
                    &source,
                    &target,
                ],
            )
            .success
    };
    // Settled states first: on refuses, off serves.
    on();
    eventually(Duration::from_secs(2), "auth on", || status() == 401);
    assert!(!push(0), "pushed with a pull-only token while auth was on");
    etcd.delete(AUTH_KEY);
    eventually(Duration::from_secs(2), "auth off", || status() == 200);
    assert!(push(1), "refused while auth was off\n{}", registry.log());
    // Then flips every 150 ms while pushes run.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if flip {
                    on();
                } else {
                    etcd.delete(AUTH_KEY);
                }
                flip = !flip;
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let outcomes = (2..14).map(push).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        outcomes
    });
    etcd.delete(AUTH_KEY);
    eventually(Duration::from_secs(2), "auth off at the end", || {
        status() == 200
    });
    // Every tag present holds a whole image; every acknowledged push is among them.
    let tags: Value = serde_json::from_slice(
        &registry
            .request("GET", "/v2/flip/app/tags/list")
            .send()
            .body,
    )
    .expect("tags JSON");
    let tags: Vec<String> = tags["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (i, pushed) in outcomes.iter().enumerate() {
        let tag = format!("v{}", i + 2);
        if *pushed {
            assert!(
                tags.contains(&tag),
                "{tag} acknowledged but absent: {tags:?}"
            );
        }
    }
    let expected = closure(&input, &input.image);
    for tag in &tags {
        let manifest = registry
            .request("GET", &format!("/v2/flip/app/manifests/{tag}"))
            .header("accept", OCI_MANIFEST)
            .send();
        manifest.expect(200, None);
        let doc: Value = serde_json::from_slice(&manifest.body).expect("manifest JSON");
        let digests = std::iter::once(&doc["config"])
            .chain(doc["layers"].as_array().into_iter().flatten())
            .filter_map(|d| d["digest"].as_str());
        for digest in digests {
            let blob = registry
                .request("GET", &format!("/v2/flip/app/blobs/{digest}"))
                .send();
            blob.expect(200, None);
            assert_eq!(
                Some(&blob.body),
                expected.get(digest),
                "{tag}: {digest} differs"
            );
        }
    }
    let log = registry.log();
    assert!(
        !log.contains("status=500"),
        "a server error while auth flipped\n{log}"
    );
    assert!(tags.contains(&"v1".to_owned()), "{tags:?}");
    assert!(!tags.contains(&"v0".to_owned()), "{tags:?}");
}
