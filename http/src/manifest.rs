//! Manifest validation: the JSON shape per media type, and what a manifest references.
//! Whether the references exist is the handler's question (it asks the engine).

use lain_store::{Digest, ManifestMeta};
use serde_json::{Map, Value};

use crate::errors::{ApiError, ErrorCode};
use crate::names::parse_digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The OCI empty descriptor's content (`application/vnd.oci.empty.v1+json`): artifacts
/// use it as their config, and some clients never upload it.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// The largest manifest accepted (the size OCI asks registries to accept at least).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A manifest that has the right shape.
#[derive(Debug)]
pub struct Manifest {
    pub meta: ManifestMeta,
    /// Blobs that must be in the repository: the config and the layers (of image
    /// manifests), without foreign layers.
    pub blobs: Vec<Digest>,
    /// Manifests that must be in the repository (of indexes and manifest lists).
    pub children: Vec<Digest>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid, message)
}

/// Parses and checks a pushed manifest. `content_type` is the request's `Content-Type`.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ApiError> {
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let Value::Object(object) = json else {
        return Err(invalid("manifest is not a JSON object"));
    };
    let declared = optional_str(&object, "mediaType")?;
    // Media types compare case-insensitively (RFC 9110 §8.3.1).
    let header = content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty());
    let header = header.as_deref();
    let media_type = match (declared, header) {
        (Some(d), Some(h)) if !d.eq_ignore_ascii_case(h) && h != "application/json" => {
            return Err(invalid(format!(
                "mediaType {d:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(d), _) => d.to_owned(),
        (None, Some(h)) if h != "application/json" => h.to_owned(),
        // OCI lets the field be absent; the shape tells which it is.
        (None, _) if object.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, _) => OCI_MANIFEST.to_owned(),
    };
    if object.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
            return Err(invalid("Docker schema 1 manifests are not supported"));
        }
        return Err(invalid("schemaVersion must be 2"));
    }
    let oci = media_type == OCI_MANIFEST || media_type == OCI_INDEX;
    let mut manifest = Manifest {
        meta: ManifestMeta {
            media_type: media_type.clone(),
            ..ManifestMeta::default()
        },
        blobs: Vec::new(),
        children: Vec::new(),
    };
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = descriptor(object.get("config"), "config")?;
            let layers = array(&object, "layers")?;
            manifest.blobs.push(config.digest.clone());
            for (i, layer) in layers.iter().enumerate() {
                let layer = descriptor(Some(layer), &format!("layers[{i}]"))?;
                // Foreign (non-distributable) layers live elsewhere.
                if !layer.has_urls {
                    manifest.blobs.push(layer.digest);
                }
            }
            manifest.meta.artifact_type = optional_str(&object, "artifactType")?
                .map(str::to_owned)
                .or(Some(config.media_type));
        }
        DOCKER_LIST | OCI_INDEX => {
            for (i, child) in array(&object, "manifests")?.iter().enumerate() {
                manifest
                    .children
                    .push(descriptor(Some(child), &format!("manifests[{i}]"))?.digest);
            }
            manifest.meta.artifact_type = optional_str(&object, "artifactType")?.map(str::to_owned);
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}"
            )));
        }
    }
    if oci {
        if let Some(subject) = object.get("subject") {
            manifest.meta.subject = Some(descriptor(Some(subject), "subject")?.digest);
        }
        manifest.meta.annotations = annotations(&object)?;
    }
    Ok(manifest)
}

struct Descriptor {
    media_type: String,
    digest: Digest,
    has_urls: bool,
}

/// `{"mediaType": string, "digest": digest, "size": integer >= 0, "urls"?: [string]}`.
fn descriptor(value: Option<&Value>, field: &str) -> Result<Descriptor, ApiError> {
    let Some(Value::Object(object)) = value else {
        return Err(invalid(format!("{field} must be a descriptor object")));
    };
    let media_type = optional_str(object, "mediaType")?
        .ok_or_else(|| invalid(format!("{field}.mediaType is missing")))?;
    let digest_text = optional_str(object, "digest")?
        .ok_or_else(|| invalid(format!("{field}.digest is missing")))?;
    let digest = parse_digest(digest_text)?;
    if object.get("size").and_then(Value::as_u64).is_none() {
        return Err(invalid(format!(
            "{field}.size must be a non-negative integer"
        )));
    }
    let has_urls = match object.get("urls") {
        None | Some(Value::Null) => false,
        Some(Value::Array(urls)) if urls.iter().all(Value::is_string) => !urls.is_empty(),
        Some(_) => return Err(invalid(format!("{field}.urls must be an array of strings"))),
    };
    Ok(Descriptor {
        media_type: media_type.to_owned(),
        digest,
        has_urls,
    })
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn array<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ApiError> {
    match object.get(key) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(invalid(format!("{key} must be an array"))),
    }
}

