//! The configuration `registry serve` runs with: docker/distribution's `config.yml`
//! (or the embedded default when no file is given), then the `REGISTRY_*` environment
//! overrides.
//!
//! Only the keys this registry applies are read: `http.addr` (`http.net` must be tcp),
//! `storage.filesystem.rootdirectory`, `storage.delete.enabled` and
//! `storage.maintenance.uploadpurging`. Every other key is accepted and named once in the
//! log (see [`Config::log_not_applied`]); it is never fatal. A key we read that holds the
//! wrong type or an unusable value is an [`Error`] naming the file and the key.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// `REGISTRY_HTTP_ADDR`: overrides `http.addr`.
pub const ENV_HTTP_ADDR: &str = "REGISTRY_HTTP_ADDR";
/// `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`: overrides `storage.filesystem.rootdirectory`.
pub const ENV_ROOT: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";
/// `REGISTRY_STORAGE_DELETE_ENABLED`: overrides `storage.delete.enabled`.
pub const ENV_DELETE_ENABLED: &str = "REGISTRY_STORAGE_DELETE_ENABLED";

/// distribution's filesystem driver root when a file names none.
const DISTRIBUTION_ROOT: &str = "/var/lib/registry";
/// distribution's upload purging defaults (`uploadPurgeDefaultConfig`): a week, daily.
const DISTRIBUTION_PURGE_AGE: Duration = Duration::from_secs(168 * 3600);
const DISTRIBUTION_PURGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Everything `registry serve` needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, `None` for the embedded default.
    pub file: Option<PathBuf>,
    pub addr: ListenAddr,
    /// The data directory (`storage.filesystem.rootdirectory`).
    pub root: PathBuf,
    /// What the HTTP layer applies.
    pub http: lain_http::Settings,
    /// Keys present in the file that this registry does not apply, as dotted paths
    /// (`auth`, `http.headers`, `storage.cache`, ...), sorted.
    pub not_applied: Vec<String>,
    /// `storage.maintenance.uploadpurging.dryrun: true` was asked for; purging is not
    /// simulated, so this is only logged.
    pub purge_dry_run: bool,
    /// `storage.engine.collection`: garbage collection's defaults.
    pub collect: CollectSettings,
}

/// `storage.engine.collection` (this registry's own keys): `grace` (a duration, zero
/// allowed) and `compactthreshold` (a fraction from 0 to 1). The command line's
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

/// Where a faulty value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "configuration file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {} is not valid YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{origin}: `{key}` must be {expected}, found {found}")]
    WrongType {
        origin: Origin,
        /// Dotted path of the key; `(top level)` for the document itself.
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{origin}: `{key}`: {value:?} is not a listening address: {reason}")]
    Addr {
        origin: Origin,
        key: &'static str,
        value: String,
        reason: AddrError,
    },
    #[error("{origin}: `{key}`: {value:?} is not a duration: {reason}")]
    Duration {
        origin: Origin,
        key: &'static str,
        value: String,
        reason: DurationError,
    },
    #[error("{origin}: `{key}`: {value:?} is not a boolean (true or false)")]
    Bool {
        origin: Origin,
        key: &'static str,
        value: String,
    },
    #[error("{origin}: `{key}` is empty")]
    Empty { origin: Origin, key: &'static str },
    #[error("{origin}: `http.net` is {value:?}; only tcp is supported")]
    Network { origin: Origin, value: String },
}

/// Why an `http.addr` value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("expected host:port or :port")]
    MissingPort,
    #[error("the port is not a number from 0 to 65535")]
    BadPort,
    #[error("an IPv6 host must be in brackets, as in [::1]:5000")]
    UnbracketedIpv6,
    #[error("the host is not a valid IP address or host name")]
    BadHost,
}

/// Why a Go duration (`time.ParseDuration`) is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a number with a unit (ns, us, ms, s, m, h), as in 168h or 1h30m")]
    Syntax,
    #[error("unknown unit {0:?}; the units are ns, us, ms, s, m, h")]
    UnknownUnit(String),
    #[error("a negative duration is meaningless here")]
    Negative,
    #[error("out of range")]
    Overflow,
    #[error("must be longer than zero")]
    Zero,
}

