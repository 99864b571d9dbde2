//! Garbage collection: which manifests, links and blobs each flag combination keeps,
//! that the space is freed, that a rebuild from the packs agrees after any number of
//! collections, and that collections racing pushes, mounts and tags never leave a
//! manifest with a missing reference.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use lain_engine::progress::Silent;
use lain_engine::{
    CollectOptions, CollectReport, Digest, Engine, ManifestMeta, Options, Reference, References,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The test's manifest format: one reference per line, `blob <digest>` or
/// `child <digest>`, after a first line that makes the bytes unique.
fn toy_manifest(salt: &str, blobs: &[&Digest], children: &[&Digest]) -> Bytes {
    let mut text = format!("manifest {salt}\n");
    for b in blobs {
        text.push_str(&format!("blob {b}\n"));
    }
    for c in children {
        text.push_str(&format!("child {c}\n"));
    }
    Bytes::from(text)
}

fn reader(bytes: &[u8], _media_type: &str) -> Result<References, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut refs = References::default();
    for line in text.lines().skip(1) {
        let (kind, digest) = line.split_once(' ').ok_or("no space")?;
        let digest: Digest = digest.parse().map_err(|e| format!("{e}"))?;
        match kind {
            "blob" => refs.blobs.push(digest),
            "child" => refs.manifests.push(digest),
            other => return Err(format!("unknown reference kind {other}")),
        }
    }
    Ok(refs)
}

fn collect(engine: &Engine, delete_untagged: bool, grace: Duration) -> CollectReport {
    let options = CollectOptions {
        delete_untagged,
        dry_run: false,
        grace,
        compact_threshold: 0.0,
    };
    engine.collect(&options, &reader, &Silent).expect("collect")
}

/// Pushes a manifest naming `blobs` and `children` (and `subject`) to `repo`, under
/// `tag`, or by its digest when there is none.
fn push(
    engine: &Engine,
    repo: &str,
    tag: Option<&str>,
    salt: &str,
    blobs: &[&Digest],
    children: &[&Digest],
    subject: Option<&Digest>,
) -> Result<Digest, lain_engine::Error> {
    let bytes = toy_manifest(salt, blobs, children);
    let reference = match tag {
        Some(tag) => Reference::Tag(tag.into()),
        None => Reference::Digest(sha256(&bytes)),
    };
    let references = References {
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: children.iter().map(|d| (*d).clone()).collect(),
    };
    let meta = ManifestMeta {
        media_type: OCI_MANIFEST.into(),
        subject: subject.cloned(),
        artifact_type: subject.map(|_| "application/x-signature".into()),
        annotations: vec![],
    };
    Ok(engine
        .put_manifest(repo, bytes, &reference, meta, &references)?
        .digest)
}

fn blob(engine: &Engine, repo: &str, name: &str, len: usize) -> Digest {
    let mut data = name.as_bytes().to_vec();
    data.resize(len.max(name.len()), b'.');
    upload_in_pieces(engine, repo, &data, &[len / 2])
}

/// A store with everything a collection must tell apart, each named.
struct Scene {
    d: HashMap<&'static str, Digest>,
}

impl Scene {
    fn build(engine: &Engine) -> Scene {
        let mut d: HashMap<&'static str, Digest> = HashMap::new();
        for (name, len) in [
            ("C1", 300),
            ("L0", 40_000),
            ("L1", 30_000),
            ("C2", 300),
            ("L2", 30_000),
            ("L4", 20_000),
            ("L5", 500),
            ("L6", 25_000),
            ("L7", 22_000),
            ("L8", 21_000),
            ("L9", 21_500),
            ("L10", 23_000),
            ("L11", 600),
            ("P", 50_000),
        ] {
            d.insert(name, blob(engine, "a", name, len));
        }
        // b shares L0 by a mount, and has its own.
        engine.link_blob("b", &d["L0"]).unwrap().unwrap();
        for (name, len) in [("C3", 300), ("L3", 35_000)] {
            d.insert(name, blob(engine, "b", name, len));
        }
        let mut scene = Scene { d };
        scene.push(
            engine,
            "V1",
            "a",
            Some("v1"),
            &["C1", "L0", "L1"],
            &[],
            None,
        );
        scene.push(
            engine,
            "V2",
            "a",
            Some("v2"),
            &["C2", "L0", "L2"],
            &[],
            None,
        );
        engine.tag("a", "latest", &scene.d["V2"]).unwrap();
        scene.push(
            engine,
            "VB",
            "b",
            Some("v1"),
            &["C3", "L0", "L3"],
            &[],
            None,
        );
        // Untagged from the start, untagged later, deleted.
        scene.push(engine, "U", "a", None, &["L4"], &[], None);
        scene.push(engine, "O", "a", Some("old"), &["L7"], &[], None);
        assert!(engine.untag("a", "old").unwrap());
        scene.push(engine, "D", "a", Some("gone"), &["L6"], &[], None);
        assert!(engine.delete_manifest("a", &scene.d["D"]).unwrap());
        // A multi-architecture index, and an index of an index.
        scene.push(engine, "M1", "a", None, &["L8"], &[], None);
        scene.push(engine, "M2", "a", None, &["L9"], &[], None);
        scene.push(engine, "I", "a", Some("multi"), &[], &["M1", "M2"], None);
        scene.push(engine, "M3", "a", None, &["L10"], &[], None);
        scene.push(engine, "I2", "a", None, &[], &["M3"], None);
        scene.push(engine, "II", "a", Some("nested"), &[], &["I2"], None);
        // Referrers: of a tagged manifest, and of an untagged one.
        scene.push(engine, "S", "a", None, &["L5"], &[], Some("V1"));
        scene.push(engine, "S2", "a", None, &["L11"], &[], Some("U"));
        scene
    }

