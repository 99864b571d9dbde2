//! Crash test: a child process commits blobs and tags manifests from several threads and
//! prints each digest and tag once its commit has returned; the parent kills it with
//! SIGKILL at a random moment, reopens the data directory, re-verifies every printed
//! digest and tag, and checks that the metadata log in the packs agrees with the index
//! (a rebuild would serve the same). While the child runs, the parent also checks that
//! it cannot open the directory itself.
//!
//! This file has its own `main` (harness = false) so the test binary can re-run itself
//! as the child.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use lain_engine::progress::Silent;
use lain_engine::{Digest, Engine, Error, ManifestMeta, Reference};
use rand::RngExt;

const CHILD_DIR: &str = "LAIN_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "LAIN_CRASH_CHILD_SEED";
const ROUNDS: u64 = 20;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let seed = std::env::var(CHILD_SEED)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        child(std::path::Path::new(&dir), seed);
        return;
    }
    parent();
}

/// Commits random blobs forever from four threads, printing each acknowledged digest.
fn child(dir: &std::path::Path, seed: u64) {
    let engine = open(dir, small_options());
    println!("ready");
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            thread::spawn(move || {
                let mut r = rng(seed * 100 + t);
                for i in 0u64.. {
                    let len = match below(&mut r, 10) {
                        0 => below(&mut r, 1 << 20),
                        _ => below(&mut r, 40_000),
                    };
                    let data = random_bytes(&mut r, len);
                    let cuts: Vec<usize> = (0..3).map(|_| below(&mut r, len + 1)).collect();
                    let repo = format!("crash/r{}", i % 7);
                    let digest = upload_in_pieces(&engine, &repo, &data, &cuts);
                    // One write per line, so a kill never interleaves two digests.
                    println!("{digest}");
                    // Each thread retags its own tags: the last acknowledged value of
                    // a tag is known, or a later one whose call was cut off.
                    let repo = format!("crash/t{t}");
                    let tag = format!("tag{}", i % 5);
                    let body = format!(r#"{{"thread":{t},"i":{i},"seed":{seed}}}"#);
                    let manifest = sha256(body.as_bytes());
                    println!("try {repo} {tag} {manifest}");
                    let meta = ManifestMeta {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        ..ManifestMeta::default()
                    };
                    engine
                        .put_manifest(
                            &repo,
                            body.into(),
                            &Reference::Tag(tag.clone()),
                            meta,
                            &lain_engine::References::default(),
                        )
                        .expect("put manifest");
                    println!("ok {repo} {tag} {manifest}");
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("own path");
    let mut rng = rng(0xC0FFEE);
    let mut acknowledged: Vec<Digest> = Vec::new();
    // Per (repository, tag): the values it may hold, the last acknowledged first.
    let mut tags: HashMap<(String, String), Vec<Digest>> = HashMap::new();
    let mut passed = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "ready" {
                    let _ = tx.send(());
                } else {
                    lines.push(line);
                }
            }
            lines
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("child did not start");

        // The running child owns the directory.
        match Engine::open(dir.path(), small_options()) {
            Err(Error::Locked { .. }) => {}
            other => panic!("round {round}: a second opener got {other:?}"),
        }

        thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        let lines = reader.join().expect("reader thread");
        let before = acknowledged.len();
        for line in &lines {
            // A line cut by the kill is not an acknowledgement the child finished
            // printing; it may or may not parse, and either way is not counted.
            if let Ok(d) = line.parse::<Digest>() {
                acknowledged.push(d);
            }
            let words: Vec<&str> = line.split(' ').collect();
            if let [word @ ("try" | "ok"), repo, tag, digest] = words[..]
                && let Ok(digest) = digest.parse::<Digest>()
            {
                let values = tags.entry((repo.to_owned(), tag.to_owned())).or_default();
                if word == "ok" {
                    values.clear();
                }
                values.push(digest);
            }
        }

        let engine = open(dir.path(), small_options());
        let report = engine.recovery_report().clone();
        assert!(
            report.packs.damaged.is_empty(),
            "round {round}: damaged packs {report:?}"
        );
        for digest in &acknowledged {
            if let Err(e) = engine.verify_blob(digest) {
                panic!("round {round}: acknowledged blob {digest} lost: {e}");
            }
        }
        for ((repo, tag), values) in &mut tags {
            let now = engine.resolve_tag(repo, tag).expect("resolve tag");
            match values.iter().position(|v| Some(v) == now.as_ref()) {
                // What the store holds is now the value to expect.
                Some(at) => {
                    values.drain(..at);
                    values.truncate(1);
                }
                None => {
                    panic!("round {round}: {repo}:{tag} is {now:?}, expected one of {values:?}")
                }
            }
        }
        let check = engine.check(false, None, &Silent).expect("check");
        assert!(
            check.is_clean(),
            "round {round}: {:#?}",
            check
                .findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
        );
        drop(engine);
        passed += 1;
        println!(
            "round {round}: {} new acknowledged blobs, {} in all verified, {} tags verified, log and index agree; recovery: {} bytes cut, {} records rolled forward",
            acknowledged.len() - before,
            acknowledged.len(),
            tags.len(),
            report.packs.truncated.iter().map(|t| t.1).sum::<u64>(),
            report.rolled_forward,
        );
    }
    assert!(
        acknowledged.len() as u64 > ROUNDS,
        "the child acknowledged too little to test anything"
    );
    println!("crash: {passed} passed, 0 failed");
}