/// The address `http.addr` names. distribution (Go) accepts `host:port`, `:port` (all
/// interfaces) and `[v6]:port`; the host may be a name, resolved when binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// Without brackets; empty means all interfaces.
    host: String,
    port: u16,
}

impl ListenAddr {
    pub fn new(host: &str, port: u16) -> ListenAddr {
        ListenAddr {
            host: host.to_owned(),
            port,
        }
    }

    /// The host to bind: all IPv4 interfaces for `:port`, as a `(host, port)` pair that
    /// `tokio::net::TcpListener::bind` resolves.
    pub fn bind_target(&self) -> (&str, u16) {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        (host, self.port)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = self.bind_target();
        if host.contains(':') {
            write!(f, "[{host}]:{port}")
        } else {
            write!(f, "{host}:{port}")
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<ListenAddr, AddrError> {
        let (host, port) = s.rsplit_once(':').ok_or(AddrError::MissingPort)?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(if port.is_empty() || host.ends_with(':') {
                AddrError::MissingPort
            } else {
                AddrError::BadPort
            });
        }
        let port: u16 = port.parse().map_err(|_| AddrError::BadPort)?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddrError::BadHost)?;
            inner.parse::<Ipv6Addr>().map_err(|_| AddrError::BadHost)?;
            inner
        } else if host.contains(':') {
            return Err(AddrError::UnbracketedIpv6);
        } else if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            host
        } else {
            return Err(AddrError::BadHost);
        };
        Ok(ListenAddr::new(host, port))
    }
}

/// Parses a Go duration as `time.ParseDuration` does ("168h", "30m", "1h30m", "1.5h",
/// "500ms", "0"), refusing negative values.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    // Go's limit: an int64 of nanoseconds.
    const MAX_NANOS: u128 = i64::MAX as u128;
    let mut rest = match s.as_bytes().first() {
        Some(b'-') => {
            return if &s[1..] == "0" {
                Ok(Duration::ZERO)
            } else {
                Err(DurationError::Negative)
            };
        }
        Some(b'+') => &s[1..],
        Some(_) => s,
        None => return Err(DurationError::Syntax),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Syntax);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(DurationError::Syntax);
        }
        let unit_len = after
            .bytes()
            .take_while(|b| *b != b'.' && !b.is_ascii_digit())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => return Err(DurationError::Syntax),
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        let mut whole: u128 = 0;
        for digit in int_digits.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(digit - b'0')))
                .filter(|w| *w <= MAX_NANOS)
                .ok_or(DurationError::Overflow)?;
        }
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or(DurationError::Overflow)?;
        // The fraction, to the nanosecond: digits past the 18th cannot matter.
        let mut scale: u128 = 1;
        let mut frac: u128 = 0;
        for digit in frac_digits.bytes().take(18) {
            frac = frac * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        nanos += frac * unit_nanos / scale;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or(DurationError::Overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// A duration the way an operator writes one: "168h", "1h30m", "90s", "1.5s".
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A boolean as Go's yaml.v2 reads one (it still takes YAML 1.1's yes/no/on/off).
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Some(false)
        }
        _ => None,
    }
}

impl Config {
    /// `registry serve` without a file: loopback, `./registry-data`, deletes enabled.
    pub fn embedded_default() -> Config {
        Config {
            file: None,
            addr: ListenAddr::new("127.0.0.1", 5000),
            root: PathBuf::from("registry-data"),
            http: lain_http::Settings::default(),
            not_applied: Vec::new(),
            purge_dry_run: false,
            collect: CollectSettings::default(),
        }
    }

    /// The file (or the embedded default), then the environment overrides.
    pub fn load(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let mut config = match file {
            Some(path) => Config::read(path)?,
            None => Config::embedded_default(),
        };
        config.apply_env(lookup)?;
        Ok(config)
    }