    /// Pushes the scene's manifest `name`, naming the scene's `blobs`, `children` and
    /// `subject`.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        engine: &Engine,
        name: &'static str,
        repo: &str,
        tag: Option<&str>,
        blobs: &[&str],
        children: &[&str],
        subject: Option<&str>,
    ) {
        let d = &self.d;
        let blobs: Vec<&Digest> = blobs.iter().map(|n| &d[n]).collect();
        let children: Vec<&Digest> = children.iter().map(|n| &d[n]).collect();
        let subject = subject.map(|s| &d[s]);
        let digest = push(engine, repo, tag, name, &blobs, &children, subject).unwrap();
        self.d.insert(name, digest);
    }
}

/// What a store serves: for each repository, every manifest and blob of the scene it
/// can read, with their bytes.
fn readable(engine: &Engine, scene: &Scene) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for repo in ["a", "b"] {
        for (name, digest) in &scene.d {
            if engine
                .get_manifest(repo, &Reference::Digest(digest.clone()))
                .unwrap()
                .is_some()
            {
                out.insert((repo.to_owned(), format!("manifest {name}")));
            }
            if let Some(r) = engine.read_repo_blob(repo, digest).unwrap() {
                assert_eq!(&sha256(&r.into_bytes().unwrap()), digest, "{repo} {name}");
                out.insert((repo.to_owned(), name.to_string()));
            }
        }
    }
    out
}

fn names(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(r, n)| (r.to_string(), n.to_string()))
        .collect()
}

