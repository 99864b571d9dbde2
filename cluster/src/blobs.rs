//! Blobs: a record in etcd (`blob/<digest>`: size and state), the bytes in one object,
//! and links from repositories (`repo/<r>@link/<digest>`, with its reverse
//! `linked/<digest>/<r>`, which the collector reads).
//!
//! A blob is pushed in two steps: its object is written (create-only), then its record
//! is made and the link added in one transaction. A collector removes a blob in three:
//! the record goes `live -> deleting` in a transaction that requires no link to exist,
//! the object is deleted, then the record. So a push or mount racing a collection either
//! links a live record (and the collector's transaction fails: the blob is kept), or
//! finds it deleting (waits until it is gone, then writes the object again), or finds
//! it gone. An object is never deleted while a live record names it.

use bytes::Bytes;
use etcd_client::{Txn, TxnOp, TxnOpResponse};
use lain_store::{BlobInfo, Digest, OpenBlob};
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::meta::{absent, exists, none_under, unchanged};
use crate::records::{self, BlobRecord, BlobState, now_ms};
use crate::{DELETING_WAIT, Inner, TXN_ATTEMPTS};

/// Where a new blob's bytes come from.
pub enum Source {
    /// In memory: written to the blob's object.
    Bytes(Bytes),
    /// In another object (a finished multipart upload): copied server-side.
    Object(Path),
}

