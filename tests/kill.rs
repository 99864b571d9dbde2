//! The whole server killed with SIGKILL under load, again and again, on one data
//! directory. Clients push images (blobs of mixed sizes, monolithic, streamed and
//! chunked; mounts; manifests and indexes under moving tags), delete untagged images,
//! abandon uploads and pull, while `registry garbage-collect --grace 0s` runs through
//! the server now and then. Each client keeps a ledger of what it was told; after every
//! restart the ledger is checked against what the server serves:
//!
//! - every manifest whose PUT got its 201 is served byte for byte, and so is every
//!   blob it references; an index's child manifests likewise;
//! - every tag points where its last acknowledged PUT put it (or where a PUT the kill
//!   cut off did, if that one landed);
//! - a manifest whose DELETE got its 202 stays deleted;
//! - every upload session opened before the kill answers `BLOB_UPLOAD_UNKNOWN`;
//! - what is served is never other bytes than were pushed.
//!
//! Operations the kill cut off may have landed or not: the check after the restart
//! finds out which, and from then on holds the server to it. At the end the engine's
//! full verification (`registry fsck --deep`) must find nothing wrong. The seed is
//! printed; `LAIN_TEST_SEED=<seed>` repeats a run's choices (not its timing).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Registry, Response, request_to, sha256, with_query};

const CYCLES: usize = 50;
const CLIENTS: u64 = 4;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// xorshift64*: the test's only source of choices.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A blob's bytes, made again from its recipe whenever they are checked.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where an image stands in what the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The PUT was sent; no answer yet.
    Putting,
    /// 201.
    Live,
    /// The DELETE was sent; no answer yet.
    Deleting,
    /// 202 to the DELETE.
    Deleted,
}

#[derive(Debug, Clone)]
struct Image {
    repo: String,
    digest: String,
    bytes: Vec<u8>,
    /// Blobs (config and layers) with their recipes, or child manifests of an index.
    blobs: Vec<(String, u64, usize)>,
    children: Vec<String>,
    state: State,
}

#[derive(Debug, Default, Clone)]
struct Tag {
    acked: Option<String>,
    /// Digests PUT under the tag without an answer yet.
    pending: Vec<String>,
}

#[derive(Default)]
struct Ledger {
    images: Vec<Image>,
    tags: BTreeMap<(String, String), Tag>,
    /// Upload sessions opened since the last restart.
    sessions: Vec<String>,
    /// Blobs acknowledged (201) in a repository: what a mount may name.
    linked: Vec<(String, String, u64, usize)>,
    acknowledged: u64,
}

impl Ledger {
    fn image(&mut self, digest: &str, repo: &str) -> Option<&mut Image> {
        self.images
            .iter_mut()
            .rev()
            .find(|i| i.digest == digest && i.repo == repo)
    }
}

/// Why a client stopped: the server went away (expected), or it broke a promise.
enum Stop {
    Gone,
    Wrong(String),
}

type Step<T> = Result<T, Stop>;

fn sent(response: std::io::Result<Response>) -> Step<Response> {
    response.map_err(|_| Stop::Gone)
}

fn expect(r: &Response, status: u16, what: &str) -> Step<()> {
    if r.status == status {
        Ok(())
    } else {
        Err(Stop::Wrong(format!(
            "{what}: {} instead of {status}: {}",
            r.status,
            r.text()
        )))
    }
}

/// One client: its repository, its choices, the shared ledger.
struct Client {
    addr: String,
    repo: String,
    rng: Rng,
    ledger: Arc<Mutex<Ledger>>,
    counter: Arc<AtomicU64>,
}