/// Every manifest's references are readable in its repository.
fn assert_whole(engine: &Engine) {
    let report = engine.check(true, Some(&reader), &Silent).expect("check");
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

fn stored(engine: &Engine, scene: &Scene) -> BTreeSet<String> {
    scene
        .d
        .iter()
        .filter(|(_, d)| engine.blob_info(d).unwrap().is_some())
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Everything the scene pushed, before any collection.
fn everything() -> BTreeSet<(String, String)> {
    let mut all = names(&[
        ("b", "L0"),
        ("b", "C3"),
        ("b", "L3"),
        ("b", "VB"),
        ("b", "manifest VB"),
    ]);
    for n in [
        "C1", "L0", "L1", "C2", "L2", "L4", "L5", "L6", "L7", "L8", "L9", "L10", "L11", "P", "V1",
        "V2", "U", "O", "M1", "M2", "I", "M3", "I2", "II", "S", "S2",
    ] {
        all.insert(("a".into(), n.into()));
        if n.len() > 1 && !n.starts_with('L') && !n.starts_with('C')
            || ["U", "O", "I", "S"].contains(&n)
        {
            all.insert(("a".into(), format!("manifest {n}")));
        }
    }
    all
}

fn without(mut all: BTreeSet<(String, String)>, gone: &[&str]) -> BTreeSet<(String, String)> {
    for n in gone {
        all.remove(&("a".to_owned(), n.to_string()));
        all.remove(&("a".to_owned(), format!("manifest {n}")));
    }
    all
}

#[test]
fn the_scene_is_what_the_test_thinks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let scene = Scene::build(&engine);
    assert_eq!(
        readable(&engine, &scene),
        without(everything(), &["D"])
            .into_iter()
            .chain([("a".to_owned(), "L6".to_owned())])
            .collect()
    );
    assert_whole(&engine);
}

/// Runs one flag combination on a fresh scene and checks what stays readable, what is
/// stored at all, and that the store is whole and agrees with a rebuild afterwards.
fn run(delete_untagged: bool, grace: Duration, gone: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let scene = Scene::build(&engine);
    let before = readable(&engine, &scene);

    // A dry run changes nothing and says what the real run does.
    let dry = engine
        .collect(
            &CollectOptions {
                delete_untagged,
                dry_run: true,
                grace,
                compact_threshold: 0.0,
            },
            &reader,
            &Silent,
        )
        .unwrap();
    assert_eq!(readable(&engine, &scene), before);
    assert_eq!(stored(&engine, &scene).len(), scene.d.len());

    let report = collect(&engine, delete_untagged, grace);
    let expected = without(everything(), &[&["D", "L6"][..], gone].concat());
    assert_eq!(
        readable(&engine, &scene),
        expected,
        "-m {delete_untagged} grace {grace:?}"
    );
    assert_eq!(
        (
            dry.manifests_removed,
            dry.links_removed,
            dry.blobs_unreferenced
        ),
        (
            report.manifests_removed,
            report.links_removed,
            report.blobs_unreferenced
        )
    );
    assert_eq!(dry.blobs_removed, report.blobs_removed);
    // Blobs no repository links are gone from the store, bytes and all (threshold 0:
    // every pack with anything dead is rewritten).
    let kept: BTreeSet<String> = expected
        .iter()
        .filter(|(_, n)| !n.starts_with("manifest "))
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(stored(&engine, &scene), kept);
    assert_eq!(report.blobs_removed as usize, scene.d.len() - kept.len());
    assert_whole(&engine);

    // Again: nothing more to do.
    let again = collect(&engine, delete_untagged, grace);
    assert_eq!(
        (
            again.manifests_removed,
            again.links_removed,
            again.blobs_removed
        ),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(readable(&engine, &scene), expected);

    // The packs alone say the same.
    drop(engine);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), small_options());
    assert!(engine.recovery_report().rebuilt.is_some());
    assert_eq!(readable(&engine, &scene), expected);
    assert_eq!(stored(&engine, &scene), kept);
    assert_whole(&engine);
}

#[test]
fn keeps_every_manifest_and_spares_young_uploads() {
    run(false, Duration::from_secs(3600), &[]);
}

#[test]
fn without_grace_takes_uploads_no_manifest_referenced() {
    run(false, Duration::ZERO, &["P"]);
}

#[test]
fn delete_untagged_spares_young_manifests_within_the_grace() {
    run(true, Duration::from_secs(3600), &[]);
}

#[test]
fn delete_untagged_keeps_what_tags_reach() {
    // U and O are untagged, S2 refers to U; their blobs go with them. Children of
    // tagged indexes (M1, M2, I2, M3) and the referrer of a tagged manifest (S) stay.
    run(
        true,
        Duration::ZERO,
        &["P", "U", "L4", "O", "L7", "S2", "L11"],
    );
}

#[test]
fn deleting_half_the_images_frees_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        pack_seal_size: 1 << 20,
        ..small_options()
    };
    let engine = open(dir.path(), options);
    let base = blob(&engine, "app", "base", 100_000);
    let mut images = Vec::new();
    for i in 0..20 {
        let name = format!("layer{i}");
        let layer = blob(&engine, "app", &name, 200_000);
        let manifest = push(
            &engine,
            "app",
            Some(&format!("v{i}")),
            &name,
            &[&base, &layer],
            &[],
            None,
        )
        .unwrap();
        images.push((manifest, layer));
    }
    let before = pack_file_bytes(dir.path());
    let mut deleted = 0u64;
    for (manifest, layer) in images.iter().step_by(2) {
        assert!(engine.delete_manifest("app", manifest).unwrap());
        deleted += engine.blob_info(layer).unwrap().unwrap().size;
    }
    let report = engine
        .collect(
            &CollectOptions {
                grace: Duration::ZERO,
                ..CollectOptions::default()
            },
            &reader,
            &Silent,
        )
        .unwrap();
    let after = pack_file_bytes(dir.path());
    let freed = before.saturating_sub(after);
    assert!(
        freed as f64 >= 0.9 * deleted as f64,
        "freed {freed} of {deleted} deleted bytes ({before} -> {after}): {report:?}"
    );
    for (i, (manifest, layer)) in images.iter().enumerate() {
        let present = engine.blob_info(layer).unwrap().is_some();
        assert_eq!(present, i % 2 == 1, "layer {i}");
        let m = engine
            .manifest("app", &Reference::Digest(manifest.clone()))
            .unwrap();
        assert_eq!(m.is_some(), i % 2 == 1, "manifest {i}");
    }
    assert_eq!(read_all(&engine, &base).len(), 100_000);
    assert_whole(&engine);
}

