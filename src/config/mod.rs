//! The configuration the registry runs with, from its sources in order of precedence:
//! defaults < the file (docker/distribution's `config.yml`, or the embedded default)
//! < etcd < `REGISTRY_*` environment variables.
//!
//! Each source becomes a [`tree::Node`] tree (or changes to one) whose values remember
//! their origin; the merged tree is typed by serde ([`model::File`]) and then turned
//! into [`Config`], the settings the wiring hands to the engine and the HTTP layer.
//! An error names the key and where its value came from (the file's line, the etcd
//! key, the environment variable).

pub mod check;
pub mod env;
pub mod model;
mod strict;
pub mod tree;
pub mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use tree::{Node, Origin, Value};
pub use values::{ListenAddr, format_duration, parse_go_duration};

/// Used when `registry` is given no file: loopback, a data directory beside the
/// process, deletes enabled (LAIN's weekly clean-up needs them), idle uploads purged
/// after a day.
pub const EMBEDDED_DEFAULT: &str = "\
version: 0.1
http:
  addr: 127.0.0.1:5000
storage:
  filesystem:
    rootdirectory: registry-data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      age: 24h
      interval: 10m
";

/// distribution's filesystem root when a file names none.
const DISTRIBUTION_ROOT: &str = "/var/lib/registry";
/// distribution's upload purging defaults: a week, checked daily.
const DISTRIBUTION_PURGE_AGE: Duration = Duration::from_secs(168 * 3600);
const DISTRIBUTION_PURGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// distribution's `http.draintimeout` when unset: none; this registry waits this long.
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The LAIN cluster's key for token auth: JSON `{"realm", "issuer", "service"}`.
pub const LAIN_AUTH_KEY: &str = "/lain/config/auth/registry";
/// Where an operator puts a YAML fragment laid over the file.
pub const DEFAULT_CONFIG_KEY: &str = "/lain/config/registry";
/// Where cluster mode keeps its metadata in etcd, unless `etcd.prefix` says otherwise.
pub const DEFAULT_CLUSTER_PREFIX: &str = "/lain/registry/";

/// Keys distribution knows that this registry accepts without applying them. Those
/// present are named once at start.
pub const NOT_APPLIED: &[&str] = &[
    "catalog",
    "compatibility",
    "health",
    "http.debug",
    "http.h2c",
    "http.tls.ciphersuites",
    "log.accesslog",
    "log.fields",
    "log.hooks",
    "log.reportcaller",
    "middleware",
    "notifications",
    "policy",
    "proxy",
    "redis",
    "reporting",
    "storage.azure",
    "storage.cache",
    "storage.filesystem.maxthreads",
    "storage.gcs",
    "storage.inmemory",
    "storage.oss",
    "storage.redirect",
    "storage.s3.accelerate",
    "storage.s3.credentialsconfigpath",
    "storage.s3.encrypt",
    "storage.s3.keyid",
    "storage.s3.loglevel",
    "storage.s3.multipartcopychunksize",
    "storage.s3.multipartcopymaxconcurrency",
    "storage.s3.multipartcopythresholdsize",
    "storage.s3.objectacl",
    "storage.s3.sessiontoken",
    "storage.s3.skipverify",
    "storage.s3.storageclass",
    "storage.s3.usedualstack",
    "storage.s3.useragent",
    "storage.swift",
    "storage.tag",
    "validation",
];

/// Everything the registry runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, `None` for the embedded default.
    pub file: Option<PathBuf>,
    pub addr: ListenAddr,
    /// The data directory (`storage.filesystem.rootdirectory`).
    pub root: PathBuf,
    /// What the HTTP layer applies from its start.
    pub http: lain_http::Settings,
    /// What the HTTP layer applies per request, and may change while it serves.
    pub live: lain_http::Live,
    pub tls: Option<Tls>,
    pub engine: EngineSettings,
    /// `storage.engine.collection`: garbage collection's defaults.
    pub collect: CollectSettings,
    pub etcd: Option<Etcd>,
    /// `storage.s3` (with `etcd`): cluster mode instead of the local engine.
    pub cluster: Option<Cluster>,
    pub log: Log,
    /// Authentication the configuration asks for (`None`: none).
    pub auth: Option<AuthRequest>,
    /// `storage.maintenance.uploadpurging.dryrun: true`: logged, not simulated.
    pub purge_dry_run: bool,
    /// Keys present that are accepted but not applied ([`NOT_APPLIED`]), sorted.
    pub not_applied: Vec<String>,
    /// The merged tree, for `registry config check`.
    pub tree: Node,
}

