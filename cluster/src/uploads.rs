//! Upload sessions, any of whose requests any instance can take. A session is a record
//! in etcd (`upload/<id>`): its S3 multipart upload, the parts' ETags, the bytes staged
//! after them (an object of their own), and the hasher's saved state after all of them.
//!
//! An instance writing a session holds its writer key (`writer/<id>`), bound to the
//! instance's lease, taken in a transaction that requires the key absent: two requests
//! racing on one session, on any instances, cannot both write (the loser gets 416). A
//! killed instance's claims end with its lease, within seconds. While it writes, bytes
//! gather in memory; each full part goes to S3 and is recorded at once, and when the
//! request ends (`upload_pause`) the rest is staged as an object and recorded, and the
//! claim released. Every record change is conditional on the record being as the writer
//! last saw it, so a record never mixes two writers' bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use lain_store::{Algorithm, BlobInfo, Digest, Hasher, UploadId, UploadStatus};

use crate::Inner;
use crate::blobs::Source;
use crate::error::{Error, Result};
use crate::meta::{absent, unchanged};
use crate::records::{self, SessionRecord, Tail, now_ms};

/// A session a request has not touched for this long has lost its request (the client
/// went away between two pieces): what it gathered is staged and the claim released.
const ABANDONED: Duration = Duration::from_secs(10);

/// The sessions this instance holds the writer keys of.
pub struct Writing {
    /// This instance's name in writer keys.
    instance: String,
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Writer>>>>,
}

impl Default for Writing {
    fn default() -> Writing {
        Writing {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            held: Mutex::default(),
        }
    }
}

impl Writing {
    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Writer>>> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(id).cloned()
    }

    fn insert(&self, id: &str, writer: Arc<tokio::sync::Mutex<Writer>>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(id.to_owned(), writer);
    }

    /// Forgets `writer` unless another has taken its place.
    fn remove_if_same(&self, id: &str, writer: &Arc<tokio::sync::Mutex<Writer>>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(id).is_some_and(|w| Arc::ptr_eq(w, writer)) {
            held.remove(id);
        }
    }

    fn remove(&self, id: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(id);
    }

    fn all(&self) -> Vec<(String, Arc<tokio::sync::Mutex<Writer>>)> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A session this instance is writing.
pub struct Writer {
    repo: String,
    record: SessionRecord,
    /// The record's mod revision as this writer last wrote or read it.
    revision: i64,
    /// The lease its claim is bound to: if the instance's lease lapsed since, the
    /// claim may be another instance's now.
    lease: i64,
    /// Covers the parts and `buffer[..hashed]`.
    hasher: Hasher,
    /// The bytes after the parts: a staged tail's, then new ones.
    buffer: BytesMut,
    hashed: usize,
    last_used: Instant,
    /// Released or failed: the next request takes the session from etcd again.
    done: bool,
}

impl Writer {
    fn received(&self) -> u64 {
        self.record.parts_len + self.buffer.len() as u64
    }
}

fn unknown(id: &str) -> lain_store::Error {
    lain_store::Error::UploadUnknown(id.to_owned())
}

