//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount), and
//! `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! Request bodies stream into the store's session in batches of about a MiB; while
//! one batch is hashed and written, the next is received, so
//! the network and the hashing overlap and no more than two batches are in memory.
//! Body frames are copied into the batch rather than kept: a frame is a slice of the
//! connection's read buffer, and a client trickling one-byte frames would otherwise
//! pin a whole buffer per byte.
//!
//! One request at a time may write a session: a second concurrent PATCH or PUT gets
//! 416, so two chunks can never interleave. The claim is held until the request's last
//! store call (append or commit) has finished, even if the client went away first.
//! Across instances serving one store, the store itself refuses a piece that does not
//! continue the session where it ends (also 416).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::header;
use lain_store::{Algorithm, Digest};
use tokio::task::JoinHandle;

use super::{Call, Context, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, Mounts, Reply, RequestBody};
use crate::budget::Buffer;
use crate::errors::{ApiError, ErrorCode};
use crate::names::{check_repository, parse_digest};
use crate::ranges::{content_range, upload_range};

/// How many body bytes gather, at most, before they go to the store in one call.
const APPEND_BATCH: usize = 1 << 20;

/// A body's first batch; each full one doubles the next, up to [`APPEND_BATCH`]. A
/// client trickling bytes holds this much of the budget, not a whole batch.
const FIRST_BATCH: usize = 64 << 10;

/// The longest a batch gathers before what it holds is written (see `Upload::stream`).
const BATCH_QUIET: Duration = Duration::from_millis(50);

/// The upload sessions a request is writing right now.
#[derive(Clone, Default)]
pub struct Writers(Arc<Mutex<HashSet<String>>>);

/// A request's exclusive right to write one session. Clones go with each store call
/// the request starts; the session is free again when the last one is dropped.
#[derive(Clone)]
struct Claim {
    _held: Arc<Held>,
}

struct Held {
    writers: Writers,
    id: String,
}

impl Writers {
    fn try_claim(&self, id: &str) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(id.to_owned()).then(|| Claim {
            _held: Arc::new(Held {
                writers: self.clone(),
                id: id.to_owned(),
            }),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let writers = &self.writers.0;
        let mut set = writers.lock().unwrap_or_else(PoisonError::into_inner);
        set.remove(&self.id);
    }
}

/// What a store call on the session needs, owned, so that the call can outlive the
/// request.
struct Session {
    store: std::sync::Arc<dyn lain_store::Store>,
    repo: String,
    id: String,
}

/// A session as one request writes it.
struct Upload<'a> {
    ctx: &'a Context,
    name: &'a str,
    id: &'a str,
    claim: Claim,
    /// The session's size when claimed; only this request can change it.
    received: u64,
}

pub async fn start(ctx: &Context, name: String, call: &mut Call) -> Result<Reply, ApiError> {
    if let Some(mounted) = mount(ctx, &name, call).await? {
        return Ok(created(&name, &mounted));
    }
    let Some(text) = call.query("digest") else {
        let id = open_session(ctx, &name, Algorithm::Sha256, call).await?;
        let reply = session_reply(ctx, StatusCode::ACCEPTED, &name, &id, 0);
        return Ok(match ctx.store.chunk_min_length() {
            Some(length) => reply.named("oci-chunk-min-length", length.to_string()),
            None => reply,
        });
    };
    // Monolithic: the whole blob is this request's body.
    let digest = parse_digest(text)?;
    let id = open_session(ctx, &name, digest.algorithm(), call).await?;
    let upload = Upload::claim(ctx, &name, &id).await?;
    if let Err(e) = upload.stream(&mut call.body, None).await {
        upload.cancel().await;
        return Err(e);
    }
    upload.commit(digest).await
}