/// `storage.engine.collection`: `grace` and `compactthreshold`. The command line's
/// `--grace` and `--compact-threshold` override them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectSettings {
    pub grace: Duration,
    pub compact_threshold: f64,
}

impl Default for CollectSettings {
    fn default() -> CollectSettings {
        CollectSettings {
            grace: lain_engine::DEFAULT_GRACE,
            compact_threshold: lain_engine::DEFAULT_COMPACT_THRESHOLD,
        }
    }
}

/// `storage.engine`: the engine's sizes; `None` keeps the engine's own default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineSettings {
    pub pack_seal_size: Option<u64>,
    pub block_cache: Option<u64>,
    pub memtable: Option<u64>,
    pub upload_sessions: Option<u64>,
    pub upload_sessions_per_client: Option<u64>,
    pub compaction_rate: Option<u64>,
    pub reserved_space: Option<u64>,
}

impl EngineSettings {
    pub fn options(&self) -> lain_engine::Options {
        let mut options = lain_engine::Options::default();
        if let Some(size) = self.pack_seal_size {
            options.pack_seal_size = size;
        }
        if let Some(size) = self.block_cache {
            options.block_cache_bytes = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(size) = self.memtable {
            options.write_buffer_bytes = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.upload_sessions {
            options.max_upload_sessions = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.upload_sessions_per_client {
            options.max_upload_sessions_per_owner = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(rate) = self.compaction_rate {
            options.compaction_busy_rate = rate;
        }
        if let Some(size) = self.reserved_space {
            options.reserved_space = size;
        }
        options
    }
}

/// `http.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// PEM files of the CAs whose client certificates are required (mutual TLS).
    pub client_cas: Vec<PathBuf>,
    /// Only TLS 1.3 (`minimumtls: tls1.3`); otherwise 1.2 and 1.3.
    pub tls13_only: bool,
}

/// Cluster mode: the bucket (`storage.s3`) and the store's options (`etcd.prefix`,
/// `storage.s3.rootdirectory`, `chunksize`).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub bucket: lain_cluster::BucketSettings,
    pub options: lain_cluster::Options,
}

/// `etcd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub api: EtcdApi,
    pub credentials: Option<(String, String)>,
    pub auth_key: String,
    pub config_key: String,
    /// CA, client certificate and key files for `https://` endpoints.
    pub ca: Option<PathBuf>,
    pub identity: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
    /// `etcd.prefix`: cluster mode's metadata keys.
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdApi {
    V3,
    /// The HTTP keys API (`/v2/keys`), for older LAIN clusters.
    V2,
}

/// `log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// `error`, `warn`, `info` or `debug`.
    pub level: String,
    pub json: bool,
}

/// The authentication a configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// `auth.token`, `auth.htpasswd` or `auth.silly`.
    pub key: String,
    pub origin: Origin,
    /// `auth.token`'s settings.
    pub token: Option<TokenConfig>,
    /// `auth.htpasswd`'s: the realm and the file.
    pub htpasswd: Option<(String, PathBuf)>,
}

/// `auth.token`: where tokens come from and what they are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificates: their keys sign tokens, and they are the roots of `x5c`
    /// chains.
    pub rootcertbundle: Option<PathBuf>,
    /// distribution 3's JWKS file.
    pub jwks: Option<PathBuf>,
    /// `signingalgorithms`, names checked against the allow-list; empty: all of it.
    pub algorithms: Vec<String>,
    /// `autoredirect`: the challenge's realm is this path on the request's own host
    /// (`autoredirectpath`, default `/auth/token`), as distribution 3 does.
    pub autoredirect: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name} is not valid YAML: {error}")]
    Yaml {
        source_name: String,
        error: tree::YamlError,
    },
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        key: String,
        origin: Origin,
        message: String,
    },
    #[error(
        "{origin}: `{key}` asks for {what}, which this registry does not enforce yet; \
         it refuses to run without it{hint}"
    )]
    NotEnforced {
        key: String,
        origin: Origin,
        what: &'static str,
        hint: &'static str,
    },
}

/// A change a later source makes to the file's tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Override {
    Set {
        path: Vec<String>,
        node: Node,
    },
    Remove {
        path: Vec<String>,
    },
    /// A fragment laid over the whole tree.
    Merge(Node),
}

