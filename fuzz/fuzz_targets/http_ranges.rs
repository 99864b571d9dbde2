//! `Range` and `Content-Range` headers are client text: parsing must never panic, a
//! resolved range must lie inside the blob, and a chunk range must not be reversed.
#![no_main]

use lain_http::fuzzing::{ReadRange, content_range, read_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, header) = data.split_at(8);
    let size = u64::from_le_bytes(size.try_into().unwrap_or_default());
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let ReadRange::Part(range) = read_range(Some(header), size) {
        assert!(range.start < range.end && range.end <= size);
    }
    if let Some((start, end)) = content_range(header) {
        assert!(start <= end);
    }
});