/// `?mount=<digest>[&from=<repo>]`: links the blob into `name` when a repository the
/// caller may take it from has it: `from`, or without `from` any (see [`Mounts`]). A
/// mount that cannot happen, also for a malformed digest or name, is not an error: the
/// client gets an upload session instead, as the spec asks.
async fn mount(ctx: &Context, name: &str, call: &Call) -> Result<Option<Digest>, ApiError> {
    let Some(digest) = call.query("mount").and_then(|d| parse_digest(d).ok()) else {
        return Ok(None);
    };
    let from = call.query("from").map(str::to_owned);
    // The repositories to look in; `None`: the blob may come from anywhere.
    let sources = match (&call.mounts, from) {
        (_, Some(from)) if check_repository(&from).is_err() => return Ok(None),
        (Mounts::Anywhere, None) => None,
        (Mounts::Anywhere, Some(from)) => Some(vec![from]),
        (Mounts::Among(pullable), Some(from)) if pullable.contains(&from) => Some(vec![from]),
        (Mounts::Among(_), Some(_)) => return Ok(None),
        (Mounts::Among(pullable), None) => Some(pullable.clone()),
    };
    if let Some(sources) = &sources {
        let mut found = false;
        for source in sources.iter().filter(|s| check_repository(s).is_ok()) {
            if ctx.store.blob(source, &digest).await?.is_some() {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(None);
        }
    }
    let mounted = ctx.store.link_blob(name, &digest).await?;
    Ok(mounted.map(|_| digest))
}

pub async fn patch(
    ctx: &Context,
    name: String,
    id: String,
    call: &mut Call,
) -> Result<Reply, ApiError> {
    check_state(ctx, &name, &id, call)?;
    let upload = Upload::claim(ctx, &name, &id).await?;
    let streamed = upload.stream_chunk(call).await;
    // The session now waits for the client's next chunk, holding no buffer.
    let paused = upload.pause().await;
    let received = streamed?;
    paused?;
    Ok(session_reply(
        ctx,
        StatusCode::ACCEPTED,
        &name,
        &id,
        received,
    ))
}

pub async fn status(
    ctx: &Context,
    name: String,
    id: String,
    call: &Call,
) -> Result<Reply, ApiError> {
    check_state(ctx, &name, &id, call)?;
    let received = received(ctx, &name, &id).await?;
    Ok(session_reply(
        ctx,
        StatusCode::NO_CONTENT,
        &name,
        &id,
        received,
    ))
}

/// Refuses a location whose `_state` this registry did not issue for this session (404,
/// as for an unknown session) without asking the store. The size the state names is
/// not held against the chunk: a client may resume with an older location of the
/// session, and the store refuses a chunk that does not continue it.
fn check_state(ctx: &Context, name: &str, id: &str, call: &Call) -> Result<(), ApiError> {
    match call.query("_state") {
        Some(state) if ctx.upload_states.check(name, id, state).is_err() => Err(ApiError::new(
            ErrorCode::BlobUploadUnknown,
            "the upload location's state is not this registry's",
        )),
        _ => Ok(()),
    }
}

/// `PUT ...?digest=`: the optional last chunk, then the commit.
pub async fn finish(
    ctx: &Context,
    name: String,
    id: String,
    call: &mut Call,
) -> Result<Reply, ApiError> {
    // An unknown session is reported before anything about the digest.
    check_state(ctx, &name, &id, call)?;
    let upload = Upload::claim(ctx, &name, &id).await?;
    let digest = match call.query("digest") {
        Some(text) => parse_digest(text)?,
        None => {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                "the digest query parameter is required to complete an upload",
            ));
        }
    };
    if let Err(e) = upload.stream_chunk(call).await {
        // The session stays for a retry, holding no buffer.
        let _ = upload.pause().await;
        return Err(e);
    }
    upload.commit(digest).await
}

pub async fn cancel(
    ctx: &Context,
    name: String,
    id: String,
    call: &Call,
) -> Result<Reply, ApiError> {
    check_state(ctx, &name, &id, call)?;
    ctx.store.cancel_upload(&name, &id).await?;
    Ok(Reply::new(StatusCode::NO_CONTENT))
}

/// A new session, owned by the client's address (its share of sessions is bounded).
async fn open_session(
    ctx: &Context,
    name: &str,
    algorithm: Algorithm,
    call: &Call,
) -> Result<String, ApiError> {
    let owner = call.client.to_string();
    Ok(ctx.store.start_upload(name, algorithm, &owner).await?)
}

/// The bytes session `id` has received.
async fn received(ctx: &Context, name: &str, id: &str) -> Result<u64, ApiError> {
    Ok(ctx.store.upload_status(name, id).await?.received)
}

