//! A configuration file is operator input, but it may come from anywhere (etcd, a
//! mounted volume): parsing and typing must never panic, overflow the stack or run
//! away on aliases, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lain_registry::fuzzing::parse_config(text);
    }
});
