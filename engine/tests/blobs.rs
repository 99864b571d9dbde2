//! Blob store behaviour: uploads in pieces, reads and ranges, dedup, concurrency,
//! digest checks, session lifecycle.

mod common;

use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use common::*;
use lain_engine::{Algorithm, Digest, Engine, Error, Options};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any blob, cut into pieces anywhere, reads back exactly: whole, piece by piece,
    /// and in arbitrary ranges; with write batches and read pieces of any size.
    #[test]
    fn every_byte_reads_back(
        seed in any::<u64>(),
        len in prop_oneof![0usize..64, 0usize..70_000, 0usize..600_000],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        flush in 1usize..100_000,
        piece in 1usize..50_000,
        ranges in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            upload_flush_bytes: flush,
            read_piece_bytes: piece,
            ..small_options()
        };
        let engine = open(dir.path(), options);
        let mut r = rng(seed);
        // A neighbour blob before ours, so offsets inside the pack are not trivial.
        let neighbour = random_bytes(&mut r, 1000);
        upload_in_pieces(&engine, "lib/neighbour", &neighbour, &[]);
        let data = random_bytes(&mut r, len);
        let cuts: Vec<usize> = cuts.iter().map(|c| if len == 0 { 0 } else { c % len }).collect();
        let digest = upload_in_pieces(&engine, "lib/app", &data, &cuts);

        prop_assert_eq!(engine.blob_info(&digest).unwrap().map(|i| i.size), Some(len as u64));
        let reader = engine.read_blob(&digest, None).unwrap();
        prop_assert_eq!(reader.remaining(), len as u64);
        let pieces: Vec<Bytes> = reader.map(|p| p.expect("readable")).collect();
        prop_assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= piece));
        prop_assert_eq!(pieces.concat(), data.clone());
        for (a, b) in ranges {
            let (a, b) = if len == 0 { (0, 0) } else { (a % (len as u64 + 1), b % (len as u64 + 1)) };
            let (start, end) = (a.min(b), a.max(b));
            let got: Vec<u8> = engine.read_blob(&digest, Some(start..end)).unwrap().flat_map(|p| p.unwrap().to_vec()).collect();
            prop_assert_eq!(&got[..], &data[start as usize..end as usize]);
        }
        prop_assert_eq!(read_all(&engine, &neighbour_digest(&neighbour)), neighbour);
        engine.verify_blob(&digest).unwrap();
    }
}

fn neighbour_digest(data: &[u8]) -> Digest {
    sha256(data)
}

#[test]
fn ranges_outside_the_blob_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let digest = upload_in_pieces(&engine, "r", b"0123456789", &[3]);
    for (start, end) in [(0, 11), (11, 11), (5, 4), (10, 12)] {
        let range = start..end;
        match engine.read_blob(&digest, Some(range.clone())) {
            Err(Error::RangeNotSatisfiable { size: 10, .. }) => {}
            other => panic!("{range:?}: {other:?}"),
        }
    }
    let tail: Vec<u8> = engine
        .read_blob(&digest, Some(10..10))
        .unwrap()
        .flat_map(|p| p.unwrap().to_vec())
        .collect();
    assert!(tail.is_empty());
    let unknown = sha256(b"nope");
    assert!(matches!(
        engine.read_blob(&unknown, None),
        Err(Error::BlobUnknown(_))
    ));
    assert_eq!(engine.blob_info(&unknown).unwrap(), None);
}

#[test]
fn a_duplicate_stores_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let data = random_bytes(&mut rng(1), 100_000);
    let packs_len = || record_bytes(dir.path());
    let digest = upload_in_pieces(&engine, "a", &data, &[10, 50_000]);
    let after_first = packs_len();
    // Same bytes again, in other pieces, into two repositories, one of them the same.
    upload_in_pieces(&engine, "a", &data, &[99_999]);
    upload_in_pieces(&engine, "b", &data, &[1, 2, 3]);
    assert_eq!(
        packs_len(),
        after_first,
        "a duplicate must not grow the packs"
    );
    let stats = engine.stats();
    assert_eq!(stats.commits, 3);
    assert_eq!(stats.deduplicated, 2);
    assert_eq!(read_all(&engine, &digest), data);
    // The duplicate still links the blob to the new repository.
    assert!(engine.repo_blob("b", &digest).unwrap().is_some());
    assert!(engine.repo_blob("c", &digest).unwrap().is_none());
}

