//! Cluster mode, end to end: three `registry serve` processes on one real etcd and one
//! real S3 server (SeaweedFS), behind a proxy that sends every request to the next
//! instance in turn. Real clients push and pull through it; instances are killed
//! mid-upload; etcd and the S3 server restart mid-run; tags race across instances; a
//! collection runs while every instance takes pushes.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::layout::{LayoutWriter, OCI_LAYER, layout_blobs};
use common::skopeo::Skopeo;
use common::{Api, image, pseudo_random, push_image, sha256, with_query};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn skopeo_pushes_and_pulls_through_three_instances_request_by_request() {
    let cluster = Cluster::start(3);
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("in");
    let mut layout = LayoutWriter::new(&input);
    // One layer past a part (a multipart upload), one within one (a single object).
    let big = layout.blob(OCI_LAYER, pseudo_random(1, 12 << 20 | 777));
    let small = layout.blob(OCI_LAYER, pseudo_random(2, 100_000));
    let manifest = layout.image("amd64", &[big, small]);
    let blobs = layout.finish(&[(&manifest, "image")]);

    let skopeo = Skopeo::new(&work.path().join("skopeo"));
    let oci = |dir: &std::path::Path| format!("oci:{}:image", dir.display());
    let remote = format!("docker://{}/lain/app:v1", cluster.proxy.addr);
    let push = skopeo.run(
        "copy",
        &[
            "--preserve-digests",
            "--dest-tls-verify=false",
            &oci(&input),
            &remote,
        ],
    );
    assert!(push.success, "{}\n{}", push.output(), cluster.log());
    let requests = cluster.proxy.log();
    assert!(
        requests.len() >= 8,
        "a push of three blobs and a manifest: {requests:?}"
    );
    for pair in requests.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two requests in a row on one instance: {pair:?}"
        );
    }
    let uploads: Vec<_> = requests
        .iter()
        .filter(|r| r.2.contains("/blobs/uploads/"))
        .collect();
    let used: std::collections::BTreeSet<usize> = uploads.iter().map(|r| r.0).collect();
    assert_eq!(
        used.len(),
        3,
        "uploads went through every instance: {uploads:?}"
    );

    let output = work.path().join("out");
    let pull = skopeo.run("copy", &["--src-tls-verify=false", &remote, &oci(&output)]);
    assert!(pull.success, "{}\n{}", pull.output(), cluster.log());
    assert_eq!(layout_blobs(&output), blobs, "pulled back byte for byte");
    // Every instance answers the tag with the same manifest.
    let digest = manifest["digest"].as_str().expect("digest").to_owned();
    for i in 0..3 {
        let head = cluster
            .instance(i)
            .request("HEAD", "/v2/lain/app/manifests/v1")
            .header("Accept", OCI_MANIFEST)
            .send();
        head.expect(200, None);
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }
}

