//! Black-box tests of the maintenance commands on the real binary: `registry fsck`
//! (offline, through a running server's control socket, `--repair` after the index is
//! lost) and `registry backup` under a concurrent push load, restored by starting a
//! server on the copy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Registry, image, push_image, registry, served, stdout};

#[test]
fn fsck_repair_rebuilds_a_deleted_index_and_the_server_serves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let repos = ["lain/app", "lain/web", "library/base"];
    let reg = Registry::start_in(dir.path());
    for (i, repo) in repos.iter().enumerate() {
        for t in 0..3u64 {
            push_image(&reg, repo, &format!("v{t}"), i as u64 * 10 + t);
        }
    }
    // Retag, untag, delete: the log holds removals too.
    let d = push_image(&reg, "lain/app", "latest", 99);
    reg.request("DELETE", &format!("/v2/lain/web/manifests/{d}"))
        .send()
        .expect(404, None);
    let old = push_image(&reg, "lain/web", "old", 98);
    reg.request("DELETE", &format!("/v2/lain/web/manifests/{old}"))
        .send()
        .expect(202, None);
    let before = served(&reg, &repos);
    let catalog = reg.request("GET", "/v2/_catalog").send().text();

    // While the server runs, fsck checks through it; a repair is refused.
    let running = registry(dir.path(), &["fsck"]);
    assert!(running.status.success(), "{}", stdout(&running));
    assert!(
        stdout(&running).contains(": no problems"),
        "{}",
        stdout(&running)
    );
    let refused = registry(dir.path(), &["fsck", "--repair"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it to repair"),
        "{refused:?}"
    );
    assert!(reg.terminate());

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let repaired = registry(dir.path(), &["fsck", "--repair", "--deep"]);
    assert!(repaired.status.success(), "{repaired:?}");
    let text = stdout(&repaired);
    assert!(text.contains("rebuilt the index from"), "{text}");
    assert!(text.contains(": no problems"), "{text}");

    let reg = Registry::start_in(dir.path());
    assert_eq!(served(&reg, &repos), before);
    assert_eq!(reg.request("GET", "/v2/_catalog").send().text(), catalog);
    // The deleted manifest stays deleted.
    reg.request("GET", &format!("/v2/lain/web/manifests/{old}"))
        .send()
        .expect(404, None);
}

#[test]
fn fsck_exits_1_and_names_the_image_a_flipped_byte_damages() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_in(dir.path());
    let manifest = push_image(&reg, "lain/app", "v1", 5);
    assert!(reg.terminate());
    // Flip one byte in the middle of the largest pack (a layer's bytes).
    let largest = std::fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&largest, bytes).unwrap();

    let output = registry(dir.path(), &["fsck"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("problem: pack"), "{text}");
    assert!(text.contains("repositories: lain/app"), "{text}");
    assert!(
        text.contains("1 problem") || text.contains("problems"),
        "{text}"
    );
    let _ = manifest;
}

#[test]
fn backup_under_push_load_restores_every_image_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let reg = Arc::new(Registry::start_in(dir.path()));
    for i in 0..4 {
        push_image(&reg, "lain/app", &format!("base{i}"), 100 + i);
    }
    // Pushes go on while the backup runs; each pusher records what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..2u64)
        .map(|p| {
            let (reg, stop) = (reg.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 5000 {
                    let tag = format!("p{p}-{n}");
                    push_image(&reg, "lain/load", &tag, 1000 + p * 1000 + n);
                    acked.push(tag);
                    n += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Everything acknowledged before the backup begins.
    let tags = reg.request("GET", "/v2/lain/load/tags/list").send().json()["tags"].clone();
    let mut before = served(&reg, &["lain/app"]);
    for tag in tags.as_array().into_iter().flatten() {
        image(&reg, "lain/load", tag.as_str().unwrap(), &mut before);
    }
    let first = registry(dir.path(), &["backup", dest.path().to_str().unwrap()]);
    assert!(first.status.success(), "{first:?}");
    // A check while pushes go on sees the store as of one moment: nothing half-done.
    let check = registry(dir.path(), &["fsck"]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(
        stdout(&check).contains(": no problems"),
        "{}",
        stdout(&check)
    );
    stop.store(true, Ordering::Relaxed);
    let pushed: usize = pushers.into_iter().map(|p| p.join().unwrap().len()).sum();
    assert!(
        pushed > 2,
        "the pushes did not overlap the backup ({pushed})"
    );
    // A second backup, with the server still running, copies only what is new.
    push_image(&reg, "lain/app", "after", 7);
    let second = registry(dir.path(), &["backup", dest.path().to_str().unwrap()]);
    assert!(second.status.success(), "{second:?}");
    assert!(stdout(&second).contains("unchanged"), "{}", stdout(&second));
    drop(reg);

    // Restore: a server on the copy.
    let restored = Registry::start_in(dest.path());
    let mut after = served(&restored, &["lain/app"]);
    for key in before.keys() {
        if let Some((repo, reference)) = key.split_once(':')
            && repo == "lain/load"
        {
            image(&restored, repo, reference, &mut after);
        }
    }
    for (key, bytes) in &before {
        if key.ends_with(" tags") {
            continue;
        }
        assert_eq!(after.get(key), Some(bytes), "{key} differs after restore");
    }
    restored
        .request("GET", "/v2/lain/app/manifests/after")
        .send()
        .expect(200, None);
}

#[test]
fn fsck_finds_a_manifest_whose_layer_its_repository_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_in(dir.path());
    let manifest = push_image(&reg, "lain/app", "v1", 11);
    let layer = reg
        .request("GET", &format!("/v2/lain/app/manifests/{manifest}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Deleting a layer's blob link leaves the manifest broken (distribution allows it).
    reg.request("DELETE", &format!("/v2/lain/app/blobs/{layer}"))
        .send()
        .expect(202, None);
    // The socket the check goes through is its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let output = registry(dir.path(), &["fsck"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "problem: lain/app: manifest {manifest} references blob {layer}, which is not in lain/app; repositories: lain/app; tags: lain/app:v1"
        )),
        "{text}"
    );
    assert!(reg.terminate());
    assert!(!dir.path().join("control.sock").exists());
}

#[test]
fn each_command_has_help_and_a_usage_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (command, option) in [
        ("serve", "CONFIG"),
        ("fsck", "--repair"),
        ("backup", "DEST"),
    ] {
        let help = registry(dir.path(), &[command, "--help"]);
        assert!(help.status.success(), "{help:?}");
        assert!(
            stdout(&help).contains(option),
            "{command}: {}",
            stdout(&help)
        );
    }
    let wrong = registry(dir.path(), &["fsck", "--no-such-flag"]);
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    // A directory without a store is not mistaken for an empty one.
    let none = registry(&dir.path().join("nothing"), &["fsck"]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("holds no registry data"));
    assert!(!dir.path().join("nothing").exists());
}