#[test]
fn a_wrong_digest_drops_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let good = upload_in_pieces(&engine, "a", b"kept", &[]);
    let packs_before = record_bytes(dir.path());
    let data = random_bytes(&mut rng(2), 50_000);
    let id = engine.start_upload("a", Algorithm::Sha256).unwrap();
    engine
        .upload_append("a", &id, Bytes::from(data.clone()))
        .unwrap();
    let claimed = sha256(b"something else");
    match engine.commit_upload("a", &id, &claimed) {
        Err(Error::DigestMismatch { expected, computed }) => {
            assert_eq!(*expected, claimed);
            assert_eq!(*computed, sha256(&data));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(record_bytes(dir.path()), packs_before);
    assert!(engine.blob_info(&sha256(&data)).unwrap().is_none());
    assert!(matches!(
        engine.upload_status("a", &id),
        Err(Error::UploadUnknown(_))
    ));
    assert_eq!(read_all(&engine, &good), b"kept");
}

#[test]
fn sessions_resume_report_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let id = engine.start_upload("a/b", Algorithm::Sha256).unwrap();
    assert_eq!(engine.upload_status("a/b", &id).unwrap().received, 0);
    engine
        .upload_append("a/b", &id, Bytes::from_static(b"hello "))
        .unwrap();
    assert_eq!(engine.upload_status("a/b", &id).unwrap().received, 6);
    // Another repository cannot see or touch the session.
    assert!(matches!(
        engine.upload_status("a/c", &id),
        Err(Error::UploadUnknown(_))
    ));
    assert!(matches!(
        engine.upload_append("a/c", &id, Bytes::from_static(b"x")),
        Err(Error::UploadUnknown(_))
    ));
    let received = engine
        .upload_append("a/b", &id, Bytes::from_static(b"world"))
        .unwrap();
    assert_eq!(received, 11);
    let info = engine
        .commit_upload("a/b", &id, &sha256(b"hello world"))
        .unwrap();
    assert_eq!(info.size, 11);
    assert!(matches!(
        engine.commit_upload("a/b", &id, &sha256(b"hello world")),
        Err(Error::UploadUnknown(_))
    ));

    // Cancel gives the bytes back.
    let before = pack_file_bytes(dir.path());
    let id = engine.start_upload("a/b", Algorithm::Sha256).unwrap();
    engine
        .upload_append("a/b", &id, Bytes::from(vec![7u8; 100_000]))
        .unwrap();
    // Big pieces are written without waiting for the commit (on a writing thread of
    // their own, so they reach the pack shortly after the append returns).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pack_file_bytes(dir.path()) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "big pieces are written early"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    engine.cancel_upload("a/b", &id).unwrap();
    assert_eq!(pack_file_bytes(dir.path()), before);
    assert!(matches!(
        engine.cancel_upload("a/b", &id),
        Err(Error::UploadUnknown(_))
    ));

    // Idle sessions are purged.
    let id = engine.start_upload("a/b", Algorithm::Sha256).unwrap();
    assert_eq!(
        engine.purge_uploads(std::time::Duration::from_secs(3600)),
        0
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        engine.purge_uploads(std::time::Duration::from_millis(10)),
        1
    );
    assert!(engine.upload_status("a/b", &id).is_err());
}

#[test]
fn sha512_digests_and_algorithm_switch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    let data = random_bytes(&mut rng(3), 40_000);
    let d512 = Algorithm::Sha512.digest(&data);
    // Hashed as sha256 while arriving, committed with a sha512 digest: re-hashed once.
    let id = engine.start_upload("x", Algorithm::Sha256).unwrap();
    engine
        .upload_append("x", &id, Bytes::copy_from_slice(&data[..30_000]))
        .unwrap();
    engine
        .upload_append("x", &id, Bytes::copy_from_slice(&data[30_000..]))
        .unwrap();
    engine.commit_upload("x", &id, &d512).unwrap();
    assert_eq!(read_all(&engine, &d512), data);
    engine.verify_blob(&d512).unwrap();
    // The same bytes under sha256 are a different blob name for the same content.
    let d256 = upload_in_pieces(&engine, "x", &data, &[]);
    assert_eq!(read_all(&engine, &d256), data);
}