/// The distribution spec's flows, each request on another instance than the last.
#[test]
fn oci_flows_pass_through_the_proxy() {
    let cluster = Cluster::start(3);
    let api = &cluster.proxy;
    // Monolithic, then a HEAD and a range.
    let layer = pseudo_random(3, 300_000);
    let digest = sha256(&layer);
    api.request(
        "POST",
        &format!("/v2/lain/flows/blobs/uploads/?digest={digest}"),
    )
    .header("Content-Type", "application/octet-stream")
    .body(layer.clone())
    .send()
    .expect(201, None);
    let head = api
        .request("HEAD", &format!("/v2/lain/flows/blobs/{digest}"))
        .send();
    head.expect(200, None);
    assert_eq!(head.header("content-length"), Some("300000"));
    let range = api
        .request("GET", &format!("/v2/lain/flows/blobs/{digest}"))
        .header("Range", "bytes=1000-1999")
        .send();
    range.expect(206, None);
    assert_eq!(range.body, layer[1000..2000]);

    // Chunked: POST, chunks below and above a part, a stale chunk, the status, the PUT.
    let blob = pseudo_random(4, (13 << 20) + 12_345);
    let blob_digest = sha256(&blob);
    let post = api.request("POST", "/v2/lain/flows/blobs/uploads/").send();
    post.expect(202, None);
    assert_eq!(post.header("oci-chunk-min-length"), Some("5242880"));
    let mut location = post.header("location").expect("location").to_owned();
    let mut offset = 0;
    for size in [1 << 20, 6 << 20, 3 << 20, 100] {
        let chunk = &blob[offset..offset + size];
        let patch = api
            .request("PATCH", &location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", &format!("{offset}-{}", offset + size - 1))
            .body(chunk.to_vec())
            .send();
        patch.expect(202, None);
        offset += size;
        assert_eq!(
            patch.header("range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        location = patch.header("location").expect("location").to_owned();
    }
    let stale = api
        .request("PATCH", &location)
        .header("Content-Range", "0-0")
        .body(vec![0])
        .send();
    stale.expect(416, Some("RANGE_INVALID"));
    assert_eq!(
        stale.header("range"),
        Some(format!("0-{}", offset - 1).as_str())
    );
    let status = api.request("GET", &location).send();
    status.expect(204, None);
    assert_eq!(
        status.header("range"),
        Some(format!("0-{}", offset - 1).as_str())
    );
    // Locations carry a state only this cluster issues (every instance checks it).
    let (path, state) = location.split_once("?_state=").expect("a state");
    let first = if state.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{path}?_state={first}{}", &state[1..]);
    api.request("GET", &forged)
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    let wrong = api
        .request("PUT", &with_query(&location, &format!("digest={digest}")))
        .body(Vec::new())
        .send();
    wrong.expect(400, Some("DIGEST_INVALID"));
    // A digest mismatch ends the session, as on one node.
    api.request("GET", &location)
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    let post = api.request("POST", "/v2/lain/flows/blobs/uploads/").send();
    let location = post.header("location").expect("location").to_owned();
    let first = api
        .request("PATCH", &location)
        .header("Content-Range", &format!("0-{}", (7 << 20) - 1))
        .body(blob[..7 << 20].to_vec())
        .send();
    first.expect(202, None);
    let location = first.header("location").expect("location").to_owned();
    api.request(
        "PUT",
        &with_query(&location, &format!("digest={blob_digest}")),
    )
    .header("Content-Type", "application/octet-stream")
    .body(blob[7 << 20..].to_vec())
    .send()
    .expect(201, None);
    let got = api
        .request("GET", &format!("/v2/lain/flows/blobs/{blob_digest}"))
        .send();
    got.expect(200, None);
    assert!(got.body == blob, "the chunked blob reads back whole");

    // Mount into another repository; an unknown mount is a session.
    let mount = api
        .request(
            "POST",
            &format!("/v2/lain/other/blobs/uploads/?mount={blob_digest}&from=lain/flows"),
        )
        .send();
    mount.expect(201, None);
    let unknown = sha256(b"nowhere");
    api.request(
        "POST",
        &format!("/v2/lain/other/blobs/uploads/?mount={unknown}&from=lain/flows"),
    )
    .send()
    .expect(202, None);

    // Manifests: by tag, read back by tag and digest on every instance; tags, catalog,
    // referrers, deletes.
    let pushed = push_image(api, "lain/flows", "v1", 7);
    let mut images = BTreeMap::new();
    image(api, "lain/flows", "v1", &mut images);
    image(api, "lain/flows", &pushed, &mut images);
    let tags = api.request("GET", "/v2/lain/flows/tags/list").send();
    tags.expect(200, None);
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
    let catalog = api.request("GET", "/v2/_catalog").send();
    let repositories = catalog.json()["repositories"].clone();
    assert_eq!(
        repositories,
        serde_json::json!(["lain/flows", "lain/other"])
    );
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.lain.test","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{pushed}","size":1}}}}"#
    );
    let artifact_digest = sha256(artifact.as_bytes());
    let put = api
        .request(
            "PUT",
            &format!("/v2/lain/flows/manifests/{artifact_digest}"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(artifact)
        .send();
    put.expect(201, None);
    assert_eq!(put.header("oci-subject"), Some(pushed.as_str()));
    let referrers = api
        .request("GET", &format!("/v2/lain/flows/referrers/{pushed}"))
        .send();
    referrers.expect(200, None);
    let listed = referrers.json()["manifests"].clone();
    assert_eq!(listed[0]["digest"], artifact_digest.as_str());
    assert_eq!(listed[0]["artifactType"], "application/vnd.lain.test");
    // A manifest naming a blob the repository lacks is refused.
    let missing = lain_testkit::image_manifest((unknown.as_str(), 7), [(unknown.as_str(), 7)]);
    api.request("PUT", "/v2/lain/flows/manifests/broken")
        .header("Content-Type", OCI_MANIFEST)
        .body(missing)
        .send()
        .expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
    api.request("DELETE", "/v2/lain/flows/manifests/v1")
        .send()
        .expect(202, None);
    api.request("GET", "/v2/lain/flows/manifests/v1")
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));
    api.request("DELETE", &format!("/v2/lain/flows/manifests/{pushed}"))
        .send()
        .expect(202, None);
    api.request("GET", &format!("/v2/lain/flows/manifests/{pushed}"))
        .send()
        .expect(404, Some("MANIFEST_UNKNOWN"));
    api.request("DELETE", &format!("/v2/lain/flows/blobs/{digest}"))
        .send()
        .expect(202, None);
    api.request("HEAD", &format!("/v2/lain/flows/blobs/{digest}"))
        .send()
        .expect(404, None);
    let log = cluster.proxy.log();
    for pair in log.windows(2) {
        assert_ne!(pair[0].0, pair[1].0);
    }
}

/// An instance killed with SIGKILL in the middle of a chunk: the session lives on in
/// etcd and S3; another instance reports where it stands and finishes it.
#[test]
fn an_upload_whose_instance_is_killed_mid_chunk_is_finished_through_another() {
    let mut cluster = Cluster::start(3);
    let blob = pseudo_random(5, 12 << 20);
    let digest = sha256(&blob);
    let a = cluster.instance(0).addr.clone();
    let post = a
        .as_str()
        .request("POST", "/v2/lain/crash/blobs/uploads/")
        .send();
    let location = post.header("location").expect("location").to_owned();
    // A first chunk lands whole (a part in S3, recorded in etcd).
    let first = 6 << 20;
    a.as_str()
        .request("PATCH", &location)
        .header("Content-Range", &format!("0-{}", first - 1))
        .body(blob[..first].to_vec())
        .send()
        .expect(202, None);
    // The second is cut by the instance's death: half its bytes sent, then SIGKILL.
    let rest = blob.len() - first;
    let mut stream = cluster.instance(0).send_head(
        "PATCH",
        &location,
        &[
            format!("Content-Range: {first}-{}", blob.len() - 1),
            format!("Content-Length: {rest}"),
        ],
    );
    use std::io::Write;
    stream
        .write_all(&blob[first..first + rest / 2])
        .expect("half a chunk");
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(0);
    drop(stream);

    // Another instance says where the session stands: what was acknowledged at least.
    let b = cluster.instance(1);
    let status = b.request("GET", &location).send();
    status.expect(204, None);
    // A client resumes at the location the status gives (its state names the size).
    let location = status.header("location").expect("location").to_owned();
    let range = status.header("range").expect("range").to_owned();
    let received: usize = range
        .strip_prefix("0-")
        .and_then(|end| end.parse::<usize>().ok())
        .map_or(0, |end| end + 1);
    assert!(received >= first, "acknowledged bytes were lost: {range}");
    // The dead instance's claim ends with its lease (10 s): until then, 416.
    let started = Instant::now();
    let finished = loop {
        let put = cluster
            .instance(2)
            .request("PUT", &with_query(&location, &format!("digest={digest}")))
            .header("Content-Range", &format!("{received}-{}", blob.len() - 1))
            .body(blob[received..].to_vec())
            .send();
        if put.status != 416 || started.elapsed() > Duration::from_secs(30) {
            break put;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    finished.expect(201, None);
    let got = b
        .request("GET", &format!("/v2/lain/crash/blobs/{digest}"))
        .send();
    got.expect(200, None);
    assert!(got.body == blob, "the blob reads back whole");
    cluster.restart(0);
    let head = cluster
        .instance(0)
        .request("HEAD", &format!("/v2/lain/crash/blobs/{digest}"))
        .send();
    head.expect(200, None);
}

/// Pushes `count` images through the proxy, retrying each request that fails (a
/// restart in progress); returns each acknowledged tag with its manifest digest.
fn push_with_retries(
    api: &(impl Api + ?Sized),
    repo: &str,
    tags: std::ops::Range<u64>,
    stop: &AtomicBool,
) -> Vec<(String, String)> {
    let mut acknowledged = Vec::new();
    for n in tags {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let tag = format!("t{n}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A push is its requests; any refused one (503, 500 from a dead instance,
            // a cut connection) makes the whole push retried.
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                push_image(api, repo, &tag, 10_000 + n)
            }));
            match attempt {
                Ok(digest) => {
                    acknowledged.push((tag, digest));
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }
    acknowledged
}

/// A tag of `lain/restarts` and its manifest's config digest (a blob to read).
fn acknowledged_so_far(cluster: &Cluster) -> (String, String) {
    let tags = cluster
        .proxy
        .request("GET", "/v2/lain/restarts/tags/list")
        .send();
    let tag = tags.json()["tags"][0].as_str().expect("a tag").to_owned();
    let manifest = cluster
        .proxy
        .request("GET", &format!("/v2/lain/restarts/manifests/{tag}"))
        .header("Accept", OCI_MANIFEST)
        .send();
    let config = manifest.json()["config"]["digest"]
        .as_str()
        .expect("config")
        .to_owned();
    (tag, config)
}

#[test]
fn etcd_and_s3_restarts_lose_nothing_acknowledged() {
    let mut cluster = Cluster::start(3);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let proxy = cluster.proxy.addr.clone();
    let pusher = {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let pushed = push_with_retries(proxy.as_str(), "lain/restarts", 0..10_000, &stop);
            acknowledged.lock().unwrap().extend(pushed);
        })
    };
    let pushed_so_far = |cluster: &Cluster| {
        let tags = cluster
            .proxy
            .request("GET", "/v2/lain/restarts/tags/list")
            .send();
        tags.json()["tags"].as_array().map_or(0, Vec::len)
    };
    common::etcd::eventually(
        Duration::from_secs(60),
        "pushes before the restarts",
        || pushed_so_far(&cluster) >= 3,
    );
    cluster.etcd.stop();
    // Meanwhile requests fail cleanly: 503 UNAVAILABLE, to be retried.
    let down = cluster
        .proxy
        .request("GET", "/v2/lain/restarts/tags/list")
        .send();
    down.expect(503, Some("UNAVAILABLE"));
    assert!(down.header("retry-after").is_some());
    std::thread::sleep(Duration::from_secs(2));
    cluster.etcd.run();
    let after_etcd = pushed_so_far(&cluster);
    common::etcd::eventually(
        Duration::from_secs(60),
        "pushes after etcd's restart",
        || pushed_so_far(&cluster) >= after_etcd + 3,
    );
    let (_, first) = acknowledged_so_far(&cluster);
    cluster.weed.kill();
    let down = cluster
        .proxy
        .request("GET", &format!("/v2/lain/restarts/blobs/{first}"))
        .send();
    down.expect(503, Some("UNAVAILABLE"));
    std::thread::sleep(Duration::from_secs(2));
    cluster.weed.run();
    let after_s3 = pushed_so_far(&cluster);
    common::etcd::eventually(
        Duration::from_secs(60),
        "pushes after the S3 server's restart",
        || pushed_so_far(&cluster) >= after_s3 + 3,
    );
    stop.store(true, Ordering::SeqCst);
    pusher.join().expect("pusher");
    // Failing cleanly: an outage is 503 (retry), never a 500 (storage failure).
    let failures: Vec<String> = cluster
        .log()
        .lines()
        .filter(|l| l.contains("storage failure"))
        .map(str::to_owned)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 9);
    for (tag, digest) in &acknowledged {
        let mut out = BTreeMap::new();
        image(&cluster.proxy, "lain/restarts", tag, &mut out);
        assert_eq!(sha256(&out[&format!("lain/restarts:{tag}")]), *digest);
    }
}

#[test]
fn one_tag_pushed_from_three_instances_at_once_ends_on_one_digest_everywhere() {
    let cluster = Cluster::start(3);
    for round in 0..8u64 {
        let tag = format!("race{round}");
        let digests: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let (registry, tag) = (cluster.instance(i), tag.clone());
                    scope.spawn(move || {
                        push_image(registry, "lain/race", &tag, round * 10 + i as u64)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("push"))
                .collect()
        });
        let answers: Vec<String> = (0..3)
            .map(|i| {
                let head = cluster
                    .instance(i)
                    .request("HEAD", &format!("/v2/lain/race/manifests/{tag}"))
                    .header("Accept", OCI_MANIFEST)
                    .send();
                head.expect(200, None);
                head.header("docker-content-digest")
                    .expect("digest")
                    .to_owned()
            })
            .collect();
        assert!(
            digests.contains(&answers[0]),
            "{tag} is on {} (pushed: {digests:?})",
            answers[0]
        );
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "instances disagree: {answers:?}"
        );
    }
}

