//! The bucket: immutable blob objects written create-only, staged upload tails, S3
//! multipart uploads, and ranged reads streamed piece by piece.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use lain_store::{BlobBody, BlobStream, OpenBlob};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use crate::error::Result;

/// Where the bucket is and how to sign for it: distribution's `storage.s3` keys.
#[derive(Debug, Clone, Default)]
pub struct BucketSettings {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible server's URL (`regionendpoint`); AWS's own when absent.
    pub endpoint: Option<String>,
    pub access_key: String,
    pub secret_key: String,
    /// Whether plain `http://` is refused (`secure`, default true).
    pub secure: bool,
    /// `<bucket>.<endpoint>` addressing instead of `<endpoint>/<bucket>`.
    pub virtual_hosted: bool,
}

#[derive(Clone)]
pub struct Bucket {
    s3: Arc<AmazonS3>,
}

impl Bucket {
    pub fn new(settings: &BucketSettings) -> Result<Bucket> {
        // reqwest builds its TLS with the process's default provider: ring, the one
        // crypto provider of this build. Installed once; later calls change nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = ClientOptions::new()
            .with_allow_http(!settings.secure)
            .with_connect_timeout(Duration::from_secs(5))
            // A blob's body may stream for minutes: no limit on a whole request, but a
            // limit on waiting for the next bytes.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(30));
        let mut builder = AmazonS3Builder::new()
            .with_client_options(options)
            .with_allow_http(!settings.secure)
            .with_region(settings.region.clone())
            .with_bucket_name(settings.bucket.clone())
            .with_access_key_id(settings.access_key.clone())
            .with_secret_access_key(settings.secret_key.clone())
            .with_virtual_hosted_style_request(settings.virtual_hosted)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        Ok(Bucket {
            s3: Arc::new(builder.build()?),
        })
    }

    /// Writes `bytes` at `path` unless an object is there already: content-addressed
    /// and staged objects never change, so an existing one holds the same bytes.
    /// Whether this call wrote it.
    pub async fn create(&self, path: &Path, bytes: Bytes) -> Result<bool> {
        let options = PutOptions::from(PutMode::Create);
        match self
            .s3
            .put_opts(path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.s3.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A server-side copy, unless `to` exists already; whether this call copied.
    pub async fn copy_absent(&self, from: &Path, to: &Path) -> Result<bool> {
        if self.exists(to).await? {
            return Ok(false);
        }
        self.s3.copy(from, to).await?;
        Ok(true)
    }

    pub async fn read_all(&self, path: &Path) -> Result<Bytes> {
        Ok(self.s3.get(path).await?.bytes().await?)
    }

    /// Removes an object; one that is gone already is not an error.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.s3.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix`, with its size and when it was last written.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<(Path, u64, std::time::SystemTime)>> {
        let mut listing = self.s3.list(Some(prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let when = std::time::SystemTime::from(meta.last_modified);
            out.push((meta.location, meta.size, when));
        }
        Ok(out)
    }

    pub async fn start_multipart(&self, path: &Path) -> Result<String> {
        Ok(self.s3.create_multipart(path).await?)
    }

    /// Uploads part `index` (0-based) and returns its ETag.
    pub async fn put_part(
        &self,
        path: &Path,
        id: &str,
        index: usize,
        bytes: Bytes,
    ) -> Result<String> {
        let part = self
            .s3
            .put_part(path, &id.to_owned(), index, PutPayload::from(bytes))
            .await?;
        Ok(part.content_id)
    }

    pub async fn finish_multipart(&self, path: &Path, id: &str, etags: &[String]) -> Result<()> {
        let parts = etags
            .iter()
            .map(|e| PartId {
                content_id: e.clone(),
            })
            .collect();
        self.s3
            .complete_multipart(path, &id.to_owned(), parts)
            .await?;
        Ok(())
    }

    pub async fn abort_multipart(&self, path: &Path, id: &str) -> Result<()> {
        match self.s3.abort_multipart(path, &id.to_owned()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob found in etcd, to be read from its object.
    pub fn open(&self, path: Path, size: u64) -> Box<dyn OpenBlob> {
        Box::new(ObjectBlob {
            bucket: self.clone(),
            path,
            size,
        })
    }
}

struct ObjectBlob {
    bucket: Bucket,
    path: Path,
    size: u64,
}

#[async_trait::async_trait]
impl OpenBlob for ObjectBlob {
    fn size(&self) -> u64 {
        self.size
    }

    /// The ranged GET is sent here, so that a bucket that does not answer is a 503,
    /// not a response cut after its headers.
    async fn read(self: Box<Self>, range: Range<u64>) -> lain_store::Result<BlobBody> {
        if range.start > range.end || range.end > self.size {
            return Err(lain_store::Error::RangeNotSatisfiable {
                start: range.start,
                end: range.end,
                size: self.size,
            });
        }
        let remaining = range.end - range.start;
        let state = if remaining == 0 {
            Reading::Done
        } else {
            let options = GetOptions::new().with_range(Some(range));
            let answer = self.bucket.s3.get_opts(&self.path, options).await;
            let answer = answer.map_err(crate::error::Error::from)?;
            Reading::Streaming(answer.into_stream())
        };
        Ok(Box::pin(ObjectStream { state, remaining }))
    }
}

/// A ranged GET's body, streamed.
struct ObjectStream {
    state: Reading,
    remaining: u64,
}

enum Reading {
    Streaming(BoxStream<'static, object_store::Result<Bytes>>),
    Done,
}

impl BlobStream for ObjectStream {
    fn remaining(&self) -> u64 {
        self.remaining
    }

    fn poll_piece(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<lain_store::Result<Bytes>>> {
        let this = self.get_mut();
        let failed = match &mut this.state {
            Reading::Done => return Poll::Ready(None),
            Reading::Streaming(stream) => match stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(mut piece))) => {
                    // Never more than the range, whatever the server sends.
                    piece.truncate(this.remaining.min(piece.len() as u64) as usize);
                    this.remaining -= piece.len() as u64;
                    if this.remaining == 0 {
                        this.state = Reading::Done;
                    }
                    return Poll::Ready(Some(Ok(piece)));
                }
                Poll::Ready(None) => {
                    this.state = Reading::Done;
                    if this.remaining == 0 {
                        return Poll::Ready(None);
                    }
                    let short = format!("the object ended {} bytes early", this.remaining);
                    tracing::error!("blob read failed during its response: {short}");
                    return Poll::Ready(Some(Err(lain_store::Error::internal(short))));
                }
                Poll::Ready(Some(Err(e))) => e,
            },
        };
        this.state = Reading::Done;
        tracing::error!(error = %failed, "blob read failed during its response");
        Poll::Ready(Some(Err(crate::error::Error::from(failed).into())))
    }
}
