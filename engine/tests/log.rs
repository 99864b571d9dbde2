//! The metadata log (format 2): the index rebuilt from the packs alone serves what the
//! store served before, `Engine::check` finds what is damaged, and acknowledged
//! metadata survives a power cut.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use lain_engine::index::{Batch, Family, Index, IndexMemory, keys, values};
use lain_engine::pack::Location;
use lain_engine::progress::Silent;
use lain_engine::storage::SimulatedStorage;
use lain_engine::{Digest, Engine, ManifestMeta, Options, Problem, Reference};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn meta(subject: Option<&Digest>, artifact_type: Option<&str>) -> ManifestMeta {
    ManifestMeta {
        media_type: OCI_MANIFEST.into(),
        subject: subject.cloned(),
        artifact_type: artifact_type.map(Into::into),
        annotations: vec![("org.example.n".into(), "1".into())],
    }
}

/// What a store serves, through the public API only: every repository, its tags and
/// what they point at, every known blob and manifest each repository can read, and the
/// referrers of every known manifest. `blobs` and `manifests` are every digest the test
/// ever used, so a link or manifest that should be gone is noticed too.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    repos: Vec<String>,
    tags: BTreeMap<String, Vec<(String, Digest)>>,
    blobs: BTreeMap<(String, String), Vec<u8>>,
    manifests: BTreeMap<(String, String), (u64, ManifestMeta, Vec<u8>)>,
    referrers: BTreeMap<(String, String), Vec<Digest>>,
}

fn served(engine: &Engine, blobs: &[Digest], manifests: &[Digest]) -> Served {
    let repos = engine.list_repositories(None, usize::MAX).unwrap();
    let mut out = Served {
        repos: repos.clone(),
        tags: BTreeMap::new(),
        blobs: BTreeMap::new(),
        manifests: BTreeMap::new(),
        referrers: BTreeMap::new(),
    };
    for repo in &repos {
        let tags = engine.list_tags(repo, None, usize::MAX).unwrap();
        let resolved = tags
            .iter()
            .map(|t| (t.clone(), engine.resolve_tag(repo, t).unwrap().unwrap()))
            .collect();
        out.tags.insert(repo.clone(), resolved);
        for d in blobs.iter().chain(manifests) {
            if let Some(reader) = engine.read_repo_blob(repo, d).unwrap() {
                out.blobs.insert(
                    (repo.clone(), d.to_string()),
                    reader.into_bytes().unwrap().to_vec(),
                );
            }
        }
        for d in manifests {
            if let Some((record, bytes)) = engine
                .get_manifest(repo, &Reference::Digest(d.clone()))
                .unwrap()
            {
                out.manifests.insert(
                    (repo.clone(), d.to_string()),
                    (record.size, record.meta, bytes.to_vec()),
                );
            }
            let referrers: Vec<Digest> = engine
                .referrers(repo, d, None)
                .unwrap()
                .into_iter()
                .map(|r| r.digest)
                .collect();
            if !referrers.is_empty() {
                out.referrers
                    .insert((repo.clone(), d.to_string()), referrers);
            }
        }
    }
    out
}

