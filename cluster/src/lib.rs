//! `lain-cluster`: the cluster store. Several registry instances serve one registry:
//! blob and manifest bytes are immutable objects in an S3-compatible bucket, and all
//! metadata (links, manifests, tags, referrers, blob states, upload sessions) is in etcd,
//! changed in transactions. Instances keep nothing of their own that a request needs
//! after it has been answered, so any instance can take any request.
//!
//! Why these choices, and what happens when a component fails: `ARCHITECTURE.md` and
//! `OPERATIONS.md` ("Cluster mode"). The key layout: [`keys`].

mod blobs;
mod collect;
mod error;
pub mod keys;
mod manifests;
mod meta;
mod objects;
mod records;
mod retention;
mod store;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

pub use collect::{CollectOptions, CollectReport};
pub use error::{Error, Result};
pub use objects::BucketSettings;

/// S3's smallest part but the last: an upload's bytes gather to at least this before
/// they go to the bucket as a part.
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// The cluster store's tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where this registry's keys are in etcd.
    pub prefix: String,
    /// Where this registry's objects are in the bucket (`rootdirectory`).
    pub root: String,
    /// An upload part's size (`chunksize`, at least [`MIN_PART_SIZE`]).
    pub part_size: u64,
    /// Upload sessions open at once, all instances together.
    pub max_upload_sessions: usize,
    /// Of which one client address may hold (the engine's `uploadsessionsperclient`).
    pub max_upload_sessions_per_owner: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            prefix: "/lain-registry/".to_owned(),
            root: String::new(),
            part_size: MIN_PART_SIZE,
            max_upload_sessions: 4096,
            max_upload_sessions_per_owner: 1024,
        }
    }
}

/// A handle on the cluster's storage; clones share one connection and state.
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    meta: meta::Meta,
    bucket: objects::Bucket,
    layout: keys::Layout,
    options: Options,
    /// The sessions this instance is writing now.
    writing: uploads::Writing,
}

impl ClusterStore {
    /// Connects to the bucket and takes this instance's etcd lease.
    pub async fn open(
        etcd: etcd_client::Client,
        bucket: &BucketSettings,
        options: Options,
    ) -> Result<ClusterStore> {
        let mut options = options;
        options.part_size = options.part_size.max(MIN_PART_SIZE);
        let store = ClusterStore {
            inner: Arc::new(Inner {
                meta: meta::Meta::new(etcd).await?,
                bucket: objects::Bucket::new(bucket)?,
                layout: keys::Layout::new(&options.prefix, &options.root),
                options,
                writing: uploads::Writing::default(),
            }),
        };
        tokio::spawn(uploads::put_away_abandoned(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// A secret every instance of this cluster shares, made by the first to ask:
    /// upload locations one instance issues then check on every other, with no
    /// `http.secret` to keep in step.
    pub async fn shared_secret(&self) -> Result<Vec<u8>> {
        use etcd_client::{Txn, TxnOp, TxnOpResponse};
        let key = self.inner.layout.secret();
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let txn = Txn::new()
            .when([meta::absent(&key)])
            .and_then([TxnOp::put(key.as_str(), fresh.as_str(), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self.inner.meta.txn(txn).await?;
        if response.succeeded() {
            return Ok(fresh.into_bytes());
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
            {
                return Ok(kv.value().to_vec());
            }
        }
        Err(Error::Contended {
            what: "the shared secret",
        })
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }
}

/// How often a transaction that lost a race is tried again before the request fails
/// with "try again" (503).
const TXN_ATTEMPTS: usize = 16;

/// How long to wait for a collector to finish removing a blob that is being pushed
/// again, between looks.
const DELETING_WAIT: Duration = Duration::from_millis(100);
