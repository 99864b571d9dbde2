//! Opening a data directory after trouble: torn pack tails, damaged packs, a power cut
//! (simulated storage), and the directory lock.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use lain_engine::pack::format::RecordHeader;
use lain_engine::storage::SimulatedStorage;
use lain_engine::{Algorithm, Digest, Engine, Error, Options};

fn packs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// A complete, checksummed record, as a writer that crashed before indexing it left it.
fn record(data: &[u8]) -> Vec<u8> {
    let header = RecordHeader {
        digest: sha256(data),
        length: data.len() as u64,
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out
}

fn store_some(engine: &Engine, seed: u64, count: usize) -> Vec<(Digest, Vec<u8>)> {
    store_sized(engine, seed, count, 0)
}

/// Blobs of at least `min` bytes; past the write batch size (16 KiB in these tests)
/// each goes through its own pack lease, so sequential uploads fill one pack in order.
fn store_sized(engine: &Engine, seed: u64, count: usize, min: usize) -> Vec<(Digest, Vec<u8>)> {
    let mut r = rng(seed);
    (0..count)
        .map(|_| {
            let n = min + below(&mut r, 50_000);
            let data = random_bytes(&mut r, n);
            (upload_in_pieces(engine, "lib/x", &data, &[n / 2]), data)
        })
        .collect()
}

fn assert_intact(engine: &Engine, blobs: &[(Digest, Vec<u8>)]) {
    for (digest, data) in blobs {
        engine.verify_blob(digest).unwrap();
        assert_eq!(&read_all(engine, digest), data);
    }
}

#[test]
fn valid_tails_are_rolled_forward_and_torn_ones_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store_some(&open(dir.path(), small_options()), 1, 12);
    let all = packs(dir.path());
    let (a, b) = (all[all.len() - 1].clone(), all[0].clone());
    let (a_len, b_len) = (len(&a), len(&b));
    // Pack a: a whole record that was synced but never indexed, then half a record.
    let orphan = record(b"never acknowledged");
    let torn = record(&random_bytes(&mut rng(9), 5000));
    append_to(&a, &orphan);
    append_to(&a, &torn[..2500]);
    // Pack b: garbage, and the zeroed header placeholder of an upload in progress.
    append_to(&b, &[0u8; 84]);
    append_to(&b, &random_bytes(&mut rng(10), 3000));

    let engine = open(dir.path(), small_options());
    let report = engine.recovery_report().clone();
    // The complete record is rolled forward (its pack was synced: as far as the store
    // can tell, its index write was lost); everything after it is cut.
    assert_eq!(report.rolled_forward, 1);
    assert_eq!(len(&a), a_len + orphan.len() as u64);
    assert_eq!(len(&b), b_len);
    let mut cut: Vec<u64> = report.packs.truncated.iter().map(|t| t.1).collect();
    cut.sort_unstable();
    let mut expected = vec![3084, 2500];
    expected.sort_unstable();
    assert_eq!(cut, expected);
    assert!(report.packs.damaged.is_empty());
    assert_eq!(
        read_all(&engine, &sha256(b"never acknowledged")),
        b"never acknowledged"
    );
    assert_intact(&engine, &blobs);
    // The recovered packs take new records, and those survive another reopen.
    let more = store_some(&engine, 2, 5);
    drop(engine);
    let engine = open(dir.path(), small_options());
    assert_eq!(engine.recovery_report(), &Default::default());
    assert_intact(&engine, &blobs);
    assert_intact(&engine, &more);
}

#[test]
fn a_pack_shorter_than_committed_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        pack_seal_size: 1 << 30,
        ..small_options()
    };
    let blobs = store_sized(&open(dir.path(), options()), 3, 6, 40_000);
    // The blobs' pack (the other one holds the group commit's metadata records).
    let pack = packs(dir.path())
        .into_iter()
        .max_by_key(|p| len(p))
        .unwrap();
    // Lose the second half of the last record (as a disk that lied about a sync might).
    let (last, last_data) = blobs.last().unwrap();
    let cut = len(&pack) - 4 - last_data.len() as u64 / 2;
    OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let engine = open(dir.path(), options());
    assert_eq!(engine.recovery_report().packs.damaged.len(), 1);
    match engine.read_blob(last, None) {
        Err(Error::CorruptPack { .. }) => {}
        other => panic!("{other:?}"),
    }
    // Records before the cut still read.
    assert_intact(&engine, &blobs[..blobs.len() - 1]);
    // New uploads go to a healthy pack, never the damaged one.
    let more = store_some(&engine, 4, 3);
    assert_intact(&engine, &more);
    assert_eq!(len(&pack), cut);
}