/// Pushes a mix of everything the metadata log records: blobs small and large (group
/// commit and leased packs, across pack seals), mounts, manifests with tags, a
/// referrer, retags, untags, a manifest delete and an unlink. Returns every blob and
/// manifest digest used.
fn populate(engine: &Engine, seed: u64) -> (Vec<Digest>, Vec<Digest>) {
    let mut r = rng(seed);
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    for i in 0..12 {
        let repo = format!("team{}/app", i % 3);
        let len = if i % 4 == 0 {
            60_000
        } else {
            below(&mut r, 5_000)
        };
        let data = random_bytes(&mut r, len);
        blobs.push(upload_in_pieces(engine, &repo, &data, &[len / 3]));
    }
    for (i, d) in blobs.iter().enumerate() {
        engine.link_blob("mirror/all", d).unwrap();
        if i % 5 == 0 {
            engine.unlink_blob("mirror/all", d).unwrap();
        }
    }
    for i in 0..6 {
        let repo = format!("team{}/app", i % 3);
        let body = format!(r#"{{"schemaVersion":2,"n":{i},"seed":{seed}}}"#);
        let record = engine
            .put_manifest(
                &repo,
                Bytes::from(body),
                &Reference::Tag(format!("v{i}")),
                meta(None, None),
                &lain_engine::References::default(),
            )
            .unwrap();
        engine.tag(&repo, "latest", &record.digest).unwrap();
        manifests.push(record.digest);
    }
    let subject = manifests[0].clone();
    let sig = Bytes::from(format!(r#"{{"schemaVersion":2,"sig":{seed}}}"#));
    let sig_digest = sha256(&sig);
    engine
        .put_manifest(
            "team0/app",
            sig,
            &Reference::Digest(sig_digest.clone()),
            meta(Some(&subject), Some("application/x-sig")),
            &lain_engine::References::default(),
        )
        .unwrap();
    manifests.push(sig_digest);
    engine.untag("team1/app", "v1").unwrap();
    engine.delete_manifest("team2/app", &manifests[2]).unwrap();
    (blobs, manifests)
}

/// Pushes the smallest manifest to `lib/app` under `tag`; returns its digest.
fn push_tagged(engine: &Engine, tag: &str) -> Digest {
    let body = Bytes::from_static(br#"{"schemaVersion":2}"#);
    engine
        .put_manifest(
            "lib/app",
            body,
            &Reference::Tag(tag.into()),
            meta(None, None),
            &lain_engine::References::default(),
        )
        .unwrap()
        .digest
}

fn assert_clean(engine: &Engine) {
    let report = engine.check(true, None, &Silent).unwrap();
    let shown: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(shown.is_empty(), "{shown:#?}");
}

#[test]
fn an_index_rebuilt_from_the_packs_serves_exactly_what_was_served() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let (blobs, manifests) = populate(&engine, 1);
    let before = served(&engine, &blobs, &manifests);
    assert!(before.tags.values().any(|t| !t.is_empty()));
    assert!(!before.referrers.is_empty());
    assert_clean(&engine);
    drop(engine);

    // The index directory is lost: the next open rebuilds it from the packs.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), small_options());
    let rebuilt = engine.recovery_report().rebuilt.clone().expect("rebuilt");
    assert!(rebuilt.packs > 1, "{rebuilt:?}");
    assert!(rebuilt.damaged.is_empty());
    assert_eq!(served(&engine, &blobs, &manifests), before);
    assert_clean(&engine);

    // The store goes on from there: new writes, then an explicit rebuild.
    let (more_blobs, more_manifests) = populate(&engine, 2);
    let blobs = [blobs, more_blobs].concat();
    let manifests = [manifests, more_manifests].concat();
    let before = served(&engine, &blobs, &manifests);
    drop(engine);
    let report = Engine::rebuild_index(dir.path(), &small_options(), &Silent).unwrap();
    assert!(report.metadata_records > 0);
    let engine = open(dir.path(), small_options());
    assert_eq!(served(&engine, &blobs, &manifests), before);
    assert_clean(&engine);
}

#[test]
fn a_rebuild_refuses_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _engine = open(dir.path(), small_options());
    assert!(matches!(
        Engine::rebuild_index(dir.path(), &small_options(), &Silent),
        Err(lain_engine::Error::Locked { .. })
    ));
}

fn pack_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The first pack that holds a blob record of `digest`, and the offset of its bytes.
fn locate(root: &Path, digest: &Digest) -> (std::path::PathBuf, u64) {
    for path in pack_files(root) {
        let bytes = std::fs::read(&path).unwrap();
        let scan = lain_engine::pack::format::scan_all(&bytes, 16);
        for r in scan.records {
            if r.kind == lain_engine::pack::format::RecordKind::Blob(digest.clone()) {
                return (path, r.data_offset());
            }
        }
    }
    panic!("no record of {digest}");
}

fn findings(engine: &Engine, deep: bool) -> Vec<(Problem, Vec<String>, Vec<String>)> {
    engine
        .check(deep, None, &Silent)
        .unwrap()
        .findings
        .into_iter()
        .map(|f| (f.problem, f.repositories, f.tags))
        .collect()
}

#[test]
fn check_finds_a_flipped_byte_and_names_what_it_affects() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let data = random_bytes(&mut rng(5), 3_000);
    let layer = upload_in_pieces(&engine, "lib/app", &data, &[]);
    let manifest = push_tagged(&engine, "v1");
    engine.link_blob("other/app", &layer).unwrap();
    drop(engine);
    // Damage the layer's bytes and, separately, the manifest's.
    for (digest, at) in [(&layer, 100u64), (&manifest, 3)] {
        let (path, offset) = locate(dir.path(), digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(offset + at) as usize] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
    }
    let engine = open(dir.path(), small_options());
    let found = findings(&engine, false);
    assert!(
        found
            .iter()
            .any(|(p, _, _)| matches!(p, Problem::PackDamaged { .. })),
        "{found:#?}"
    );
    let layer_finding = found
        .iter()
        .find(|(p, _, _)| matches!(p, Problem::BlobEntryWrong { digest, .. } if *digest == layer))
        .expect("the layer's entry is reported");
    assert_eq!(
        layer_finding.1,
        vec!["lib/app".to_owned(), "other/app".to_owned()]
    );
    let manifest_finding = found
        .iter()
        .find(
            |(p, _, _)| matches!(p, Problem::BlobEntryWrong { digest, .. } if *digest == manifest),
        )
        .expect("the manifest's entry is reported");
    assert_eq!(manifest_finding.2, vec!["lib/app:v1".to_owned()]);
}

#[test]
fn check_finds_a_truncated_pack() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let data = random_bytes(&mut rng(6), 50_000);
    let digest = upload_in_pieces(&engine, "lib/app", &data, &[10_000]);
    drop(engine);
    let (path, offset) = locate(dir.path(), &digest);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(offset + 1_000).unwrap();
    drop(file);
    let engine = open(dir.path(), small_options());
    let found = findings(&engine, false);
    assert!(
        found
            .iter()
            .any(|(p, _, _)| matches!(p, Problem::PackShort { committed, length, .. } if length < committed)),
        "{found:#?}"
    );
    assert!(found.iter().any(|(p, repos, _)| {
        matches!(p, Problem::BlobEntryWrong { digest: d, .. } if *d == digest)
            && repos == &vec!["lib/app".to_owned()]
    }));
}

