//! skopeo in an environment of its own (HOME, registries.conf, auth file, registries.d
//! in a temporary directory), killed after `SKOPEO_TIMEOUT`: only the registry on
//! 127.0.0.1 is ever contacted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SKOPEO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs skopeo in an environment of its own under `root`.
pub struct Skopeo {
    root: PathBuf,
}

/// A finished skopeo run.
pub struct Run {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn output(&self) -> String {
        format!(
            "$ {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.stdout, self.stderr
        )
    }
}

impl Skopeo {
    pub fn new(root: &Path) -> Skopeo {
        for sub in [
            "home",
            "config",
            "data",
            "cache",
            "run",
            "tmp",
            "registries.d",
            "certs.d",
        ] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        // No search registries, no mirrors, no aliases: a reference names its host.
        std::fs::write(
            root.join("registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
        )
        .expect("write registries.conf");
        std::fs::write(root.join("containers.conf"), "").expect("write containers.conf");
        std::fs::write(root.join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
        Skopeo {
            root: root.to_owned(),
        }
    }

    /// Runs `skopeo --debug SUBCOMMAND ARGS`, with the options that keep it inside its
    /// own directory, killing it after `SKOPEO_TIMEOUT`.
    pub fn run(&self, subcommand: &str, args: &[&str]) -> Run {
        let r = |sub: &str| self.root.join(sub).display().to_string();
        let mut all: Vec<String> = [
            "--debug",
            "--insecure-policy",
            "--registries.d",
            &r("registries.d"),
            "--tmpdir",
            &r("tmp"),
            subcommand,
            // Hidden in skopeo 1.9 but honoured; newer versions read the variable below.
            "--registries-conf",
            &r("registries.conf"),
        ]
        .map(str::to_owned)
        .to_vec();
        let certs = r("certs.d");
        match subcommand {
            "copy" => all.extend(
                [
                    "--preserve-digests",
                    "--src-cert-dir",
                    &certs,
                    "--dest-cert-dir",
                    &certs,
                ]
                .map(str::to_owned),
            ),
            "inspect" => all.extend(["--cert-dir", &certs].map(str::to_owned)),
            _ => {}
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let mut command = Command::new("skopeo");
        command
            .args(&all)
            .env("HOME", r("home"))
            .env("XDG_CONFIG_HOME", r("config"))
            .env("XDG_DATA_HOME", r("data"))
            .env("XDG_CACHE_HOME", r("cache"))
            .env("XDG_RUNTIME_DIR", r("run"))
            .env("TMPDIR", r("tmp"))
            .env("CONTAINERS_REGISTRIES_CONF", r("registries.conf"))
            .env("CONTAINERS_CONF", r("containers.conf"))
            .env("REGISTRY_AUTH_FILE", r("auth.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
            "DOCKER_CONFIG",
            "REGISTRIES_CONFIG_PATH",
        ] {
            command.env_remove(var);
        }
        let line = format!("skopeo {}", all.join(" "));
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run `{line}` ({e}); scripts/test installs skopeo (apt-get install skopeo)"
            )
        });
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + SKOPEO_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for skopeo") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = Run {
            command: line,
            success: status.is_some_and(|s| s.success()),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(
            status.is_some(),
            "skopeo did not finish within {SKOPEO_TIMEOUT:?}\n{}",
            run.output()
        );
        run
    }

    /// Runs skopeo and fails the test, with skopeo's output and the registry's log,
    /// unless it succeeds.
    #[track_caller]
    pub fn ok(&self, registry: Option<&super::Registry>, subcommand: &str, args: &[&str]) -> Run {
        let run = self.run(subcommand, args);
        assert!(
            run.success,
            "skopeo failed\n{}\n--- registry log ---\n{}",
            run.output(),
            registry.map(|r| r.log()).unwrap_or_default()
        );
        run
    }
}
