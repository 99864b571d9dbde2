//! Pushed manifests are arbitrary bytes with an arbitrary Content-Type: validation must
//! never panic, and what it accepts has a media type and well-formed references.
#![no_main]

use lain_http::fuzzing::{accepts, parse_manifest};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    if let Ok(manifest) = parse_manifest(body, content_type) {
        assert!(!manifest.meta.media_type.is_empty());
        for digest in manifest.blobs.iter().chain(&manifest.children) {
            assert_eq!(
                digest
                    .to_string()
                    .parse::<lain_engine::Digest>()
                    .ok()
                    .as_ref(),
                Some(digest)
            );
        }
    }
    if let Ok(accept) = std::str::from_utf8(body) {
        let _ = accepts(
            std::iter::once(accept),
            "application/vnd.oci.image.manifest.v1+json",
        );
    }
});