impl Override {
    fn apply(&self, tree: &mut Node) {
        match self {
            Override::Set { path, node } => tree.set(path, node.clone()),
            Override::Remove { path } => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                tree.remove(&path);
            }
            Override::Merge(node) => tree.merge(node.clone()),
        }
    }
}

/// The sources that do not change while the registry runs: the file (or the embedded
/// default) and the environment. etcd's changes are laid between them by
/// [`Base::config`].
#[derive(Debug, Clone)]
pub struct Base {
    file: Option<PathBuf>,
    tree: Node,
    env: Vec<Override>,
    /// `REGISTRY_*` variables that name no key (as a Kubernetes service named
    /// "registry" sets), ignored as distribution ignores them.
    pub ignored_env: Vec<String>,
}

impl Base {
    /// Reads the file (or the embedded default) and the `REGISTRY_*` variables among
    /// `vars`.
    pub fn read(file: Option<&Path>, vars: &[(String, String)]) -> Result<Base, Error> {
        let tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.to_owned(),
                    source,
                })?;
                parse_file(&text, path)?
            }
            None => Node::parse_yaml(EMBEDDED_DEFAULT, &|_| Origin::Default).map_err(|error| {
                Error::Yaml {
                    source_name: "the embedded default".into(),
                    error,
                }
            })?,
        };
        let (env, ignored_env) = env::overrides(vars)?;
        Ok(Base {
            file: file.map(Path::to_owned),
            tree,
            env,
            ignored_env,
        })
    }

    /// A file's text (read from `path`) without environment overrides.
    pub fn from_text(text: &str, path: &Path) -> Result<Base, Error> {
        Ok(Base {
            file: Some(path.to_owned()),
            tree: parse_file(text, path)?,
            env: Vec::new(),
            ignored_env: Vec::new(),
        })
    }

    /// The configuration with etcd's `changes` laid over the file, under the
    /// environment.
    pub fn config(&self, etcd: &[Override]) -> Result<Config, Error> {
        let mut tree = self.tree.clone();
        for change in etcd.iter().chain(&self.env) {
            change.apply(&mut tree);
        }
        Config::from_tree(self.file.clone(), tree)
    }
}

/// Parses the text of a configuration file; `path` names it in errors.
pub fn parse_file(text: &str, path: &Path) -> Result<Node, Error> {
    let shared = Arc::new(path.to_owned());
    let tree = Node::parse_yaml(text, &|line| Origin::File {
        path: shared.clone(),
        line,
    })
    .map_err(|error| Error::Yaml {
        source_name: format!("configuration file {}", path.display()),
        error,
    })?;
    if !matches!(tree.value, Value::Map(_)) {
        return Err(Error::Invalid {
            key: "(top level)".into(),
            origin: tree.origin,
            message: "the file must be a mapping of keys (version, storage, http, ...)".into(),
        });
    }
    Ok(tree)
}

/// Types `tree` into the model; an error names the key and its origin.
pub fn typed(tree: &Node) -> Result<model::File, Error> {
    serde_path_to_error::deserialize::<_, model::File>(strict::Strict(tree.to_json())).map_err(
        |e| {
            let mut path: Vec<String> = e
                .path()
                .iter()
                .map(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => index.to_string(),
                    other => other.to_string(),
                })
                .filter(|s| s != "?")
                .collect();
            let message = e.inner().to_string();
            let message = match unknown_field(&message) {
                Some(field) => {
                    if path.last().map(String::as_str) != Some(field) {
                        path.push(field.to_owned());
                    }
                    format!(
                        "unknown key ({})",
                        message.replace("unknown field", "field")
                    )
                }
                None => message,
            };
            let borrowed: Vec<&str> = path.iter().map(String::as_str).collect();
            Error::Invalid {
                key: if path.is_empty() {
                    "(top level)".into()
                } else {
                    path.join(".")
                },
                origin: tree.origin_of(&borrowed),
                message,
            }
        },
    )
}

