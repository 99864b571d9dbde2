//! Black-box tests of `registry garbage-collect` and `registry prune` on the real
//! binary: offline and through a running server (its control socket), what each keeps
//! and frees, and collections killed with SIGKILL at random moments, offline and inside
//! the server, after which the store still serves everything kept and a rerun
//! finishes the job.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Registry, collect_everything, push_image, registry, served, stdout};

/// The layers (and config) of the manifest `digest` of `repo`.
fn blobs_of(reg: &Registry, repo: &str, digest: &str) -> Vec<String> {
    let json = reg
        .request("GET", &format!("/v2/{repo}/manifests/{digest}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .json();
    let mut out = vec![json["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in json["layers"].as_array().unwrap() {
        out.push(layer["digest"].as_str().unwrap().to_owned());
    }
    out
}

fn status(reg: &Registry, path: &str) -> u16 {
    reg.request("GET", path).send().status
}

fn packs_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn garbage_collect_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_in(dir.path());
    let mut kept = Vec::new();
    for t in 0..3 {
        kept.push(push_image(&reg, "lain/app", &format!("v{t}"), 10 + t));
    }
    push_image(&reg, "lain/web", "v1", 20);
    // Deleted: its blobs go (no other manifest names them).
    let deleted = push_image(&reg, "lain/app", "gone", 30);
    let deleted_blobs = blobs_of(&reg, "lain/app", &deleted);
    reg.request("DELETE", &format!("/v2/lain/app/manifests/{deleted}"))
        .send()
        .expect(202, None);
    // Untagged: kept unless --delete-untagged.
    let untagged = push_image(&reg, "lain/app", "temp", 40);
    let untagged_blobs = blobs_of(&reg, "lain/app", &untagged);
    reg.request("DELETE", "/v2/lain/app/manifests/temp")
        .send()
        .expect(202, None);
    let repos = ["lain/app", "lain/web"];
    let before = served(&reg, &repos);

    // A dry run through the server lists what would go and changes nothing.
    let dry = registry(
        dir.path(),
        &["garbage-collect", "--dry-run", "--grace", "0s"],
    );
    assert!(dry.status.success(), "{dry:?}");
    let text = stdout(&dry);
    for blob in &deleted_blobs {
        assert!(
            text.contains(&format!("would unlink blob {blob} from lain/app")),
            "{text}"
        );
    }
    assert!(text.contains("would remove 0 manifests, 3 links"), "{text}");
    for blob in &deleted_blobs {
        assert_eq!(status(&reg, &format!("/v2/lain/app/blobs/{blob}")), 200);
    }

    // The real thing, while the server runs.
    let size_before = packs_bytes(dir.path());
    let run = collect_everything(dir.path(), &[]);
    assert!(run.status.success(), "{run:?}");
    let text = stdout(&run);
    assert!(
        text.contains("removed 0 manifests, 3 links and 4 blobs"),
        "{text}"
    );
    assert!(text.contains("rewrote"), "{text}");
    for blob in &deleted_blobs {
        assert_eq!(status(&reg, &format!("/v2/lain/app/blobs/{blob}")), 404);
    }
    for blob in &untagged_blobs {
        assert_eq!(status(&reg, &format!("/v2/lain/app/blobs/{blob}")), 200);
    }
    assert_eq!(served(&reg, &repos), before);
    assert!(packs_bytes(dir.path()) < size_before);

    // Offline, with --delete-untagged: the untagged image goes too.
    assert!(reg.terminate());
    let run = registry(dir.path(), &["garbage-collect", "-m", "--grace", "0s"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        stdout(&run).contains("removed 1 manifests"),
        "{}",
        stdout(&run)
    );
    let reg = Registry::start_in(dir.path());
    assert_eq!(served(&reg, &repos), before);
    assert_eq!(
        status(&reg, &format!("/v2/lain/app/manifests/{untagged}")),
        404
    );
    for blob in &untagged_blobs {
        assert_eq!(status(&reg, &format!("/v2/lain/app/blobs/{blob}")), 404);
    }
    for digest in &kept {
        assert_eq!(
            status(&reg, &format!("/v2/lain/app/manifests/{digest}")),
            200
        );
    }
    assert!(reg.terminate());
    let check = registry(dir.path(), &["fsck", "--deep"]);
    assert!(check.status.success(), "{}", stdout(&check));
}

#[test]
fn prune_keeps_the_newest_tags_by_name_then_collects() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_in(dir.path());
    let mut images = BTreeMap::new();
    // Pushed out of order: the names, not the push times, say which are newest.
    for n in [3u64, 12, 1, 10, 2, 11] {
        let tag = format!("release-{n}");
        images.insert(n, push_image(&reg, "lain/app", &tag, n));
    }
    push_image(&reg, "lain/other", "release-1", 99);
    let out = registry(
        dir.path(),
        &[
            "prune",
            "--keep-last",
            "2",
            "--order",
            "name",
            "--repo",
            "lain/a*",
            "--grace",
            "0s",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("removed 4 tags and 4 manifests in 1 repositories"),
        "{text}"
    );
    let tags = reg.request("GET", "/v2/lain/app/tags/list").send().json()["tags"].clone();
    assert_eq!(tags, serde_json::json!(["release-11", "release-12"]));
    for (n, digest) in &images {
        let expected = if *n >= 11 { 200 } else { 404 };
        assert_eq!(
            status(&reg, &format!("/v2/lain/app/manifests/{digest}")),
            expected,
            "release-{n}"
        );
    }
    assert_eq!(status(&reg, "/v2/lain/other/manifests/release-1"), 200);
    served(&reg, &["lain/app", "lain/other"]);
}

/// A collection killed at a random moment (offline, or the server collecting online)
/// leaves a store that opens and serves every kept image whole; after all the kills, a
/// collection that runs to the end leaves a store fsck finds clean.
#[test]
fn killed_collections_leave_a_whole_store() {
    let dir = tempfile::tempdir().unwrap();
    let seed = common::seed();
    let mut state = seed | 1;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let repos = ["lain/a", "lain/b", "lain/c"];
    let reg = Registry::start_in(dir.path());
    let mut tags: Vec<(&str, String)> = Vec::new();
    for i in 0..60u64 {
        let repo = repos[(i % 3) as usize];
        let tag = format!("v{i}");
        push_image(&reg, repo, &tag, 500 + i);
        tags.push((repo, tag));
    }
    drop(reg);

    let rounds = 40;
    let mut killed_mid_run = 0;
    for round in 0..rounds {
        // Delete two images, so that every round has something to collect.
        let reg = Registry::start_in(dir.path());
        for _ in 0..2 {
            if tags.len() > 4 {
                let (repo, tag) = tags.remove(random(tags.len() as u64) as usize);
                let digest = reg
                    .request("HEAD", &format!("/v2/{repo}/manifests/{tag}"))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .header("docker-content-digest")
                    .unwrap()
                    .to_owned();
                reg.request("DELETE", &format!("/v2/{repo}/manifests/{digest}"))
                    .send()
                    .expect(202, None);
            }
        }
        let expected = served(&reg, &repos);
        let delay = Duration::from_millis(random(80));
        let online = round % 2 == 1;
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_registry"))
                .args(common::COLLECT_EVERYTHING)
                .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let finished = if online {
            // The server collects (the command asks it through the socket); kill the
            // server.
            let mut collector = spawn();
            std::thread::sleep(delay);
            common::signal(reg.pid(), "KILL");
            drop(reg);
            collector.wait().unwrap().success()
        } else {
            drop(reg);
            let mut collector = spawn();
            std::thread::sleep(delay);
            let _ = collector.kill();
            collector.wait().unwrap().success()
        };
        if !finished {
            killed_mid_run += 1;
        }
        let reg = Registry::start_in(dir.path());
        assert_eq!(
            served(&reg, &repos),
            expected,
            "round {round} (seed {seed})"
        );
        drop(reg);
    }
    eprintln!("{killed_mid_run} of {rounds} collections killed before they finished");
    assert!(
        killed_mid_run >= rounds / 4,
        "only {killed_mid_run} of {rounds} collections were killed before they finished"
    );
    let run = collect_everything(dir.path(), &[]);
    assert!(run.status.success(), "{run:?}");
    let check = registry(dir.path(), &["fsck", "--deep"]);
    assert!(check.status.success(), "seed {seed}: {}", stdout(&check));
    let reg = Registry::start_in(dir.path());
    served(&reg, &repos);
}

/// Pushes a manifest naming `config` and `layers` under `tag`; the status, and the
/// manifest's digest.
fn put_manifest(
    reg: &Registry,
    repo: &str,
    tag: &str,
    config: &str,
    layers: &[(String, usize)],
) -> (u16, String) {
    let manifest = lain_testkit::image_manifest(
        (config, 2),
        layers.iter().map(|(d, len)| (d.as_str(), *len)),
    );
    let response = reg
        .request("PUT", &format!("/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send();
    (response.status, common::sha256(manifest.as_bytes()))
}

/// Pushers (a shared base layer, mounted from another repository, and a fresh layer
/// per image), taggers and deleters run over HTTP while `registry garbage-collect -m
/// --grace 0s` runs through the server in a loop. A manifest PUT either succeeds with
/// every reference readable or is refused with MANIFEST_BLOB_UNKNOWN (the pusher then
/// uploads again); afterwards every tag pulls whole, fsck finds nothing wrong, and one
/// more collection finds nothing left to remove.
#[test]
fn collections_in_a_loop_beside_pushes_mounts_and_deletes_over_http() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::start_in(dir.path()));
    let base: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let base_digest = common::put_blob(&reg, "lain/base", &base);
    let config = common::put_blob(&reg, "lain/base", b"{}");
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..3u64 {
        let (reg, stop, refused) = (reg.clone(), stop.clone(), refused.clone());
        let (base, base_digest, config) = (base.clone(), base_digest.clone(), config.clone());
        workers.push(std::thread::spawn(move || {
            let repo = format!("lain/app{w}");
            let mut pushed = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Mount the base (or upload it, if a collection took it from lain/base),
                // upload a fresh layer, push the manifest.
                let mount = reg
                    .request(
                        "POST",
                        &format!("/v2/{repo}/blobs/uploads/?mount={base_digest}&from=lain/base"),
                    )
                    .send();
                if mount.status != 201 {
                    // Not mounted: the answer is an upload session; end it, and upload.
                    assert_eq!(mount.status, 202);
                    let session = mount.header("location").expect("Location").to_owned();
                    reg.request("DELETE", &session).send().expect(204, None);
                    common::put_blob(&reg, &repo, &base);
                }
                common::put_blob(&reg, &repo, b"{}");
                let layer: Vec<u8> = format!("layer {w} {n}").into_bytes().repeat(500);
                let layer_digest = common::put_blob(&reg, &repo, &layer);
                let layers = [
                    (base_digest.clone(), base.len()),
                    (layer_digest, layer.len()),
                ];
                let tag = format!("t{}", n % 4);
                match put_manifest(&reg, &repo, &tag, &config, &layers) {
                    (201, digest) => {
                        pushed += 1;
                        // Every other image is deleted again at once: its layer (and,
                        // when no image is left, the base) becomes garbage.
                        if n.is_multiple_of(2) {
                            let status = reg
                                .request("DELETE", &format!("/v2/{repo}/manifests/{digest}"))
                                .send()
                                .status;
                            assert!(status == 202 || status == 404, "delete: {status}");
                        }
                    }
                    (400, _) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    (status, _) => panic!("manifest PUT: {status}"),
                }
            }
            pushed
        }));
    }
    let mut collections = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) || collections < 4 {
        let run = collect_everything(dir.path(), &["-m"]);
        assert!(run.status.success(), "{run:?}");
        collections += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let pushed: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    eprintln!(
        "{collections} collections beside {pushed} acknowledged pushes ({} refused)",
        refused.load(Ordering::Relaxed)
    );
    assert!(pushed > 20, "only {pushed} pushes");
    let repos = ["lain/app0", "lain/app1", "lain/app2"];
    // Every tag pulls whole (served() fetches and checks every blob it names).
    served(&reg, &repos);
    let check = registry(dir.path(), &["fsck"]);
    assert!(check.status.success(), "{}", stdout(&check));
    collect_everything(dir.path(), &["-m"]);
    let last = collect_everything(dir.path(), &["-m"]);
    assert!(
        stdout(&last).contains("removed 0 manifests, 0 links and 0 blobs"),
        "{}",
        stdout(&last)
    );
    assert!(
        stdout(&last).contains("; 0 unreferenced blobs in all"),
        "{}",
        stdout(&last)
    );
}
