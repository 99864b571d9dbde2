//! Races through HTTP, many rounds each: whatever the interleaving, the end state is
//! one that some serial order of the requests would give, every request gets an answer
//! the spec allows (never a 500), and nothing is left dangling.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::{Registry, request_to, sha256};

/// Runs `f(i)` on `n` threads released together; their results in order.
fn at_once<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, f) = (barrier.clone(), f.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("racer"))
        .collect()
}

fn packs_bytes(root: &std::path::Path) -> u64 {
    std::fs::read_dir(root.join("packs"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// 32 clients push the same 1 MiB blob at once, into 32 repositories: every push is
/// acknowledged, each repository serves it, and the packs hold one copy.
#[test]
fn thirty_two_pushes_of_one_blob_store_one_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::start_in(dir.path());
    for round in 0..3u8 {
        let blob: Arc<Vec<u8>> =
            Arc::new((0..1u32 << 20).map(|i| (i % 251) as u8 ^ round).collect());
        let before = packs_bytes(dir.path());
        let addr = reg.addr.clone();
        let data = blob.clone();
        let statuses = at_once(32, move |i| {
            let digest = sha256(&data);
            request_to(
                &addr,
                "POST",
                &format!("/v2/same/r{i}/blobs/uploads/?digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .status
        });
        assert!(
            statuses.iter().all(|s| *s == 201),
            "round {round}: {statuses:?}"
        );
        let grown = packs_bytes(dir.path()) - before;
        assert!(
            grown < 2 * blob.len() as u64,
            "round {round}: the packs grew by {grown} bytes for one {} byte blob",
            blob.len()
        );
        let digest = sha256(&blob);
        for i in 0..32 {
            let r = reg
                .request("GET", &format!("/v2/same/r{i}/blobs/{digest}"))
                .send();
            r.expect(200, None);
            assert!(r.body == *blob);
        }
    }
}

/// A PATCH racing the session's cancel: either may win, neither fails with a 500, and
/// afterwards the session is gone.
#[test]
fn a_patch_racing_a_cancel_ends_with_the_session_gone() {
    let reg = Registry::start();
    let chunk = Arc::new(vec![7u8; 256 << 10]);
    for round in 0..40 {
        let r = reg.request("POST", "/v2/race/cancel/blobs/uploads/").send();
        r.expect(202, None);
        let location = r.header("location").expect("location").to_owned();
        let (addr, loc, chunk) = (reg.addr.clone(), location.clone(), chunk.clone());
        let statuses = at_once(2, move |i| {
            let req = if i == 0 {
                request_to(&addr, "PATCH", &loc)
                    .header("Content-Type", "application/octet-stream")
                    .body(chunk.to_vec())
            } else {
                request_to(&addr, "DELETE", &loc)
            };
            let r = req.send();
            (r.status, r.text())
        });
        let (patch, cancel) = (&statuses[0], &statuses[1]);
        assert!(
            [202, 404, 416].contains(&patch.0),
            "round {round}: PATCH {patch:?}"
        );
        assert!(
            [204, 404].contains(&cancel.0),
            "round {round}: DELETE {cancel:?}"
        );
        // A cancel refused while the PATCH wrote (416 to it, or 404 after) is retried
        // by the client; once it succeeds, the session is gone.
        let again = reg.request("DELETE", &location).send();
        assert!(
            [204, 404].contains(&again.status),
            "round {round}: {}",
            again.status
        );
        let status = reg.request("GET", &location).send();
        status.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    }
}

fn manifest(config: &str, config_len: usize, salt: u32) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[],"annotations":{{"salt":"{salt}"}}}}"#
    )
    .into_bytes()
}

/// A tag moved back and forth while others pull by it: every pull gets one of the two
/// manifests whole, with its own digest, never a 404 or another's bytes.
#[test]
fn tag_moves_racing_pulls_by_tag() {
    let reg = Registry::start();
    let config = common::put_blob(&reg, "race/tags", b"{}");
    let images: Arc<Vec<Vec<u8>>> = Arc::new((0..2).map(|s| manifest(&config, 2, s)).collect());
    for m in images.iter() {
        reg.request("PUT", "/v2/race/tags/manifests/latest")
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(m.clone())
            .send()
            .expect(201, None);
    }
    let addr = reg.addr.clone();
    let outcomes = at_once(5, move |i| {
        let mut pulls = 0;
        for n in 0..150 {
            if i == 0 {
                request_to(&addr, "PUT", "/v2/race/tags/manifests/latest")
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(images[n % 2].clone())
                    .send()
                    .expect(201, None);
            } else {
                let r = request_to(&addr, "GET", "/v2/race/tags/manifests/latest")
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send();
                r.expect(200, None);
                assert!(images.contains(&r.body), "a pull got other bytes");
                assert_eq!(
                    r.header("docker-content-digest"),
                    Some(sha256(&r.body).as_str()),
                    "the digest header is not the body's"
                );
                pulls += 1;
            }
        }
        pulls
    });
    assert_eq!(outcomes.iter().sum::<usize>(), 4 * 150);
}

