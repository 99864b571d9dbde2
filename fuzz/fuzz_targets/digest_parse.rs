//! Digests arrive from clients in URLs and query strings: parsing must never panic,
//! and whatever parses must print back to the same text.
#![no_main]

use lain_engine::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(digest) = text.parse::<Digest>() {
            assert_eq!(digest.to_string(), text);
        }
    }
});
