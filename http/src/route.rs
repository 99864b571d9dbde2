//! From a request path to an endpoint. Paths are read from their end, because a
//! repository name may contain any number of components, including ones called
//! `blobs`, `manifests` or `tags`.

/// The API's endpoints; names and references are percent-decoded but not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Route {
    /// The route `path` names, or `None` for a path outside the API.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = match path.strip_prefix("/v2") {
            Some("" | "/") => return Some(Route::Base),
            Some(rest) => rest.strip_prefix('/')?,
            None => return None,
        };
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        // Split first, then decode: an escaped '/' stays inside its segment. The last
        // segment (a reference, digest or session id) is decoded whole, so `x%2Fy` is
        // an invalid tag. A name's segments are decoded only where RFC 3986 says an
        // escape is the same URI as the character (letters, digits, `-._~`): `%61`
        // is `a`, while `lib%2Fapp` stays an invalid name, never `lib/app`.
        let raw: Vec<&str> = rest.split('/').collect();
        let n = raw.len();
        let last = percent_decode(raw[n - 1])?;
        let segments: Vec<String> = raw.iter().map(|s| decode_unreserved(s)).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let name = |end: usize| (end > 0).then(|| segments[..end].join("/"));
        if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
            let name = name(n - 3)?;
            return Some(if last.is_empty() {
                Route::UploadStart { name }
            } else {
                Route::Upload { name, id: last }
            });
        }
        if n < 2 {
            return None;
        }
        let name = name(n - 2)?;
        match (segments[n - 2], segments[n - 1]) {
            ("tags", "list") => Some(Route::Tags { name }),
            ("blobs", "uploads") => Some(Route::UploadStart { name }),
            (_, "") => None,
            ("manifests", _) => Some(Route::Manifest {
                name,
                reference: last,
            }),
            ("blobs", _) => Some(Route::Blob { name, digest: last }),
            ("referrers", _) => Some(Route::Referrers { name, digest: last }),
            _ => None,
        }
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(escaped_byte(bytes, i)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The byte the `%XX` escape at `at` stands for, if it is one.
fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// RFC 3986 2.3: letters, digits and `-._~`, which an escape never changes.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// Escapes every byte of `text` but unreserved characters (RFC 3986 2.3), for a query
/// value that [`query_pairs`] gives back as it was.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes the `%XX` escapes of unreserved characters (RFC 3986 2.3) and keeps every
/// other escape as it is.
fn decode_unreserved(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| escaped_byte(bytes, i))
            .flatten()
            .filter(|b| is_unreserved(*b));
        match escaped {
            Some(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            None => {
                // Whole characters: a name is ASCII if it is valid at all.
                let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// The query string as decoded `(key, value)` pairs (`+` is a space, as in forms).
/// Pairs that do not decode are dropped.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            Some((decode(key)?, decode(value)?))
        })
        .collect()
}

/// The first value of `key`.
pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn an_encoded_query_value_decodes_to_itself() {
        for text in ["application/vnd.example+json", "a b&c=d%", "plain", "é"] {
            let query = format!("x={}", percent_encode(text));
            assert_eq!(query_pairs(Some(&query)), [(s("x"), s(text))]);
        }
    }

    #[test]
    fn routes() {
        use Route::*;
        let d = "sha256:abc";
        let cases = [
            ("/v2/", Some(Base)),
            ("/v2", Some(Base)),
            ("/v2/_catalog", Some(Catalog)),
            ("/v2/a/b/tags/list", Some(Tags { name: s("a/b") })),
            (
                "/v2/a/manifests/latest",
                Some(Manifest {
                    name: s("a"),
                    reference: s("latest"),
                }),
            ),
            (
                "/v2/x/manifests/manifests/v1",
                Some(Manifest {
                    name: s("x/manifests"),
                    reference: s("v1"),
                }),
            ),
            (
                "/v2/a/blobs/sha256:abc",
                Some(Blob {
                    name: s("a"),
                    digest: s(d),
                }),
            ),
            (
                "/v2/a/blobs/sha256%3Aabc",
                Some(Blob {
                    name: s("a"),
                    digest: s(d),
                }),
            ),
            (
                "/v2/a/blobs/blobs/sha256:abc",
                Some(Blob {
                    name: s("a/blobs"),
                    digest: s(d),
                }),
            ),
            (
                "/v2/a/b/blobs/uploads/",
                Some(UploadStart { name: s("a/b") }),
            ),
            ("/v2/a/blobs/uploads", Some(UploadStart { name: s("a") })),
            (
                "/v2/a/blobs/uploads/u-1",
                Some(Upload {
                    name: s("a"),
                    id: s("u-1"),
                }),
            ),
            (
                "/v2/a/referrers/sha256:abc",
                Some(Referrers {
                    name: s("a"),
                    digest: s(d),
                }),
            ),
            ("/v2/blobs/sha256:abc", None),
            ("/v2/blobs/uploads/", None),
            ("/v2/a/manifests/", None),
            ("/v2/a", None),
            ("/v2/a/unknown/x", None),
            ("/v3/", None),
            ("/", None),
            ("/v2x", None),
            ("/v2/a/blobs/%zz", None),
            ("/v2/a/blobs/%ff", None),
            (
                "/v2/a/manifests/x%2Fy",
                Some(Manifest {
                    name: s("a"),
                    reference: s("x/y"),
                }),
            ),
            // An escaped '/' is not decoded in a name: it fails the grammar later.
            ("/v2/a%2Fb/tags/list", Some(Tags { name: s("a%2Fb") })),
            ("/v2/%61/%2e%2e/tags/list", Some(Tags { name: s("a/..") })),
            ("/v2/%c3%a9/tags/list", Some(Tags { name: s("%c3%a9") })),
        ];
        for (path, expected) in cases {
            assert_eq!(Route::parse(path), expected, "{path}");
        }
    }

    #[test]
    fn queries() {
        let pairs = query_pairs(Some("mount=sha256%3Aab&from=a%2Fb&x&n=1+2&bad=%zz"));
        assert_eq!(query_value(&pairs, "mount"), Some("sha256:ab"));
        assert_eq!(query_value(&pairs, "from"), Some("a/b"));
        assert_eq!(query_value(&pairs, "x"), Some(""));
        assert_eq!(query_value(&pairs, "n"), Some("1 2"));
        assert_eq!(query_value(&pairs, "bad"), None);
        assert!(query_pairs(None).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(path in "\\PC{0,200}", query in "\\PC{0,200}") {
            let _ = Route::parse(&path);
            let _ = query_pairs(Some(&query));
        }
    }
}
