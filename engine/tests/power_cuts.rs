//! A power cut at every sync of a workload that pushes, moves tags, untags, deletes
//! manifests, unlinks blobs and collects garbage (mark, sweep, compaction, retired
//! packs removed): the store each cut leaves is opened with its index lost, so it is
//! rebuilt from the packs alone, and must hold exactly what was acknowledged.
//!
//! The workload runs once on [`SimulatedStorage`], which records what a cut would
//! leave at each sync; each operation notes how many cuts were recorded when it
//! returned. A cut taken after an operation returned holds its changes; the one
//! operation running at the cut may or may not have landed. So for every cut: the
//! store opens, its full check finds nothing wrong, every manifest it lists is one the
//! model has before or after the operation in flight, every manifest both states have
//! reads back whole with every blob, and every tag points where one of them says.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use lain_engine::progress::Silent;
use lain_engine::storage::SimulatedStorage;
use lain_engine::{CollectOptions, Digest, Engine, ManifestMeta, Options, Reference, References};

const REPOS: [&str; 3] = ["lib/a", "lib/b", "team/c"];
const TAGS: [&str; 4] = ["latest", "v1", "v2", "stable"];

/// What the store must hold: manifests (their bytes and blobs) and tags, per repository.
#[derive(Debug, Clone, Default)]
struct Model {
    manifests: BTreeMap<(String, Digest), (Bytes, Vec<Digest>)>,
    tags: BTreeMap<(String, String), Digest>,
    /// Blobs uploaded with no manifest yet: unlinked now and then.
    loose: Vec<(String, Digest)>,
}

/// One manifest per line of references, after a line that makes it unique.
fn reader(bytes: &[u8], _media_type: &str) -> Result<References, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut refs = References::default();
    for line in text.lines().skip(1) {
        refs.blobs
            .push(line.parse().map_err(|e| format!("{e}: {line}"))?);
    }
    Ok(refs)
}

fn put_blob(engine: &Engine, repo: &str, rng: &mut impl rand::Rng) -> Digest {
    let len = [10, 300, 5_000, 40_000][below(rng, 4)];
    let data = random_bytes(rng, len);
    let digest = sha256(&data);
    engine
        .put_blob(repo, Bytes::from(data), &digest)
        .expect("put blob");
    digest
}

/// One random operation, applied to the engine and to the model.
fn step(engine: &Engine, model: &mut Model, rng: &mut impl rand::Rng, n: usize) {
    let repo = REPOS[below(rng, REPOS.len())].to_owned();
    let in_repo: Vec<Digest> = model
        .manifests
        .keys()
        .filter(|(r, _)| *r == repo)
        .map(|(_, d)| d.clone())
        .collect();
    match below(rng, 12) {
        0..=3 => {
            let blobs: Vec<Digest> = (0..1 + below(rng, 2))
                .map(|_| put_blob(engine, &repo, rng))
                .collect();
            let mut text = format!("manifest {n}\n");
            for b in &blobs {
                text.push_str(&format!("{b}\n"));
            }
            let bytes = Bytes::from(text);
            let tag = TAGS[below(rng, TAGS.len())].to_owned();
            let meta = ManifestMeta {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                subject: None,
                artifact_type: None,
                annotations: vec![],
            };
            let references = References {
                blobs: blobs.clone(),
                manifests: vec![],
            };
            let record = engine
                .put_manifest(
                    &repo,
                    bytes.clone(),
                    &Reference::Tag(tag.clone()),
                    meta,
                    &references,
                )
                .expect("put manifest");
            model
                .manifests
                .insert((repo.clone(), record.digest.clone()), (bytes, blobs));
            model.tags.insert((repo, tag), record.digest);
        }
        4 if !in_repo.is_empty() => {
            let digest = in_repo[below(rng, in_repo.len())].clone();
            let tag = TAGS[below(rng, TAGS.len())].to_owned();
            engine.tag(&repo, &tag, &digest).expect("tag");
            model.tags.insert((repo, tag), digest);
        }
        5 => {
            let tag = TAGS[below(rng, TAGS.len())].to_owned();
            let had = model.tags.remove(&(repo.clone(), tag.clone())).is_some();
            assert_eq!(engine.untag(&repo, &tag).expect("untag"), had);
        }
        6 if !in_repo.is_empty() => {
            let digest = in_repo[below(rng, in_repo.len())].clone();
            assert!(engine.delete_manifest(&repo, &digest).expect("delete"));
            model.manifests.remove(&(repo.clone(), digest.clone()));
            model.tags.retain(|(r, _), d| !(*r == repo && *d == digest));
        }
        7 => {
            let digest = put_blob(engine, &repo, rng);
            model.loose.push((repo, digest));
        }
        8 if !model.loose.is_empty() => {
            let (repo, digest) = model.loose.swap_remove(below(rng, model.loose.len()));
            engine.unlink_blob(&repo, &digest).expect("unlink");
        }
        9..=11 => {
            let delete_untagged = below(rng, 2) == 0;
            let options = CollectOptions {
                delete_untagged,
                dry_run: false,
                grace: Duration::ZERO,
                compact_threshold: 0.0,
            };
            engine.collect(&options, &reader, &Silent).expect("collect");
            if delete_untagged {
                let tagged: BTreeSet<(String, Digest)> = model
                    .tags
                    .iter()
                    .map(|((r, _), d)| (r.clone(), d.clone()))
                    .collect();
                model.manifests.retain(|key, _| tagged.contains(key));
            }
            // Loose blobs are past the (zero) grace period: gone.
            model.loose.clear();
        }
        _ => {}
    }
}

