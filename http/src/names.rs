//! The spec's grammars for repository names, tags and references.

use lain_store::{Digest, Reference};

use crate::errors::{ApiError, ErrorCode};

/// The longest repository name the spec lets registries accept everywhere.
pub const MAX_NAME_LEN: usize = 255;

/// Checks `name` against
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn check_repository(name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        Err(ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name: {why}"),
        )
        .with_detail(serde_json::json!({ "name": name })))
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 255 characters");
    }
    if !name.split('/').all(component_is_valid) {
        return invalid(
            "each path component must be lowercase letters and digits, separated by '.', '_', '__' or dashes",
        );
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component_is_valid(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of alphanumerics.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator: '.', '_', '__' or one or more '-'.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += if bytes.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn tag_is_valid(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A digest from the client (URL, query or manifest); 400 `DIGEST_INVALID` otherwise.
pub fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse::<Digest>().map_err(|e| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {text:?}: {e}"),
        )
        .with_detail(serde_json::json!({ "digest": text }))
    })
}

/// A manifest reference: a digest if it has the digest shape (contains ':'), else a
/// tag; 400 `DIGEST_INVALID` or `TAG_INVALID` when it is not a valid one.
pub fn parse_reference(text: &str) -> Result<Reference, ApiError> {
    if text.contains(':') {
        return parse_digest(text).map(Reference::Digest);
    }
    if tag_is_valid(text) {
        Ok(Reference::Tag(text.to_owned()))
    } else {
        Err(
            ApiError::new(ErrorCode::TagInvalid, format!("invalid tag {text:?}"))
                .with_detail(serde_json::json!({ "tag": text })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        for ok in [
            "a",
            "lain/app",
            "a/b/c",
            "a.b_c__d-e--f",
            "0",
            "library/ubuntu-22.04",
        ] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "..", "a/../b", "a b", "é",
            "a\0b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
        assert!(check_repository(&"a".repeat(255)).is_ok());
        assert!(check_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(tag_is_valid(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!tag_is_valid(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn validators_never_panic(s in "\\PC{0,300}") {
            let _ = check_repository(&s);
            let _ = tag_is_valid(&s);
            let _ = parse_reference(&s);
        }
    }
}