impl Client {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&mut self, stop: &AtomicBool) -> Step<()> {
        while !stop.load(Ordering::Relaxed) {
            match self.rng.below(100) {
                0..50 => self.push_image()?,
                50..58 => self.push_index()?,
                58..72 => self.delete_untagged()?,
                72..80 => self.abandon_upload()?,
                _ => self.pull()?,
            }
        }
        Ok(())
    }

    fn fresh_seed(&mut self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) ^ self.rng.next().rotate_left(17)
    }

    /// POST, and the session's location (recorded: after a restart it must be gone).
    fn open_session(&mut self) -> Step<String> {
        let r = sent(
            request_to(
                &self.addr,
                "POST",
                &format!("/v2/{}/blobs/uploads/", self.repo),
            )
            .try_send(),
        )?;
        expect(&r, 202, "POST")?;
        let location = r.header("location").unwrap_or_default().to_owned();
        self.lock().sessions.push(location.clone());
        Ok(location)
    }

    /// Uploads a blob in one of three ways; its digest once acknowledged.
    fn upload(&mut self, seed: u64, len: usize) -> Step<String> {
        let data = bytes_of(seed, len);
        let digest = sha256(&data);
        let (addr, repo) = (self.addr.clone(), self.repo.clone());
        // The session's last request.
        let put = |location: &str| {
            sent(
                request_to(
                    &addr,
                    "PUT",
                    &with_query(location, &format!("digest={digest}")),
                )
                .try_send(),
            )
        };
        let r = match self.rng.below(3) {
            0 => sent(
                request_to(
                    &addr,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                )
                .header("Content-Type", "application/octet-stream")
                .body(data)
                .try_send(),
            )?,
            1 => {
                let location = self.open_session()?;
                let pieces: Vec<Vec<u8>> = data.chunks(64 << 10).map(<[u8]>::to_vec).collect();
                let r = sent(
                    request_to(&addr, "PATCH", &location)
                        .header("Content-Type", "application/octet-stream")
                        .chunked(pieces)
                        .try_send(),
                )?;
                expect(&r, 202, "streamed PATCH")?;
                let location = r.header("location").unwrap_or(&location).to_owned();
                put(&location)?
            }
            _ => {
                let mut location = self.open_session()?;
                let cut = if len > 1 {
                    1 + self.rng.below(len as u64 - 1) as usize
                } else {
                    len
                };
                for (start, end) in [(0, cut), (cut, len)] {
                    if start == end {
                        continue;
                    }
                    let r = sent(
                        request_to(&addr, "PATCH", &location)
                            .header("Content-Type", "application/octet-stream")
                            .header("Content-Range", &format!("{start}-{}", end - 1))
                            .body(data[start..end].to_vec())
                            .try_send(),
                    )?;
                    expect(&r, 202, "chunked PATCH")?;
                    location = r.header("location").unwrap_or(&location).to_owned();
                }
                put(&location)?
            }
        };
        expect(&r, 201, "blob upload")?;
        self.lock().linked.push((repo, digest.clone(), seed, len));
        Ok(digest)
    }

    /// A blob for a new image: mounted from another client's repository, or uploaded.
    fn layer(&mut self) -> Step<(String, u64, usize)> {
        let candidate = {
            let ledger = self.lock();
            let others: Vec<_> = ledger
                .linked
                .iter()
                .filter(|(repo, ..)| *repo != self.repo)
                .cloned()
                .collect();
            drop(ledger);
            (!others.is_empty() && self.rng.below(4) == 0)
                .then(|| others[self.rng.below(others.len() as u64) as usize].clone())
        };
        if let Some((from, digest, seed, len)) = candidate {
            let r = sent(
                request_to(
                    &self.addr,
                    "POST",
                    &format!(
                        "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                        self.repo
                    ),
                )
                .try_send(),
            )?;
            match r.status {
                201 => {
                    self.lock()
                        .linked
                        .push((self.repo.clone(), digest.clone(), seed, len));
                    return Ok((digest, seed, len));
                }
                // Not mountable (collected meanwhile): a session instead, left open.
                202 => {
                    let location = r.header("location").unwrap_or_default().to_owned();
                    self.lock().sessions.push(location);
                }
                _ => expect(&r, 201, "mount")?,
            }
        }
        let len = match self.rng.below(10) {
            0..6 => 1 + self.rng.below(4096) as usize,
            6..9 => (64 << 10) + self.rng.below(448 << 10) as usize,
            _ => (1 << 20) + self.rng.below(2 << 20) as usize,
        };
        let seed = self.fresh_seed();
        let digest = self.upload(seed, len)?;
        Ok((digest, seed, len))
    }

    fn push_image(&mut self) -> Step<()> {
        let mut blobs = Vec::new();
        // The server does not read a config blob: random bytes serve as one.
        let config_seed = self.fresh_seed();
        let config_len = 64 + self.rng.below(512) as usize;
        let config_digest = self.upload(config_seed, config_len)?;
        blobs.push((config_digest.clone(), config_seed, config_len));
        let layers = 1 + self.rng.below(3);
        for _ in 0..layers {
            blobs.push(self.layer()?);
        }
        let bytes = lain_testkit::image_manifest(
            (config_digest.to_string(), config_len),
            blobs[1..].iter().map(|(d, _, len)| (d.to_string(), *len)),
        )
        .into_bytes();
        let tag = format!("t{}", self.rng.below(3));
        self.put_manifest(bytes, OCI_MANIFEST, &tag, blobs, Vec::new())
    }

    fn push_index(&mut self) -> Step<()> {
        let children: Vec<(String, usize)> = {
            let ledger = self.lock();
            ledger
                .images
                .iter()
                .filter(|i| i.repo == self.repo && i.state == State::Live && i.children.is_empty())
                .map(|i| (i.digest.clone(), i.bytes.len()))
                .collect()
        };
        if children.len() < 2 {
            return Ok(());
        }
        let a = self.rng.below(children.len() as u64) as usize;
        let b = (a + 1) % children.len();
        let picked = [children[a].clone(), children[b].clone()];
        let entries: Vec<String> = picked
            .iter()
            .map(|(d, len)| {
                format!(r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{len},"platform":{{"architecture":"amd64","os":"linux"}}}}"#)
            })
            .collect();
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes();
        // The same pair again makes the same index: one ledger entry per manifest.
        let digest = sha256(&bytes);
        if self.lock().images.iter().any(|i| i.digest == digest) {
            return Ok(());
        }
        let children = picked.into_iter().map(|(d, _)| d).collect();
        self.put_manifest(bytes, OCI_INDEX, "idx", Vec::new(), children)
    }

    fn put_manifest(
        &mut self,
        bytes: Vec<u8>,
        media_type: &str,
        tag: &str,
        blobs: Vec<(String, u64, usize)>,
        children: Vec<String>,
    ) -> Step<()> {
        let digest = sha256(&bytes);
        let key = (self.repo.clone(), tag.to_owned());
        {
            let mut ledger = self.lock();
            ledger.images.push(Image {
                repo: self.repo.clone(),
                digest: digest.clone(),
                bytes: bytes.clone(),
                blobs,
                children,
                state: State::Putting,
            });
            ledger
                .tags
                .entry(key.clone())
                .or_default()
                .pending
                .push(digest.clone());
        }
        let r = sent(
            request_to(
                &self.addr,
                "PUT",
                &format!("/v2/{}/manifests/{tag}", self.repo),
            )
            .header("Content-Type", media_type)
            .body(bytes)
            .try_send(),
        )?;
        let mut ledger = self.lock();
        let entry = ledger.tags.entry(key).or_default();
        entry.pending.retain(|d| *d != digest);
        match r.status {
            201 => {
                entry.acked = Some(digest.clone());
                ledger.acknowledged += 1;
                if let Some(image) = ledger.image(&digest, &self.repo) {
                    image.state = State::Live;
                }
                Ok(())
            }
            // A collection took a blob between its upload and this PUT: the pusher
            // would upload again; this one just goes on.
            400 if r.text().contains("MANIFEST_BLOB_UNKNOWN") => {
                let repo = self.repo.clone();
                if let Some(image) = ledger.image(&digest, &repo) {
                    image.state = State::Deleted;
                }
                Ok(())
            }
            _ => {
                drop(ledger);
                expect(&r, 201, "manifest PUT")
            }
        }
    }

    /// Deletes one of this client's live images that no tag and no index names.
    fn delete_untagged(&mut self) -> Step<()> {
        let victim = {
            let ledger = self.lock();
            let named = |digest: &str| {
                ledger.tags.iter().any(|((repo, _), t)| {
                    *repo == self.repo
                        && (t.acked.as_deref() == Some(digest)
                            || t.pending.iter().any(|p| p == digest))
                }) || ledger.images.iter().any(|i| {
                    i.repo == self.repo
                        && i.state != State::Deleted
                        && i.children.iter().any(|c| c == digest)
                })
            };
            let candidates: Vec<String> = ledger
                .images
                .iter()
                .filter(|i| i.repo == self.repo && i.state == State::Live && !named(&i.digest))
                .map(|i| i.digest.clone())
                .collect();
            drop(ledger);
            if candidates.is_empty() {
                return Ok(());
            }
            candidates[self.rng.below(candidates.len() as u64) as usize].clone()
        };
        let repo = self.repo.clone();
        if let Some(image) = self.lock().image(&victim, &repo) {
            image.state = State::Deleting;
        }
        let r = sent(
            request_to(
                &self.addr,
                "DELETE",
                &format!("/v2/{repo}/manifests/{victim}"),
            )
            .try_send(),
        )?;
        expect(&r, 202, "manifest DELETE")?;
        if let Some(image) = self.lock().image(&victim, &repo) {
            image.state = State::Deleted;
        }
        Ok(())
    }

    /// Opens a session, sends part of a blob, and walks away.
    fn abandon_upload(&mut self) -> Step<()> {
        let location = self.open_session()?;
        let seed = self.fresh_seed();
        let part = bytes_of(seed, 1 + self.rng.below(200 << 10) as usize);
        let r = sent(
            request_to(&self.addr, "PATCH", &location)
                .header("Content-Type", "application/octet-stream")
                .body(part)
                .try_send(),
        )?;
        expect(&r, 202, "PATCH of an abandoned upload")
    }

    /// Pulls one of this client's live images while the others push.
    fn pull(&mut self) -> Step<()> {
        let live: Vec<Image> = self
            .lock()
            .images
            .iter()
            .filter(|i| i.repo == self.repo && i.state == State::Live)
            .cloned()
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let image = &live[self.rng.below(live.len() as u64) as usize];
        check_image(&self.addr, image).map_err(|e| match e {
            Stop::Wrong(why) => Stop::Wrong(format!("pull during the load: {why}")),
            gone => gone,
        })
    }
}