/// Compaction carries a pack's log forward a bounded number of keys at a time (16,384):
/// a pack whose metadata names more keys than that is carried in parts, and keys whose
/// changes fall in two parts (untagged, moved, untagged and tagged again) end as the
/// index had them, before and after a rebuild from the packs alone.
#[test]
fn a_pack_with_more_keys_than_one_restatement_part_is_carried_forward_whole() {
    const TAGS: usize = 20_000;
    let dir = memory_tempdir();
    let options = || Options {
        pack_seal_size: 64 << 20,
        ..small_options()
    };
    let engine = open(dir.path(), options());
    let layer = blob(&engine, "app", "layer", 1000);
    let first = push(&engine, "app", None, "first", &[&layer], &[], None).unwrap();
    let second = push(&engine, "app", None, "second", &[&layer], &[], None).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..TAGS {
        let tag = format!("t{i:05}");
        engine.tag("app", &tag, &first).unwrap();
        expected.insert(tag, first.clone());
    }
    // Past the first part: the same keys again.
    for i in 0..3000 {
        let tag = format!("t{i:05}");
        match i / 1000 {
            0 => {
                assert!(engine.untag("app", &tag).unwrap());
                expected.remove(&tag);
            }
            1 => {
                engine.tag("app", &tag, &second).unwrap();
                expected.insert(tag, second.clone());
            }
            _ => {
                assert!(engine.untag("app", &tag).unwrap());
                engine.tag("app", &tag, &second).unwrap();
                expected.insert(tag, second.clone());
            }
        }
    }
    let tags = |engine: &Engine| -> BTreeMap<String, Digest> {
        let names = engine.list_tags("app", None, 2 * TAGS).unwrap();
        let resolve = |tag: String| {
            let digest = engine.resolve_tag("app", &tag).unwrap().expect("tag");
            (tag, digest)
        };
        names.into_iter().map(resolve).collect()
    };
    assert_eq!(tags(&engine), expected);
    let packs = |engine: &Engine| -> BTreeSet<u64> {
        engine.pack_usage().unwrap().iter().map(|p| p.id).collect()
    };
    let before = packs(&engine);
    let report = collect(&engine, false, Duration::ZERO);
    assert!(report.packs_rewritten >= 1, "{report:?}");
    assert!(
        before.difference(&packs(&engine)).count() >= 1,
        "no pack went: {before:?} -> {:?}",
        packs(&engine)
    );
    assert_eq!(tags(&engine), expected);
    assert_whole(&engine);
    drop(engine);

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), options());
    assert!(engine.recovery_report().rebuilt.is_some());
    assert_eq!(tags(&engine), expected);
    assert_whole(&engine);
}