impl Inner {
    /// The blob's record and size, if `repo` links it and it is live.
    async fn linked_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let (link, record) = (self.layout.link(repo, digest), self.layout.blob(digest));
        let response = self
            .meta
            .txn(Txn::new().and_then([TxnOp::get(link, None), TxnOp::get(record.as_str(), None)]))
            .await?;
        let mut found = response.op_responses().into_iter().map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        let (Some(Some(_link)), Some(Some(record))) = (found.next(), found.next()) else {
            return Ok(None);
        };
        let record: BlobRecord = records::decode(record.key(), record.value())?;
        Ok((record.state == BlobState::Live).then_some(record.size))
    }

    pub async fn blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        Ok(self.linked_blob(repo, digest).await?.map(|size| BlobInfo {
            digest: digest.clone(),
            size,
        }))
    }

    pub async fn open_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Box<dyn OpenBlob>>> {
        let Some(size) = self.linked_blob(repo, digest).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.bucket.open(self.layout.blob_object(digest), size),
        ))
    }

    /// A small blob sent whole, checked against `expected`.
    pub async fn put_blob(
        &self,
        repo: &str,
        bytes: Bytes,
        expected: &Digest,
    ) -> lain_store::Result<BlobInfo> {
        let computed = expected.algorithm().digest(&bytes);
        if computed != *expected {
            return Err(lain_store::Error::DigestMismatch {
                expected: Box::new(expected.clone()),
                computed: Box::new(computed),
            });
        }
        let size = bytes.len() as u64;
        Ok(self
            .settle_blob(repo, expected, size, Source::Bytes(bytes))
            .await?)
    }

    /// Makes `digest` a live blob (writing its object from `source` unless a live
    /// record shows it is there) and links it into `repo`.
    pub async fn settle_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        source: Source,
    ) -> Result<BlobInfo> {
        let key = self.layout.blob(digest);
        let object = self.layout.blob_object(digest);
        let mut deleting_seen = 0;
        for _ in 0..TXN_ATTEMPTS {
            let current = self.meta.get(&key).await?;
            let record = match &current {
                Some(kv) => Some(records::decode::<BlobRecord>(kv.key(), kv.value())?),
                None => None,
            };
            // With the transaction that makes the record: whether the object was found
            // there rather than written (then it may be an orphan a collector removes).
            let (made, found) = match (&current, &record) {
                (Some(kv), Some(record)) if record.state == BlobState::Live => {
                    let txn = Txn::new()
                        .when([unchanged(&key, kv.mod_revision())])
                        .and_then(self.link_ops(repo, digest));
                    if self.meta.txn(txn).await?.succeeded() {
                        return Ok(BlobInfo {
                            digest: digest.clone(),
                            size,
                        });
                    }
                    continue;
                }
                (Some(kv), _) => {
                    // A collector is removing it; its object may be gone any moment.
                    deleting_seen += 1;
                    if deleting_seen > 3 {
                        self.finish_abandoned_removal(digest, kv.mod_revision())
                            .await?;
                    }
                    tokio::time::sleep(DELETING_WAIT).await;
                    continue;
                }
                (None, _) => {
                    let found = !self.write_object(&object, &source).await?;
                    let record = BlobRecord {
                        size,
                        state: BlobState::Live,
                        made: now_ms(),
                    };
                    let mut ops = vec![TxnOp::put(key.as_str(), records::encode(&record), None)];
                    ops.extend(self.link_ops(repo, digest));
                    (Txn::new().when([absent(&key)]).and_then(ops), found)
                }
            };
            if self.meta.txn(made).await?.succeeded() {
                // The live, linked record now keeps collectors away. An object the
                // write found there may have been an orphan a collector removed
                // meanwhile: written again if so. (One this push wrote is younger than
                // any collection's grace window, which spares it.)
                if found && !self.bucket.exists(&object).await? {
                    self.write_object(&object, &source).await?;
                }
                return Ok(BlobInfo {
                    digest: digest.clone(),
                    size,
                });
            }
        }
        Err(Error::Contended {
            what: "a blob's push",
        })
    }

    /// Whether this call wrote it (false: it was there).
    async fn write_object(&self, object: &Path, source: &Source) -> Result<bool> {
        match source {
            Source::Bytes(bytes) => self.bucket.create(object, bytes.clone()).await,
            Source::Object(from) => self.bucket.copy_absent(from, object).await,
        }
    }

    /// A blob left `deleting` by a collector that died half-way (no collector holds
    /// the lock): its removal is finished here, so that the push can go on.
    async fn finish_abandoned_removal(&self, digest: &Digest, revision: i64) -> Result<()> {
        let collectors = format!("{}/", self.layout.collector());
        if self.meta.count(&collectors).await? > 0 {
            return Ok(());
        }
        self.bucket.delete(&self.layout.blob_object(digest)).await?;
        let key = self.layout.blob(digest);
        let gone = Txn::new()
            .when([unchanged(&key, revision), none_under(&collectors)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.meta.txn(gone).await?;
        Ok(())
    }

    /// The keys that link `digest` into `repo`. A link's value is when it was made
    /// (ms): the collection's grace window for layers whose manifest is yet to come.
    pub fn link_ops(&self, repo: &str, digest: &Digest) -> Vec<TxnOp> {
        vec![
            TxnOp::put(self.layout.link(repo, digest), now_ms().to_string(), None),
            TxnOp::put(self.layout.linked_by(digest, repo), "", None),
            TxnOp::put(self.layout.repository(repo), "", None),
        ]
    }

    /// A mount: links a live blob into `repo`.
    pub async fn link_blob(&self, repo: &str, digest: &Digest) -> Result<Option<BlobInfo>> {
        let key = self.layout.blob(digest);
        for _ in 0..TXN_ATTEMPTS {
            let Some(kv) = self.meta.get(&key).await? else {
                return Ok(None);
            };
            let record: BlobRecord = records::decode(kv.key(), kv.value())?;
            if record.state != BlobState::Live {
                return Ok(None);
            }
            let txn = Txn::new()
                .when([unchanged(&key, kv.mod_revision())])
                .and_then(self.link_ops(repo, digest));
            if self.meta.txn(txn).await?.succeeded() {
                return Ok(Some(BlobInfo {
                    digest: digest.clone(),
                    size: record.size,
                }));
            }
        }
        Err(Error::Contended { what: "a mount" })
    }

    pub async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let link = self.layout.link(repo, digest);
        let txn = Txn::new().when([exists(&link)]).and_then([
            TxnOp::delete(link.as_str(), None),
            TxnOp::delete(self.layout.linked_by(digest, repo), None),
        ]);
        Ok(self.meta.txn(txn).await?.succeeded())
    }
}