/// The store `cut` left, opened without its index, against the model before and after
/// the operation the cut interrupted.
fn verify(root: &std::path::Path, cut: &lain_engine::storage::Cut, before: &Model, after: &Model) {
    let index = root.join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index).expect("remove index");
    }
    let engine = open(
        root,
        Options {
            storage: Arc::new(cut.restore()),
            ..options()
        },
    );
    let report = engine.check(true, Some(&reader), &Silent).expect("check");
    assert!(report.is_clean(), "{report:#?}");
    for repo in REPOS {
        for record in engine.list_manifests(repo).expect("list manifests") {
            let key = (repo.to_owned(), record.digest.clone());
            assert!(
                before.manifests.contains_key(&key) || after.manifests.contains_key(&key),
                "{repo} {} is neither acknowledged nor in flight",
                record.digest
            );
        }
        for tag in engine.list_tags(repo, None, usize::MAX).expect("tags") {
            let key = (repo.to_owned(), tag.clone());
            let now = engine.resolve_tag(repo, &tag).expect("resolve");
            assert!(
                now.is_some()
                    && (now == before.tags.get(&key).cloned()
                        || now == after.tags.get(&key).cloned()),
                "{repo}:{tag} -> {now:?}, acknowledged {:?}, in flight {:?}",
                before.tags.get(&key),
                after.tags.get(&key)
            );
        }
    }
    for (key, digest) in &before.tags {
        if after.tags.get(key) == Some(digest) {
            assert_eq!(
                engine
                    .resolve_tag(&key.0, &key.1)
                    .expect("resolve")
                    .as_ref(),
                Some(digest),
                "{key:?} lost"
            );
        }
    }
    for (key, (bytes, blobs)) in &before.manifests {
        if !after.manifests.contains_key(key) {
            continue;
        }
        let (repo, digest) = key;
        let (_, stored) = engine
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .expect("get manifest")
            .unwrap_or_else(|| panic!("{repo} {digest} lost"));
        assert_eq!(&stored, bytes);
        for blob in blobs {
            assert!(
                engine.repo_blob(repo, blob).expect("blob").is_some(),
                "{repo} {blob} unlinked"
            );
            assert_eq!(&sha256(&read_all(&engine, blob)), blob);
        }
    }
}

fn options() -> Options {
    Options {
        // Small packs: many seal, and collections rewrite and retire them.
        pack_seal_size: 48 << 10,
        ..small_options()
    }
}

#[test]
fn every_cut_of_a_workload_with_collections_keeps_what_was_acknowledged() {
    let seed = seed();
    let mut rng = rng(seed);
    // The index is rebuilt for every cut: in memory (tmpfs) its syncs cost nothing.
    let dir = memory_tempdir();
    let storage = Arc::new(SimulatedStorage::new());
    let engine = open(
        dir.path(),
        Options {
            storage: storage.clone(),
            ..options()
        },
    );
    storage.record_cuts();
    let mut model = Model::default();
    // (cuts recorded when the operation returned, the model after it)
    let mut states = vec![(0, model.clone())];
    for n in 0..400 {
        step(&engine, &mut model, &mut rng, n);
        states.push((storage.cuts_recorded(), model.clone()));
    }
    drop(engine);
    let cuts = storage.recorded_cuts();
    assert!(cuts.len() >= 1000, "only {} cuts", cuts.len());
    // Two workers, each opening its cuts in a data directory of its own.
    let workers = 2;
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (cuts, states, from) = (&cuts, &states, dir.path());
            scope.spawn(move || {
                let place = from.join(format!("worker{worker}"));
                for (i, cut) in cuts.iter().enumerate().skip(worker).step_by(workers) {
                    let taken = i + 1;
                    // The first operation that had not returned when the cut was taken.
                    let in_flight = states
                        .iter()
                        .position(|(returned, _)| *returned > taken)
                        .unwrap_or(states.len() - 1);
                    let before = &states[in_flight.saturating_sub(1)].1;
                    let after = &states[in_flight].1;
                    let cut = cut.moved(from, &place);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        verify(&place, &cut, before, after)
                    }));
                    if let Err(e) = outcome {
                        eprintln!(
                            "cut {taken} of {} (operation {in_flight} in flight), seed {seed}",
                            cuts.len()
                        );
                        std::panic::resume_unwind(e);
                    }
                }
            });
        }
    });
    eprintln!("{} cuts verified (seed {seed})", cuts.len());
}
