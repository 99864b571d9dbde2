//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount), and
//! `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! Request bodies stream into the engine's session in batches of about a MiB; while
//! one batch is hashed and written on the blocking pool, the next is received, so
//! the network and the hashing overlap and no more than two batches are in memory.
//! Body frames are copied into the batch rather than kept: a frame is a slice of the
//! connection's read buffer, and a client trickling one-byte frames would otherwise
//! pin a whole buffer per byte.
//!
//! One request at a time may write a session: a second concurrent PATCH or PUT gets
//! 416, so two chunks can never interleave.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use lain_engine::{Algorithm, Digest};
use tokio::task::JoinHandle;

use super::{
    Call, Context, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, Reply, blocking, body_error,
};
use crate::errors::{ApiError, ErrorCode};
use crate::names::{check_repository, parse_digest};
use crate::ranges::{content_range, upload_range};

/// How many body bytes gather before they go to the engine in one blocking call.
const APPEND_BATCH: usize = 1 << 20;

/// A body that sends nothing for this long is abandoned (its bytes so far are kept).
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The upload sessions a request is writing right now.
#[derive(Clone, Default)]
pub struct Writers(Arc<Mutex<HashSet<String>>>);

/// A session claimed by one request; released when the request and every append it
/// started have finished (the request may end, e.g. its client gone, while a batch is
/// still being written on the blocking pool, which holds a clone).
#[derive(Clone)]
struct Claim {
    _held: Arc<Writing>,
}

struct Writing {
    writers: Writers,
    id: String,
}

impl Writers {
    fn claim(&self, id: &str) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(id.to_owned()).then(|| Claim {
            _held: Arc::new(Writing {
                writers: self.clone(),
                id: id.to_owned(),
            }),
        })
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut set = self
            .writers
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.remove(&self.id);
    }
}

pub async fn start(ctx: &Context, name: String, mut call: Call) -> Result<Reply, ApiError> {
    if let Some(mounted) = mount(ctx, &name, &call).await? {
        return Ok(created(&name, &mounted));
    }
    if let Some(text) = call.query("digest") {
        // Monolithic: the whole blob is this request's body.
        let digest = parse_digest(text)?;
        let id = open_session(ctx, &name, digest.algorithm()).await?;
        let claim = claim(ctx, &name, &id).await?;
        if let Err(e) = stream_into(ctx, &claim, &name, &id, &mut call.body, 0).await {
            abandon(ctx, &name, &id).await;
            return Err(e);
        }
        return commit(ctx, name, id, digest).await;
    }
    let id = open_session(ctx, &name, Algorithm::Sha256).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &name, &id, 0))
}

/// `?mount=<digest>[&from=<repo>]`: links the blob into `name` when `from` (or, without
/// `from`, the registry) has it. A mount that cannot happen, also for a malformed digest
/// or name, is not an error: the client gets an upload session instead, as the spec
/// asks.
async fn mount(ctx: &Context, name: &str, call: &Call) -> Result<Option<Digest>, ApiError> {
    let Some(digest) = call.query("mount").and_then(|d| parse_digest(d).ok()) else {
        return Ok(None);
    };
    let from = call.query("from").map(str::to_owned);
    if from
        .as_deref()
        .is_some_and(|f| check_repository(f).is_err())
    {
        return Ok(None);
    }
    let (repo, wanted) = (name.to_owned(), digest.clone());
    let mounted = blocking(ctx, move |e| {
        if let Some(from) = &from
            && e.repo_blob(from, &wanted)?.is_none()
        {
            return Ok(None);
        }
        Ok(e.link_blob(&repo, &wanted)?)
    })
    .await?;
    Ok(mounted.map(|_| digest))
}

pub async fn patch(
    ctx: &Context,
    name: String,
    id: String,
    mut call: Call,
) -> Result<Reply, ApiError> {
    let claim = claim(ctx, &name, &id).await?;
    let start = check_chunk(ctx, &name, &id, &call).await?;
    let received = stream_chunk(ctx, &claim, &name, &id, &mut call, start).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &name, &id, received))
}