#[test]
fn flipped_bits_in_a_stored_blob_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store_some(&open(dir.path(), small_options()), 5, 1);
    let pack = packs(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = 16 + 84 + blobs[0].1.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&pack, &bytes).unwrap();
    let engine = open(dir.path(), small_options());
    assert!(matches!(
        engine.verify_blob(&blobs[0].0),
        Err(Error::CorruptPack { .. })
    ));
}

#[test]
fn a_second_opener_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), small_options());
    match Engine::open(dir.path(), small_options()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("{other:?}"),
    }
    drop(first);
    open(dir.path(), small_options());
}

/// A power cut loses every unsynced byte. Every blob whose commit returned must still be
/// intact afterwards: this fails if a commit indexes bytes before syncing them, or a
/// new pack's directory entry is not synced.
#[test]
fn acknowledged_blobs_survive_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(SimulatedStorage::new());
    let options = || Options {
        storage: storage.clone(),
        ..small_options()
    };
    let mut kept = Vec::new();
    for round in 0..4u64 {
        let engine = open(dir.path(), options());
        assert!(engine.recovery_report().packs.damaged.is_empty());
        assert_intact(&engine, &kept);
        kept.extend(store_some(&engine, 20 + round, 10));
        // Uploads in flight when the power goes: written, never committed.
        for i in 0..3 {
            let id = engine.start_upload("lib/x", Algorithm::Sha256).unwrap();
            let data = random_bytes(&mut rng(round * 10 + i), 40_000);
            engine
                .upload_append("lib/x", &id, Bytes::from(data))
                .unwrap();
        }
        // (Their pieces are written by a thread of each session's own: wait for one.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while storage.unsynced_bytes() == 0 {
            assert!(std::time::Instant::now() < deadline, "nothing was written");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Closing truncates the in-flight uploads but syncs nothing, so what survives
        // the cut below is exactly what was synced while the engine ran.
        drop(engine);
        storage.power_cut();
    }
    let engine = open(dir.path(), options());
    assert_intact(&engine, &kept);
}

/// A write that fails halfway (a full disk) ends its upload and leaves the pack exactly
/// as it was: later uploads into the same pack, and a reopen, read back intact.
#[test]
fn a_failed_write_ends_the_upload_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(SimulatedStorage::new());
    let options = || Options {
        storage: storage.clone(),
        ..small_options()
    };
    let engine = open(dir.path(), options());
    let mut kept = store_sized(&engine, 40, 3, 20_000);

    let id = engine.start_upload("lib/x", Algorithm::Sha256).unwrap();
    engine
        .upload_append(
            "lib/x",
            &id,
            Bytes::from(random_bytes(&mut rng(41), 20_000)),
        )
        .unwrap();
    // The status waits for the first piece's write, so the fault below hits the
    // second piece's write, which runs on its own thread after the append returns: the
    // session learns of the failure at its next call.
    assert_eq!(engine.upload_status("lib/x", &id).unwrap().received, 20_000);
    storage.fail_next_append_after(5_000);
    engine
        .upload_append(
            "lib/x",
            &id,
            Bytes::from(random_bytes(&mut rng(42), 20_000)),
        )
        .unwrap();
    // A full disk is told apart from other I/O failures (the HTTP layer answers 507).
    match engine.upload_status("lib/x", &id) {
        Err(Error::StorageFull { .. }) => {}
        other => panic!("{other:?}"),
    }
    // The session is gone: nothing can append to or commit its half-written bytes.
    assert!(matches!(
        engine.upload_status("lib/x", &id),
        Err(Error::UploadUnknown(_))
    ));
    assert!(matches!(
        engine.commit_upload("lib/x", &id, &sha256(b"x")),
        Err(Error::UploadUnknown(_))
    ));
    // The next uploads reuse the pack from where the last commit ended.
    kept.extend(store_sized(&engine, 43, 3, 20_000));
    assert_intact(&engine, &kept);
    drop(engine);
    let engine = open(dir.path(), options());
    assert_eq!(engine.recovery_report(), &Default::default());
    assert_intact(&engine, &kept);
}