/// The image's manifest and every blob (or child manifest) it names, byte for byte.
fn check_image(addr: &str, image: &Image) -> Step<()> {
    let r = sent(
        request_to(
            addr,
            "GET",
            &format!("/v2/{}/manifests/{}", image.repo, image.digest),
        )
        .header("Accept", ACCEPT)
        .try_send(),
    )?;
    expect(
        &r,
        200,
        &format!("manifest {} in {}", image.digest, image.repo),
    )?;
    if r.body != image.bytes {
        return Err(Stop::Wrong(format!(
            "manifest {}: other bytes",
            image.digest
        )));
    }
    for (digest, seed, len) in &image.blobs {
        let r = sent(
            request_to(addr, "GET", &format!("/v2/{}/blobs/{digest}", image.repo)).try_send(),
        )?;
        expect(
            &r,
            200,
            &format!("blob {digest} of {} in {}", image.digest, image.repo),
        )?;
        if r.body != bytes_of(*seed, *len) {
            return Err(Stop::Wrong(format!("blob {digest}: other bytes")));
        }
    }
    for child in &image.children {
        let r = sent(
            request_to(
                addr,
                "GET",
                &format!("/v2/{}/manifests/{child}", image.repo),
            )
            .header("Accept", ACCEPT)
            .try_send(),
        )?;
        expect(&r, 200, &format!("child {child} of index {}", image.digest))?;
    }
    Ok(())
}

