//! Request paths and query strings come straight from clients: routing, percent-decoding,
//! and the name and reference grammars must never panic, and a routed name is only
//! accepted if it fits the spec's grammar.
#![no_main]

use lain_http::fuzzing::{Route, check_repository, parse_reference, query_pairs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let _ = query_pairs(Some(query));
    let (name, reference) = match Route::parse(path) {
        Some(Route::Manifest { name, reference }) => (name, Some(reference)),
        Some(
            Route::Tags { name }
            | Route::UploadStart { name }
            | Route::Blob { name, .. }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. },
        ) => (name, None),
        _ => return,
    };
    if check_repository(&name).is_ok() {
        assert!(name.len() <= 255);
        assert!(!name.contains("//") && !name.starts_with('/') && !name.ends_with('/'));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        );
    }
    if let Some(reference) = reference {
        let _ = parse_reference(&reference);
    }
});
