//! Cluster mode under test: a real etcd and a real S3 server (SeaweedFS), several
//! `registry serve` processes on them, and a proxy in front that sends each request to
//! the next instance in turn (a new connection per request, so no two consecutive
//! requests of a client land on one instance). The proxy records which instance took
//! which request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::etcd::Etcd;
use super::weed::{self, Weed};
use super::{Launch, Registry};

pub const BUCKET: &str = "registry";

pub struct Cluster {
    pub etcd: Etcd,
    pub weed: Weed,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
    instances: Vec<Option<Registry>>,
    pub proxy: Proxy,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    /// `n` instances behind the proxy.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// With environment variables for every instance (`REGISTRY_*` settings).
    pub fn start_with(n: usize, env: &[(&'static str, &str)]) -> Cluster {
        let etcd = Etcd::start(false);
        let weed = Weed::start(BUCKET);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_text(&etcd, &weed)).expect("config");
        let env: Vec<(&'static str, String)> =
            env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let instances: Vec<Option<Registry>> =
            (0..n).map(|_| Some(launch(&config, &env))).collect();
        let backends = instances
            .iter()
            .map(|r| r.as_ref().expect("running").addr.clone())
            .collect();
        let proxy = Proxy::start(backends);
        Cluster {
            etcd,
            weed,
            config,
            _dir: dir,
            instances,
            proxy,
            env,
        }
    }

    /// Every running instance's output, for a failing test's message.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for (i, registry) in self.instances.iter().enumerate() {
            if let Some(registry) = registry {
                out.push_str(&format!("--- instance {i} ---\n{}", registry.log()));
            }
        }
        out
    }

    pub fn instance(&self, i: usize) -> &Registry {
        self.instances[i].as_ref().expect("instance running")
    }

    /// SIGKILL: the instance dies mid-whatever, as in a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(registry) = self.instances[i].take() {
            super::signal(registry.pid(), "KILL");
            let _ = registry.wait_for(std::time::Duration::from_secs(10));
        }
    }

    /// Starts instance `i` again (on a new port, which the proxy learns).
    pub fn restart(&mut self, i: usize) {
        let registry = launch(&self.config, &self.env);
        self.proxy.set_backend(i, registry.addr.clone());
        self.instances[i] = Some(registry);
    }

    /// [`Cluster::command`], which must succeed; its standard output.
    pub fn command_ok(&self, args: &[&str]) -> String {
        let run = self.command(args);
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "registry {}: {text}{}",
            args.join(" "),
            String::from_utf8_lossy(&run.stderr)
        );
        text
    }

    /// `registry ARGS... <config>` against the cluster (a maintenance command).
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(args)
            .arg(&self.config)
            .env_remove("REGISTRY_HTTP_ADDR")
            .env_remove("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
            .env("NO_COLOR", "1")
            .output()
            .expect("run registry")
    }
}

fn config_text(etcd: &Etcd, weed: &Weed) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  delete:\n    enabled: true\n  s3:\n    accesskey: {}\n    secretkey: {}\n    \
         region: us-east-1\n    regionendpoint: {}\n    bucket: {BUCKET}\n    secure: false\n\
         etcd:\n  endpoints: [{}]\n",
        weed::ACCESS_KEY,
        weed::SECRET_KEY,
        weed.endpoint(),
        etcd.url()
    )
}

fn launch(config: &std::path::Path, env: &[(&'static str, String)]) -> Registry {
    Registry::launch(Launch {
        args: vec![config.display().to_string()],
        env: env.to_vec(),
        keep_root: true,
        ..Launch::default()
    })
}

/// Round-robin per request, over HTTP/1.1.
pub struct Proxy {
    pub addr: String,
    backends: Arc<Mutex<Vec<String>>>,
    /// `(instance, method, path)` of every request, in the order they were sent on.
    log: Arc<Mutex<Vec<(usize, String, String)>>>,
    _runtime: tokio::runtime::Runtime,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl Proxy {
    fn start(backends: Vec<String>) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let backends = Arc::new(Mutex::new(backends));
        let log = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let (b, l) = (backends.clone(), log.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (b, l, next) = (b.clone(), l.clone(), next.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        forward(req, b.clone(), l.clone(), next.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy {
            addr,
            backends,
            log,
            _runtime: runtime,
        }
    }

    fn set_backend(&self, i: usize, addr: String) {
        self.backends.lock().unwrap()[i] = addr;
    }

    /// The requests so far: instance, method, path.
    pub fn log(&self) -> Vec<(usize, String, String)> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn forward(
    req: Request<hyper::body::Incoming>,
    backends: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<Vec<(usize, String, String)>>>,
    next: Arc<AtomicUsize>,
) -> Result<Response<ProxyBody>, hyper::Error> {
    let (i, backend) = {
        let backends = backends.lock().unwrap();
        let i = next.fetch_add(1, Ordering::SeqCst) % backends.len();
        (i, backends[i].clone())
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".into(), |p| p.to_string());
    log.lock()
        .unwrap()
        .push((i, req.method().to_string(), path));
    let refused = |why: String| {
        let mut response =
            Response::new(Full::new(Bytes::from(why)).map_err(|n| match n {}).boxed());
        *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        Ok(response)
    };
    let addr: SocketAddr = match backend.parse() {
        Ok(addr) => addr,
        Err(e) => return refused(e.to_string()),
    };
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return refused(format!("instance {i} at {backend}: {e}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return refused(e.to_string()),
        };
    tokio::spawn(connection);
    match sender.send_request(req).await {
        Ok(response) => Ok(response.map(BodyExt::boxed)),
        Err(e) => refused(format!("instance {i}: {e}")),
    }
}
