//! The two range headers of the API: `Range: bytes=...` on blob reads, and
//! `Content-Range: <start>-<end>` on upload chunks.

use std::ops::Range;

/// What a read's `Range` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRange {
    /// No usable single range: serve the whole blob (RFC 9110 lets a server ignore
    /// a `Range` it does not support, such as several ranges).
    Whole,
    /// Bytes `start..end` of the blob.
    Part(Range<u64>),
    /// A well-formed range that lies outside the blob.
    Unsatisfiable,
}

/// Resolves `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
pub fn read_range(header: Option<&str>, size: u64) -> ReadRange {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let Some(spec) = header.map(str::trim).and_then(|h| {
        h.get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
            .map(|_| &h[6..])
    }) else {
        return ReadRange::Whole;
    };
    if spec.contains(',') {
        return ReadRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ReadRange::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => ReadRange::Unsatisfiable,
            Some(_) if size == 0 => ReadRange::Unsatisfiable,
            Some(n) => ReadRange::Part(size.saturating_sub(n)..size),
            None => ReadRange::Whole,
        },
        // bytes=a-: from a to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => ReadRange::Part(a..size),
            Some(_) => ReadRange::Unsatisfiable,
            None => ReadRange::Whole,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => ReadRange::Whole,
            (Some(a), Some(_)) if a >= size => ReadRange::Unsatisfiable,
            (Some(a), Some(b)) => ReadRange::Part(a..b.saturating_add(1).min(size)),
            _ => ReadRange::Whole,
        },
        (true, true) => ReadRange::Whole,
    }
}

/// An upload chunk's `Content-Range: <start>-<end>` (inclusive; a `bytes ` or `bytes=`
/// prefix is tolerated) as `(start, end)`, or `None` if malformed.
pub fn content_range(header: &str) -> Option<(u64, u64)> {
    let spec = header.trim();
    let spec = spec
        .strip_prefix("bytes=")
        .or_else(|| spec.strip_prefix("bytes "))
        .unwrap_or(spec);
    // "a-b/total" is the RFC form; the total is not needed.
    let spec = spec.split('/').next().unwrap_or(spec);
    let (start, end) = spec.split_once('-')?;
    let parse = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = (parse(start)?, parse(end)?);
    (start <= end).then_some((start, end))
}

/// The `Range` header value for an upload that has received `received` bytes:
/// `0-<last byte>`, and `0-0` before the first byte, as docker/distribution sends it.
pub fn upload_range(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReadRange::*;

    #[test]
    fn read_ranges() {
        let cases = [
            (None, Whole),
            (Some("bytes=0-9"), Part(0..10)),
            (Some("bytes=5-"), Part(5..100)),
            (Some("bytes=-10"), Part(90..100)),
            (Some("bytes=-1000"), Part(0..100)),
            (Some("bytes=90-1000"), Part(90..100)),
            (Some("bytes=99-99"), Part(99..100)),
            (Some("bytes=100-"), Unsatisfiable),
            (Some("bytes=100-200"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=0-1,5-6"), Whole),
            (Some("bytes=9-1"), Whole),
            (Some("items=0-1"), Whole),
            (Some("bytes=a-b"), Whole),
            (Some("bytes=-"), Whole),
            (Some("Bytes=0-9"), Part(0..10)),
            (Some("by"), Whole),
            (Some("bytés=0-9"), Whole),
            (Some("bytes=99999999999999999999-"), Whole),
        ];
        for (header, expected) in cases {
            assert_eq!(read_range(header, 100), expected, "{header:?}");
        }
        assert_eq!(read_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(content_range("bytes 10-19/100"), Some((10, 19)));
        for bad in ["", "-", "5-", "-5", "9-1", "a-b", "1-2-3", "+1-2"] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(1), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(h in "\\PC{0,60}", size in 0u64..u64::MAX) {
            if let Part(r) = read_range(Some(&h), size) {
                proptest::prop_assert!(r.start < r.end && r.end <= size);
            }
            let _ = content_range(&h);
        }
    }
}
