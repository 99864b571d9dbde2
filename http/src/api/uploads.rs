//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount), and
//! `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! Request bodies stream into the engine's session in batches of about a MiB; while
//! one batch is hashed and written on the blocking pool, the next is received, so
//! the network and the hashing overlap and no more than two batches are in memory.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use lain_engine::{Algorithm, Digest};

use super::{
    Call, Context, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, Reply, blocking, body_error,
};
use crate::errors::{ApiError, ErrorCode};
use crate::names::{check_repository, parse_digest};
use crate::ranges::{content_range, upload_range};

/// How many body bytes gather before they go to the engine in one blocking call.
const APPEND_BATCH: usize = 1 << 20;

pub async fn start(ctx: &Context, name: String, mut call: Call) -> Result<Reply, ApiError> {
    if let Some(mount) = call.query("mount") {
        let digest = parse_digest(mount)?;
        let from = call.query("from").map(str::to_owned);
        if let Some(from) = &from {
            check_repository(from)?;
        }
        let (repo, wanted) = (name.clone(), digest.clone());
        let mounted = blocking(ctx, move |e| {
            // With `from`, the blob must be readable there; without it, anywhere.
            if let Some(from) = &from
                && e.repo_blob(from, &wanted)?.is_none()
            {
                return Ok(None);
            }
            Ok(e.link_blob(&repo, &wanted)?)
        })
        .await?;
        if mounted.is_some() {
            return Ok(created(&name, &digest));
        }
    }
    if let Some(text) = call.query("digest") {
        // Monolithic: the whole blob is this request's body.
        let digest = parse_digest(text)?;
        let id = open_session(ctx, &name, digest.algorithm()).await?;
        if let Err(e) = stream_into(ctx, &name, &id, &mut call.body).await {
            abandon(ctx, &name, &id).await;
            return Err(e);
        }
        return commit(ctx, name, id, digest).await;
    }
    let id = open_session(ctx, &name, Algorithm::Sha256).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &name, &id, 0))
}

pub async fn patch(
    ctx: &Context,
    name: String,
    id: String,
    mut call: Call,
) -> Result<Reply, ApiError> {
    check_chunk(ctx, &name, &id, &call)?;
    let received = match stream_into(ctx, &name, &id, &mut call.body).await? {
        Some(received) => received,
        None => ctx.engine.upload_status(&name, &id)?.received,
    };
    Ok(session_reply(StatusCode::ACCEPTED, &name, &id, received))
}

pub fn status(ctx: &Context, name: &str, id: &str) -> Result<Reply, ApiError> {
    let status = ctx.engine.upload_status(name, id)?;
    Ok(session_reply(
        StatusCode::NO_CONTENT,
        name,
        id,
        status.received,
    ))
}

/// `PUT ...?digest=`: the optional last chunk, then the commit.
pub async fn finish(
    ctx: &Context,
    name: String,
    id: String,
    mut call: Call,
) -> Result<Reply, ApiError> {
    // An unknown session is reported before anything about the digest.
    ctx.engine.upload_status(&name, &id)?;
    let digest = match call.query("digest") {
        Some(text) => parse_digest(text)?,
        None => {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                "the digest query parameter is required to complete an upload",
            ));
        }
    };
    check_chunk(ctx, &name, &id, &call)?;
    stream_into(ctx, &name, &id, &mut call.body).await?;
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

/// Checks a chunk's `Content-Range` (if any) against the session: it must start at
/// the bytes received so far (416 otherwise) and agree with `Content-Length`.
fn check_chunk(ctx: &Context, name: &str, id: &str, call: &Call) -> Result<(), ApiError> {
    let received = ctx.engine.upload_status(name, id)?.received;
    let Some(text) = call.header(header::CONTENT_RANGE) else {
        return Ok(());
    };
    let Some((start, end)) = content_range(text) else {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {text:?}; expected <start>-<end>"),
        ));
    };
    if start != received {
        return Err(ApiError::new(
            ErrorCode::RangeInvalid,
            format!("chunk starts at {start}, but the upload has {received} bytes"),
        )
        .with_header(header::RANGE, upload_range(received))
        .with_header(header::LOCATION, session_location(name, id))
        .with_header(
            header::HeaderName::from_static(DOCKER_UPLOAD_UUID),
            id.to_owned(),
        ));
    }
    if let Some(length) = call.content_length()
        && length != end - start + 1
    {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {text:?} does not match Content-Length {length}"),
        ));
    }
    Ok(())
}

/// Streams `body` into session `id`; returns the session's byte count after the last
/// append, or `None` if the body was empty.
async fn stream_into(
    ctx: &Context,
    name: &str,
    id: &str,
    body: &mut Incoming,
) -> Result<Option<u64>, ApiError> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0;
    let mut in_flight: Option<tokio::task::JoinHandle<Result<u64, ApiError>>> = None;
    let mut received = None;
    loop {
        let frame = match body.frame().await {
            None => None,
            Some(Ok(frame)) => Some(frame),
            Some(Err(e)) => {
                if let Some(task) = in_flight.take() {
                    let _ = task.await;
                }
                return Err(body_error(&e));
            }
        };
        let end = frame.is_none();
        if let Some(Ok(data)) = frame.map(|f| f.into_data()) {
            batch_len += data.len();
            batch.push(data);
        }
        if batch_len >= APPEND_BATCH || (end && !batch.is_empty()) {
            // One batch at a time in the engine, so pieces stay in order.
            if let Some(task) = in_flight.take() {
                received = Some(join(task).await?);
            }
            let pieces = std::mem::take(&mut batch);
            batch_len = 0;
            let (engine, repo, id) = (ctx.engine.clone(), name.to_owned(), id.to_owned());
            in_flight = Some(tokio::task::spawn_blocking(move || {
                let mut received = 0;
                for piece in pieces {
                    received = engine.upload_append(&repo, &id, piece)?;
                }
                Ok(received)
            }));
        }
        if end {
            break;
        }
    }
    if let Some(task) = in_flight {
        received = Some(join(task).await?);
    }
    Ok(received)
}

async fn join(task: tokio::task::JoinHandle<Result<u64, ApiError>>) -> Result<u64, ApiError> {
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