#[test]
fn concurrent_writers_all_land_and_share_index_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path(), small_options()));
    let threads = 16;
    let per_thread = 40;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            thread::spawn(move || {
                let mut r = rng(100 + t);
                (0..per_thread)
                    .map(|i| {
                        let len = below(&mut r, 20_000);
                        let data = random_bytes(&mut r, len);
                        let cut = below(&mut r, len + 1);
                        let repo = format!("team{}/app{}", t % 3, i % 5);
                        (upload_in_pieces(&engine, &repo, &data, &[cut]), data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    assert_eq!(all.len(), (threads * per_thread) as usize);
    for (digest, data) in &all {
        assert_eq!(&read_all(&engine, digest), data);
    }
    let stats = engine.stats();
    assert_eq!(stats.commits, threads * per_thread);
    // Commits do not sync the index (their packs are synced), and concurrent commits
    // shared pack syncs.
    assert!(
        stats.index_syncs < stats.index_writes,
        "no group commit in the index: {stats:?}"
    );
    assert!(
        stats.pack_syncs < stats.commits,
        "no group commit in the packs: {stats:?}"
    );
    // And everything is still there after a reopen.
    drop(engine);
    let engine = open(dir.path(), small_options());
    for (digest, data) in &all {
        assert_eq!(&read_all(&engine, digest), data);
    }
}

#[test]
fn the_same_blob_raced_by_many_uploads_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path(), small_options()));
    let data = Arc::new(random_bytes(&mut rng(4), 30_000));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (engine, data) = (engine.clone(), data.clone());
            thread::spawn(move || upload_in_pieces(&engine, &format!("r{t}"), &data, &[t * 1000]))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = engine.stats();
    assert_eq!(stats.commits, 8);
    assert_eq!(stats.deduplicated, 7);
    // One record of 30,000 bytes plus its 88 bytes of header and trailer.
    assert_eq!(record_bytes(dir.path()), 30_000 + 88);
}

#[test]
fn names_the_index_cannot_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options());
    for bad in ["", "a\0b"] {
        assert!(matches!(
            engine.start_upload(bad, Algorithm::Sha256),
            Err(Error::InvalidName { .. })
        ));
    }
    let long = "a".repeat(5000);
    assert!(matches!(
        engine.put_blob(&long, Bytes::new(), &sha256(b"")),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn data_survives_reopen_and_packs_seal() {
    let dir = tempfile::tempdir().unwrap();
    let mut blobs = Vec::new();
    {
        let engine = open(dir.path(), small_options());
        let mut r = rng(5);
        for _ in 0..20 {
            let data = random_bytes(&mut r, 60_000);
            blobs.push((upload_in_pieces(&engine, "p", &data, &[]), data));
        }
    }
    // 20 x 60 kB with a 256 KiB seal size needs several packs.
    let packs = std::fs::read_dir(dir.path().join("packs")).unwrap().count();
    assert!(packs >= 4, "{packs} packs");
    let engine: Engine = open(dir.path(), small_options());
    assert_eq!(engine.recovery_report(), &Default::default());
    for (digest, data) in &blobs {
        assert_eq!(&read_all(&engine, digest), data);
        engine.verify_blob(digest).unwrap();
    }
}

/// At the session limit, starting another upload ends the one that has received
/// nothing for the longest, once it has been idle long enough; sessions that keep
/// receiving survive, and when none is idle long enough the start is refused.
#[test]
fn session_limit_ends_the_least_active_idle_session() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_upload_sessions: 3,
        upload_evict_idle: std::time::Duration::from_millis(50),
        ..small_options()
    };
    let engine = open(dir.path(), options);
    let pause = |ms| thread::sleep(std::time::Duration::from_millis(ms));
    let a = engine.start_upload("r", Algorithm::Sha256).unwrap();
    pause(5);
    let b = engine.start_upload("r", Algorithm::Sha256).unwrap();
    pause(5);
    let c = engine.start_upload("r", Algorithm::Sha256).unwrap();
    // Nobody has been idle for 50 ms yet: the fourth is refused, nothing is ended.
    assert!(matches!(
        engine.start_upload("r", Algorithm::Sha256),
        Err(Error::TooManyUploads { limit: 3 })
    ));
    for id in [&a, &b, &c] {
        engine.upload_status("r", id).unwrap();
    }
    pause(60);
    // `a` is the oldest, but it receives bytes now: `b` becomes the least active.
    let data = random_bytes(&mut rng(9), 40_000);
    engine
        .upload_append("r", &a, Bytes::copy_from_slice(&data[..20_000]))
        .unwrap();
    let d = engine.start_upload("r", Algorithm::Sha256).unwrap();
    assert!(matches!(
        engine.upload_status("r", &b),
        Err(Error::UploadUnknown(_))
    ));
    for id in [&a, &c, &d] {
        engine.upload_status("r", id).unwrap();
    }
    // Next in line is `c`; `a` was active too recently to be ended.
    let e = engine.start_upload("r", Algorithm::Sha256).unwrap();
    assert!(engine.upload_status("r", &c).is_err());
    engine.upload_status("r", &e).unwrap();
    assert!(matches!(
        engine.start_upload("r", Algorithm::Sha256),
        Err(Error::TooManyUploads { .. })
    ));
    // The survivor completes normally.
    engine
        .upload_append("r", &a, Bytes::copy_from_slice(&data[20_000..]))
        .unwrap();
    let digest = Algorithm::Sha256.digest(&data);
    engine.commit_upload("r", &a, &digest).unwrap();
    assert_eq!(
        engine
            .read_blob(&digest, None)
            .unwrap()
            .into_bytes()
            .unwrap(),
        data
    );
}

