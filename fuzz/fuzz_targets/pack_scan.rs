//! Pack bytes come from disk, which can hold anything after a crash or corruption: the
//! scanner must never panic and must only report records that re-validate.
#![no_main]

use lain_engine::pack::format::{RecordHeader, scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let found = scan(data, 0);
    assert!(found.valid_end as usize <= data.len());
    for record in &found.records {
        let start = record.offset as usize;
        assert_eq!(
            RecordHeader::decode(&data[start..]),
            Some(record.header.clone())
        );
    }
});