impl<'a> Upload<'a> {
    /// Claims session `id` for this request: 404 if it is unknown, 416 with its
    /// `Range` while another request writes it.
    async fn claim(ctx: &'a Context, name: &'a str, id: &'a str) -> Result<Upload<'a>, ApiError> {
        let claim = ctx.writers.try_claim(id);
        let received = received(ctx, name, id).await?;
        match claim {
            Some(claim) => Ok(Upload {
                ctx,
                name,
                id,
                claim,
                received,
            }),
            None => Err(range_refused(
                ctx,
                name,
                id,
                received,
                "another request is writing this upload".to_owned(),
            )),
        }
    }

    /// Runs the store call `work` makes with this request's claim held until the call
    /// returns, even if the request is dropped first (its client went away).
    async fn held<T, F>(&self, work: impl FnOnce(Session) -> F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = lain_store::Result<T>> + Send + 'static,
    {
        join(self.spawn_held(work)).await
    }

    /// [`Upload::held`], not waited for.
    fn spawn_held<T, F>(&self, work: impl FnOnce(Session) -> F) -> JoinHandle<Result<T, ApiError>>
    where
        T: Send + 'static,
        F: Future<Output = lain_store::Result<T>> + Send + 'static,
    {
        let claim = self.claim.clone();
        let call = work(Session {
            store: self.ctx.store.clone(),
            repo: self.name.to_owned(),
            id: self.id.to_owned(),
        });
        tokio::spawn(async move {
            let _claim = claim;
            Ok(call.await?)
        })
    }

    async fn commit(&self, digest: Digest) -> Result<Reply, ApiError> {
        let expected = digest.clone();
        self.held(|s| async move { s.store.commit_upload(&s.repo, &s.id, &expected).await })
            .await?;
        Ok(created(self.name, &digest))
    }

    /// Drops the session (best effort: it may already be gone).
    async fn cancel(&self) {
        let _ = self
            .held(|s| async move { s.store.cancel_upload(&s.repo, &s.id).await })
            .await;
    }

    /// Streams the request's body into the session, after checking its
    /// `Content-Range` (if any): the chunk must start at the bytes received so far
    /// (416 otherwise) and have the range's length (400 otherwise: of a longer body
    /// nothing past the range's end reaches the session; a shorter one keeps what
    /// arrived). Returns the session's size afterwards.
    async fn stream_chunk(&self, call: &mut Call) -> Result<u64, ApiError> {
        let received = self.received;
        let Some((start, end)) = chunk_range(call)? else {
            return self.stream(&mut call.body, None).await;
        };
        if start != received {
            return Err(range_refused(
                self.ctx,
                self.name,
                self.id,
                received,
                format!("chunk starts at {start}, but the upload has {received} bytes"),
            ));
        }
        let length = (end - start)
            .checked_add(1)
            .ok_or_else(|| bad_range(start, end))?;
        if call.content_length().is_some_and(|n| n != length) {
            return Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("Content-Range {start}-{end} does not match Content-Length"),
            ));
        }
        let after = self.stream(&mut call.body, Some(length)).await?;
        if after - start != length {
            return Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!(
                    "Content-Range {start}-{end} announced {length} bytes, the body had {}",
                    after - start
                ),
            )
            .with_header(header::RANGE, upload_range(after)));
        }
        Ok(after)
    }

    /// Streams `body` into the session; returns its size after the last byte. With
    /// `limit`, a body longer than that many bytes is refused before any byte past the
    /// limit reaches the session.
    ///
    /// Batches come from the server's body budget: while it is spent, no more of the
    /// body is read. A batch starts small and doubles up to [`APPEND_BATCH`] while the
    /// body keeps coming. A batch not full within [`BATCH_QUIET`] of its start is sent
    /// as it is and written, and so is what the session gathers when the request must
    /// wait for the budget: a slow, silent or waiting client holds no budget for long.
    async fn stream(&self, body: &mut RequestBody, limit: Option<u64>) -> Result<u64, ApiError> {
        let mut batch: Option<Buffer> = None;
        // When the batch gathering now must be sent, full or not.
        let mut send_by = Instant::now();
        let mut capacity = FIRST_BATCH;
        let mut in_flight: Option<JoinHandle<Result<u64, ApiError>>> = None;
        let mut received = self.received;
        let mut sent: u64 = 0;
        loop {
            let next = body.next_data(ErrorCode::BlobUploadInvalid);
            let data = match &batch {
                None => next.await,
                Some(_) => match tokio::time::timeout_at(send_by.into(), next).await {
                    Ok(data) => data,
                    Err(_quiet) => {
                        if let Some(quiet) = batch.take() {
                            in_flight = Some(self.send(quiet, in_flight, &mut received).await?);
                        }
                        received = self.write_out(in_flight.take()).await?;
                        capacity = FIRST_BATCH;
                        continue;
                    }
                },
            };
            let data = match data {
                Ok(data) => data,
                // What is in flight lands; the batch not yet sent is dropped. The
                // session's `Range` tells the client where to resume.
                Err(e) => return Err(finish_in_flight(in_flight, e).await),
            };
            let end = data.is_none();
            let mut rest: &[u8] = data.as_deref().unwrap_or_default();
            sent += rest.len() as u64;
            if let Some(limit) = limit
                && sent > limit
            {
                let long = ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("the body is longer than its Content-Range ({limit} bytes)"),
                );
                return Err(finish_in_flight(in_flight, long).await);
            }
            loop {
                if let Some(full) = batch.take_if(|b| b.room() == 0 || (end && !b.is_empty())) {
                    in_flight = Some(self.send(full, in_flight, &mut received).await?);
                    capacity = (capacity * 2).min(APPEND_BATCH);
                }
                if rest.is_empty() {
                    break;
                }
                let buffer = match &mut batch {
                    Some(buffer) => buffer,
                    None => match self.ctx.upload_memory.try_buffer(capacity) {
                        Some(buffer) => {
                            send_by = Instant::now() + BATCH_QUIET;
                            batch.insert(buffer)
                        }
                        None => {
                            // The budget is spent. What this session holds goes back
                            // first (its pieces are written), so that no request waits
                            // holding budget that others wait for: every wait ends.
                            received = self.write_out(in_flight.take()).await?;
                            let buffer = self.ctx.upload_memory.buffer(capacity).await;
                            send_by = Instant::now() + BATCH_QUIET;
                            batch.insert(buffer)
                        }
                    },
                };
                rest = &rest[buffer.fill(rest)..];
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

    /// Hands `batch` to the store, after the batch before it (`in_flight`) has landed,
    /// so pieces stay in order; returns the new task.
    async fn send(
        &self,
        batch: Buffer,
        in_flight: Option<JoinHandle<Result<u64, ApiError>>>,
        received: &mut u64,
    ) -> Result<JoinHandle<Result<u64, ApiError>>, ApiError> {
        if let Some(task) = in_flight {
            *received = join(task).await?;
        }
        let (piece, at) = (batch.freeze(), *received);
        Ok(self.spawn_held(move |s| async move {
            s.store.upload_append(&s.repo, &s.id, at, piece).await
        }))
    }

    /// Puts away what the session still gathers (see `Store::upload_pause`).
    async fn pause(&self) -> Result<u64, ApiError> {
        self.held(|s| async move { s.store.upload_pause(&s.repo, &s.id).await })
            .await
    }

    /// Lets the batch in flight land, then writes what the session gathers: this
    /// request then holds none of the body budget. Returns the bytes received.
    async fn write_out(
        &self,
        in_flight: Option<JoinHandle<Result<u64, ApiError>>>,
    ) -> Result<u64, ApiError> {
        if let Some(task) = in_flight {
            join(task).await?;
        }
        self.pause().await
    }
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

async fn join<T>(task: JoinHandle<Result<T, ApiError>>) -> Result<T, ApiError> {
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "upload store task failed");
        Err(ApiError::new(ErrorCode::Unknown, "internal error"))
    })
}