/// Writes entries straight into a closed store's index, as a damaged index would hold.
fn tamper(root: &Path, f: impl FnOnce(&mut Batch)) {
    let index = Index::open(
        &root.join("index"),
        IndexMemory {
            block_cache_bytes: 1 << 20,
            write_buffer_bytes: 4 << 20,
        },
    )
    .unwrap();
    let mut batch = Batch::default();
    f(&mut batch);
    index.commit(batch).unwrap();
}

#[test]
fn check_finds_a_dangling_index_entry_and_a_tag_without_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let digest = upload_in_pieces(&engine, "lib/app", b"some layer", &[]);
    drop(engine);
    let ghost = sha256(b"never stored");
    tamper(dir.path(), |batch| {
        // A blob entry pointing at bytes that hold no record of it.
        let loc = Location {
            pack: 1,
            offset: 16 + 84,
            length: 5,
            crc: 0,
        };
        batch.put(
            Family::Blobs,
            &keys::blob(&ghost),
            &values::encode_location(&loc),
        );
        // A tag whose manifest the repository does not have.
        let value = values::encode_tag(&digest, std::time::SystemTime::now(), None);
        batch.put(Family::Tags, &keys::tag("lib/app", "broken"), &value);
    });
    let engine = open(dir.path(), small_options());
    let found = findings(&engine, false);
    assert!(
        found.iter().any(
            |(p, _, _)| matches!(p, Problem::BlobEntryWrong { digest, .. } if *digest == ghost)
        ),
        "{found:#?}"
    );
    assert!(found.iter().any(|(p, _, tags)| {
        matches!(p, Problem::TagDangling { repo, tag, .. } if repo == "lib/app" && tag == "broken")
            && tags == &vec!["lib/app:broken".to_owned()]
    }));
    // Neither is in the log: the comparison says so too.
    assert!(found.iter().any(|(p, _, _)| matches!(
        p,
        Problem::LogDisagrees { family: "tags", key, .. } if key == "lib/app:broken"
    )));
    // A repair rebuilds the index from the log, and the store is clean again.
    drop(engine);
    Engine::rebuild_index(dir.path(), &small_options(), &Silent).unwrap();
    let engine = open(dir.path(), small_options());
    assert_clean(&engine);
    assert_eq!(engine.resolve_tag("lib/app", "broken").unwrap(), None);
}

