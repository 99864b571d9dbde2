//! A full disk through the server: the data directory (or only its index) on a small
//! tmpfs the test mounts, filled by pushes (or by a file beside the index). Pushes get
//! 507 `UNAVAILABLE` in the spec's JSON body; what is stored stays readable and whole;
//! deletes and a collection still work on the full disk, and what they free takes
//! pushes again without a restart. Mounting needs root, as CI's machines give.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs {
            path: path.to_owned(),
            _dir: None,
        }
    }

    fn fresh(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut fs = Tmpfs::mount(dir.path(), size);
        fs._dir = Some(dir);
        fs
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Bytes that do not repeat, so that every layer is a new blob.
fn layer(seed: u64, len: usize) -> Vec<u8> {
    pseudo_random(seed, len)
}

/// One pushed image: its manifest and blobs, as acknowledged.
struct Image {
    repo: String,
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
}

/// Pushes a config and one layer of `len` bytes, then the manifest; the first refusal
/// is returned as it came.
fn try_push(reg: &Registry, repo: &str, seed: u64, len: usize) -> Result<Image, Response> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = layer(seed, len);
    let mut blobs = Vec::new();
    for bytes in [config, layer] {
        let digest = sha256(&bytes);
        let response = reg
            .request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(bytes.clone())
            .send();
        if response.status != 201 {
            return Err(response);
        }
        blobs.push((digest, bytes));
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        blobs[0].0,
        blobs[0].1.len(),
        blobs[1].0,
        blobs[1].1.len()
    );
    let response = reg
        .request("PUT", &format!("/v2/{repo}/manifests/v{seed}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send();
    if response.status != 201 {
        return Err(response);
    }
    Ok(Image {
        repo: repo.to_owned(),
        manifest: manifest.into_bytes(),
        blobs,
    })
}

/// Every byte of `image` is served as pushed.
fn assert_whole(reg: &Registry, image: &Image) {
    let digest = sha256(&image.manifest);
    let got = reg
        .request("GET", &format!("/v2/{}/manifests/{digest}", image.repo))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send();
    got.expect(200, None);
    assert_eq!(got.body, image.manifest);
    for (digest, bytes) in &image.blobs {
        let got = reg
            .request("GET", &format!("/v2/{}/blobs/{digest}", image.repo))
            .send();
        got.expect(200, None);
        assert!(got.body == *bytes, "{} {digest} differs", image.repo);
    }
}

#[track_caller]
fn assert_storage_full(reg: &Registry, response: &Response, what: &str) {
    let text = response.text();
    assert!(
        response.status == 507 && text.contains("storage is full"),
        "{what}: {} {text}\n{}",
        response.status,
        reg.log()
    );
    response.expect(507, Some("UNAVAILABLE"));
}

fn fsck_is_clean(root: &Path) {
    let out = registry(root, &["fsck", "--deep"]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_disk_filled_by_pushes_keeps_serving_and_takes_pushes_again_after_a_collection() {
    let fs = Tmpfs::fresh("40m");
    let root = fs.path.join("data");
    let reg = Registry::launch(Launch {
        root: Some(root.clone()),
        env: vec![("REGISTRY_STORAGE_ENGINE_RESERVEDSPACE", "8MiB".into())],
        ..Launch::default()
    });
    // A chunked upload begun while there is room.
    let session = reg.request("POST", "/v2/chunked/blobs/uploads/").send();
    session.expect(202, None);
    let location = session.header("location").expect("Location").to_owned();

    let mut images = Vec::new();
    let refused = loop {
        let seed = images.len() as u64;
        match try_push(&reg, &format!("app{}", seed % 3), seed, 1 << 20) {
            Ok(image) => images.push(image),
            Err(response) => break response,
        }
        assert!(images.len() < 100, "a 40 MiB disk took 100 MiB");
    };
    assert_storage_full(&reg, &refused, "the push that found the disk full");
    assert!(images.len() >= 10, "only {} images fit", images.len());

    // Every write of client bytes is refused the same way: a session, a chunk, a manifest.
    assert_storage_full(
        &reg,
        &reg.request("POST", "/v2/app0/blobs/uploads/").send(),
        "a new session",
    );
    assert_storage_full(
        &reg,
        &reg.request("PATCH", &location)
            .header("Content-Type", "application/octet-stream")
            .body(layer(999, 1 << 20))
            .send(),
        "a chunk",
    );
    // What was stored reads back whole.
    for image in &images {
        assert_whole(&reg, image);
    }

    // The index still takes deletes on the full disk, and a collection frees space.
    let (gone, kept) = images.split_at(images.len() / 2);
    for image in gone {
        let digest = sha256(&image.manifest);
        reg.request("DELETE", &format!("/v2/{}/manifests/{digest}", image.repo))
            .send()
            .expect(202, None);
    }
    let collected = collect_everything(&root, &[]);
    assert!(
        collected.status.success(),
        "{}{}",
        stdout(&collected),
        String::from_utf8_lossy(&collected.stderr)
    );

    // Pushes work again, without a restart; the rest is untouched.
    let again = try_push(&reg, "again", 1000, 1 << 20)
        .unwrap_or_else(|r| panic!("after the collection: {} {}", r.status, r.text()));
    assert_whole(&reg, &again);
    for image in kept {
        assert_whole(&reg, image);
    }
    for image in gone {
        let digest = sha256(&image.manifest);
        reg.request("GET", &format!("/v2/{}/manifests/{digest}", image.repo))
            .send()
            .expect(404, Some("MANIFEST_UNKNOWN"));
    }
    assert!(reg.terminate());
    fsck_is_clean(&root);
}

#[test]
fn an_index_out_of_space_refuses_writes_and_recovers_once_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    // RocksDB resumes by itself once 64 MiB are free again (its reserved disk buffer),
    // so the index gets more than that, and a file takes all of it.
    let index = Tmpfs::mount(&root.join("index"), "100m");
    let reg = Registry::launch(Launch {
        root: Some(root.clone()),
        // Small memtables: flushes (new files) come within a few writes.
        env: vec![("REGISTRY_STORAGE_ENGINE_MEMTABLE", "1MiB".into())],
        ..Launch::default()
    });
    let before = try_push(&reg, "before", 1, 10_000).unwrap_or_else(|r| panic!("{}", r.text()));
    let filler = index.path.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 1 << 20];
        while file.write_all(&block).is_ok() {}
    }

    let mut refused = None;
    for seed in 10..2000 {
        if let Err(response) = try_push(&reg, &format!("r{}", seed % 20), seed, 1000) {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the index never ran out of space");
    assert_storage_full(&reg, &refused, "an index write on a full file system");
    assert!(refused.text().contains("index"), "{}", refused.text());
    assert_whole(&reg, &before);

    // Space comes back: RocksDB checks every 5 seconds, then writes resume.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        match try_push(&reg, "after", 5000, 10_000) {
            Ok(image) => break image,
            Err(response) if Instant::now() < deadline => {
                assert_storage_full(&reg, &response, "while the index recovers");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(response) => panic!("never recovered: {}", response.text()),
        }
    };
    assert_whole(&reg, &after);
    assert_whole(&reg, &before);
    assert!(reg.terminate());
    fsck_is_clean(&root);
}
