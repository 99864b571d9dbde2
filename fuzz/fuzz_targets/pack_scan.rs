//! Pack bytes come from disk, which can hold anything after a crash or corruption: the
//! scanners must never panic and must only report records that re-validate.
#![no_main]

use lain_engine::pack::format::{record_at, scan, scan_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let found = scan(data, 0);
    assert!(found.valid_end as usize <= data.len());
    for record in &found.records {
        assert_eq!(record_at(data, record.offset).as_ref(), Some(record));
    }
    // The salvage scan, which steps over damage, reports only records that validate too.
    for record in &scan_all(data, 0).records {
        assert_eq!(record_at(data, record.offset).as_ref(), Some(record));
    }
});