#[test]
fn a_deep_check_finds_bytes_that_pass_their_checksum_but_not_their_digest() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let digest = upload_in_pieces(&engine, "lib/app", b"original bytes", &[]);
    drop(engine);
    // Rewrite the bytes and fix up the data CRC: only the digest tells.
    let (path, offset) = locate(dir.path(), &digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let (start, end) = (offset as usize, offset as usize + 14);
    bytes[start..end].copy_from_slice(b"replaced bytes");
    let crc = crc32fast::hash(&bytes[start..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    // ...and in the index, whose entry also holds the checksum.
    let pack = lain_engine::pack::parse_file_name(path.file_name().unwrap().to_str().unwrap());
    tamper(dir.path(), |batch| {
        let loc = Location {
            pack: pack.unwrap(),
            offset,
            length: 14,
            crc,
        };
        batch.put(
            Family::Blobs,
            &keys::blob(&digest),
            &values::encode_location(&loc),
        );
    });
    let engine = open(dir.path(), small_options());
    assert!(findings(&engine, false).is_empty());
    let found = findings(&engine, true);
    assert!(
        found
            .iter()
            .any(|(p, _, _)| matches!(p, Problem::BlobCorrupt { digest: d, .. } if *d == digest)),
        "{found:#?}"
    );
}

/// A power cut loses every unsynced byte: every tag change whose call returned must
/// survive it, in the index and in a rebuild from the packs.
#[test]
fn acknowledged_tag_changes_survive_a_power_cut_and_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(SimulatedStorage::new());
    let options = || Options {
        storage: storage.clone(),
        ..small_options()
    };
    let mut expected: BTreeMap<String, Digest> = BTreeMap::new();
    for round in 0..4u64 {
        let engine = open(dir.path(), options());
        for (tag, digest) in &expected {
            assert_eq!(
                engine.resolve_tag("lib/app", tag).unwrap().as_ref(),
                Some(digest)
            );
        }
        assert_clean(&engine);
        for i in 0..5 {
            let body = Bytes::from(format!(r#"{{"round":{round},"i":{i}}}"#));
            let tag = format!("t{}", (round + i) % 7);
            let record = engine
                .put_manifest(
                    "lib/app",
                    body,
                    &Reference::Tag(tag.clone()),
                    meta(None, None),
                    &lain_engine::References::default(),
                )
                .unwrap();
            expected.insert(tag, record.digest);
        }
        if let Some(tag) = expected.keys().next().cloned() {
            assert!(engine.untag("lib/app", &tag).unwrap());
            expected.remove(&tag);
        }
        drop(engine);
        storage.power_cut();
    }
    let engine = open(dir.path(), options());
    let listed = engine.list_tags("lib/app", None, usize::MAX).unwrap();
    assert_eq!(listed, expected.keys().cloned().collect::<Vec<_>>());
    assert_clean(&engine);
    drop(engine);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), options());
    for (tag, digest) in &expected {
        assert_eq!(
            engine.resolve_tag("lib/app", tag).unwrap().as_ref(),
            Some(digest)
        );
    }
    assert_eq!(
        engine.list_tags("lib/app", None, usize::MAX).unwrap(),
        listed
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `tests/fixtures/format1/store` was written by the format-1 code (the commit before
/// format 2; see the README there), and `store.served` is what that code served from it.
#[test]
fn a_format_1_store_is_upgraded_in_place_and_serves_the_same() {
    // At run time, not env!(): a binary built in another checkout sharing the target
    // directory must read this checkout's fixture.
    let fixture =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("tests/fixtures/format1");
    let expected = std::fs::read_to_string(fixture.join("store.served")).unwrap();
    let candidates: Vec<Digest> = expected
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("candidates "))
        .unwrap()
        .split(' ')
        .map(|d| d.parse().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    copy_dir(&fixture.join("store"), &store);
    let v1_packs: Vec<(std::path::PathBuf, Vec<u8>)> = pack_files(&store)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let options = || Options {
        pack_seal_size: 64 << 10,
        ..small_options()
    };

    // A rebuild from its packs would lose its metadata: refused until it is upgraded.
    assert!(matches!(
        Engine::rebuild_index(&store, &options(), &Silent),
        Err(lain_engine::Error::UnsupportedFormat { .. })
    ));
    let engine = open(&store, options());
    assert_eq!(engine.recovery_report().upgraded_from, Some(1));
    assert_eq!(dump(&engine, &candidates), expected);
    assert_clean(&engine);
    drop(engine);
    assert!(
        std::fs::read_to_string(store.join("FORMAT"))
            .unwrap()
            .starts_with("lain-registry data format 2")
    );

    // A kill before the upgrade wrote FORMAT: the next open upgrades again.
    std::fs::remove_file(store.join("FORMAT")).unwrap();
    let engine = open(&store, options());
    assert_eq!(engine.recovery_report().upgraded_from, Some(1));
    assert_eq!(dump(&engine, &candidates), expected);
    assert_clean(&engine);
    drop(engine);

    // The upgraded store's log is complete: without its index it serves the same.
    std::fs::remove_dir_all(store.join("index")).unwrap();
    let engine = open(&store, options());
    assert!(engine.recovery_report().rebuilt.is_some());
    assert_eq!(engine.recovery_report().upgraded_from, None);
    assert_eq!(dump(&engine, &candidates), expected);
    assert_clean(&engine);

    // New records never go into the format-1 packs.
    populate(&engine, 3);
    drop(engine);
    for (path, bytes) in v1_packs {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

/// A rebuild killed before it put its index in place leaves `index.new/` and no
/// `index/`: the next open starts over and serves everything.
#[test]
fn an_interrupted_rebuild_is_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let (blobs, manifests) = populate(&engine, 4);
    let before = served(&engine, &blobs, &manifests);
    drop(engine);
    std::fs::rename(dir.path().join("index"), dir.path().join("index.new")).unwrap();
    std::fs::write(dir.path().join("index.new").join("CURRENT"), b"garbage").unwrap();
    let engine = open(dir.path(), small_options());
    assert!(engine.recovery_report().rebuilt.is_some());
    assert!(!dir.path().join("index.new").exists());
    assert_eq!(served(&engine, &blobs, &manifests), before);
}

#[test]
fn a_backup_restores_and_a_second_one_copies_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let (blobs, manifests) = populate(&engine, 1);
    let first = engine.backup(dest.path(), &Silent).unwrap();
    assert_eq!(first.copied_bytes + first.linked_bytes, first.store_bytes);
    assert_eq!(first.unchanged_packs, 0);

    let (more_blobs, more_manifests) = populate(&engine, 2);
    let second = engine.backup(dest.path(), &Silent).unwrap();
    // Only the growth is written: new packs and the new ends of growing ones.
    assert_eq!(
        second.copied_bytes + second.linked_bytes,
        second.store_bytes - first.store_bytes
    );
    let third = engine.backup(dest.path(), &Silent).unwrap();
    assert_eq!(third.copied_bytes + third.linked_bytes, 0);
    assert_eq!(third.unchanged_packs, third.packs);
    // A destination whose pack differs from the store's of the same name is refused,
    // not overwritten or extended.
    let copy = pack_files(dest.path()).pop().unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::remove_file(&copy).unwrap(); // it may be a hard link to the store's pack
    std::fs::write(&copy, &bytes).unwrap();
    assert!(matches!(
        engine.backup(dest.path(), &Silent),
        Err(lain_engine::Error::BackupMismatch { .. })
    ));
    bytes[last] ^= 1;
    std::fs::write(&copy, &bytes).unwrap();

    let blobs = [blobs, more_blobs].concat();
    let manifests = [manifests, more_manifests].concat();
    let before = served(&engine, &blobs, &manifests);
    drop(engine);
    // Restore: open the copy; its index is rebuilt from its packs.
    let restored = open(dest.path(), small_options());
    assert!(restored.recovery_report().rebuilt.is_some());
    assert_eq!(served(&restored, &blobs, &manifests), before);
    assert_clean(&restored);
}

/// Commits sync their packs, not the index: after a power cut the index can end before
/// the packs do (here: an older copy of the index put back). Opening rolls it forward
/// to the packs, and the store serves everything acknowledged.
#[test]
fn an_index_behind_its_packs_is_rolled_forward() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let (blobs, manifests) = populate(&engine, 1);
    drop(engine);
    let old = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("index"), old.path());

    let engine = open(dir.path(), small_options());
    let (more_blobs, more_manifests) = populate(&engine, 2);
    let blobs = [blobs, more_blobs].concat();
    let manifests = [manifests, more_manifests].concat();
    let before = served(&engine, &blobs, &manifests);
    drop(engine);

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    copy_dir(old.path(), &dir.path().join("index"));
    let engine = open(dir.path(), small_options());
    assert!(engine.recovery_report().rolled_forward > 10);
    assert_eq!(served(&engine, &blobs, &manifests), before);
    assert_clean(&engine);
    // The next open finds nothing left to roll forward.
    drop(engine);
    let engine = open(dir.path(), small_options());
    assert_eq!(engine.recovery_report().rolled_forward, 0);
}

/// Dead bytes per pack: a retag leaves the old tag change dead, an untag its own
/// tombstone and the tag it removed; new records add live bytes only. The counts agree
/// with a rebuild's (the check compares them).
#[test]
fn superseded_changes_are_counted_as_dead_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let record = push_tagged(&engine, "v1");
    let dead =
        |engine: &Engine| -> u64 { engine.pack_usage().unwrap().iter().map(|p| p.dead).sum() };
    let live =
        |engine: &Engine| -> u64 { engine.pack_usage().unwrap().iter().map(|p| p.live()).sum() };
    let (dead0, live0) = (dead(&engine), live(&engine));
    // Framing only: the manifest's blob record, link, manifest and tag are all needed.
    assert_eq!(dead0, 32);
    engine.tag("lib/app", "v1", &record).unwrap();
    // The first tag change (5 + 4 + 7 + 4 + 2 + 33 + 8 bytes) died; the new one lives.
    let tag_change = 1 + 4 + 7 + 4 + 2 + 33 + 8;
    assert_eq!(dead(&engine), dead0 + 32 + tag_change);
    assert_eq!(live(&engine), live0);
    assert!(engine.untag("lib/app", "v1").unwrap());
    // The untag (1 + 4 + 7 + 4 + 2) is dead from the start, and so is the tag it removed.
    assert_eq!(dead(&engine), dead0 + 2 * 32 + 2 * tag_change + 18);
    assert_eq!(live(&engine), live0 - tag_change);
    assert_clean(&engine);
    drop(engine);
    // A rebuild counts the same.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), small_options());
    assert_eq!(dead(&engine), dead0 + 2 * 32 + 2 * tag_change + 18);
}

/// A metadata record holding one change, "tag `repo`:`tag` -> `digest`", built byte by
/// byte from FORMAT.md (as a stale or a forged record would be on disk).
fn tag_record(sequence: u64, repo: &str, tag: &str, digest: &Digest) -> Vec<u8> {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(5);
    for s in [repo, tag] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    body.push(1); // sha256
    body.extend_from_slice(digest.as_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    lain_engine::pack::format::encode_meta_record(sequence, &body)
}

/// A metadata record whose index write failed stays in its (retired) pack while later
/// groups commit. At the next open it is older than what the index has applied: it is
/// cut, never applied over the newer, acknowledged changes.
#[test]
fn a_stale_record_past_the_committed_length_is_cut_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let acknowledged = push_tagged(&engine, "t");
    drop(engine);
    // "tag lib/app:t -> <other>" with sequence 1, which the index has applied long ago.
    let other = sha256(b"some other manifest");
    let stale = tag_record(1, "lib/app", "t", &other);
    // The failed group also stored a small blob, whose record precedes its metadata.
    let orphan = b"a blob of the failed group";
    let header = lain_engine::pack::format::RecordHeader {
        digest: sha256(orphan),
        length: orphan.len() as u64,
    };
    let pack = pack_files(dir.path()).pop().unwrap();
    let before = std::fs::metadata(&pack).unwrap().len();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(orphan);
    bytes.extend_from_slice(&crc32fast::hash(orphan).to_le_bytes());
    bytes.extend_from_slice(&stale);
    std::fs::write(&pack, bytes).unwrap();

    let engine = open(dir.path(), small_options());
    assert_eq!(engine.recovery_report().rolled_forward, 0);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), before);
    assert!(engine.blob_info(&sha256(orphan)).unwrap().is_none());
    assert_eq!(
        engine.resolve_tag("lib/app", "t").unwrap(),
        Some(acknowledged)
    );
    assert_clean(&engine);
}

