//! OCI image layouts written for clients to push (`oci:DIR:NAME` for skopeo).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A descriptor as it appears in manifests and indexes.
pub fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An OCI image layout being written: `oci-layout`, `blobs/sha256/*`, and finally
/// `index.json`.
pub struct LayoutWriter {
    dir: PathBuf,
    /// Every blob written, by digest.
    blobs: BTreeMap<String, Vec<u8>>,
}

impl LayoutWriter {
    pub fn new(dir: &Path) -> LayoutWriter {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir blobs");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        LayoutWriter {
            dir: dir.to_owned(),
            blobs: BTreeMap::new(),
        }
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub fn blob(&mut self, media_type: &str, bytes: Vec<u8>) -> Value {
        let digest = super::sha256(&bytes);
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), &bytes).expect("write blob");
        let desc = descriptor(media_type, &digest, bytes.len());
        self.blobs.insert(digest, bytes);
        desc
    }

    /// Stores a config for `layers` (uncompressed, so each diff_id is the layer digest)
    /// and the image manifest; returns the manifest's descriptor.
    pub fn image(&mut self, arch: &str, layers: &[Value]) -> Value {
        let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({ "created_by": format!("lain test layer {i}") }))
            .collect();
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/app"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        let config = self.blob(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
            "annotations": { "org.opencontainers.image.title": format!("lain test {arch}") },
        });
        self.blob(OCI_MANIFEST, serde_json::to_vec_pretty(&manifest).unwrap())
    }

    /// Writes `index.json` naming each of `refs` (descriptor, ref name).
    pub fn finish(self, refs: &[(&Value, &str)]) -> BTreeMap<String, Vec<u8>> {
        let manifests: Vec<Value> = refs
            .iter()
            .map(|(desc, name)| {
                let mut desc = (*desc).clone();
                desc["annotations"] = json!({ REF_NAME: name });
                desc
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .expect("write index.json");
        self.blobs
    }
}

/// Every blob file of a layout, by digest.
pub fn layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut blobs = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).expect("read blobs") {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        blobs.insert(
            format!("sha256:{name}"),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    blobs
}