    /// Reads a distribution `config.yml`.
    pub fn read(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses the text of a distribution `config.yml`; `path` names it in errors.
    /// Missing keys take distribution's defaults: `:5000`, `/var/lib/registry`, deletes
    /// disabled, idle uploads purged after 168h, checked every 24h.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let document: Yaml = serde_saphyr::from_str(text).map_err(|source| Error::Yaml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let mut reader = Reader {
            origin: Origin::File(path.to_owned()),
            not_applied: Vec::new(),
        };
        let mut config = Config {
            file: Some(path.to_owned()),
            addr: ListenAddr::new("", 5000),
            root: PathBuf::from(DISTRIBUTION_ROOT),
            http: lain_http::Settings {
                delete_enabled: false,
                upload_purge_age: DISTRIBUTION_PURGE_AGE,
                upload_purge_interval: Some(DISTRIBUTION_PURGE_INTERVAL),
            },
            not_applied: Vec::new(),
            purge_dry_run: false,
            collect: CollectSettings::default(),
        };
        if document.is_null() {
            return Err(reader.wrong_type("(top level)", "a mapping of keys", &document));
        }
        // `version` is the format's marker: nothing to apply, nothing to report.
        let [_version, http, storage] =
            reader.section(Some(&document), "", ["version", "http", "storage"])?;

        let [addr, net] = reader.section(http, "http", ["addr", "net"])?;
        if let Some(net) = reader.string(net, "http.net")?
            && net != "tcp"
        {
            return Err(Error::Network {
                origin: reader.origin.clone(),
                value: net,
            });
        }
        if let Some(addr) = reader.string(addr, "http.addr")? {
            config.addr = parse_addr(&addr, reader.origin.clone(), "http.addr")?;
        }