/// One atomic set of changes larger than a metadata record can hold is refused; large
/// concurrent ones (which may share a group) are split into several records, each
/// under the limit, and all of it survives a rebuild.
#[test]
fn metadata_beyond_the_record_limit_is_split_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path(), small_options()));
    let big = |mib: usize, n: u8| ManifestMeta {
        annotations: vec![(
            "big".into(),
            String::from(char::from(b'a' + n)).repeat(mib << 20),
        )],
        ..meta(None, None)
    };
    let body = |n: u8| Bytes::from(format!(r#"{{"schemaVersion":2,"n":{n}}}"#));
    match engine.put_manifest(
        "lib/app",
        body(0),
        &Reference::Tag("huge".into()),
        big(65, 0),
        &lain_engine::References::default(),
    ) {
        Err(lain_engine::Error::MetadataTooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
    let threads: Vec<_> = (1..=4u8)
        .map(|n| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                engine
                    .put_manifest(
                        "lib/app",
                        body(n),
                        &Reference::Tag(format!("t{n}")),
                        big(24, n),
                        &lain_engine::References::default(),
                    )
                    .unwrap()
            })
        })
        .collect();
    let digests: Vec<Digest> = threads
        .into_iter()
        .map(|t| t.join().unwrap().digest)
        .collect();
    let before = served(&engine, &[], &digests);
    assert_eq!(before.manifests.len(), 4);
    assert_clean(&engine);
    drop(engine);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let engine = open(dir.path(), small_options());
    assert_eq!(served(&engine, &[], &digests), before);
}

