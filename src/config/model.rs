//! docker/distribution's `config.yml` (version 0.1) as types, with this registry's own
//! sections (`storage.engine`, `etcd`). serde reads the merged tree of all sources
//! into it; a key the model does not name (a typo) or a value of the wrong type is an
//! error. Every field is optional: `None` means "not set", and `super::Config`
//! applies the defaults.
//!
//! Sections that mean nothing to this registry (`redis`, `proxy`, other storage
//! drivers, ...) are typed too, so that their typos are caught; `super::NOT_APPLIED`
//! lists them, and the server names those present once at start.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::{Flag, GoDuration, List, Size, Text};

/// A section whose contents are free-form (driver parameters, middleware options).
pub type Any = serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    pub version: Option<Text>,
    pub log: Option<Log>,
    /// Deprecated in distribution in favour of `log.level`.
    pub loglevel: Option<Text>,
    pub storage: Option<Storage>,
    pub auth: Option<Auth>,
    pub middleware: Option<BTreeMap<String, Vec<Middleware>>>,
    pub reporting: Option<Reporting>,
    pub http: Option<Http>,
    pub notifications: Option<Notifications>,
    pub redis: Option<Redis>,
    pub health: Option<Health>,
    pub catalog: Option<Catalog>,
    pub proxy: Option<Proxy>,
    pub compatibility: Option<Compatibility>,
    pub validation: Option<Validation>,
    pub policy: Option<Any>,
    /// This registry's: where to read live settings from.
    pub etcd: Option<Etcd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub accesslog: Option<AccessLog>,
    pub level: Option<Text>,
    pub formatter: Option<Text>,
    pub fields: Option<BTreeMap<String, Any>>,
    pub hooks: Option<Vec<Any>>,
    pub reportcaller: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub disabled: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub filesystem: Option<Filesystem>,
    pub delete: Option<Delete>,
    pub maintenance: Option<Maintenance>,
    pub cache: Option<Cache>,
    pub redirect: Option<Any>,
    pub tag: Option<Any>,
    /// This registry's own engine settings.
    pub engine: Option<EngineSection>,
    /// Cluster mode: blobs in this bucket, metadata in etcd.
    pub s3: Option<S3>,
    // Other drivers: accepted, not applied.
    pub azure: Option<Any>,
    pub gcs: Option<Any>,
    pub swift: Option<Any>,
    pub oss: Option<Any>,
    pub inmemory: Option<Any>,
}