fn annotations(object: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    match object.get("annotations") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid("annotation values must be strings")),
            })
            .collect(),
        Some(_) => Err(invalid("annotations must be an object")),
    }
}

/// Whether a client's `Accept` headers let it receive `media_type` (no `Accept` at all
/// accepts anything). Entries may be `type/*` or `*/*`; an entry with `q=0` refuses.
pub fn accepts<'a>(accept: impl Iterator<Item = &'a str>, media_type: &str) -> bool {
    let media_type = media_type.to_ascii_lowercase();
    let family = media_type.split('/').next().unwrap_or_default();
    let mut any = false;
    for value in accept {
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if range.is_empty() {
                continue;
            }
            any = true;
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            let matches =
                range == media_type || range == "*/*" || range.strip_suffix("/*") == Some(family);
            if matches && !refused {
                return true;
            }
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_references_config_and_layers_but_not_foreign_layers() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d('a'), "size": 7},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d('b'), "size": 1},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d('c'), "size": 1, "urls": ["https://example.invalid/x"]},
            ]
        });
        let m = parse(body.to_string().as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        let blobs: Vec<String> = m.blobs.iter().map(ToString::to_string).collect();
        assert_eq!(blobs, [d('a'), d('b')]);
        assert!(m.children.is_empty());
        assert_eq!(m.meta.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn artifact_with_subject() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d('e'), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d('f'), "size": 10},
            "annotations": {"k": "v"}
        });
        let m = parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.meta.subject.unwrap().to_string(), d('f'));
        assert_eq!(
            m.meta.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.meta.annotations, [("k".to_owned(), "v".to_owned())]);
    }

    #[test]
    fn index_children() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d('1'), "size": 3, "platform": {"os": "linux"}}]
        });
        let m = parse(body.to_string().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(m.meta.media_type, OCI_INDEX);
        assert_eq!(m.children.len(), 1);
        // Content-Type compares case-insensitively with the body's mediaType.
        let typed =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
        assert!(
            parse(
                typed.to_string().as_bytes(),
                Some("Application/VND.OCI.Image.Index.v1+json")
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_shapes_are_manifest_invalid() {
        let layer = serde_json::json!({"mediaType": "x", "digest": d('b'), "size": 1});
        let cases = [
            (String::from("not json"), Some(OCI_MANIFEST)),
            ("[]".into(), Some(OCI_MANIFEST)),
            (serde_json::json!({"schemaVersion": 1, "mediaType": DOCKER_MANIFEST}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": layer, "layers": {}}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": d('a'), "size": -1}, "layers": []}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": layer, "layers": []}).to_string(), Some(DOCKER_MANIFEST)),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [1]}).to_string(), None),
            (serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "annotations": {"a": 1}}).to_string(), None),
        ];
        for (body, content_type) in cases {
            let err = parse(body.as_bytes(), content_type).unwrap_err();
            assert_eq!(err.code, ErrorCode::ManifestInvalid, "{body}");
        }
        let bad_digest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": "sha256:nothex", "size": 1}, "layers": []});
        assert_eq!(
            parse(bad_digest.to_string().as_bytes(), None)
                .unwrap_err()
                .code,
            ErrorCode::DigestInvalid
        );
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(std::iter::empty(), OCI_MANIFEST));
        assert!(accepts([OCI_MANIFEST].into_iter(), OCI_MANIFEST));
        assert!(accepts(
            [format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9").as_str()].into_iter(),
            OCI_MANIFEST
        ));
        assert!(accepts(["*/*"].into_iter(), OCI_INDEX));
        assert!(!accepts([DOCKER_MANIFEST].into_iter(), OCI_MANIFEST));
        assert!(accepts(["application/*"].into_iter(), OCI_MANIFEST));
        assert!(accepts(
            ["Application/VND.oci.image.manifest.v1+json"].into_iter(),
            OCI_MANIFEST
        ));
        assert!(!accepts(
            [format!("{OCI_MANIFEST};q=0").as_str()].into_iter(),
            OCI_MANIFEST
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes, Some(OCI_MANIFEST));
        }
    }
}