/// Pushers, mounters and taggers against collections in a loop (grace zero, every pack
/// with anything dead rewritten): a push either lands whole or is refused with
/// `ReferenceUnknown`, and the store stays whole throughout.
#[test]
fn collections_racing_pushes_mounts_and_tags_leave_no_dangling_reference() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let base = blob(&engine, "base", "base", 30_000);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..3u64 {
        let engine = engine.clone();
        let stop = stop.clone();
        let base = base.clone();
        workers.push(std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            let mut r = rng(w);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let repo = format!("w{w}/r{}", n % 4);
                // A mount of the shared layer, a fresh layer, then the manifest.
                let mounted = engine.link_blob(&repo, &base).unwrap().is_some();
                let len = 1000 + below(&mut r, 40_000);
                let layer = random_bytes(&mut r, len);
                let layer = upload_in_pieces(&engine, &repo, &layer, &[500]);
                let mut blobs = vec![&layer];
                if mounted {
                    blobs.push(&base);
                }
                let t = format!("t{}", n % 3);
                match push(
                    &engine,
                    &repo,
                    Some(&t),
                    &format!("{w}-{n}"),
                    &blobs,
                    &[],
                    None,
                ) {
                    Ok(manifest) => acknowledged.push((repo.clone(), t, manifest)),
                    Err(lain_engine::Error::ReferenceUnknown { .. }) => refused += 1,
                    Err(e) => panic!("push: {e}"),
                }
                if n % 5 == 0 {
                    engine.untag(&repo, "t0").unwrap();
                }
            }
            (acknowledged, refused)
        }));
    }
    let mut collections = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) || collections < 5 {
        let report = collect(&engine, collections % 2 == 1, Duration::ZERO);
        assert!(report.skipped.is_empty(), "{report:?}");
        collections += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for worker in workers {
        let (acked, _refused) = worker.join().unwrap();
        acknowledged.extend(acked);
    }
    assert!(
        acknowledged.len() > 20,
        "only {} pushes",
        acknowledged.len()
    );
    assert_whole(&engine);
    // Every tag still points at a manifest whose references are all readable.
    for (repo, t, _) in &acknowledged {
        if let Some(digest) = engine.resolve_tag(repo, t).unwrap() {
            let (_, bytes) = engine
                .get_manifest(repo, &Reference::Digest(digest))
                .unwrap()
                .expect("tagged manifest");
            for d in reader(&bytes, "").unwrap().blobs {
                let r = engine
                    .read_repo_blob(repo, &d)
                    .unwrap()
                    .expect("referenced blob");
                assert_eq!(sha256(&r.into_bytes().unwrap()), d);
            }
        }
    }
    // Once more, and nothing unreferenced is left.
    collect(&engine, true, Duration::ZERO);
    let last = collect(&engine, true, Duration::ZERO);
    assert_eq!(
        (
            last.manifests_removed,
            last.links_removed,
            last.blobs_unreferenced
        ),
        (0, 0, 0),
        "{last:?}"
    );
    eprintln!(
        "{collections} collections against {} acknowledged pushes",
        acknowledged.len()
    );
}

#[test]
fn prune_keeps_the_newest_tags_and_manifests_a_kept_tag_points_at() {
    use lain_engine::TagOrder;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let layer = blob(&engine, "app", "layer", 1000);
    // Pushed in this order; names sort differently by natural order.
    let names = ["build-10", "build-9", "build-100", "build-2", "build-11"];
    let mut manifests = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let m = push(
            &engine,
            "app",
            Some(name),
            &format!("m{i}"),
            &[&layer],
            &[],
            None,
        )
        .unwrap();
        manifests.push(m);
        std::thread::sleep(Duration::from_millis(5));
    }
    // An old tag that shares its manifest with the newest tag.
    engine.tag("app", "alias", &manifests[4]).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    engine.tag("app", "build-11", &manifests[4]).unwrap();

    // By push time: alias (pushed before the retag of build-11) is old, but its manifest
    // is build-11's: it loses the tag, not the manifest.
    let dry = engine
        .prune_repository("app", 2, TagOrder::Pushed, true)
        .unwrap();
    assert_eq!(engine.list_tags("app", None, 100).unwrap().len(), 6);
    let pruned = engine
        .prune_repository("app", 2, TagOrder::Pushed, false)
        .unwrap();
    assert_eq!(dry, pruned);
    assert_eq!(pruned.kept, vec!["build-11", "alias"]);
    let by_name = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        pruned.tags,
        by_name(&["build-2", "build-100", "build-9", "build-10"])
    );
    assert_eq!(pruned.manifests.len(), 4);
    assert!(!pruned.manifests.contains(&manifests[4]));
    assert_eq!(
        engine.list_tags("app", None, 100).unwrap(),
        by_name(&["alias", "build-11"])
    );

    // By name (natural order): build-100 > build-11 > build-10 > build-9 > build-2.
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let layer = blob(&engine, "app", "layer", 1000);
    for (i, name) in names.iter().enumerate() {
        push(
            &engine,
            "app",
            Some(name),
            &format!("m{i}"),
            &[&layer],
            &[],
            None,
        )
        .unwrap();
    }
    let pruned = engine
        .prune_repository("app", 3, TagOrder::Name, false)
        .unwrap();
    assert_eq!(pruned.kept, by_name(&["build-100", "build-11", "build-10"]));
    assert_eq!(pruned.tags, by_name(&["build-9", "build-2"]));
    // The collection that follows frees what only the pruned manifests held.
    let report = collect(&engine, false, Duration::ZERO);
    assert_eq!(report.blobs_removed, 2, "{report:?}"); // the two manifests' bytes
    assert_whole(&engine);
}
