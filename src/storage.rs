//! Which store a server runs on: the local engine (the default) or, with `storage.s3`,
//! the cluster store on the bucket and etcd.

use std::sync::Arc;

use lain_cluster::ClusterStore;
use lain_engine::Engine;
use lain_registry::config::{Cluster, Config};
use lain_store::Store;

pub enum Opened {
    Local(Engine),
    Cluster(ClusterStore),
}

impl Opened {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Local(engine) => Arc::new(engine.clone()),
            Opened::Cluster(cluster) => Arc::new(cluster.clone()),
        }
    }

    /// Where the data is, for the start's log line.
    pub fn describe(&self, config: &Config) -> String {
        match (self, &config.cluster) {
            (Opened::Cluster(_), Some(cluster)) => format!(
                "bucket {} at {} and etcd keys under {}",
                cluster.bucket.bucket,
                cluster.bucket.endpoint.as_deref().unwrap_or("AWS"),
                cluster.options.prefix
            ),
            _ => config.root.display().to_string(),
        }
    }
}

/// Connects to etcd and the bucket of cluster mode.
pub async fn open_cluster(config: &Config, cluster: &Cluster) -> Result<ClusterStore, String> {
    let Some(etcd) = &config.etcd else {
        return Err("cluster mode needs etcd".to_owned());
    };
    let client = crate::etcd::v3::connect(etcd)
        .await
        .map_err(|e| format!("cannot connect to etcd: {e}"))?;
    ClusterStore::open(client, &cluster.bucket, cluster.options.clone())
        .await
        .map_err(|e| format!("cannot open the cluster store: {e}"))
}