/// The collections' grace window (`--grace 3s`).
const GRACE: Duration = Duration::from_secs(3);

#[test]
fn a_collection_during_pushes_on_every_instance_keeps_every_acknowledged_image() {
    let cluster = Cluster::start(3);
    // Old images, then their tags deleted: the collection's garbage.
    for n in 0..4 {
        push_image(&cluster.proxy, "lain/gc", &format!("old{n}"), 500 + n);
        cluster
            .proxy
            .request("DELETE", &format!("/v2/lain/gc/manifests/old{n}"))
            .send()
            .expect(202, None);
    }
    // Past the grace window, which protects the layers of the pushes below until their
    // manifests come (a collection with no grace at all may take them: the push is
    // then refused with MANIFEST_BLOB_UNKNOWN, and nothing acknowledged is lost).
    std::thread::sleep(GRACE + Duration::from_secs(1));
    let stop = AtomicBool::new(false);
    let mut removed_blobs = 0;
    let acknowledged: Vec<(String, String)> = std::thread::scope(|scope| {
        let pushers: Vec<_> = (0..3)
            .map(|i| {
                let (registry, stop) = (cluster.instance(i), &stop);
                scope.spawn(move || {
                    let start = 1_000 * (i as u64 + 1);
                    let mut pushed = Vec::new();
                    for n in start..start + 1_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let tag = format!("n{n}");
                        pushed.push((tag.clone(), push_image(registry, "lain/gc", &tag, n)));
                    }
                    pushed
                })
            })
            .collect();
        for _ in 0..3 {
            let text =
                cluster.command_ok(&["garbage-collect", "--delete-untagged", "--grace", "3s"]);
            removed_blobs += blobs_removed(&text);
        }
        stop.store(true, Ordering::SeqCst);
        pushers
            .into_iter()
            .flat_map(|p| p.join().expect("pusher"))
            .collect()
    });
    assert!(!acknowledged.is_empty());
    // A last collection with nothing in flight removes the old images' blobs...
    let text = cluster.command_ok(&["garbage-collect", "--delete-untagged", "--grace", "3s"]);
    removed_blobs += blobs_removed(&text);
    // The old images' config and layers (four of each kind, their manifests' bytes).
    assert!(removed_blobs >= 12, "{removed_blobs} blobs removed: {text}");
    // ... and every acknowledged image is whole.
    for (tag, digest) in &acknowledged {
        let mut out = BTreeMap::new();
        image(&cluster.proxy, "lain/gc", tag, &mut out);
        assert_eq!(sha256(&out[&format!("lain/gc:{tag}")]), *digest);
    }
    for n in 0..4 {
        cluster
            .proxy
            .request("GET", &format!("/v2/lain/gc/manifests/old{n}"))
            .send()
            .expect(404, None);
    }
}

