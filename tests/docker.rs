//! The Docker CLI as LAIN's users work with it — `docker build`, `docker tag`,
//! `docker login`, `docker push`, `docker rmi`, `docker pull` — against the registry
//! with htpasswd and with token auth through `registry token-server`. The test starts
//! its own `dockerd` (Debian's docker.io, installed by scripts/test) as root on a
//! private socket and data root, with the vfs storage driver and no networking of its
//! own, and stops it afterwards; it never talks to another daemon. Docker allows plain
//! HTTP to registries on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{Launch, Registry};

/// A private dockerd, killed and reaped when dropped.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).expect("mkdir");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dockerd ({e}); scripts/test installs docker.io")
            });
        let dockerd = Dockerd {
            child,
            dir: dir.to_owned(),
        };
        let start = Instant::now();
        while !dockerd.docker(&["info"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dockerd did not start: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        dockerd
    }

    /// Runs the Debian docker client against this daemon, with its own config dir.
    fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_input(args, None)
    }

    fn docker_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("/usr/bin/docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("docker")
    }

    fn ok(&self, args: &[&str], registry: &dyn Target) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}\n--- registry log ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            registry.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn login(&self, registry: &dyn Target, user: &str, password: &str) -> Output {
        self.docker_with_input(
            &["login", &registry.addr(), "-u", user, "--password-stdin"],
            Some(password),
        )
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd bind-mounts its data root over itself; killed, it cannot undo that.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.join("root"))
            .stderr(Stdio::null())
            .status();
    }
}

/// What the docker client pushes to: an address, and the log that explains a failure.
trait Target {
    fn addr(&self) -> String;
    fn log(&self) -> String;
}

impl Target for Registry {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn log(&self) -> String {
        Registry::log(self)
    }
}

impl Target for Cluster {
    fn addr(&self) -> String {
        self.proxy.addr.clone()
    }

    fn log(&self) -> String {
        Cluster::log(self)
    }
}

/// A wrong password refused, alice logged in, then the seed's workflow.
fn login_push_pull(dockerd: &Dockerd, registry: &dyn Target, context: &Path, n: usize) {
    assert!(
        !dockerd.login(registry, "alice", "wrong").status.success(),
        "a wrong password logged in"
    );
    let login = dockerd.login(registry, "alice", "alice-pw");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    build_push_pull(dockerd, registry, context, n);
}

/// The seed's workflow against `registry`, logged in as `user`.
fn build_push_pull(dockerd: &Dockerd, registry: &dyn Target, context: &Path, n: usize) {
    let local = format!("lain-test/app:{n}");
    let remote = format!("{}/lain/app:v{n}", registry.addr());
    dockerd.ok(
        &[
            "build",
            "-q",
            "-t",
            &local,
            context.to_str().expect("utf-8"),
        ],
        registry,
    );
    dockerd.ok(&["tag", &local, &remote], registry);
    dockerd.ok(&["push", &remote], registry);
    let id = dockerd.ok(
        &["image", "inspect", "--format", "{{.Id}}", &remote],
        registry,
    );
    dockerd.ok(&["rmi", &remote, &local], registry);
    dockerd.ok(&["pull", &remote], registry);
    let pulled = dockerd.ok(
        &["image", "inspect", "--format", "{{.Id}}", &remote],
        registry,
    );
    assert_eq!(id, pulled, "the pulled image is not the pushed one");
    dockerd.ok(&["rmi", &remote], registry);
}

#[test]
fn docker_builds_logs_in_pushes_and_pulls() {
    let work = tempfile::tempdir().expect("tempdir");
    let dockerd = Dockerd::start(&work.path().join("docker"));
    // A small image of three layers, FROM scratch: no network needed.
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).expect("mkdir");
    for (name, bytes) in [("a", 1usize << 10), ("b", 64 << 10), ("c", 1 << 20)] {
        std::fs::write(context.join(name), vec![name.as_bytes()[0]; bytes]).expect("write");
    }
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n",
    )
    .expect("write");
    let users = work.path().join("users");
    let hash = bcrypt::hash("alice-pw", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("write");

    // htpasswd.
    let config = work.path().join("htpasswd.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  delete:\n    enabled: true\nauth:\n  htpasswd:\n    realm: lain\n    path: {}\n",
            users.display()
        ),
    )
    .expect("write");
    let registry = Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    });
    login_push_pull(&dockerd, &registry, &context, 0);
    dockerd.ok(&["logout", &registry.addr], &registry);
    drop(registry);

    // Token auth through the token server (LAIN Console's place).
    let token_server = common::tokens::TokenServer::start(
        work.path(),
        "libtrust",
        ("rsa.key", "rsa.crt"),
        &users,
        "  - user: alice\n    repository: \"lain/*\"\n    actions: [pull, push]\n",
    );
    let config = work.path().join("token-registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\n{}",
            token_server.registry_auth(&common::tokens::bundle(work.path()))
        ),
    )
    .expect("write");
    let registry = Registry::launch(Launch {
        args: vec![config.display().to_string()],
        ..Launch::default()
    });
    login_push_pull(&dockerd, &registry, &context, 1);
    assert!(
        registry.log().contains("subject=alice"),
        "{}",
        registry.log()
    );
}

/// The seed's workflow through three cluster instances behind a proxy that sends each
/// request to the next one: every request of the push and of the pull lands on
/// another instance than the one before.
#[test]
fn docker_pushes_and_pulls_through_three_cluster_instances() {
    let work = tempfile::tempdir().expect("tempdir");
    let dockerd = Dockerd::start(&work.path().join("docker"));
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).expect("mkdir");
    // One layer past an S3 part (a multipart upload), two within one.
    for (name, bytes) in [("a", 1usize << 10), ("b", 7 << 20), ("c", 64 << 10)] {
        let content: Vec<u8> = common::pseudo_random(u64::from(name.as_bytes()[0]), bytes);
        std::fs::write(context.join(name), content).expect("write");
    }
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n",
    )
    .expect("write");
    let cluster = Cluster::start(3);
    build_push_pull(&dockerd, &cluster, &context, 1);
    let requests = cluster.proxy.log();
    let instances: std::collections::BTreeSet<usize> = requests.iter().map(|r| r.0).collect();
    assert_eq!(instances.len(), 3, "{requests:?}");
    for pair in requests.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two requests in a row on one instance"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.1 == "PUT" && r.2.contains("/manifests/")),
        "the push reached the cluster: {requests:?}"
    );
}
