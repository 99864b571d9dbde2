//! `Authorization: Basic ...` headers against an htpasswd file: parsing must never
//! panic, and no header other than alice's real password logs in.
#![no_main]

use std::sync::OnceLock;

use lain_http::fuzzing::{Htpasswd, basic_login};
use libfuzzer_sys::fuzz_target;

fn users() -> &'static Htpasswd {
    static USERS: OnceLock<Htpasswd> = OnceLock::new();
    // alice's password is 32 random characters no fuzzer will find.
    USERS.get_or_init(|| {
        let hash = bcrypt::hash("kX9qL2vT7mR4wZ8nB3cF6hJ1dS5gA0pE", 4).expect("hash");
        Htpasswd::parse("fuzz".into(), &format!("alice:{hash}\n")).expect("file")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // The parse and the password check, not the failure count: after ten failures
        // from one address the count alone would answer.
        assert_eq!(basic_login(users(), text), None);
    }
});
