//! Repository metadata: links and mounts, manifests, tags, referrers, catalog.

mod common;

use bytes::Bytes;
use common::*;
use lain_engine::{Algorithm, Engine, Error, ManifestMeta, Reference};

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    (dir, engine)
}

fn meta(media_type: &str) -> ManifestMeta {
    ManifestMeta {
        media_type: media_type.into(),
        ..ManifestMeta::default()
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn links_and_mounts_move_no_bytes() {
    let (dir, engine) = engine();
    let data = random_bytes(&mut rng(1), 10_000);
    let digest = upload_in_pieces(&engine, "src/app", &data, &[]);
    // A mount writes a small metadata record, never the blob's bytes again.
    let size = record_bytes;
    let before = size(dir.path());
    assert!(engine.repo_blob("dst/app", &digest).unwrap().is_none());
    let mounted = engine.link_blob("dst/app", &digest).unwrap().unwrap();
    assert_eq!(mounted.size, 10_000);
    assert_eq!(size(dir.path()), before);
    assert!(engine.repo_blob("dst/app", &digest).unwrap().is_some());
    assert!(engine.repository_exists("dst/app").unwrap());
    // Mounting something that is not stored changes nothing.
    let missing = sha256(b"missing");
    assert!(engine.link_blob("other", &missing).unwrap().is_none());
    assert!(!engine.repository_exists("other").unwrap());
    // Unlinking removes only that repository's access.
    assert!(engine.unlink_blob("dst/app", &digest).unwrap());
    assert!(!engine.unlink_blob("dst/app", &digest).unwrap());
    assert!(engine.repo_blob("dst/app", &digest).unwrap().is_none());
    assert!(engine.repo_blob("src/app", &digest).unwrap().is_some());
}

#[test]
fn manifests_tags_and_deletes() {
    let (_dir, engine) = engine();
    let body = Bytes::from_static(br#"{"schemaVersion":2,"layers":[]}"#);
    let record = engine
        .put_manifest(
            "lib/app",
            body.clone(),
            &Reference::Tag("v1".into()),
            meta(OCI_MANIFEST),
            &lain_engine::References::default(),
        )
        .unwrap();
    assert_eq!(record.digest, sha256(&body));
    assert_eq!(record.size, body.len() as u64);

    let by_tag = engine
        .get_manifest("lib/app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(by_tag.0, record);
    assert_eq!(by_tag.1, body);
    let by_digest = engine
        .manifest("lib/app", &Reference::Digest(record.digest.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.meta.media_type, OCI_MANIFEST);
    // Scoped to the repository.
    assert!(
        engine
            .manifest("lib/other", &Reference::Tag("v1".into()))
            .unwrap()
            .is_none()
    );

    engine.tag("lib/app", "latest", &record.digest).unwrap();
    engine.tag("lib/app", "v1.1", &record.digest).unwrap();
    assert!(matches!(
        engine.tag("lib/app", "x", &sha256(b"nothing")),
        Err(Error::ManifestUnknown(_))
    ));
    assert_eq!(
        engine.list_tags("lib/app", None, 100).unwrap(),
        ["latest", "v1", "v1.1"]
    );

    // Deleting a tag leaves the manifest.
    assert!(engine.untag("lib/app", "v1").unwrap());
    assert!(!engine.untag("lib/app", "v1").unwrap());
    assert!(
        engine
            .manifest("lib/app", &Reference::Digest(record.digest.clone()))
            .unwrap()
            .is_some()
    );
    // Deleting the manifest removes its tags too, and its blob link.
    assert!(engine.delete_manifest("lib/app", &record.digest).unwrap());
    assert!(!engine.delete_manifest("lib/app", &record.digest).unwrap());
    assert!(engine.list_tags("lib/app", None, 100).unwrap().is_empty());
    assert!(
        engine
            .get_manifest("lib/app", &Reference::Tag("latest".into()))
            .unwrap()
            .is_none()
    );
    assert!(
        engine
            .repo_blob("lib/app", &record.digest)
            .unwrap()
            .is_none()
    );
}

#[test]
fn tag_and_catalog_pagination_is_lexical() {
    let (_dir, engine) = engine();
    let digest = engine
        .put_manifest(
            "a",
            Bytes::from_static(b"{}"),
            &Reference::Digest(sha256(b"{}")),
            meta(OCI_MANIFEST),
            &lain_engine::References::default(),
        )
        .unwrap()
        .digest;
    let mut tags: Vec<String> = (0..57).map(|i| format!("t{}", i * 37 % 101)).collect();
    tags.extend(["A".into(), "_x".into(), "latest".into(), "v1.0-rc".into()]);
    for t in &tags {
        engine.tag("a", t, &digest).unwrap();
    }
    // A repository whose name extends "a" must not leak into its tag list.
    engine
        .put_manifest(
            "a/b",
            Bytes::from_static(b"{}"),
            &Reference::Tag("zzz".into()),
            meta(OCI_MANIFEST),
            &lain_engine::References::default(),
        )
        .unwrap();
    tags.sort();
    let mut paged = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = engine.list_tags("a", last.as_deref(), 10).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        last = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, tags);
    // `last` need not be an existing tag.
    let after_t5: Vec<&String> = tags.iter().filter(|t| t.as_str() > "t5").take(2).collect();
    assert_eq!(
        engine
            .list_tags("a", Some("t5"), 2)
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        after_t5
    );

    for repo in ["z/last", "b", "a/c", "m/n/o"] {
        engine.link_blob(repo, &digest).unwrap();
    }
    assert_eq!(
        engine.list_repositories(None, 100).unwrap(),
        ["a", "a/b", "a/c", "b", "m/n/o", "z/last"]
    );
    assert_eq!(
        engine.list_repositories(Some("a/b"), 2).unwrap(),
        ["a/c", "b"]
    );
    assert!(
        engine
            .list_repositories(Some("z/last"), 5)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn referrers_are_listed_and_filtered() {
    let (_dir, engine) = engine();
    let subject = engine
        .put_manifest(
            "app",
            Bytes::from_static(b"{\"s\":1}"),
            &Reference::Tag("v1".into()),
            meta(OCI_MANIFEST),
            &lain_engine::References::default(),
        )
        .unwrap();
    let referrer = |body: &'static [u8], artifact: &str| {
        let m = ManifestMeta {
            media_type: OCI_MANIFEST.into(),
            subject: Some(subject.digest.clone()),
            artifact_type: Some(artifact.into()),
            annotations: vec![("org.example.note".into(), artifact.into())],
        };
        engine
            .put_manifest(
                "app",
                Bytes::from_static(body),
                &Reference::Digest(sha256(body)),
                m,
                &lain_engine::References::default(),
            )
            .unwrap()
    };
    let sig = referrer(b"{\"sig\":1}", "application/vnd.example.sig");
    let sbom = referrer(b"{\"sbom\":1}", "application/vnd.example.sbom");

    let all = engine.referrers("app", &subject.digest, None).unwrap();
    let mut expected = vec![sig.clone(), sbom.clone()];
    expected.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(all, expected);
    let only_sbom = engine
        .referrers("app", &subject.digest, Some("application/vnd.example.sbom"))
        .unwrap();
    assert_eq!(only_sbom, vec![sbom.clone()]);
    // Other repositories and unknown subjects have none.
    assert!(
        engine
            .referrers("other", &subject.digest, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        engine
            .referrers("app", &sha256(b"x"), None)
            .unwrap()
            .is_empty()
    );
    // Deleting a referrer removes it from the list; deleting the subject does not
    // remove the remaining referrers.
    assert!(engine.delete_manifest("app", &sig.digest).unwrap());
    assert!(engine.delete_manifest("app", &subject.digest).unwrap());
    assert_eq!(
        engine.referrers("app", &subject.digest, None).unwrap(),
        vec![sbom]
    );
}

#[test]
fn metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let digest = {
        let engine = open(dir.path(), small_options());
        let digest = engine
            .put_manifest(
                "p/q",
                Bytes::from_static(b"[1]"),
                &Reference::Digest(Algorithm::Sha512.digest(b"[1]")),
                meta("application/vnd.oci.image.index.v1+json"),
                &lain_engine::References::default(),
            )
            .unwrap()
            .digest;
        engine.tag("p/q", "stable", &digest).unwrap();
        digest
    };
    let engine = open(dir.path(), small_options());
    let (record, bytes) = engine
        .get_manifest("p/q", &Reference::Tag("stable".into()))
        .unwrap()
        .unwrap();
    assert_eq!(record.digest, digest);
    assert_eq!(record.digest.algorithm(), Algorithm::Sha512);
    assert_eq!(&bytes[..], b"[1]");
    assert_eq!(engine.list_repositories(None, 10).unwrap(), ["p/q"]);
}

#[test]
fn a_manifest_pushed_by_a_wrong_digest_is_refused_and_stores_nothing() {
    let (_dir, engine) = engine();
    let body = Bytes::from_static(b"{\"schemaVersion\":2}");
    let claimed = sha256(b"another manifest");
    match engine.put_manifest(
        "lib/app",
        body.clone(),
        &Reference::Digest(claimed.clone()),
        meta(OCI_MANIFEST),
        &lain_engine::References::default(),
    ) {
        Err(Error::DigestMismatch { expected, computed }) => {
            assert_eq!(*expected, claimed);
            assert_eq!(*computed, sha256(&body));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        engine
            .manifest("lib/app", &Reference::Digest(sha256(&body)))
            .unwrap()
            .is_none()
    );
    assert!(engine.blob_info(&sha256(&body)).unwrap().is_none());
    assert!(!engine.repository_exists("lib/app").unwrap());
}

#[test]
fn concurrent_manifest_pushes_to_one_repository_share_syncs() {
    let (_dir, engine) = engine();
    let threads = 16;
    let per_thread = 20;
    std::thread::scope(|s| {
        for t in 0..threads {
            let engine = &engine;
            s.spawn(move || {
                for i in 0..per_thread {
                    let body = format!(r#"{{"schemaVersion":2,"layers":[],"n":"{t}-{i}"}}"#);
                    engine
                        .put_manifest(
                            "lib/app",
                            Bytes::from(body),
                            &Reference::Tag(format!("t{t}-{i}")),
                            meta(OCI_MANIFEST),
                            &lain_engine::References::default(),
                        )
                        .unwrap();
                }
            });
        }
    });
    let tags = engine.list_tags("lib/app", None, usize::MAX).unwrap();
    assert_eq!(tags.len(), threads * per_thread);
    let stats = engine.stats();
    // Pushes to one repository are not serialized behind each other's syncs.
    assert!(
        stats.pack_syncs < stats.commits,
        "every manifest push synced alone: {stats:?}"
    );
}