/// After a restart: holds the server to the ledger, and settles what the kill left
/// open by what the server now serves. `all` checks every live image, otherwise the
/// ones the last cycle touched and a sample of the rest.
fn reconcile(addr: &str, ledger: &mut Ledger, rng: &mut Rng, all: bool) -> Result<(), String> {
    let step = |s: Step<()>| match s {
        Ok(()) => Ok(()),
        Err(Stop::Wrong(why)) => Err(why),
        Err(Stop::Gone) => Err("the restarted server went away".into()),
    };
    for location in ledger.sessions.drain(..) {
        let r = request_to(addr, "GET", &location)
            .try_send()
            .map_err(|e| format!("{location}: {e}"))?;
        if r.status != 404 || !r.text().contains("BLOB_UPLOAD_UNKNOWN") {
            return Err(format!(
                "the session {location} from before the kill answers {}: {}",
                r.status,
                r.text()
            ));
        }
    }
    let status_of = |repo: &str, digest: &str| -> Result<(u16, Vec<u8>), String> {
        let r = request_to(addr, "GET", &format!("/v2/{repo}/manifests/{digest}"))
            .header("Accept", ACCEPT)
            .try_send()
            .map_err(|e| format!("{repo}@{digest}: {e}"))?;
        Ok((r.status, r.body))
    };
    let sample = ledger.images.len().max(1) as u64;
    for image in ledger.images.iter_mut() {
        match image.state {
            State::Putting | State::Deleting => {
                let (status, body) = status_of(&image.repo, &image.digest)?;
                image.state = match status {
                    200 if body == image.bytes => State::Live,
                    404 => State::Deleted,
                    other => {
                        return Err(format!(
                            "{}@{} (cut off while {:?}): {other}",
                            image.repo, image.digest, image.state
                        ));
                    }
                };
                if image.state == State::Live {
                    step(check_image(addr, image))?;
                }
            }
            State::Live => {
                if all || rng.below(sample) < 40 {
                    step(check_image(addr, image))?;
                }
            }
            State::Deleted => {
                if all || rng.below(sample) < 40 {
                    let (status, _) = status_of(&image.repo, &image.digest)?;
                    // A refused PUT (MANIFEST_BLOB_UNKNOWN) never stored it either.
                    if status != 404 {
                        return Err(format!(
                            "{}@{} was deleted (or refused) and answers {status}",
                            image.repo, image.digest
                        ));
                    }
                }
            }
        }
    }
    for ((repo, tag), state) in ledger.tags.iter_mut() {
        let r = request_to(addr, "GET", &format!("/v2/{repo}/manifests/{tag}"))
            .header("Accept", ACCEPT)
            .try_send()
            .map_err(|e| format!("{repo}:{tag}: {e}"))?;
        let served = match r.status {
            200 => r.header("docker-content-digest").map(str::to_owned),
            404 => None,
            other => return Err(format!("{repo}:{tag}: {other}: {}", r.text())),
        };
        let allowed = served == state.acked
            || served
                .as_ref()
                .is_some_and(|d| state.pending.iter().any(|p| p == d));
        if !allowed {
            return Err(format!(
                "{repo}:{tag} serves {served:?}; acknowledged {:?}, cut off {:?}",
                state.acked, state.pending
            ));
        }
        state.acked = served;
        state.pending.clear();
    }
    Ok(())
}