/// After a crash, a pack's tail can hold an upload's bytes behind a zeroed header: a
/// client's bytes, which may be crafted to look like records. A rebuild steps past the
/// damage, but applies no metadata record found there and no blob record whose bytes
/// do not hash to its digest.
#[test]
fn a_rebuild_trusts_nothing_unverifiable_past_damaged_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let real = upload_in_pieces(&engine, "lib/app", b"a real layer", &[]);
    drop(engine);
    // "tag lib/app:evil -> real" with a high sequence, and a blob record whose bytes
    // are not what its digest says.
    let forged = sha256(b"what the digest claims");
    let lie = b"other bytes";
    let header = lain_engine::pack::format::RecordHeader {
        digest: forged.clone(),
        length: lie.len() as u64,
    };
    let mut tail = vec![0u8; 84];
    tail.extend_from_slice(&tag_record(1 << 40, "lib/app", "evil", &real));
    tail.extend_from_slice(&header.encode());
    tail.extend_from_slice(lie);
    tail.extend_from_slice(&crc32fast::hash(lie).to_le_bytes());
    let pack = pack_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes.extend_from_slice(&tail);
    std::fs::write(&pack, bytes).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();

    let engine = open(dir.path(), small_options());
    let report = engine.recovery_report().rebuilt.clone().unwrap();
    assert_eq!(report.skipped_records.len(), 2, "{report:?}");
    assert_eq!(engine.resolve_tag("lib/app", "evil").unwrap(), None);
    assert!(engine.blob_info(&forged).unwrap().is_none());
    assert!(engine.repo_blob("lib/app", &real).unwrap().is_some());
}