        let [filesystem, delete, maintenance, engine] = reader.section(
            storage,
            "storage",
            ["filesystem", "delete", "maintenance", "engine"],
        )?;
        let [collection] = reader.section(engine, "storage.engine", ["collection"])?;
        let [grace, threshold] = reader.section(
            collection,
            "storage.engine.collection",
            ["grace", "compactthreshold"],
        )?;
        if let Some(grace) = reader.string(grace, "storage.engine.collection.grace")? {
            config.collect.grace = parse_go_duration(&grace).map_err(|reason| Error::Duration {
                origin: reader.origin.clone(),
                key: "storage.engine.collection.grace",
                value: grace.clone(),
                reason,
            })?;
        }
        match threshold {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Float(f)) if (0.0..=1.0).contains(f) => {
                config.collect.compact_threshold = *f
            }
            Some(Yaml::Int(i)) if (0..=1).contains(i) => {
                config.collect.compact_threshold = *i as f64
            }
            Some(other) => {
                return Err(reader.wrong_type(
                    "storage.engine.collection.compactthreshold",
                    "a fraction from 0 to 1",
                    other,
                ));
            }
        }
        let [root] = reader.section(filesystem, "storage.filesystem", ["rootdirectory"])?;
        if let Some(root) = reader.string(root, "storage.filesystem.rootdirectory")? {
            if root.is_empty() {
                return Err(Error::Empty {
                    origin: reader.origin,
                    key: "storage.filesystem.rootdirectory",
                });
            }
            config.root = PathBuf::from(root);
        }
        let [enabled] = reader.section(delete, "storage.delete", ["enabled"])?;
        if let Some(enabled) = reader.bool(enabled, "storage.delete.enabled")? {
            config.http.delete_enabled = enabled;
        }
        let [purging] = reader.section(maintenance, "storage.maintenance", ["uploadpurging"])?;
        let [enabled, age, interval, dry_run] = reader.section(
            purging,
            "storage.maintenance.uploadpurging",
            ["enabled", "age", "interval", "dryrun"],
        )?;
        let enabled = reader
            .bool(enabled, "storage.maintenance.uploadpurging.enabled")?
            .unwrap_or(true);
        if let Some(age) = reader.duration(age, "storage.maintenance.uploadpurging.age")? {
            config.http.upload_purge_age = age;
        }
        let interval = reader
            .duration(interval, "storage.maintenance.uploadpurging.interval")?
            .unwrap_or(DISTRIBUTION_PURGE_INTERVAL);
        config.http.upload_purge_interval = enabled.then_some(interval);
        config.purge_dry_run = reader
            .bool(dry_run, "storage.maintenance.uploadpurging.dryrun")?
            .unwrap_or(false);

        config.not_applied = reader.not_applied;
        config.not_applied.sort();
        Ok(config)
    }

    /// Applies `REGISTRY_HTTP_ADDR`, `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` and
    /// `REGISTRY_STORAGE_DELETE_ENABLED`, as distribution does, over the file or the
    /// embedded default. `lookup` reads a variable (`std::env::var(name).ok()` in the
    /// binary); a variable set to the empty string counts as unset.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        let get = |name| lookup(name).filter(|value| !value.is_empty());
        if let Some(addr) = get(ENV_HTTP_ADDR) {
            self.addr = parse_addr(&addr, Origin::Env(ENV_HTTP_ADDR), "http.addr")?;
        }
        if let Some(root) = get(ENV_ROOT) {
            self.root = PathBuf::from(root);
        }
        if let Some(enabled) = get(ENV_DELETE_ENABLED) {
            self.http.delete_enabled = parse_bool(&enabled).ok_or_else(|| Error::Bool {
                origin: Origin::Env(ENV_DELETE_ENABLED),
                key: "storage.delete.enabled",
                value: enabled.clone(),
            })?;
        }
        Ok(())
    }

    /// Logs, once, the file's keys that are accepted but not applied.
    pub fn log_not_applied(&self) {
        if let Some(file) = &self.file
            && !self.not_applied.is_empty()
        {
            tracing::warn!(
                file = %file.display(),
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

fn parse_addr(value: &str, origin: Origin, key: &'static str) -> Result<ListenAddr, Error> {
    value.parse().map_err(|reason| Error::Addr {
        origin,
        key,
        value: value.to_owned(),
        reason,
    })
}

/// Walks the parsed document, collecting the keys it does not read.
struct Reader {
    origin: Origin,
    not_applied: Vec<String>,
}

impl Reader {
    /// The values of the `known` keys of the mapping at `path` (absent or null: all
    /// `None`); every other key is recorded as not applied.
    fn section<'v, const N: usize>(
        &mut self,
        value: Option<&'v Yaml>,
        path: &str,
        known: [&str; N],
    ) -> Result<[Option<&'v Yaml>; N], Error> {
        let mut found = [None; N];
        let entries = match value {
            None | Some(Yaml::Null) => return Ok(found),
            Some(Yaml::Map(entries)) => entries,
            Some(other) => return Err(self.wrong_type(path, "a mapping of keys", other)),
        };
        for (key, value) in entries {
            let key = key.as_key();
            match known.iter().position(|k| *k == key) {
                Some(i) => found[i] = Some(value),
                None if path.is_empty() => self.not_applied.push(key),
                None => self.not_applied.push(format!("{path}.{key}")),
            }
        }
        Ok(found)
    }

    /// A string value; integers are taken as their digits, as yaml.v2 does for a Go
    /// string field.
    fn string(&self, value: Option<&Yaml>, key: &str) -> Result<Option<String>, Error> {
        match value {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::Str(s)) => Ok(Some(s.clone())),
            Some(Yaml::Int(i)) => Ok(Some(i.to_string())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn bool(&self, value: Option<&Yaml>, key: &str) -> Result<Option<bool>, Error> {
        match value {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::Bool(b)) => Ok(Some(*b)),
            Some(Yaml::Str(s)) if parse_bool(s).is_some() => Ok(parse_bool(s)),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    /// A Go duration string, longer than zero.
    fn duration(&self, value: Option<&Yaml>, key: &'static str) -> Result<Option<Duration>, Error> {
        let text = match value {
            None | Some(Yaml::Null) => return Ok(None),
            Some(Yaml::Str(s)) => s,
            Some(other) => {
                return Err(self.wrong_type(key, "a duration string such as \"24h\"", other));
            }
        };
        let error = |reason| Error::Duration {
            origin: self.origin.clone(),
            key,
            value: text.clone(),
            reason,
        };
        match parse_go_duration(text) {
            Ok(Duration::ZERO) => Err(error(DurationError::Zero)),
            Ok(duration) => Ok(Some(duration)),
            Err(reason) => Err(error(reason)),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Yaml) -> Error {
        Error::WrongType {
            origin: self.origin.clone(),
            key: if key.is_empty() { "(top level)" } else { key }.to_owned(),
            expected,
            found: found.describe(),
        }
    }
}

/// A YAML document as parsed, before any key is interpreted.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Yaml>),
    /// In document order.
    Map(Vec<(Yaml, Yaml)>),
}

impl Yaml {
    fn is_null(&self) -> bool {
        matches!(self, Yaml::Null)
    }

    /// What a mismatched value is, for error messages.
    fn describe(&self) -> String {
        match self {
            Yaml::Null => "nothing (null)".to_owned(),
            Yaml::Bool(b) => format!("the boolean {b}"),
            Yaml::Int(i) => format!("the integer {i}"),
            Yaml::Float(f) => format!("the number {f}"),
            Yaml::Str(s) => format!("the string {s:?}"),
            Yaml::Seq(_) => "a list".to_owned(),
            Yaml::Map(_) => "a mapping".to_owned(),
        }
    }

    /// A mapping key as text (keys are strings in any real configuration).
    fn as_key(&self) -> String {
        match self {
            Yaml::Null => "~".to_owned(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) => f.to_string(),
            Yaml::Str(s) => s.clone(),
            Yaml::Seq(_) | Yaml::Map(_) => "(complex key)".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Yaml, D::Error> {
        deserializer.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Yaml, E> {
        Ok(Yaml::Int(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Yaml, E> {
        Ok(i128::try_from(v).map_or(Yaml::Float(v as f64), Yaml::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::Str(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Yaml, E> {
        Ok(Yaml::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Yaml::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/registry/config.yml"))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("168h"), 168 * HOUR);
        assert_eq!(ok("24h"), 24 * HOUR);
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(
            ok("2h45m30.5s"),
            Duration::from_millis((2 * 3600 + 45 * 60 + 30) * 1000 + 500)
        );
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("+1s"), Duration::from_secs(1));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("2562047h"), 2_562_047 * HOUR);

        let err = |s: &str| parse_go_duration(s).expect_err(s);
        assert_eq!(err(""), DurationError::Syntax);
        assert_eq!(err("24"), DurationError::Syntax);
        assert_eq!(err("h"), DurationError::Syntax);
        assert_eq!(err("."), DurationError::Syntax);
        assert_eq!(err("1h 30m"), DurationError::UnknownUnit("h ".into()));
        assert_eq!(err("3d"), DurationError::UnknownUnit("d".into()));
        assert_eq!(err("-1h"), DurationError::Negative);
        assert_eq!(err("2562048h"), DurationError::Overflow);
        assert_eq!(err("99999999999999999999999h"), DurationError::Overflow);
    }

    #[test]
    fn durations_print_as_operators_write_them() {
        assert_eq!(format_duration(168 * HOUR), "168h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for s in ["168h", "1h30m", "10m", "2h45m30.25s"] {
            assert_eq!(format_duration(parse_go_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn listen_addresses() {
        let ok = |s: &str| {
            s.parse::<ListenAddr>()
                .unwrap_or_else(|e| panic!("{s}: {e}"))
        };
        assert_eq!(ok(":5000"), ListenAddr::new("", 5000));
        assert_eq!(ok(":5000").bind_target(), ("0.0.0.0", 5000));
        assert_eq!(ok(":5000").to_string(), "0.0.0.0:5000");
        assert_eq!(ok("127.0.0.1:0"), ListenAddr::new("127.0.0.1", 0));
        assert_eq!(ok("localhost:5000").bind_target(), ("localhost", 5000));
        assert_eq!(ok("[::1]:443").bind_target(), ("::1", 443));
        assert_eq!(ok("[::1]:443").to_string(), "[::1]:443");
        assert_eq!(
            ok("registry.lain.local:80").bind_target(),
            ("registry.lain.local", 80)
        );

        let err = |s: &str| s.parse::<ListenAddr>().expect_err(s);
        assert_eq!(err("5000"), AddrError::MissingPort);
        assert_eq!(err("localhost"), AddrError::MissingPort);
        assert_eq!(err("localhost:"), AddrError::MissingPort);
        assert_eq!(err(":65536"), AddrError::BadPort);
        assert_eq!(err(":http"), AddrError::BadPort);
        assert_eq!(err(":-1"), AddrError::BadPort);
        assert_eq!(err("::1:5000"), AddrError::UnbracketedIpv6);
        assert_eq!(err("[::1:5000"), AddrError::BadHost);
        assert_eq!(err("[nope]:5000"), AddrError::BadHost);
        assert_eq!(err("a b:5000"), AddrError::BadHost);
        assert_eq!(err("/run/registry.sock"), AddrError::MissingPort);
    }

    #[test]
    fn collection_defaults_come_from_storage_engine_collection() {
        let config = parse("version: 0.1\n").unwrap();
        assert_eq!(config.collect, CollectSettings::default());
        let config = parse(
            "storage:\n  engine:\n    collection:\n      grace: 10m\n      compactthreshold: 0.5\n",
        )
        .unwrap();
        assert_eq!(config.collect.grace, Duration::from_secs(600));
        assert_eq!(config.collect.compact_threshold, 0.5);
        let zero = parse(
            "storage:\n  engine:\n    collection:\n      grace: 0s\n      compactthreshold: 0\n",
        )
        .unwrap();
        assert_eq!(zero.collect.grace, Duration::ZERO);
        assert_eq!(zero.collect.compact_threshold, 0.0);
        for bad in [
            "storage:\n  engine:\n    collection:\n      compactthreshold: 1.5\n",
            "storage:\n  engine:\n    collection:\n      compactthreshold: lots\n",
            "storage:\n  engine:\n    collection:\n      grace: soon\n",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains("storage.engine.collection."), "{e}");
        }
    }

    /// A LAIN-style distribution configuration, with every section distribution knows.
    const LAIN_CONFIG: &str = r#"
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
    maxthreads: 100
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 72h
      interval: 1h30m
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  net: tcp
  secret: asecretforlocaldevelopment
  relativeurls: false
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
      path: /metrics
  http2:
    disabled: false
auth:
  token:
    realm: http://console.lain.local/api/v1/authorize/registry/
    service: lain.local
    issuer: auth server
    rootcertbundle: /certs/auth.crt
    autoredirect: false
notifications:
  events:
    includereferences: true
  endpoints:
    - name: console
      url: http://console.lain.local/api/v1/notify/
      headers:
        Authorization: [Bearer secret]
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
redis:
  addr: localhost:6379
  db: 0
validation:
  disabled: true
"#;

    #[test]
    fn lain_config_file() {
        let config = parse(LAIN_CONFIG).expect("parses");
        assert_eq!(config.addr, ListenAddr::new("", 5000));
        assert_eq!(config.root, PathBuf::from("/var/lib/registry"));
        assert!(config.http.delete_enabled);
        assert_eq!(config.http.upload_purge_age, 72 * HOUR);
        assert_eq!(
            config.http.upload_purge_interval,
            Some(Duration::from_secs(5400))
        );
        assert!(!config.purge_dry_run);
        assert_eq!(
            config.not_applied,
            [
                "auth",
                "health",
                "http.debug",
                "http.headers",
                "http.http2",
                "http.relativeurls",
                "http.secret",
                "log",
                "notifications",
                "proxy",
                "redis",
                "storage.cache",
                "storage.filesystem.maxthreads",
                "storage.maintenance.readonly",
                "storage.redirect",
                "validation",
            ]
        );
        assert_eq!(
            config.file.as_deref(),
            Some(Path::new("/etc/registry/config.yml"))
        );
    }

    #[test]
    fn distribution_defaults_when_keys_are_missing() {
        let config = parse("version: 0.1\nstorage:\n  s3:\n    bucket: b\n").expect("parses");
        assert_eq!(config.addr, ListenAddr::new("", 5000));
        assert_eq!(config.root, PathBuf::from(DISTRIBUTION_ROOT));
        assert!(
            !config.http.delete_enabled,
            "deletes are off unless enabled"
        );
        assert_eq!(config.http.upload_purge_age, 168 * HOUR);
        assert_eq!(config.http.upload_purge_interval, Some(24 * HOUR));
        assert_eq!(config.not_applied, ["storage.s3"]);

        // Empty sections are as good as absent.
        let config = parse("http:\nstorage:\n  delete:\n  maintenance:\n").expect("parses");
        assert!(!config.http.delete_enabled);
        assert!(config.not_applied.is_empty());
    }

    #[test]
    fn upload_purging_settings() {
        let purging = |body: &str| {
            parse(&format!(
                "storage:\n  maintenance:\n    uploadpurging:\n{body}"
            ))
        };
        let config = purging("      enabled: false\n      age: 1h\n      interval: 1h\n").unwrap();
        assert_eq!(config.http.upload_purge_interval, None);

        // Missing age and interval fall back to distribution's defaults.
        let config = purging("      enabled: true\n").unwrap();
        assert_eq!(config.http.upload_purge_age, 168 * HOUR);
        assert_eq!(config.http.upload_purge_interval, Some(24 * HOUR));

        let config = purging("      age: 30m\n      dryrun: true\n      extra: 1\n").unwrap();
        assert_eq!(config.http.upload_purge_age, Duration::from_secs(1800));
        assert_eq!(config.http.upload_purge_interval, Some(24 * HOUR));
        assert!(config.purge_dry_run);
        assert_eq!(
            config.not_applied,
            ["storage.maintenance.uploadpurging.extra"]
        );

        let error = purging("      interval: 0s\n").unwrap_err();
        assert!(
            matches!(&error, Error::Duration { reason: DurationError::Zero, key, .. } if *key == "storage.maintenance.uploadpurging.interval"),
            "{error}"
        );
        let error = purging("      age: 7d\n").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("storage.maintenance.uploadpurging.age"),
            "{message}"
        );
        assert!(message.contains("\"7d\""), "{message}");
        assert!(message.contains("/etc/registry/config.yml"), "{message}");
    }

    #[test]
    fn yaml_11_booleans_and_integer_strings_as_yaml_v2_reads_them() {
        let config = parse("storage:\n  delete:\n    enabled: yes\n").unwrap();
        assert!(config.http.delete_enabled);
        let config = parse("storage:\n  delete:\n    enabled: \"off\"\n").unwrap();
        assert!(!config.http.delete_enabled);
        let config = parse("storage:\n  filesystem:\n    rootdirectory: 2024\n").unwrap();
        assert_eq!(config.root, PathBuf::from("2024"));
    }

    #[test]
    fn wrong_types_name_the_file_and_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "storage:\n  delete:\n    enabled: 1\n",
                "storage.delete.enabled",
            ),
            (
                "storage:\n  delete:\n    enabled: maybe\n",
                "storage.delete.enabled",
            ),
            ("storage:\n  delete: true\n", "storage.delete"),
            ("http:\n  addr: [\":5000\"]\n", "http.addr"),
            ("http:\n  addr: {port: 5000}\n", "http.addr"),
            ("http: :5000\n", "http"),
            (
                "storage:\n  filesystem:\n    rootdirectory: true\n",
                "storage.filesystem.rootdirectory",
            ),
            (
                "storage:\n  maintenance:\n    uploadpurging:\n      age: 24\n",
                "storage.maintenance.uploadpurging.age",
            ),
            (
                "storage:\n  maintenance:\n    uploadpurging:\n      enabled: 'sure'\n",
                "storage.maintenance.uploadpurging.enabled",
            ),
            (
                "storage:\n  maintenance:\n    uploadpurging:\n      dryrun: []\n",
                "storage.maintenance.uploadpurging.dryrun",
            ),
            (
                "storage:\n  maintenance:\n    uploadpurging: true\n",
                "storage.maintenance.uploadpurging",
            ),
            ("- version\n- 0.1\n", "(top level)"),
            ("", "(top level)"),
        ];
        for (text, key) in cases {
            let error = parse(text).expect_err(text);
            assert!(
                matches!(&error, Error::WrongType { key: k, origin: Origin::File(_), .. } if k == key),
                "{text:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.contains("/etc/registry/config.yml"), "{message}");
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
        let message = parse("storage:\n  delete:\n    enabled: maybe\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "configuration file /etc/registry/config.yml: `storage.delete.enabled` must be \
             true or false, found the string \"maybe\""
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let error = parse("http:\n  addr: localhost\n").unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Addr {
                    key: "http.addr",
                    reason: AddrError::MissingPort,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("/etc/registry/config.yml"));
        let error = parse("http:\n  net: unix\n  addr: /run/registry.sock\n").unwrap_err();
        assert!(
            matches!(&error, Error::Network { value, .. } if value == "unix"),
            "{error:?}"
        );
        let error = parse("storage:\n  filesystem:\n    rootdirectory: ''\n").unwrap_err();
        assert!(matches!(&error, Error::Empty { .. }), "{error:?}");
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        for text in [
            "http:\n  addr: :5000\n   net: tcp\n",
            "storage: {filesystem: [\n",
            "a: b\na: c\n",
        ] {
            let error = parse(text).expect_err(text);
            assert!(matches!(&error, Error::Yaml { .. }), "{text:?}: {error:?}");
            let message = error.to_string();
            assert!(message.contains("/etc/registry/config.yml"), "{message}");
            assert!(message.contains("not valid YAML"), "{message}");
        }
        let missing = Config::read(Path::new("/nonexistent/config.yml")).unwrap_err();
        assert!(matches!(missing, Error::Read { .. }));
        assert!(missing.to_string().contains("/nonexistent/config.yml"));
    }

    #[test]
    fn unknown_keys_anywhere_are_accepted() {
        let config = parse(
            "version: 0.1\nfuture: {x: 1}\nhttp:\n  addr: 127.0.0.1:5000\n  tls: {certificate: /c}\n  prefix: /r\nstorage:\n  filesystem: {rootdirectory: /data}\n  tag: {concurrencylimit: 8}\n  delete: {enabled: true, other: x}\n  maintenance: {readonly: {enabled: true}}\n42: numeric key\n",
        )
        .expect("parses");
        assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 5000));
        assert_eq!(config.root, PathBuf::from("/data"));
        assert!(config.http.delete_enabled);
        assert_eq!(
            config.not_applied,
            [
                "42",
                "future",
                "http.prefix",
                "http.tls",
                "storage.delete.other",
                "storage.maintenance.readonly",
                "storage.tag",
            ]
        );
    }

    #[test]
    fn embedded_default_and_env_overrides() {
        let config = Config::load(None, no_env).unwrap();
        assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 5000));
        assert_eq!(config.root, PathBuf::from("registry-data"));
        assert!(config.http.delete_enabled);
        assert_eq!(config.file, None);

        let vars = [
            (ENV_HTTP_ADDR, "127.0.0.1:0"),
            (ENV_ROOT, "/srv/registry"),
            (ENV_DELETE_ENABLED, "false"),
        ];
        let config = Config::load(None, env(&vars)).unwrap();
        assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 0));
        assert_eq!(config.root, PathBuf::from("/srv/registry"));
        assert!(!config.http.delete_enabled);

        // Over a file.
        let mut config = parse(LAIN_CONFIG).unwrap();
        config.apply_env(env(&[(ENV_HTTP_ADDR, ":6000")])).unwrap();
        assert_eq!(config.addr, ListenAddr::new("", 6000));
        assert_eq!(config.root, PathBuf::from("/var/lib/registry"));
        assert!(config.http.delete_enabled);
        config
            .apply_env(env(&[(ENV_ROOT, "/tmp/r"), (ENV_DELETE_ENABLED, "FALSE")]))
            .unwrap();
        assert_eq!(config.root, PathBuf::from("/tmp/r"));
        assert!(!config.http.delete_enabled);
        let mut config = parse("version: 0.1\n").unwrap();
        config
            .apply_env(env(&[(ENV_DELETE_ENABLED, "true")]))
            .unwrap();
        assert!(config.http.delete_enabled);

        // Empty values count as unset.
        let mut config = Config::embedded_default();
        config
            .apply_env(env(&[(ENV_HTTP_ADDR, ""), (ENV_ROOT, "")]))
            .unwrap();
        assert_eq!(config.addr, ListenAddr::new("127.0.0.1", 5000));
        assert_eq!(config.root, PathBuf::from("registry-data"));

        let error = Config::load(None, env(&[(ENV_HTTP_ADDR, "5000")])).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Addr {
                    origin: Origin::Env(ENV_HTTP_ADDR),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("REGISTRY_HTTP_ADDR"), "{error}");
        let error = Config::load(None, env(&[(ENV_DELETE_ENABLED, "sometimes")])).unwrap_err();
        assert!(error.to_string().contains(ENV_DELETE_ENABLED), "{error}");
    }
}