/// distribution's `storage.s3` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3 {
    pub accesskey: Option<Text>,
    pub secretkey: Option<Text>,
    pub region: Option<Text>,
    pub regionendpoint: Option<Text>,
    pub bucket: Option<Text>,
    pub rootdirectory: Option<Text>,
    pub secure: Option<Flag>,
    pub v4auth: Option<Flag>,
    pub chunksize: Option<Size>,
    pub forcepathstyle: Option<Flag>,
    // Accepted, not applied.
    pub encrypt: Option<Any>,
    pub keyid: Option<Any>,
    pub skipverify: Option<Any>,
    pub storageclass: Option<Any>,
    pub useragent: Option<Any>,
    pub usedualstack: Option<Any>,
    pub accelerate: Option<Any>,
    pub objectacl: Option<Any>,
    pub loglevel: Option<Any>,
    pub sessiontoken: Option<Any>,
    pub credentialsconfigpath: Option<Any>,
    pub multipartcopychunksize: Option<Any>,
    pub multipartcopymaxconcurrency: Option<Any>,
    pub multipartcopythresholdsize: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystem {
    pub rootdirectory: Option<Text>,
    pub maxthreads: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delete {
    pub enabled: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    pub uploadpurging: Option<UploadPurging>,
    pub readonly: Option<ReadOnly>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadPurging {
    pub enabled: Option<Flag>,
    pub age: Option<GoDuration>,
    pub interval: Option<GoDuration>,
    pub dryrun: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadOnly {
    pub enabled: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    pub blobdescriptor: Option<Text>,
    /// distribution 2.0's name for `blobdescriptor`, still in LAIN's file.
    pub layerinfo: Option<Text>,
    pub blobdescriptorsize: Option<i64>,
}

/// `storage.engine`: the pack engine's own settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// A pack stops taking records at this size.
    pub packsealsize: Option<Size>,
    /// RocksDB's block cache.
    pub blockcache: Option<Size>,
    /// RocksDB's memtables, all column families together.
    pub memtable: Option<Size>,
    /// At most this many upload sessions at once.
    pub uploadsessions: Option<u64>,
    /// Memory for upload bodies in flight, all requests together.
    pub uploadmemory: Option<Size>,
    /// At most this many of the upload sessions per client address.
    pub uploadsessionsperclient: Option<u64>,
    /// While clients commit, compaction copies at most this many bytes a second.
    pub compactionrate: Option<Size>,
    /// Free space that clients' bytes may not take (0: none).
    pub reservedspace: Option<Size>,
    pub collection: Option<Collection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Collection {
    pub grace: Option<GoDuration>,
    pub compactthreshold: Option<f64>,
}

/// distribution allows one of these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub token: Option<Token>,
    pub htpasswd: Option<Htpasswd>,
    pub silly: Option<Silly>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Token {
    pub realm: Option<Text>,
    pub service: Option<Text>,
    pub issuer: Option<Text>,
    pub rootcertbundle: Option<Text>,
    pub autoredirect: Option<Flag>,
    pub autoredirectpath: Option<Text>,
    pub jwks: Option<Text>,
    pub signingalgorithms: Option<List>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    pub realm: Option<Text>,
    pub path: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Silly {
    pub realm: Option<Text>,
    pub service: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Middleware {
    pub name: Option<Text>,
    pub disabled: Option<Flag>,
    pub options: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reporting {
    pub bugsnag: Option<Any>,
    pub newrelic: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub addr: Option<Text>,
    pub net: Option<Text>,
    pub host: Option<Text>,
    pub prefix: Option<Text>,
    pub secret: Option<Text>,
    pub relativeurls: Option<Flag>,
    pub draintimeout: Option<GoDuration>,
    pub tls: Option<Tls>,
    /// Header name -> values.
    pub headers: Option<BTreeMap<String, List>>,
    pub debug: Option<Debug>,
    pub http2: Option<Http2>,
    pub h2c: Option<Any>,
    /// This registry's own: limits on open connections.
    pub connections: Option<Connections>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connections {
    /// All clients together.
    pub max: Option<u64>,
    /// One client address.
    pub perclient: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub certificate: Option<Text>,
    pub key: Option<Text>,
    pub clientcas: Option<List>,
    pub clientauth: Option<Text>,
    pub minimumtls: Option<Text>,
    pub ciphersuites: Option<List>,
    pub letsencrypt: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Debug {
    pub addr: Option<Text>,
    pub prometheus: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2 {
    pub disabled: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub events: Option<Events>,
    pub endpoints: Option<Vec<Endpoint>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    pub includereferences: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoint {
    pub name: Option<Text>,
    pub disabled: Option<Flag>,
    pub url: Option<Text>,
    pub headers: Option<BTreeMap<String, List>>,
    pub timeout: Option<GoDuration>,
    pub threshold: Option<i64>,
    pub backoff: Option<GoDuration>,
    pub ignoredmediatypes: Option<List>,
    pub ignore: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redis {
    pub addr: Option<Text>,
    pub addrs: Option<List>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub db: Option<i64>,
    pub tls: Option<Any>,
    pub dialtimeout: Option<GoDuration>,
    pub readtimeout: Option<GoDuration>,
    pub writetimeout: Option<GoDuration>,
    pub pool: Option<Any>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub storagedriver: Option<Any>,
    pub file: Option<Vec<Any>>,
    pub http: Option<Vec<Any>>,
    pub tcp: Option<Vec<Any>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    pub maxentries: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    pub remoteurl: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub ttl: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compatibility {
    pub schema1: Option<Schema1>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schema1 {
    pub signingkeyfile: Option<Text>,
    pub enabled: Option<Flag>,
    /// distribution 2.x's.
    pub disablesignaturestore: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Validation {
    pub enabled: Option<Flag>,
    pub disabled: Option<Flag>,
    pub manifests: Option<Any>,
}

/// `etcd`: this registry's. Where live settings come from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Etcd {
    /// URLs (`http://127.0.0.1:2379`); a comma-separated string in the environment.
    pub endpoints: Option<List>,
    /// `v3` (default) or `v2` (the HTTP keys API of older LAIN clusters).
    pub api: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    /// The LAIN auth key: JSON `{"realm", "issuer", "service"}`.
    pub authkey: Option<Text>,
    /// A YAML fragment laid over the file.
    pub configkey: Option<Text>,
    pub tls: Option<EtcdTls>,
    /// How long a request to etcd may take.
    pub timeout: Option<GoDuration>,
    /// Cluster mode: where the registry's metadata keys are.
    pub prefix: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdTls {
    pub ca: Option<Text>,
    pub certificate: Option<Text>,
    pub key: Option<Text>,
}