impl Inner {
    pub async fn start_upload(
        &self,
        repo: &str,
        algorithm: Algorithm,
        owner: &str,
    ) -> lain_store::Result<UploadId> {
        let limit = self.options.max_upload_sessions;
        if self.meta.count(&self.layout.sessions()).await? >= limit as i64 {
            return Err(lain_store::Error::TooManyUploads { limit });
        }
        let limit = self.options.max_upload_sessions_per_owner;
        if self.meta.count(&self.layout.owned(owner)).await? >= limit as i64 {
            return Err(lain_store::Error::TooManyUploadsFrom { limit });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let record = SessionRecord {
            repo: repo.to_owned(),
            owner: owner.to_owned(),
            algorithm: algorithm.name().to_owned(),
            started: now,
            active: now,
            received: 0,
            hasher: BASE64.encode(algorithm.hasher().save()),
            multipart: None,
            parts: Vec::new(),
            parts_len: 0,
            tail: None,
            completed: None,
        };
        let key = self.layout.session(&id);
        let txn = Txn::new().when([absent(&key)]).and_then([
            TxnOp::put(key.as_str(), records::encode(&record), None),
            TxnOp::put(self.layout.owned_session(owner, &id), "", None),
        ]);
        if !self.meta.txn(txn).await?.succeeded() {
            return Err(Error::Contended {
                what: "a new upload session",
            }
            .into());
        }
        Ok(id)
    }

    /// The session's record and its revision, if it is `repo`'s.
    async fn session(&self, repo: &str, id: &str) -> lain_store::Result<(SessionRecord, i64)> {
        let Some(kv) = self.meta.get(&self.layout.session(id)).await? else {
            return Err(unknown(id));
        };
        let record: SessionRecord = records::decode(kv.key(), kv.value())?;
        if record.repo != repo {
            return Err(unknown(id));
        }
        Ok((record, kv.mod_revision()))
    }

    pub async fn upload_status(&self, repo: &str, id: &str) -> lain_store::Result<UploadStatus> {
        let (record, _) = self.session(repo, id).await?;
        let received = match self.writing.get(id) {
            Some(writer) => {
                let writer = writer.lock().await;
                if writer.done {
                    record.received
                } else {
                    writer.received()
                }
            }
            None => record.received,
        };
        let started = std::time::UNIX_EPOCH + Duration::from_millis(record.started);
        Ok(UploadStatus { received, started })
    }

    /// The session's writer, taking its claim in etcd unless this instance holds it.
    async fn take(
        &self,
        repo: &str,
        id: &str,
    ) -> lain_store::Result<Arc<tokio::sync::Mutex<Writer>>> {
        if let Some(writer) = self.writing.get(id) {
            let held = writer.lock().await;
            if held.repo != repo {
                // Another repository's session: never disturbed by this request.
                return Err(unknown(id));
            }
            if !held.done && held.lease == self.meta.lease() {
                drop(held);
                return Ok(writer);
            }
            drop(held);
            self.writing.remove_if_same(id, &writer);
        }
        let (record, revision) = self.session(repo, id).await?;
        let (key, writer_key) = (self.layout.session(id), self.layout.writer(id));
        let lease = self.meta.lease();
        let claim_op = || {
            TxnOp::put(
                writer_key.as_str(),
                self.writing.instance.as_str(),
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )
        };
        let claim = Txn::new()
            .when([unchanged(&key, revision), absent(&writer_key)])
            .and_then([claim_op()]);
        if !self.meta.txn(claim).await?.succeeded() {
            // A claim of this very instance whose request is gone (its reply lost in
            // an etcd outage, a release that failed) is taken over: the HTTP layer lets
            // one request at a time write a session here. Anyone else's: 416.
            let adopt = Txn::new()
                .when([unchanged(&key, revision), self.ours(&writer_key)])
                .and_then([claim_op()]);
            if !self.meta.txn(adopt).await?.succeeded() {
                let (now, _) = self.session(repo, id).await?;
                return Err(lain_store::Error::UploadOffset {
                    received: now.received,
                });
            }
        }
        match self.load(repo, id, record, revision, lease).await {
            Ok(writer) => {
                self.writing.insert(id, writer.clone());
                Ok(writer)
            }
            Err(e) => {
                self.release(id).await;
                Err(e)
            }
        }
    }

    /// A claimed session's writer: its hasher restored, its staged tail read back.
    async fn load(
        &self,
        repo: &str,
        id: &str,
        record: SessionRecord,
        revision: i64,
        lease: i64,
    ) -> lain_store::Result<Arc<tokio::sync::Mutex<Writer>>> {
        let key = self.layout.session(id);
        let corrupt = |detail: &str| Error::Corrupt {
            key: key.clone(),
            detail: detail.to_owned(),
        };
        let algorithm =
            Algorithm::from_name(&record.algorithm).ok_or_else(|| corrupt("algorithm"))?;
        let saved = BASE64
            .decode(&record.hasher)
            .map_err(|_| corrupt("hasher"))?;
        let hasher = Hasher::restore(algorithm, &saved).ok_or_else(|| corrupt("hasher"))?;
        let mut buffer = BytesMut::new();
        if let Some(tail) = &record.tail {
            let staged = self
                .bucket
                .read_all(&self.layout.tail_object(id, &tail.name))
                .await;
            match staged {
                Ok(bytes) if bytes.len() as u64 == tail.len => buffer.extend_from_slice(&bytes),
                Ok(_) => return Err(corrupt("the staged tail's length").into()),
                Err(e) => return Err(e.into()),
            }
        }
        let hashed = buffer.len();
        Ok(Arc::new(tokio::sync::Mutex::new(Writer {
            repo: repo.to_owned(),
            record,
            revision,
            lease,
            hasher,
            buffer,
            hashed,
            last_used: Instant::now(),
            done: false,
        })))
    }

    /// Drops this instance's claim (best effort: the lease ends it anyway).
    async fn release(&self, id: &str) {
        self.writing.remove(id);
        let _ = self
            .meta
            .txn(self.release_txn(id, Vec::new(), Vec::new()))
            .await;
    }

    /// A transaction that, if this instance still holds the claim, does `ops` and
    /// releases it.
    fn release_txn(&self, id: &str, mut conditions: Vec<Compare>, mut ops: Vec<TxnOp>) -> Txn {
        let writer_key = self.layout.writer(id);
        conditions.push(self.ours(&writer_key));
        ops.push(TxnOp::delete(writer_key.as_str(), None));
        Txn::new().when(conditions).and_then(ops)
    }

    fn ours(&self, writer_key: &str) -> Compare {
        Compare::value(writer_key, CompareOp::Equal, self.writing.instance.as_str())
    }

    pub async fn upload_append(
        &self,
        repo: &str,
        id: &str,
        at: u64,
        piece: Bytes,
    ) -> lain_store::Result<u64> {
        let writer = self.take(repo, id).await?;
        let mut w = writer.lock().await;
        if w.done {
            return Err(lain_store::Error::UploadOffset {
                received: w.record.received,
            });
        }
        if w.received() != at {
            return Err(lain_store::Error::UploadOffset {
                received: w.received(),
            });
        }
        w.buffer.extend_from_slice(&piece);
        w.last_used = Instant::now();
        while w.buffer.len() as u64 >= self.options.part_size {
            if let Err(e) = self.put_part(id, &mut w).await {
                w.done = true;
                drop(w);
                self.release(id).await;
                return Err(e);
            }
        }
        Ok(w.received())
    }

    /// Sends the first part's worth of the buffer to S3 and records it.
    async fn put_part(&self, id: &str, w: &mut Writer) -> lain_store::Result<()> {
        if !self.meta.lease_alive() || w.lease != self.meta.lease() {
            return Err(Error::LeaseLapsed.into());
        }
        let object = self.layout.upload_object(id);
        let started = w.record.multipart.is_none();
        let multipart = match &w.record.multipart {
            Some(m) => m.clone(),
            None => self.bucket.start_multipart(&object).await?,
        };
        let recorded = self.record_part(id, w, &object, &multipart).await;
        if recorded.is_err() && started {
            // Never recorded: nobody else would abort it.
            let _ = self.bucket.abort_multipart(&object, &multipart).await;
        }
        recorded
    }

    async fn record_part(
        &self,
        id: &str,
        w: &mut Writer,
        object: &object_store::path::Path,
        multipart: &str,
    ) -> lain_store::Result<()> {
        let mut record = w.record.clone();
        // A staged tail loaded from an instance with larger parts goes whole.
        let cut = (self.options.part_size as usize).max(w.hashed);
        let part = w.buffer.split_to(cut).freeze();
        let mut hasher = w.hasher.clone();
        hasher.update(&part[w.hashed.min(part.len())..]);
        let etag = self
            .bucket
            .put_part(object, multipart, record.parts.len(), part.clone())
            .await;
        let etag = match etag {
            Ok(etag) => etag,
            Err(e) => {
                // The part's bytes go back: nothing was recorded.
                let mut restored = BytesMut::from(&part[..]);
                restored.extend_from_slice(&w.buffer);
                w.buffer = restored;
                return Err(e.into());
            }
        };
        let staged = record.tail.take();
        record.multipart = Some(multipart.to_owned());
        record.parts.push(etag);
        record.parts_len += part.len() as u64;
        record.received = record.parts_len;
        record.hasher = BASE64.encode(hasher.save());
        record.active = now_ms();
        self.save(id, w, record).await?;
        w.hasher = hasher;
        w.hashed = w.hashed.saturating_sub(part.len());
        if let Some(staged) = staged {
            let _ = self
                .bucket
                .delete(&self.layout.tail_object(id, &staged.name))
                .await;
        }
        Ok(())
    }

    pub async fn upload_pause(&self, repo: &str, id: &str) -> lain_store::Result<u64> {
        let Some(writer) = self.writing.get(id) else {
            // Nothing held here: the record says it all.
            return Ok(self.session(repo, id).await?.0.received);
        };
        let mut w = writer.lock().await;
        if w.done {
            return Ok(self.session(repo, id).await?.0.received);
        }
        let result = self.stage(id, &mut w).await;
        w.done = true;
        drop(w);
        self.writing.remove(id);
        if result.is_err() {
            self.release(id).await;
        }
        result
    }

    /// Stages what the buffer holds past the parts, records it, releases the claim.
    async fn stage(&self, id: &str, w: &mut Writer) -> lain_store::Result<u64> {
        let mut record = w.record.clone();
        let key = self.layout.session(id);
        let mut ops = Vec::new();
        let mut old_tail = None;
        if w.buffer.len() > w.hashed {
            let mut hasher = w.hasher.clone();
            hasher.update(&w.buffer[w.hashed..]);
            let name = uuid::Uuid::new_v4().simple().to_string();
            let bytes = Bytes::copy_from_slice(&w.buffer);
            self.bucket
                .create(&self.layout.tail_object(id, &name), bytes)
                .await?;
            old_tail = record.tail.replace(Tail {
                name,
                len: w.buffer.len() as u64,
            });
            record.received = record.parts_len + w.buffer.len() as u64;
            record.hasher = BASE64.encode(hasher.save());
            record.active = now_ms();
            ops.push(TxnOp::put(key.as_str(), records::encode(&record), None));
        }
        let txn = self.release_txn(id, vec![unchanged(&key, w.revision)], ops);
        if !self.meta.txn(txn).await?.succeeded() {
            return Err(lain_store::Error::UploadOffset {
                received: w.record.received,
            });
        }
        if let Some(old) = old_tail {
            let _ = self
                .bucket
                .delete(&self.layout.tail_object(id, &old.name))
                .await;
        }
        Ok(record.received)
    }

    pub async fn commit_upload(
        &self,
        repo: &str,
        id: &str,
        expected: &Digest,
    ) -> lain_store::Result<BlobInfo> {
        let writer = self.take(repo, id).await?;
        let mut w = writer.lock().await;
        if w.done {
            return Err(lain_store::Error::UploadOffset {
                received: w.record.received,
            });
        }
        w.done = true;
        let result = self.finish(repo, id, expected, &mut w).await;
        drop(w);
        self.writing.remove(id);
        if let Err(lain_store::Error::DigestMismatch { .. }) = &result {
            let _ = self.cancel_upload(repo, id).await;
        } else if result.is_err() {
            self.release(id).await;
        }
        result
    }

    async fn finish(
        &self,
        repo: &str,
        id: &str,
        expected: &Digest,
        w: &mut Writer,
    ) -> lain_store::Result<BlobInfo> {
        let mut hasher = w.hasher.clone();
        hasher.update(&w.buffer[w.hashed..]);
        let computed = hasher.finish();
        if computed != *expected {
            return Err(lain_store::Error::DigestMismatch {
                expected: Box::new(expected.clone()),
                computed: Box::new(computed),
            });
        }
        let size = w.received();
        let object = self.layout.upload_object(id);
        let info = match &w.record.multipart {
            None => {
                let bytes = Bytes::copy_from_slice(&w.buffer);
                self.settle_blob(repo, expected, size, Source::Bytes(bytes))
                    .await?
            }
            Some(multipart) => {
                if !self.meta.lease_alive() || w.lease != self.meta.lease() {
                    return Err(Error::LeaseLapsed.into());
                }
                let multipart = multipart.clone();
                // The digest is recorded before the upload is finished: a retried
                // commit, which finds it finished, must be for the same bytes.
                match w.record.completed.clone() {
                    Some(done) if done != expected.to_string() => {
                        return Err(lain_store::Error::DigestMismatch {
                            expected: Box::new(expected.clone()),
                            computed: Box::new(records::parse_digest(b"completed", &done)?),
                        });
                    }
                    Some(_) => {}
                    None => self.record_completion(id, w, expected).await?,
                }
                let multipart = &multipart;
                if !self.bucket.exists(&object).await? {
                    let mut parts = w.record.parts.clone();
                    if !w.buffer.is_empty() {
                        let last = Bytes::copy_from_slice(&w.buffer);
                        parts.push(
                            self.bucket
                                .put_part(&object, multipart, parts.len(), last)
                                .await?,
                        );
                    }
                    self.bucket
                        .finish_multipart(&object, multipart, &parts)
                        .await?;
                }
                self.settle_blob(repo, expected, size, Source::Object(object.clone()))
                    .await?
            }
        };
        // The blob is stored and linked: the session's end is cleanup, and a failure
        // here leaves only what the purge removes.
        let key = self.layout.session(id);
        let txn = self.release_txn(
            id,
            vec![unchanged(&key, w.revision)],
            vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(self.layout.owned_session(&w.record.owner, id), None),
            ],
        );
        if let Err(e) = self.meta.txn(txn).await {
            tracing::warn!(error = %e, session = id, "a committed session's record stays until purged");
        }
        self.remove_objects(id, &w.record).await;
        Ok(info)
    }