/// A session the client has paused (its request ended) holds no bytes in memory: what
/// it gathered is in its pack, and the upload goes on from there to the same blob.
#[test]
fn a_paused_session_has_its_bytes_in_its_pack() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        Options {
            upload_flush_bytes: 1 << 20,
            ..small_options()
        },
    );
    let mut r = rng(77);
    let data = random_bytes(&mut r, 3000);
    let id = engine
        .start_upload("lib/paused", Algorithm::Sha256)
        .unwrap();
    let before = pack_file_bytes(dir.path());
    engine
        .upload_append("lib/paused", &id, Bytes::copy_from_slice(&data[..1000]))
        .unwrap();
    // Below the flush size: gathered, not written.
    assert_eq!(pack_file_bytes(dir.path()), before);
    assert_eq!(engine.upload_pause("lib/paused", &id).unwrap(), 1000);
    // The write runs on its own thread; the status waits for it to land.
    assert_eq!(
        engine.upload_status("lib/paused", &id).unwrap().received,
        1000
    );
    assert!(
        pack_file_bytes(dir.path()) >= before + 1000,
        "the paused session's bytes are not in a pack"
    );
    // Paused twice, and with nothing gathered: no change, no error.
    engine.upload_pause("lib/paused", &id).unwrap();
    engine
        .upload_append("lib/paused", &id, Bytes::copy_from_slice(&data[1000..]))
        .unwrap();
    engine.upload_pause("lib/paused", &id).unwrap();
    let digest = sha256(&data);
    engine.commit_upload("lib/paused", &id, &digest).unwrap();
    assert_eq!(read_all(&engine, &digest), data);
    assert!(matches!(
        engine.upload_pause("lib/paused", &id),
        Err(Error::UploadUnknown(_))
    ));
}

/// One owner gets its share of the sessions and no more: past it, its own least active
/// idle session is ended or its start refused, while other owners still start theirs.
#[test]
fn an_owner_gets_its_share_of_the_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_upload_sessions: 10,
        max_upload_sessions_per_owner: 2,
        upload_evict_idle: std::time::Duration::from_millis(50),
        ..small_options()
    };
    let engine = open(dir.path(), options);
    let start = |owner| engine.start_upload_by("r", Algorithm::Sha256, Some(owner));
    let a1 = start("10.0.0.1").unwrap();
    let a2 = start("10.0.0.1").unwrap();
    assert!(matches!(
        start("10.0.0.1"),
        Err(Error::TooManyUploadsFrom { limit: 2, .. })
    ));
    // Others are not held to the first owner's count, nor are starts without an owner.
    let b1 = start("10.0.0.2").unwrap();
    let b2 = start("10.0.0.2").unwrap();
    let local = engine.start_upload("r", Algorithm::Sha256).unwrap();
    thread::sleep(std::time::Duration::from_millis(60));
    engine.upload_status("r", &a2).unwrap();
    // a1 is the owner's least active idle session: it makes room, and only it.
    let a3 = start("10.0.0.1").unwrap();
    assert!(matches!(
        engine.upload_status("r", &a1),
        Err(Error::UploadUnknown(_))
    ));
    for id in [&a2, &a3, &b1, &b2, &local] {
        engine.upload_status("r", id).unwrap();
    }
}