/// Who may use the API under `auth`. Authentication this build cannot enforce closes
/// the registry rather than leaving it open (`serve` refuses to start on it; asked
/// for while serving, through etcd, every request is refused).
fn access(auth: Option<&AuthRequest>) -> lain_http::Access {
    match auth {
        None => lain_http::Access::Open,
        // The wiring loads the keys (or the users) and puts them in place of this.
        Some(AuthRequest {
            token: Some(_),
            key,
            origin,
            ..
        })
        | Some(AuthRequest {
            htpasswd: Some(_),
            key,
            origin,
            ..
        }) => lain_http::Access::Closed {
            reason: format!("{key} ({origin}): not loaded"),
        },
        Some(auth) => lain_http::Access::Closed {
            reason: format!(
                "{} ({}) asks for authentication, which this registry does not enforce \
                 yet; every request is refused until it is turned off",
                auth.key, auth.origin
            ),
        },
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

impl Config {
    /// The file (or the embedded default) with the environment's overrides, without
    /// etcd: what maintenance commands run with.
    pub fn load(file: Option<&Path>, vars: &[(String, String)]) -> Result<Config, Error> {
        Base::read(file, vars)?.config(&[])
    }

    fn from_tree(file: Option<PathBuf>, tree: Node) -> Result<Config, Error> {
        let model = typed(&tree)?;
        let invalid = |path: &str, message: String| {
            let parts: Vec<&str> = path.split('.').collect();
            Error::Invalid {
                key: path.to_owned(),
                origin: tree.origin_of(&parts),
                message,
            }
        };
        if let Some(version) = &model.version
            && version.0 != "0.1"
        {
            return Err(invalid(
                "version",
                format!(
                    "{:?} is not a configuration version this registry reads (0.1)",
                    version.0
                ),
            ));
        }

        let log = model.log.unwrap_or_default();
        let level = log
            .level
            .or(model.loglevel)
            .map_or_else(|| "info".to_owned(), |l| l.0.to_ascii_lowercase());
        if !matches!(level.as_str(), "error" | "warn" | "info" | "debug") {
            return Err(invalid(
                "log.level",
                format!("{level:?} is not one of error, warn, info, debug"),
            ));
        }
        let json = match log.formatter.as_ref().map(|f| f.0.as_str()) {
            None | Some("text") => false,
            Some("json" | "logstash") => true,
            Some(other) => {
                return Err(invalid(
                    "log.formatter",
                    format!("{other:?} is not one of text, json, logstash"),
                ));
            }
        };

        let storage = model.storage.unwrap_or_default();
        let drivers: Vec<&str> = [
            ("filesystem", storage.filesystem.is_some()),
            ("s3", storage.s3.is_some()),
            ("azure", storage.azure.is_some()),
            ("gcs", storage.gcs.is_some()),
            ("swift", storage.swift.is_some()),
            ("oss", storage.oss.is_some()),
            ("inmemory", storage.inmemory.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if drivers.len() > 1 {
            return Err(invalid(
                "storage",
                format!(
                    "names several storage drivers ({}); distribution allows one",
                    drivers.join(", ")
                ),
            ));
        }
        let filesystem = storage.filesystem.unwrap_or_default();
        let root = match filesystem.rootdirectory {
            Some(root) if root.0.is_empty() => {
                return Err(invalid(
                    "storage.filesystem.rootdirectory",
                    "is empty".into(),
                ));
            }
            Some(root) => PathBuf::from(root.0),
            None => PathBuf::from(DISTRIBUTION_ROOT),
        };
        let maintenance = storage.maintenance.unwrap_or_default();
        let purging = maintenance.uploadpurging.unwrap_or_default();
        for (key, value) in [
            ("storage.maintenance.uploadpurging.age", purging.age),
            (
                "storage.maintenance.uploadpurging.interval",
                purging.interval,
            ),
        ] {
            if value.is_some_and(|d| d.0.is_zero()) {
                return Err(invalid(key, "must be longer than zero".into()));
            }
        }
        let purge_interval = purging.enabled.is_none_or(|e| e.0).then(|| {
            purging
                .interval
                .map_or(DISTRIBUTION_PURGE_INTERVAL, |d| d.0)
        });

        let engine_section = storage.engine.unwrap_or_default();
        let collection = engine_section.collection.unwrap_or_default();
        let mut collect = CollectSettings::default();
        if let Some(grace) = collection.grace {
            collect.grace = grace.0;
        }
        if let Some(threshold) = collection.compactthreshold {
            if !(0.0..=1.0).contains(&threshold) {
                return Err(invalid(
                    "storage.engine.collection.compactthreshold",
                    format!("{threshold} is not a fraction from 0 to 1"),
                ));
            }
            collect.compact_threshold = threshold;
        }
        const MIN_SEAL: u64 = 1 << 20;
        if let Some(size) = engine_section.packsealsize
            && size.0 < MIN_SEAL
        {
            return Err(invalid(
                "storage.engine.packsealsize",
                format!("{} bytes is below the minimum of 1MiB", size.0),
            ));
        }
        const MIN_UPLOAD_MEMORY: u64 = 1 << 20;
        if let Some(size) = engine_section.uploadmemory
            && size.0 < MIN_UPLOAD_MEMORY
        {
            return Err(invalid(
                "storage.engine.uploadmemory",
                format!("{} bytes is below the minimum of 1MiB", size.0),
            ));
        }
        if engine_section.uploadsessionsperclient == Some(0) {
            return Err(invalid(
                "storage.engine.uploadsessionsperclient",
                "must be at least 1".into(),
            ));
        }
        if engine_section.uploadsessions == Some(0) {
            return Err(invalid(
                "storage.engine.uploadsessions",
                "must be at least 1".into(),
            ));
        }
        let engine = EngineSettings {
            pack_seal_size: engine_section.packsealsize.map(|s| s.0),
            block_cache: engine_section.blockcache.map(|s| s.0),
            memtable: engine_section.memtable.map(|s| s.0),
            upload_sessions: engine_section.uploadsessions,
            upload_sessions_per_client: engine_section.uploadsessionsperclient,
            compaction_rate: engine_section.compactionrate.map(|s| s.0),
            reserved_space: engine_section.reservedspace.map(|s| s.0),
        };

        let http = model.http.unwrap_or_default();
        if let Some(net) = &http.net
            && net.0 != "tcp"
        {
            return Err(invalid(
                "http.net",
                format!("{:?}: only tcp is supported", net.0),
            ));
        }
        let addr = match http.addr {
            Some(addr) => addr
                .0
                .parse::<ListenAddr>()
                .map_err(|reason| invalid("http.addr", format!("{:?}: {reason}", addr.0)))?,
            None => ListenAddr::new("", 5000),
        };
        let prefix = match http.prefix.map(|p| p.0) {
            None => String::new(),
            Some(p) => {
                let trimmed = p.trim_end_matches('/');
                if !trimmed.is_empty() && !trimmed.starts_with('/') {
                    return Err(invalid(
                        "http.prefix",
                        format!("{p:?} must be a path that starts with /"),
                    ));
                }
                if trimmed.contains(['?', '#', '%']) {
                    return Err(invalid(
                        "http.prefix",
                        format!("{p:?} must be a plain path"),
                    ));
                }
                trimmed.to_owned()
            }
        };
        let host = match http.host.map(|h| h.0) {
            None => None,
            Some(h) if h.is_empty() => None,
            Some(h) => {
                let ok = (h.starts_with("http://") || h.starts_with("https://"))
                    && h.split("://")
                        .nth(1)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#', ' ']));
                if !ok {
                    return Err(invalid(
                        "http.host",
                        format!("{h:?} is not an http:// or https:// URL"),
                    ));
                }
                Some(h.trim_end_matches('/').to_owned())
            }
        };
        let locations = match (host, http.relativeurls.map(|f| f.0)) {
            (_, Some(true)) | (None, None) => lain_http::Locations::Relative,
            (Some(base), _) => lain_http::Locations::Absolute(base),
            (None, Some(false)) => lain_http::Locations::FromRequest,
        };
        let mut headers = Vec::new();
        for (name, values) in http.headers.unwrap_or_default() {
            let key = format!("http.headers.{name}");
            let header = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&key, format!("{name:?} is not a header name")))?;
            for value in values.0 {
                let value = hyper::header::HeaderValue::from_str(&value)
                    .map_err(|_| invalid(&key, format!("{value:?} is not a header value")))?;
                headers.push((header.clone(), value));
            }
        }
        let tls = match http.tls {
            None => None,
            Some(tls) => Self::tls(tls, &invalid)?,
        };

        // A kind of authentication is asked for when its key is there, even empty
        // (`auth: {token: }`): only clearing `auth` itself turns it off.
        let kinds: Vec<&str> = ["token", "htpasswd", "silly"]
            .into_iter()
            .filter(|kind| tree.get(&["auth", kind]).is_some())
            .collect();
        if kinds.len() > 1 {
            return Err(invalid(
                "auth",
                format!(
                    "names several kinds of authentication ({}); distribution allows one",
                    kinds.join(", ")
                ),
            ));
        }
        let auth_model = model.auth.unwrap_or_default();
        let token = match kinds.first() {
            Some(&"token") => Some(Self::token(auth_model.token.unwrap_or_default(), &invalid)?),
            _ => None,
        };
        let htpasswd = match kinds.first() {
            Some(&"htpasswd") => {
                let section = auth_model.htpasswd.unwrap_or_default();
                let realm = section.realm.map(|r| r.0).unwrap_or_default();
                match section.path.map(|p| p.0).filter(|p| !p.is_empty()) {
                    Some(path) => Some((realm, PathBuf::from(path))),
                    None => {
                        return Err(invalid(
                            "auth.htpasswd.path",
                            "is missing: the file of users".into(),
                        ));
                    }
                }
            }
            _ => None,
        };
        let auth = kinds.first().map(|kind| AuthRequest {
            origin: tree.origin_of(&["auth", kind]),
            key: format!("auth.{kind}"),
            token: token.clone(),
            htpasswd: htpasswd.clone(),
        });

        let etcd = match model.etcd {
            Some(etcd) if etcd.endpoints.as_ref().is_some_and(|e| !e.0.is_empty()) => {
                Some(Self::etcd(etcd, &invalid)?)
            }
            _ => None,
        };

        let mut cluster = match storage.s3 {
            Some(s3) => Some(Self::cluster(s3, etcd.as_ref(), &invalid)?),
            None => None,
        };
        // The session limits are the store's, whichever store it is.
        if let Some(cluster) = &mut cluster {
            let options = &mut cluster.options;
            if let Some(n) = engine.upload_sessions {
                options.max_upload_sessions = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(n) = engine.upload_sessions_per_client {
                options.max_upload_sessions_per_owner = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }

        let connections = http.connections.unwrap_or_default();
        for (key, value) in [
            ("http.connections.max", connections.max),
            ("http.connections.perclient", connections.perclient),
        ] {
            if value == Some(0) {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        let limit = |value: Option<u64>, default: usize| {
            value.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let mut not_applied: Vec<String> = NOT_APPLIED
            .iter()
            .filter(|key| {
                let path: Vec<&str> = key.split('.').collect();
                tree.get(&path).is_some_and(|node| !node.is_null())
            })
            .map(|key| (*key).to_owned())
            .collect();
        not_applied.sort();

        Ok(Config {
            file,
            addr,
            root,
            http: lain_http::Settings {
                delete_enabled: storage.delete.and_then(|d| d.enabled).is_some_and(|e| e.0),
                upload_purge_age: purging.age.map_or(DISTRIBUTION_PURGE_AGE, |d| d.0),
                upload_purge_interval: purge_interval,
                prefix,
                locations,
                headers,
                drain_timeout: http.draintimeout.map_or(DEFAULT_DRAIN, |d| d.0),
                http2: !http.http2.and_then(|h| h.disabled).is_some_and(|d| d.0),
                max_connections: limit(connections.max, lain_http::DEFAULT_MAX_CONNECTIONS),
                max_connections_per_client: limit(
                    connections.perclient,
                    lain_http::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
                ),
                secret: http
                    .secret
                    .map(|s| s.0.into_bytes())
                    .filter(|s| !s.is_empty()),
                upload_memory: engine_section
                    .uploadmemory
                    .map_or(lain_http::DEFAULT_UPLOAD_MEMORY, |s| {
                        usize::try_from(s.0).unwrap_or(usize::MAX)
                    }),
            },
            live: lain_http::Live {
                read_only: maintenance
                    .readonly
                    .and_then(|r| r.enabled)
                    .is_some_and(|e| e.0),
                access: access(auth.as_ref()),
            },
            tls,
            engine,
            collect,
            etcd,
            cluster,
            log: Log { level, json },
            auth,
            purge_dry_run: purging.dryrun.is_some_and(|d| d.0),
            not_applied,
            tree,
        })
    }

    fn tls(tls: model::Tls, invalid: &dyn Fn(&str, String) -> Error) -> Result<Option<Tls>, Error> {
        let certificate = tls.certificate.map(|t| t.0).filter(|t| !t.is_empty());
        let key = tls.key.map(|t| t.0).filter(|t| !t.is_empty());
        let (certificate, key) = match (certificate, key) {
            (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
            (None, None) => {
                if tls.letsencrypt.as_ref().is_some_and(|l| !l.is_null()) {
                    return Err(invalid(
                        "http.tls.letsencrypt",
                        "Let's Encrypt is not supported; serving without TLS is not an \
                         option either: give http.tls.certificate and http.tls.key"
                            .into(),
                    ));
                }
                if tls.clientcas.as_ref().is_some_and(|c| !c.0.is_empty()) {
                    return Err(invalid(
                        "http.tls.clientcas",
                        "client certificates need TLS: give http.tls.certificate and \
                         http.tls.key"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls.key",
                    "is missing (http.tls.certificate is set)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls.certificate",
                    "is missing (http.tls.key is set)".into(),
                ));
            }
        };
        let tls13_only = match tls.minimumtls.as_ref().map(|m| m.0.as_str()) {
            None | Some("" | "tls1.0" | "tls1.1" | "tls1.2") => false,
            Some("tls1.3") => true,
            Some(other) => {
                return Err(invalid(
                    "http.tls.minimumtls",
                    format!("{other:?} is not one of tls1.0, tls1.1, tls1.2, tls1.3"),
                ));
            }
        };
        match tls.clientauth.as_ref().map(|c| c.0.as_str()) {
            None | Some("" | "require-and-verify-client-cert") => {}
            Some(other) => {
                return Err(invalid(
                    "http.tls.clientauth",
                    format!(
                        "{other:?}: only require-and-verify-client-cert (the default with \
                         clientcas) is supported"
                    ),
                ));
            }
        }
        Ok(Some(Tls {
            certificate,
            key,
            client_cas: tls
                .clientcas
                .map(|c| c.0.into_iter().map(PathBuf::from).collect())
                .unwrap_or_default(),
            tls13_only,
        }))
    }

    fn token(
        token: model::Token,
        invalid: &dyn Fn(&str, String) -> Error,
    ) -> Result<TokenConfig, Error> {
        let required = |value: Option<values::Text>, key: &str| match value {
            Some(v) if !v.0.trim().is_empty() => Ok(v.0),
            _ => Err(invalid(
                key,
                "is missing: token authentication needs realm, service and issuer".into(),
            )),
        };
        let realm = required(token.realm, "auth.token.realm")?;
        if !(realm.starts_with("http://") || realm.starts_with("https://")) {
            return Err(invalid(
                "auth.token.realm",
                format!("{realm:?} is not an http:// or https:// URL"),
            ));
        }
        let algorithms = token.signingalgorithms.map(|a| a.0).unwrap_or_default();
        for name in &algorithms {
            if let Err(why) = lain_http::auth::token::algorithm(name) {
                return Err(invalid("auth.token.signingalgorithms", why));
            }
        }
        let path = |value: Option<values::Text>| {
            value
                .map(|v| v.0)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let autoredirect = token.autoredirect.is_some_and(|a| a.0).then(|| {
            token
                .autoredirectpath
                .map(|p| p.0)
                .filter(|p| p.starts_with('/'))
                .unwrap_or_else(|| "/auth/token".to_owned())
        });
        Ok(TokenConfig {
            autoredirect,
            realm,
            service: required(token.service, "auth.token.service")?,
            issuer: required(token.issuer, "auth.token.issuer")?,
            rootcertbundle: path(token.rootcertbundle),
            jwks: path(token.jwks),
            algorithms,
        })
    }

    fn cluster(
        s3: model::S3,
        etcd: Option<&Etcd>,
        invalid: &dyn Fn(&str, String) -> Error,
    ) -> Result<Cluster, Error> {
        let Some(etcd) = etcd.filter(|e| e.api == EtcdApi::V3) else {
            return Err(invalid(
                "storage.s3",
                "keeps blobs only: the metadata needs etcd (v3 API): give etcd.endpoints".into(),
            ));
        };
        let text = |value: Option<values::Text>| value.map(|t| t.0).filter(|t| !t.is_empty());
        let Some(bucket) = text(s3.bucket) else {
            return Err(invalid("storage.s3.bucket", "is missing".into()));
        };
        let (access_key, secret_key) = match (text(s3.accesskey), text(s3.secretkey)) {
            (Some(a), Some(s)) => (a, s),
            _ => {
                return Err(invalid(
                    "storage.s3.accesskey",
                    "accesskey and secretkey are both needed (no instance credentials)".into(),
                ));
            }
        };
        if s3.v4auth.is_some_and(|v| !v.0) {
            return Err(invalid(
                "storage.s3.v4auth",
                "false: only AWS signature version 4 is spoken".into(),
            ));
        }
        let part_size = s3.chunksize.map_or(lain_cluster::MIN_PART_SIZE, |s| s.0);
        if part_size < lain_cluster::MIN_PART_SIZE {
            return Err(invalid(
                "storage.s3.chunksize",
                format!("{part_size} bytes is below S3's minimum part of 5MiB"),
            ));
        }
        let endpoint = text(s3.regionendpoint);
        Ok(Cluster {
            bucket: lain_cluster::BucketSettings {
                bucket,
                region: text(s3.region).unwrap_or_else(|| "us-east-1".to_owned()),
                // As distribution: an endpoint of its own is addressed by path.
                virtual_hosted: endpoint.is_none() && !s3.forcepathstyle.is_some_and(|f| f.0),
                endpoint,
                access_key,
                secret_key,
                secure: s3.secure.is_none_or(|s| s.0),
            },
            options: lain_cluster::Options {
                prefix: etcd.prefix.clone(),
                root: text(s3.rootdirectory).unwrap_or_default(),
                part_size,
                ..lain_cluster::Options::default()
            },
        })
    }

    fn etcd(etcd: model::Etcd, invalid: &dyn Fn(&str, String) -> Error) -> Result<Etcd, Error> {
        let endpoints = etcd.endpoints.map(|e| e.0).unwrap_or_default();
        for endpoint in &endpoints {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "etcd.endpoints",
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let api = match etcd.api.as_ref().map(|a| a.0.as_str()) {
            None | Some("v3") => EtcdApi::V3,
            Some("v2") => EtcdApi::V2,
            Some(other) => {
                return Err(invalid("etcd.api", format!("{other:?} is not v3 or v2")));
            }
        };
        if api == EtcdApi::V2
            && let Some(endpoint) = endpoints.iter().find(|e| e.starts_with("https://"))
        {
            return Err(invalid(
                "etcd.endpoints",
                format!("{endpoint:?}: the v2 API is spoken over plain http:// only"),
            ));
        }
        let credentials = match (etcd.username, etcd.password) {
            (Some(u), Some(p)) => Some((u.0, p.0)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "etcd.username",
                    "username and password go together".into(),
                ));
            }
        };
        let tls = etcd.tls.unwrap_or_default();
        let identity = match (tls.certificate, tls.key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c.0), PathBuf::from(k.0))),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "etcd.tls.certificate",
                    "certificate and key go together".into(),
                ));
            }
        };
        let key = |value: Option<values::Text>, default: &str, name: &str| match value {
            None => Ok(default.to_owned()),
            Some(k) if k.0.starts_with('/') => Ok(k.0),
            Some(k) => Err(invalid(name, format!("{:?} must start with /", k.0))),
        };
        Ok(Etcd {
            endpoints,
            api,
            credentials,
            auth_key: key(etcd.authkey, LAIN_AUTH_KEY, "etcd.authkey")?,
            config_key: key(etcd.configkey, DEFAULT_CONFIG_KEY, "etcd.configkey")?,
            ca: tls.ca.map(|c| PathBuf::from(c.0)),
            identity,
            timeout: etcd.timeout.map_or(Duration::from_secs(2), |t| t.0),
            prefix: key(etcd.prefix, DEFAULT_CLUSTER_PREFIX, "etcd.prefix")?,
        })
    }

    /// Refuses a configuration that asks for protection this registry cannot give
    /// yet (authentication), rather than serving without it.
    pub fn refuse_unenforced(&self) -> Result<(), Error> {
        match &self.auth {
            None
            | Some(AuthRequest { token: Some(_), .. })
            | Some(AuthRequest {
                htpasswd: Some(_), ..
            }) => Ok(()),
            Some(auth) => Err(Error::NotEnforced {
                key: auth.key.clone(),
                origin: auth.origin.clone(),
                what: "authentication",
                hint: " (LAIN turns it off with REGISTRY_AUTH=\"\")",
            }),
        }
    }

    /// Logs, once, the keys that are accepted but not applied.
    pub fn log_not_applied(&self) {
        if !self.not_applied.is_empty() {
            tracing::warn!(
                "configuration keys accepted but not applied by this registry: {}",
                self.not_applied.join(", ")
            );
        }
        if self.purge_dry_run {
            tracing::warn!(
                "storage.maintenance.uploadpurging.dryrun is not applied: idle uploads are purged for real"
            );
        }
    }
}

#[cfg(test)]
mod tests;