/// With a reader of manifests (the protocol's, in the registry), the check finds a
/// manifest naming a blob its repository cannot read or a child it does not have, and
/// names the tags that point at it. Here manifests are lists of digests, a word each:
/// `blob:<digest>` or `child:<digest>`.
#[test]
fn check_finds_manifest_references_that_are_missing() {
    let reader = |bytes: &[u8], _: &str| -> Result<lain_engine::References, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut references = lain_engine::References::default();
        for word in text.split_whitespace() {
            match word.split_once(':') {
                Some(("blob", d)) => references.blobs.push(d.parse().map_err(|_| d.to_owned())?),
                Some(("child", d)) => references
                    .manifests
                    .push(d.parse().map_err(|_| d.to_owned())?),
                _ => return Err(format!("not a reference: {word}")),
            }
        }
        Ok(references)
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let layer = upload_in_pieces(&engine, "lib/app", b"a layer", &[]);
    let elsewhere = upload_in_pieces(&engine, "other/app", b"not in lib/app", &[]);
    let put = |body: String, tag: &str| {
        engine
            .put_manifest(
                "lib/app",
                Bytes::from(body),
                &Reference::Tag(tag.into()),
                meta(None, None),
                &lain_engine::References::default(),
            )
            .unwrap()
            .digest
    };
    let good = put(format!("blob:{layer}"), "good");
    let missing_child = sha256(b"no such manifest");
    let bad = put(
        format!("blob:{layer} blob:{elsewhere} child:{good} child:{missing_child}"),
        "bad",
    );
    let garbage = put("{not a list}".into(), "garbage");
    let report = engine.check(false, Some(&reader), &Silent).unwrap();
    let found: Vec<(Problem, Vec<String>)> = report
        .findings
        .into_iter()
        .map(|f| (f.problem, f.tags))
        .collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().any(|(p, tags)| matches!(p,
        Problem::ReferenceMissing { manifest, reference, what: "blob", .. }
            if *manifest == bad && *reference == elsewhere)
        && tags == &vec!["lib/app:bad".to_owned()]));
    assert!(found.iter().any(|(p, _)| matches!(p,
        Problem::ReferenceMissing { manifest, reference, what: "manifest", .. }
            if *manifest == bad && *reference == missing_child)));
    assert!(found.iter().any(|(p, _)| matches!(p,
        Problem::ManifestUnreadable { digest, .. } if *digest == garbage)));
    // Without a reader, the storage invariants alone hold.
    assert_clean(&engine);
}
