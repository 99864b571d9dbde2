//! A Bearer token is whatever a client puts in `Authorization`: checking it must never
//! panic, and garbage is never accepted.
#![no_main]

use std::sync::OnceLock;

use lain_http::fuzzing::{TokenSettings, token_settings};
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static TokenSettings {
    static SETTINGS: OnceLock<TokenSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut bundle = include_bytes!("../../http/src/auth/fixtures/root.crt").to_vec();
        bundle.extend(include_bytes!("../../http/src/auth/fixtures/rsa.crt"));
        token_settings(&bundle).expect("the fixtures' keys")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Nothing here is signed by the fixtures' keys: a fuzzer cannot forge one.
        assert!(settings().verify(text).is_err());
    }
});