    /// Records that the session is being committed as `digest`.
    async fn record_completion(
        &self,
        id: &str,
        w: &mut Writer,
        digest: &Digest,
    ) -> lain_store::Result<()> {
        let mut record = w.record.clone();
        record.completed = Some(digest.to_string());
        self.save(id, w, record).await
    }

    /// Writes the writer's new `record`, if the session is as the writer last saw it
    /// and this instance still holds its claim (416 otherwise: another writer won).
    async fn save(
        &self,
        id: &str,
        w: &mut Writer,
        record: SessionRecord,
    ) -> lain_store::Result<()> {
        let key = self.layout.session(id);
        let txn = Txn::new()
            .when([
                unchanged(&key, w.revision),
                self.ours(&self.layout.writer(id)),
            ])
            .and_then([TxnOp::put(key.as_str(), records::encode(&record), None)]);
        let response = self.meta.txn(txn).await?;
        if !response.succeeded() {
            return Err(lain_store::Error::UploadOffset {
                received: w.record.received,
            });
        }
        w.revision = response.header().map_or(0, |h| h.revision());
        w.record = record;
        Ok(())
    }

    /// Best effort: the session's multipart upload and staged objects.
    async fn remove_objects(&self, id: &str, record: &SessionRecord) {
        let object = self.layout.upload_object(id);
        if let Some(multipart) = &record.multipart {
            let _ = self.bucket.abort_multipart(&object, multipart).await;
        }
        if let Ok(objects) = self.bucket.list(&self.layout.upload_objects(id)).await {
            for (path, _, _) in objects {
                let _ = self.bucket.delete(&path).await;
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &str, id: &str) -> lain_store::Result<()> {
        self.writing.remove(id);
        let (record, revision) = self.session(repo, id).await?;
        let key = self.layout.session(id);
        let txn = Txn::new().when([unchanged(&key, revision)]).and_then([
            TxnOp::delete(key.as_str(), None),
            TxnOp::delete(self.layout.writer(id), None),
            TxnOp::delete(self.layout.owned_session(&record.owner, id), None),
        ]);
        if !self.meta.txn(txn).await?.succeeded() {
            return Err(Error::Contended {
                what: "an upload's cancel",
            }
            .into());
        }
        self.remove_objects(id, &record).await;
        Ok(())
    }

    /// Ends sessions no request has written for `idle`, unless one is writing now.
    pub async fn purge_uploads(&self, idle: Duration) -> Result<usize> {
        let cutoff = now_ms().saturating_sub(idle.as_millis() as u64);
        let mut purged = 0;
        for kv in self.meta.scan_all(&self.layout.sessions(), false).await? {
            let record: SessionRecord = records::decode(kv.key(), kv.value())?;
            if record.active > cutoff {
                continue;
            }
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(id) = key.strip_prefix(&self.layout.sessions()) else {
                continue;
            };
            // A writer key on a session idle this long is a claim whose request is
            // long gone (a live request records each part): it goes too.
            let txn = Txn::new()
                .when([unchanged(&key, kv.mod_revision())])
                .and_then([
                    TxnOp::delete(key.as_str(), None),
                    TxnOp::delete(self.layout.writer(id), None),
                    TxnOp::delete(self.layout.owned_session(&record.owner, id), None),
                ]);
            if self.meta.txn(txn).await?.succeeded() {
                self.remove_objects(id, &record).await;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

/// Stages the sessions whose requests went away (see [`ABANDONED`]); ends when the
/// store is dropped.
pub async fn put_away_abandoned(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(ABANDONED / 2);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        for (id, writer) in inner.writing.all() {
            let Ok(mut w) = writer.try_lock() else {
                continue;
            };
            if w.done || w.last_used.elapsed() < ABANDONED {
                continue;
            }
            let result = inner.stage(&id, &mut w).await;
            w.done = true;
            drop(w);
            inner.writing.remove(&id);
            if let Err(e) = result {
                tracing::warn!(error = %e, session = id, "an abandoned upload's bytes could not be staged");
                inner.release(&id).await;
            }
        }
    }
}