/// A full table where nothing has been idle for `upload_evict_idle`: many owners that
/// open sessions and leave them cannot shut a newcomer out; the owner holding the most
/// gives up its least active session once it has been idle briefly, and an owner never
/// takes a session from one holding fewer than itself.
#[test]
fn owners_with_more_sessions_make_room_for_those_with_fewer() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_upload_sessions: 6,
        max_upload_sessions_per_owner: 4,
        upload_evict_idle: std::time::Duration::from_secs(3600),
        upload_fair_share_idle: std::time::Duration::from_millis(50),
        ..small_options()
    };
    let engine = open(dir.path(), options);
    let start = |owner| engine.start_upload_by("r", Algorithm::Sha256, Some(owner));
    let hoarded: Vec<_> = (0..4).map(|_| start("10.0.0.1").unwrap()).collect();
    let small: Vec<_> = (0..2).map(|_| start("10.0.0.2").unwrap()).collect();
    // Full, and nothing idle for long enough yet: a newcomer is refused.
    assert!(matches!(
        start("10.0.0.3"),
        Err(Error::TooManyUploads { limit: 6 })
    ));
    thread::sleep(std::time::Duration::from_millis(60));
    // The largest owner's least active session makes room (the first has just received
    // bytes, so it is the second).
    engine
        .upload_append("r", &hoarded[0], Bytes::from_static(b"x"))
        .unwrap();
    let newcomer = start("10.0.0.3").unwrap();
    let ended: Vec<_> = hoarded
        .iter()
        .filter(|id| engine.upload_status("r", id).is_err())
        .collect();
    assert_eq!(ended, vec![&hoarded[1]]);
    // The owner with the fewest never loses one to an owner with more.
    for _ in 0..2 {
        start("10.0.0.1").ok();
    }
    for id in small.iter().chain([&newcomer]) {
        engine.upload_status("r", id).unwrap();
    }
}

/// A device that cannot read some stored bytes fails the reads of those bytes alone,
/// with the pack and offset in the error: never a crash, never a wrong byte.
#[test]
fn unreadable_bytes_fail_their_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(lain_engine::storage::SimulatedStorage::new());
    let piece = 64 << 10;
    let options = Options {
        storage: storage.clone(),
        read_piece_bytes: piece,
        ..small_options()
    };
    let engine = open(dir.path(), options);
    let mut rng = rng(7);
    let put = |data: &[u8]| {
        let digest = sha256(data);
        engine
            .put_blob("lib/app", Bytes::copy_from_slice(data), &digest)
            .unwrap();
        digest
    };
    let healthy = random_bytes(&mut rng, 100_000);
    let bad = random_bytes(&mut rng, 100_000);
    // Only its third piece sits on bad sectors.
    let tail_bad = random_bytes(&mut rng, 4 * piece);
    let (healthy_digest, bad_digest, tail_digest) = (put(&healthy), put(&bad), put(&tail_bad));
    storage.fail_reads_of(&bad[50_000..50_010]);
    storage.fail_reads_of(&tail_bad[2 * piece + 10..2 * piece + 20]);

    match engine.read_blob(&bad_digest, None) {
        Err(Error::Unreadable { pack, offset, .. }) => {
            assert!(pack > 0 && offset > 0, "pack {pack} offset {offset}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
    assert!(matches!(
        engine.verify_blob(&bad_digest),
        Err(Error::Unreadable { .. })
    ));
    // A range that avoids the bad bytes reads; one that starts on them does not.
    let start = engine.read_blob(&bad_digest, Some(0..40_000)).unwrap();
    assert_eq!(start.into_bytes().unwrap(), bad[..40_000]);
    assert!(engine.read_blob(&bad_digest, Some(50_005..60_000)).is_err());

    // The tail blob opens (its first piece reads), yields two good pieces, then the error,
    // then nothing.
    let pieces: Vec<_> = engine.read_blob(&tail_digest, None).unwrap().collect();
    assert_eq!(pieces.len(), 3, "{pieces:?}");
    assert_eq!(pieces[0].as_ref().unwrap()[..], tail_bad[..piece]);
    assert_eq!(pieces[1].as_ref().unwrap()[..], tail_bad[piece..2 * piece]);
    match &pieces[2] {
        Err(Error::Unreadable { offset, .. }) => assert!(*offset > 0),
        other => panic!("expected Unreadable, got {other:?}"),
    }

    // Everything else reads, whole and right.
    assert_eq!(read_all(&engine, &healthy_digest), healthy);
    engine.verify_blob(&healthy_digest).unwrap();
    // And the store still takes new blobs.
    let more = random_bytes(&mut rng, 10_000);
    let more_digest = put(&more);
    assert_eq!(read_all(&engine, &more_digest), more);
}