/// N in a collection's summary "... removed M manifests, L links, N blobs (...)".
fn blobs_removed(summary: &str) -> u64 {
    summary
        .lines()
        .filter_map(|line| line.split(" links, ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `registry prune` on the cluster: the newest tags kept, the others and the manifests
/// only they named removed, and the collection that follows frees their blobs.
#[test]
fn prune_keeps_the_newest_tags_and_collects_the_rest() {
    let cluster = Cluster::start(1);
    let api = &cluster.proxy;
    let digests: Vec<String> = (0..5u64)
        .map(|n| push_image(api, "lain/prune", &format!("v{n}"), 900 + n))
        .collect();
    // A second tag on the newest image, pushed first: it is the oldest tag.
    let other = push_image(api, "lain/keep", "only", 950);
    std::thread::sleep(GRACE + Duration::from_secs(1));
    let text = cluster.command_ok(&[
        "prune",
        "--keep-last",
        "2",
        "--repo",
        "lain/prune",
        "--grace",
        "3s",
    ]);
    let tags = api.request("GET", "/v2/lain/prune/tags/list").send();
    assert_eq!(
        tags.json()["tags"],
        serde_json::json!(["v3", "v4"]),
        "{text}"
    );
    for (n, digest) in digests.iter().enumerate() {
        let status = if n >= 3 { 200 } else { 404 };
        api.request("HEAD", &format!("/v2/lain/prune/manifests/{digest}"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .expect(status, None);
    }
    let mut out = BTreeMap::new();
    image(api, "lain/prune", "v4", &mut out);
    image(api, "lain/keep", "only", &mut out);
    assert_eq!(sha256(&out["lain/keep:only"]), other);
    // Three images' manifests, configs and two layers each.
    assert!(blobs_removed(&text) >= 12, "{text}");
}

/// A client address holds its share of the cluster's upload sessions, counted across
/// instances; past it, 429 with when to retry. A session ended frees its place.
#[test]
fn one_client_holds_its_share_of_sessions_across_instances() {
    let cluster = Cluster::start_with(
        3,
        &[("REGISTRY_STORAGE_ENGINE_UPLOADSESSIONSPERCLIENT", "3")],
    );
    let api = &cluster.proxy;
    let locations: Vec<String> = (0..3)
        .map(|_| {
            let post = api.request("POST", "/v2/lain/share/blobs/uploads/").send();
            post.expect(202, None);
            post.header("location").expect("location").to_owned()
        })
        .collect();
    let refused = api.request("POST", "/v2/lain/share/blobs/uploads/").send();
    refused.expect(429, Some("TOOMANYREQUESTS"));
    assert!(refused.header("retry-after").is_some());
    api.request("DELETE", &locations[0])
        .send()
        .expect(204, None);
    api.request("POST", "/v2/lain/share/blobs/uploads/")
        .send()
        .expect(202, None);
    // A commit frees a place too.
    let blob = pseudo_random(77, 1000);
    api.request(
        "PUT",
        &with_query(&locations[1], &format!("digest={}", sha256(&blob))),
    )
    .body(blob)
    .send()
    .expect(201, None);
    api.request("POST", "/v2/lain/share/blobs/uploads/")
        .send()
        .expect(202, None);
}

/// A manifest of 200 layers: more references than etcd takes in one transaction
/// (`--max-txn-ops` 128 by default, as the test's etcd runs). It is pushed, read,
/// refused while one layer is missing, deleted, and its blobs collected.
#[test]
fn a_manifest_with_more_references_than_one_etcd_transaction_holds() {
    let cluster = Cluster::start(1);
    let api = &cluster.proxy;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = common::put_blob(api, "lain/wide", config);
    let layers: Vec<(String, usize)> = (0..200u64)
        .map(|i| {
            let layer = pseudo_random(3_000 + i, 100);
            (common::put_blob(api, "lain/wide", &layer), layer.len())
        })
        .collect();
    let manifest = |layers: &[(String, usize)]| {
        lain_testkit::image_manifest(
            (config_digest.as_str(), config.len()),
            layers.iter().map(|(d, len)| (d.as_str(), *len)),
        )
    };
    // One layer the repository does not have: refused, and nothing stays pinned.
    let mut missing = layers.clone();
    missing.push((sha256(b"not pushed"), 10));
    api.request("PUT", "/v2/lain/wide/manifests/broken")
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest(&missing))
        .send()
        .expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
    let body = manifest(&layers);
    api.request("PUT", "/v2/lain/wide/manifests/v1")
        .header("Content-Type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .expect(201, None);
    let mut out = BTreeMap::new();
    image(api, "lain/wide", "v1", &mut out);
    assert_eq!(out["lain/wide:v1"], body.as_bytes());
    assert_eq!(out.len(), 1 + 201);
    // While the manifest exists, a collection keeps every layer; it removes only the
    // refused manifest's bytes.
    let text = cluster.command_ok(&["garbage-collect", "--grace", "0s"]);
    assert_eq!(blobs_removed(&text), 1, "{text}");
    let refused = sha256(manifest(&missing).as_bytes());
    assert!(text.contains(&format!("removed blob {refused}")), "{text}");
    image(api, "lain/wide", "v1", &mut out);
    let digest = sha256(body.as_bytes());
    api.request("DELETE", &format!("/v2/lain/wide/manifests/{digest}"))
        .send()
        .expect(202, None);
    let text = cluster.command_ok(&["garbage-collect", "--grace", "0s"]);
    // 200 layers, the config and the manifest's own bytes.
    assert_eq!(blobs_removed(&text), 202, "{text}");
}

/// A push that died between pinning its references and writing its manifest leaves
/// `ref` keys naming a manifest that does not exist: a collection removes them once
/// older than its grace window, and then what they pinned.
#[test]
fn pins_a_dead_push_left_are_collected() {
    let cluster = Cluster::start(1);
    let api = &cluster.proxy;
    let layer = pseudo_random(4_242, 1_000);
    let digest = common::put_blob(api, "lain/pinned", &layer);
    // What the dead push wrote: a pin from a manifest that never came, made long ago.
    let never = sha256(b"a manifest that never came");
    cluster.etcd.put(
        &format!("/lain/registry/repo/lain/pinned@ref/{digest}/{never}"),
        "0",
    );
    let text = cluster.command_ok(&["garbage-collect", "--grace", "1s"]);
    // The layer itself is younger than the grace window: kept, pin or not.
    assert_eq!(blobs_removed(&text), 0, "{text}");
    std::thread::sleep(Duration::from_secs(2));
    let text = cluster.command_ok(&["garbage-collect", "--grace", "1s"]);
    assert!(text.contains(&format!("removed blob {digest}")), "{text}");
    api.request("HEAD", &format!("/v2/lain/pinned/blobs/{digest}"))
        .send()
        .expect(404, None);
}