/// The request's `Content-Range` as `(start, end)`, if it has one.
fn chunk_range(call: &Call) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(text) = call.header(header::CONTENT_RANGE)? else {
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

fn bad_range(start: u64, end: u64) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUploadInvalid,
        format!("Content-Range {start}-{end} is too large"),
    )
}

/// 416 `RANGE_INVALID` with the session's headers, so the client can resume.
fn range_refused(ctx: &Context, name: &str, id: &str, received: u64, message: String) -> ApiError {
    ApiError::new(ErrorCode::RangeInvalid, message)
        .with_header(header::RANGE, upload_range(received))
        .with_header(header::LOCATION, session_location(ctx, name, id, received))
        .with_header(
            header::HeaderName::from_static(DOCKER_UPLOAD_UUID),
            id.to_owned(),
        )
}

/// The session's URL, with its state at `received` bytes.
fn session_location(ctx: &Context, name: &str, id: &str, received: u64) -> String {
    let state = ctx.upload_states.issue(name, id, received);
    format!("/v2/{name}/blobs/uploads/{id}?_state={state}")
}

fn session_reply(ctx: &Context, status: StatusCode, name: &str, id: &str, received: u64) -> Reply {
    Reply::new(status)
        .header(header::LOCATION, session_location(ctx, name, id, received))
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