/// Collections through the server, one after another with pauses, until `stop`.
fn collector(root: &Path, stop: Arc<AtomicBool>, mut rng: Rng) -> std::thread::JoinHandle<u64> {
    let root = root.to_owned();
    std::thread::spawn(move || {
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let _ = common::collect_everything(&root, &[]);
            runs += 1;
        }
        runs
    })
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = common::seed();
    let mut rng = Rng(seed | 1);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let counter = Arc::new(AtomicU64::new(seed));
    let mut collections = 0;
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let reg = Registry::start_in(dir.path());
        if cycle > 0 {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            reconcile(&reg.addr, &mut ledger, &mut rng, cycle % 10 == 0)
                .unwrap_or_else(|why| panic!("cycle {cycle} (LAIN_TEST_SEED={seed}): {why}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let gc = (cycle % 3 != 0).then(|| collector(dir.path(), stop.clone(), Rng(rng.next() | 1)));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let mut client = Client {
                    addr: reg.addr.clone(),
                    repo: format!("crash/c{k}"),
                    rng: Rng(rng.next() | 1),
                    ledger: ledger.clone(),
                    counter: counter.clone(),
                };
                let stop = stop.clone();
                std::thread::spawn(move || client.run(&stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        common::signal(reg.pid(), "KILL");
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            match client.join() {
                Ok(Ok(())) | Ok(Err(Stop::Gone)) => {}
                Ok(Err(Stop::Wrong(why))) => {
                    panic!("cycle {cycle} (LAIN_TEST_SEED={seed}): {why}")
                }
                Err(_) => panic!("cycle {cycle}: a client panicked (LAIN_TEST_SEED={seed})"),
            }
        }
        if let Some(gc) = gc {
            collections += gc.join().unwrap_or(0);
        }
        drop(reg);
    }
    // The last check is of everything, then the engine's own verification offline.
    let reg = Registry::start_in(dir.path());
    {
        let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
        reconcile(&reg.addr, &mut ledger, &mut rng, true)
            .unwrap_or_else(|why| panic!("final check (LAIN_TEST_SEED={seed}): {why}"));
        let live = ledger
            .images
            .iter()
            .filter(|i| i.state == State::Live)
            .count();
        eprintln!(
            "{CYCLES} kills in {:.0} s: {} manifests acknowledged, {live} live at the end, \
             {collections} collections started",
            started.elapsed().as_secs_f64(),
            ledger.acknowledged
        );
        assert!(
            ledger.acknowledged >= CYCLES as u64,
            "too little load to mean anything"
        );
    }
    drop(reg);
    let fsck = common::registry(dir.path(), &["fsck", "--deep"]);
    assert!(
        fsck.status.success(),
        "fsck --deep (LAIN_TEST_SEED={seed}): {}{}",
        common::stdout(&fsck),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