pub async fn status(ctx: &Context, name: String, id: String) -> Result<Reply, ApiError> {
    let received = received(ctx, &name, &id).await?;
    Ok(session_reply(StatusCode::NO_CONTENT, &name, &id, received))
}

/// `PUT ...?digest=`: the optional last chunk, then the commit.
pub async fn finish(
    ctx: &Context,
    name: String,
    id: String,
    mut call: Call,
) -> Result<Reply, ApiError> {
    let claim = claim(ctx, &name, &id).await?;
    // An unknown session is reported before anything about the digest.
    let start = check_chunk(ctx, &name, &id, &call).await?;
    let digest = match call.query("digest") {
        Some(text) => parse_digest(text)?,
        None => {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                "the digest query parameter is required to complete an upload",
            ));
        }
    };
    stream_chunk(ctx, &claim, &name, &id, &mut call, start).await?;
    commit(ctx, name, id, digest).await
}

pub async fn cancel(ctx: &Context, name: String, id: String) -> Result<Reply, ApiError> {
    blocking(ctx, move |e| Ok(e.cancel_upload(&name, &id)?)).await?;
    Ok(Reply::new(StatusCode::NO_CONTENT))
}

async fn open_session(ctx: &Context, name: &str, algorithm: Algorithm) -> Result<String, ApiError> {
    let repo = name.to_owned();
    blocking(ctx, move |e| Ok(e.start_upload(&repo, algorithm)?)).await
}

async fn commit(
    ctx: &Context,
    name: String,
    id: String,
    digest: Digest,
) -> Result<Reply, ApiError> {
    let (repo, expected) = (name.clone(), digest.clone());
    blocking(ctx, move |e| Ok(e.commit_upload(&repo, &id, &expected)?)).await?;
    Ok(created(&name, &digest))
}

/// Drops a session whose body broke off (best effort: it may already be gone).
async fn abandon(ctx: &Context, name: &str, id: &str) {
    let (repo, id) = (name.to_owned(), id.to_owned());
    let _ = blocking(ctx, move |e| Ok(e.cancel_upload(&repo, &id)?)).await;
}

/// Claims session `id` for this request; 416 while another request writes it.
async fn claim(ctx: &Context, name: &str, id: &str) -> Result<Claim, ApiError> {
    match ctx.writers.claim(id) {
        Some(writing) => Ok(writing),
        None => {
            let received = received(ctx, name, id).await?;
            Err(range_refused(
                name,
                id,
                received,
                "another request is writing this upload".to_owned(),
            ))
        }
    }
}

/// The bytes session `id` has received (the session lock may be held by a write, so
/// this runs on the blocking pool).
async fn received(ctx: &Context, name: &str, id: &str) -> Result<u64, ApiError> {
    let (repo, id) = (name.to_owned(), id.to_owned());
    blocking(ctx, move |e| Ok(e.upload_status(&repo, &id)?.received)).await
}

/// Checks a chunk's `Content-Range` (if any) against the session: it must start at
/// the bytes received so far (416 otherwise) and agree with `Content-Length`.
/// Returns where the chunk starts.
async fn check_chunk(ctx: &Context, name: &str, id: &str, call: &Call) -> Result<u64, ApiError> {
    let received = received(ctx, name, id).await?;
    let Some((start, end)) = chunk_range(call)? else {
        return Ok(received);
    };
    if start != received {
        return Err(range_refused(
            name,
            id,
            received,
            format!("chunk starts at {start}, but the upload has {received} bytes"),
        ));
    }
    if let Some(length) = call.content_length()
        && length != end - start + 1
    {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {start}-{end} does not match Content-Length {length}"),
        ));
    }
    Ok(received)
}

/// The request's `Content-Range` as `(start, end)`, if it has one.
fn chunk_range(call: &Call) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(text) = call.header(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    match content_range(text) {
        Some(range) => Ok(Some(range)),
        None => Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {text:?}; expected <start>-<end>"),
        )),
    }
}

/// 416 `RANGE_INVALID` with the session's headers, so the client can resume.
fn range_refused(name: &str, id: &str, received: u64, message: String) -> ApiError {
    ApiError::new(ErrorCode::RangeInvalid, message)
        .with_header(header::RANGE, upload_range(received))
        .with_header(header::LOCATION, session_location(name, id))
        .with_header(
            header::HeaderName::from_static(DOCKER_UPLOAD_UUID),
            id.to_owned(),
        )
}