/// A manifest PUT under a tag racing the DELETE of that manifest: afterwards either
/// the manifest is there and the tag names it, or both are gone; a tag never names a
/// manifest that is not there.
#[test]
fn a_manifest_put_racing_its_delete_leaves_no_dangling_tag() {
    let reg = Registry::start();
    let config = common::put_blob(&reg, "race/delete", b"{}");
    for round in 0..60u32 {
        let bytes = manifest(&config, 2, 1000 + round);
        let digest = sha256(&bytes);
        let tag = format!("t{round}");
        let (addr, d, t) = (reg.addr.clone(), digest.clone(), tag.clone());
        let statuses = at_once(2, move |i| {
            if i == 0 {
                request_to(&addr, "PUT", &format!("/v2/race/delete/manifests/{t}"))
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(bytes.clone())
                    .send()
                    .status
            } else {
                request_to(&addr, "DELETE", &format!("/v2/race/delete/manifests/{d}"))
                    .send()
                    .status
            }
        });
        assert_eq!(statuses[0], 201, "round {round}");
        assert!(
            [202, 404].contains(&statuses[1]),
            "round {round}: {statuses:?}"
        );
        let by_digest = reg
            .request("GET", &format!("/v2/race/delete/manifests/{digest}"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .status;
        let by_tag = reg
            .request("GET", &format!("/v2/race/delete/manifests/{tag}"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .status;
        match statuses[1] {
            // The delete came first: the PUT stored it and tagged it.
            404 => assert_eq!((by_digest, by_tag), (200, 200), "round {round}"),
            // The delete came after: the manifest and the tags naming it are gone
            // (the PUT stores and tags in one commit, so no delete falls between).
            _ => assert_eq!((by_digest, by_tag), (404, 404), "round {round}"),
        }
    }
}

/// A cross-repository mount racing the DELETE of the blob's link in the source: the
/// mount either linked the blob (201, and a manifest naming it is accepted) or became
/// an upload session (202, and such a manifest is refused); the source's link is gone
/// either way.
#[test]
fn a_mount_racing_the_source_delete_links_or_refuses_never_dangles() {
    let reg = Registry::start();
    let config = common::put_blob(&reg, "race/base", b"{}");
    let (mut linked, mut refused) = (0, 0);
    for round in 0..60u32 {
        let blob = format!("layer {round}").into_bytes();
        let digest = common::put_blob(&reg, "race/src", &blob);
        let (addr, d) = (reg.addr.clone(), digest.clone());
        let dst = format!("race/dst{round}");
        let target = dst.clone();
        let statuses = at_once(2, move |i| {
            if i == 0 {
                request_to(
                    &addr,
                    "POST",
                    &format!("/v2/{target}/blobs/uploads/?mount={d}&from=race/src"),
                )
                .send()
                .status
            } else {
                request_to(&addr, "DELETE", &format!("/v2/race/src/blobs/{d}"))
                    .send()
                    .status
            }
        });
        assert!(
            [201, 202].contains(&statuses[0]),
            "round {round}: {statuses:?}"
        );
        assert_eq!(statuses[1], 202, "round {round}");
        reg.request("GET", &format!("/v2/race/src/blobs/{digest}"))
            .send()
            .expect(404, Some("BLOB_UNKNOWN"));
        // A manifest naming the blob in the target: accepted exactly when it was linked.
        common::put_blob(&reg, &dst, b"{}");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}]}}"#,
            blob.len()
        );
        let put = reg
            .request("PUT", &format!("/v2/{dst}/manifests/v1"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send();
        if statuses[0] == 201 {
            put.expect(201, None);
            let got = reg
                .request("GET", &format!("/v2/{dst}/blobs/{digest}"))
                .send();
            got.expect(200, None);
            assert_eq!(got.body, blob, "round {round}");
            linked += 1;
        } else {
            put.expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
            refused += 1;
        }
    }
    eprintln!("{linked} mounts linked, {refused} became sessions");
}

/// Garbage collections one after another, with no grace period, while clients push
/// images under tags, move tags, mount layers, delete manifests and pull: every
/// request gets an answer the spec allows (a push whose fresh blob a collection took
/// is told MANIFEST_BLOB_UNKNOWN, never a 500), every tag ends on its last acknowledged
/// manifest, whole, and the store checks clean.
#[test]
fn collections_racing_pushes_tag_moves_mounts_and_deletes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::start_in(dir.path());
    let root = dir.path().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (stop, root) = (stop.clone(), root.clone());
        thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = common::collect_everything(&root, &["--delete-untagged"]);
                assert!(
                    out.status.success(),
                    "{}{}",
                    common::stdout(&out),
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    let addr = reg.addr.clone();
    let finals = at_once(3, move |client| {
        let repo = format!("race/gc{client}");
        let mut last: std::collections::BTreeMap<String, (String, Vec<Vec<u8>>)> =
            Default::default();
        let (mut pushed, mut told_unknown) = (0, 0);
        for n in 0..40u32 {
            let tag = format!("t{}", n % 3);
            // Layers: one new, one mounted from the client before (when there is one).
            let layer = format!("client {client} layer {n}").into_bytes().repeat(50);
            let config = format!("{{\"n\":{n},\"client\":{client}}}").into_bytes();
            let mut blobs = vec![config.clone(), layer.clone()];
            let mut digests = Vec::new();
            for bytes in &blobs {
                let d = sha256(bytes);
                request_to(
                    &addr,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                )
                .body(bytes.clone())
                .send()
                .expect(201, None);
                digests.push(d);
            }
            if let Some((_, (_, earlier))) = last.iter().next() {
                let old = earlier[1].clone();
                let d = sha256(&old);
                let mount = request_to(
                    &addr,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={repo}"),
                )
                .send();
                assert!([201, 202].contains(&mount.status), "{}", mount.text());
                if mount.status == 201 {
                    blobs.push(old);
                    digests.push(d);
                }
            }
            let manifest = lain_testkit::image_manifest(
                (digests[0].as_str(), config.len()),
                digests[1..]
                    .iter()
                    .zip(&blobs[1..])
                    .map(|(d, b)| (d.as_str(), b.len())),
            );
            let put = request_to(&addr, "PUT", &format!("/v2/{repo}/manifests/{tag}"))
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.clone())
                .send();
            match put.status {
                201 => {
                    pushed += 1;
                    let mut all = vec![manifest.into_bytes()];
                    all.extend(blobs);
                    last.insert(tag.clone(), (sha256(&all[0]), all));
                }
                // A collection took a fresh blob between its upload and the manifest.
                400 => {
                    put.expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
                    told_unknown += 1;
                }
                other => panic!("manifest PUT: {other} {}", put.text()),
            }
            // Now and then a tag moves to another acknowledged image, or one is deleted.
            if n % 7 == 6 && last.len() > 1 {
                let (from, to) = {
                    let mut tags = last.keys().cloned();
                    (tags.next().expect("tag"), tags.next().expect("tag"))
                };
                let (digest, image) = last[&from].clone();
                request_to(&addr, "PUT", &format!("/v2/{repo}/manifests/{to}"))
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(image[0].clone())
                    .send()
                    .expect(201, None);
                last.insert(to, (digest, image));
            }
            if n % 11 == 10
                && let Some(tag) = last.keys().next().cloned()
            {
                let (digest, _) = last[&tag].clone();
                request_to(&addr, "DELETE", &format!("/v2/{repo}/manifests/{digest}"))
                    .send()
                    .expect(202, None);
                last.retain(|_, (d, _)| *d != digest);
            }
            // Pulls of what is acknowledged.
            for (tag, (digest, _)) in &last {
                let got = request_to(&addr, "GET", &format!("/v2/{repo}/manifests/{tag}"))
                    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                    .send();
                got.expect(200, None);
                assert_eq!(&sha256(&got.body), digest, "{repo}:{tag}");
            }
        }
        (repo, last, pushed, told_unknown)
    });
    stop.store(true, Ordering::Relaxed);
    let runs = collector.join().expect("collector");
    let mut told = 0;
    for (repo, last, pushed, told_unknown) in &finals {
        told += told_unknown;
        assert!(*pushed > 20, "{repo}: only {pushed} pushes landed");
        for (tag, (digest, image)) in last {
            let got = reg
                .request("GET", &format!("/v2/{repo}/manifests/{tag}"))
                .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                .send();
            got.expect(200, None);
            assert_eq!(&sha256(&got.body), digest, "{repo}:{tag}");
            for blob in &image[1..] {
                let got = reg
                    .request("GET", &format!("/v2/{repo}/blobs/{}", sha256(blob)))
                    .send();
                got.expect(200, None);
                assert!(got.body == *blob, "{repo}: a blob differs");
            }
        }
    }
    eprintln!("{runs} collections; {told} pushes told a fresh blob was collected");
    assert!(runs >= 2, "only {runs} collections ran");
    assert!(reg.terminate());
    let out = common::registry(&root, &["fsck", "--deep"]);
    assert!(out.status.success(), "{}", common::stdout(&out));
}
