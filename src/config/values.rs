//! The scalar kinds of distribution's configuration, read as distribution (Go) reads
//! them: listen addresses, Go durations, YAML 1.1 booleans, strings written as numbers,
//! and byte sizes; and the serde types that let the derived model accept them.

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error as _};

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
pub fn parse_bool(s: &str) -> Option<bool> {
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

/// A string field: Go's yaml.v2 also takes a number or a boolean there, as its text
/// (`secret: 12345`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Text(s)),
            serde_json::Value::Number(n) => Ok(Text(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Text(b.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string, found {}",
                describe(&other)
            ))),
        }
    }
}

/// A boolean field, with YAML 1.1's spellings (`yes`, `off`, ...) that Go's yaml.v2
/// and distribution's environment overrides accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(b) => Ok(Flag(b)),
            serde_json::Value::String(s) if parse_bool(&s).is_some() => {
                Ok(Flag(parse_bool(&s).unwrap_or_default()))
            }
            other => Err(D::Error::custom(format!(
                "expected true or false, found {}",
                describe(&other)
            ))),
        }
    }
}

/// A Go duration string ("24h", "1h30m", "500ms").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoDuration, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => parse_go_duration(&s)
                .map(GoDuration)
                .map_err(|e| D::Error::custom(format!("{s:?} is not a duration: {e}"))),
            serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(GoDuration(Duration::ZERO)),
            other => Err(D::Error::custom(format!(
                "expected a duration such as \"30s\" or \"1h30m\", found {}",
                describe(&other)
            ))),
        }
    }
}

/// A size in bytes: a number, or a number with a unit (`64MiB`, `1GiB`, `512KiB`,
/// `1GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Option<Size> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return None,
        };
        number.checked_mul(scale).map(Size)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let size = match &value {
            serde_json::Value::Number(n) => n.as_u64().map(Size),
            serde_json::Value::String(s) => Size::parse(s),
            _ => None,
        };
        size.ok_or_else(|| {
            D::Error::custom(format!(
                "expected a size in bytes such as 1073741824 or \"1GiB\", found {}",
                describe(&value)
            ))
        })
    }
}

/// A list that may also be written as one string of comma-separated items (as an
/// environment variable holds a list: `REGISTRY_ETCD_ENDPOINTS=http://a:2379,http://b:2379`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<List, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(List(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(D::Error::custom(format!(
                        "expected a list of strings, found {} in it",
                        describe(&other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(List),
            other => Err(D::Error::custom(format!(
                "expected a list of strings, found {}",
                describe(&other)
            ))),
        }
    }
}

/// What a mismatched value is, for error messages.
pub fn describe(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "nothing (null)".to_owned(),
        serde_json::Value::Bool(b) => format!("the boolean {b}"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("the string {s:?}"),
        serde_json::Value::Array(_) => "a list".to_owned(),
        serde_json::Value::Object(_) => "a mapping".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sizes() {
        assert_eq!(Size::parse("1GiB"), Some(Size(1 << 30)));
        assert_eq!(Size::parse("64 MiB"), Some(Size(64 << 20)));
        assert_eq!(Size::parse("1000"), Some(Size(1000)));
        assert_eq!(Size::parse("2GB"), Some(Size(2_000_000_000)));
        assert_eq!(Size::parse("1.5GiB"), None);
        assert_eq!(Size::parse("lots"), None);
        assert_eq!(Size::parse("99999999999TiB"), None);
    }
}