/// Streams the request's body into the session from `start`; returns the session's
/// size after it. A chunk sent with `Content-Range` but without `Content-Length`
/// (chunked encoding) must still have the range's length.
async fn stream_chunk(
    ctx: &Context,
    claim: &Claim,
    name: &str,
    id: &str,
    call: &mut Call,
    start: u64,
) -> Result<u64, ApiError> {
    let received = stream_into(ctx, claim, name, id, &mut call.body, start).await?;
    if let Some((from, to)) = chunk_range(call)?
        && received.saturating_sub(from) != to - from + 1
    {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!(
                "Content-Range {from}-{to} announced {} bytes, the body had {}",
                to - from + 1,
                received.saturating_sub(from)
            ),
        )
        .with_header(header::RANGE, upload_range(received)));
    }
    Ok(received)
}

/// Streams `body` into session `id`, which holds `start` bytes; returns the
/// session's size after the last byte.
async fn stream_into(
    ctx: &Context,
    claim: &Claim,
    name: &str,
    id: &str,
    body: &mut Incoming,
    start: u64,
) -> Result<u64, ApiError> {
    let mut batch = BytesMut::new();
    let mut in_flight: Option<JoinHandle<Result<u64, ApiError>>> = None;
    let mut received = start;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Ok(None) => None,
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(Some(Err(e))) => {
                return Err(finish_in_flight(
                    in_flight,
                    body_error(ErrorCode::BlobUploadInvalid, &e),
                )
                .await);
            }
            Err(_) => {
                let idle = ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("the body sent nothing for {BODY_IDLE_TIMEOUT:?}"),
                );
                return Err(finish_in_flight(in_flight, idle).await);
            }
        };
        let end = frame.is_none();
        if let Some(Ok(data)) = frame.map(|f| f.into_data()) {
            if batch.capacity() == 0 {
                batch.reserve(APPEND_BATCH);
            }
            batch.extend_from_slice(&data);
        }
        if batch.len() >= APPEND_BATCH || (end && !batch.is_empty()) {
            // One batch at a time in the engine, so pieces stay in order.
            if let Some(task) = in_flight.take() {
                received = join(task).await?;
            }
            let piece = if batch.len() < APPEND_BATCH / 2 {
                // A short tail: copied out, so it does not pin a whole batch buffer
                // while the session waits for its next chunk.
                let piece = Bytes::copy_from_slice(&batch);
                batch.clear();
                piece
            } else {
                batch.split().freeze()
            };
            let (engine, repo, id) = (ctx.engine.clone(), name.to_owned(), id.to_owned());
            let claim = claim.clone();
            in_flight = Some(tokio::task::spawn_blocking(move || {
                let _claim = claim;
                Ok(engine.upload_append(&repo, &id, piece)?)
            }));
        }
        if end {
            break;
        }
    }
    if let Some(task) = in_flight {
        received = join(task).await?;
    }
    Ok(received)
}

/// Waits for the batch in flight (its bytes stay in the session) and returns `error`.
async fn finish_in_flight(
    in_flight: Option<JoinHandle<Result<u64, ApiError>>>,
    error: ApiError,
) -> ApiError {
    if let Some(task) = in_flight {
        let _ = task.await;
    }
    error
}

async fn join(task: JoinHandle<Result<u64, ApiError>>) -> Result<u64, ApiError> {
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "upload append task failed");
        Err(ApiError::new(ErrorCode::Unknown, "internal error"))
    })
}

fn session_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn session_reply(status: StatusCode, name: &str, id: &str, received: u64) -> Reply {
    Reply::new(status)
        .header(header::LOCATION, session_location(name, id))
        .header(header::RANGE, upload_range(received))
        .header(header::CONTENT_LENGTH, "0")
        .named(DOCKER_UPLOAD_UUID, id)
}

/// 201 for a blob now in the repository.
fn created(name: &str, digest: &Digest) -> Reply {
    Reply::new(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(header::CONTENT_LENGTH, "0")
        .named(DOCKER_CONTENT_DIGEST, digest.to_string())
}
