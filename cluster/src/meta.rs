//! etcd: reads, transactions, and this instance's lease (which holds its writer keys,
//! so that a dead instance's claims on upload sessions end with it).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use crate::error::Result;
use crate::keys;
use crate::records::now_ms;

/// How long this instance's lease lives without a keep-alive: its writer keys outlive
/// it by at most this.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Meta {
    client: Client,
    lease: Arc<Lease>,
}

struct Lease {
    id: AtomicI64,
    /// When the lease was last known alive (ms since the epoch).
    renewed: AtomicU64,
}

impl Meta {
    /// Takes a lease and keeps it alive for as long as the returned value (or a clone)
    /// lives, taking a new one when etcd has lost it.
    /// etcd that does not answer yet (a node booting, a cluster electing) is waited
    /// for, with a warning every try.
    pub async fn new(mut client: Client) -> Result<Meta> {
        let mut wait = std::time::Duration::from_millis(250);
        let granted = loop {
            match client.lease_grant(LEASE_TTL.as_secs() as i64, None).await {
                Ok(granted) => break granted,
                Err(e) if crate::error::etcd_unreachable(&e) => {
                    tracing::warn!("etcd does not answer yet; trying again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let lease = Arc::new(Lease {
            id: AtomicI64::new(granted.id()),
            renewed: AtomicU64::new(now_ms()),
        });
        tokio::spawn(keep_alive(client.clone(), Arc::downgrade(&lease)));
        Ok(Meta { client, lease })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn lease(&self) -> i64 {
        self.lease.id.load(Ordering::Acquire)
    }

    /// Whether the lease is surely still alive: renewed within half its TTL. A writer
    /// whose lease may have lapsed must not write parts another instance may be
    /// writing now.
    pub fn lease_alive(&self) -> bool {
        now_ms().saturating_sub(self.lease.renewed.load(Ordering::Acquire))
            < (LEASE_TTL.as_millis() / 2) as u64
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut client = self.client.clone();
        let mut response = client.get(key, None).await?;
        Ok(response.take_kvs().into_iter().next())
    }

    /// Keys (and values unless `keys_only`) under `prefix`, from just after `after`
    /// (a key) if given, at most `limit`, in key order.
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let mut client = self.client.clone();
        let start = match after {
            Some(after) => keys::after(after),
            None => prefix.as_bytes().to_vec(),
        };
        let mut options = GetOptions::new()
            .with_range(keys::prefix_end(prefix))
            .with_limit(limit.min(i64::MAX as usize) as i64);
        if keys_only {
            options = options.with_keys_only();
        }
        let mut response = client.get(start, Some(options)).await?;
        let more = response.more();
        Ok((response.take_kvs(), more))
    }

    /// Every key and value under `prefix`, read in pages from one revision.
    pub async fn scan_all(&self, prefix: &str, keys_only: bool) -> Result<Vec<KeyValue>> {
        let mut client = self.client.clone();
        let end = keys::prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            // Values are up to tens of KiB (a session with many parts): pages stay far
            // below gRPC's 4 MiB message limit.
            let limit = if keys_only { 1000 } else { 100 };
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if keys_only {
                options = options.with_keys_only();
            }
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut response = client.get(start.clone(), Some(options)).await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            let Some(last) = kvs.last() else { break };
            start = [last.key(), &[0u8][..]].concat();
            out.extend(kvs);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    pub async fn count(&self, prefix: &str) -> Result<i64> {
        let mut client = self.client.clone();
        let options = GetOptions::new()
            .with_range(keys::prefix_end(prefix))
            .with_count_only();
        Ok(client.get(prefix, Some(options)).await?.count())
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let mut client = self.client.clone();
        Ok(client.txn(txn).await?)
    }

    /// Reads several keys at one revision.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>> {
        let mut out = Vec::with_capacity(keys.len());
        // etcd's default limit on a transaction's operations is 128.
        for group in keys.chunks(100) {
            let ops: Vec<TxnOp> = group.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
            let response = self.txn(Txn::new().and_then(ops)).await?;
            for op in response.op_responses() {
                out.push(match op {
                    TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                    _ => None,
                });
            }
        }
        Ok(out)
    }
}

/// `key` exists.
pub fn exists(key: &str) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

/// `key` does not exist.
pub fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// No key starts with `prefix`.
pub fn none_under(prefix: &str) -> Compare {
    Compare::version(prefix, CompareOp::Equal, 0).with_range(keys::prefix_end(prefix))
}

/// `key` is as it was at `revision` (its mod revision).
pub fn unchanged(key: &str, revision: i64) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, revision)
}

/// Renews the lease every third of its TTL; when etcd no longer knows it, takes a new
/// one. Ends when the store is dropped.
async fn keep_alive(mut client: Client, lease: std::sync::Weak<Lease>) {
    let mut tick = tokio::time::interval(LEASE_TTL / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(lease) = lease.upgrade() else { return };
        let id = lease.id.load(Ordering::Acquire);
        // etcd-client's keep-alive sends one renewal and reads its answer; a lease
        // etcd no longer knows is its `LeaseKeepAliveError`.
        match client.lease_keep_alive(id).await {
            Ok(_) => lease.renewed.store(now_ms(), Ordering::Release),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => {
                // The lease expired (etcd unreachable for longer than its TTL): every
                // writer key it held is gone. A new one, for new claims.
                match client.lease_grant(LEASE_TTL.as_secs() as i64, None).await {
                    Ok(granted) => {
                        tracing::warn!(
                            old = id,
                            new = granted.id(),
                            "etcd lease lapsed; took a new one"
                        );
                        lease.id.store(granted.id(), Ordering::Release);
                        lease.renewed.store(now_ms(), Ordering::Release);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot take an etcd lease"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "etcd lease keep-alive failed"),
        }
    }
}
