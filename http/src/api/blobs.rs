//! `HEAD`/`GET`/`DELETE /v2/<name>/blobs/<digest>`.

use hyper::header;
use hyper::{Method, StatusCode};

use super::{Call, Context, DOCKER_CONTENT_DIGEST, Reply};
use crate::body::ResponseBody;
use crate::errors::{ApiError, ErrorCode};
use crate::names::parse_digest;
use crate::ranges::{ReadRange, read_range};

pub async fn get(ctx: &Context, name: &str, digest: &str, call: &Call) -> Result<Reply, ApiError> {
    let digest = parse_digest(digest)?;
    // HEAD needs the size only; GET the bytes, whose length is the size.
    let (size, reader) = if call.method == Method::HEAD {
        let info = ctx.store.blob(name, &digest).await?;
        (info.map(|i| i.size), None)
    } else {
        let blob = ctx.store.open_blob(name, &digest).await?;
        (blob.as_ref().map(|b| b.size()), blob)
    };
    let size = size.ok_or_else(|| blob_unknown(&digest.to_string()))?;
    let (status, range) = match read_range(call.header(header::RANGE)?, size) {
        ReadRange::Whole => (StatusCode::OK, 0..size),
        ReadRange::Part(range) => (StatusCode::PARTIAL_CONTENT, range),
        ReadRange::Unsatisfiable => return Err(ApiError::range_outside(size)),
    };
    let mut reply = Reply::new(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_LENGTH,
            (range.end - range.start).to_string(),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        // Content-addressed: a digest's bytes never change.
        .header(header::CACHE_CONTROL, "max-age=31536000")
        .named(DOCKER_CONTENT_DIGEST, digest.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        reply = reply.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    Ok(match reader {
        Some(blob) => reply.body(ResponseBody::Blob(blob.read(range).await?)),
        None => reply,
    })
}

/// Removes the blob from the repository; its bytes stay until garbage collection.
pub async fn delete(ctx: &Context, name: String, digest: &str) -> Result<Reply, ApiError> {
    let digest = parse_digest(digest)?;
    let text = digest.to_string();
    let removed = ctx.store.unlink_blob(&name, &digest).await?;
    if !removed {
        return Err(blob_unknown(&text));
    }
    Ok(Reply::new(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, "0")
        .named(DOCKER_CONTENT_DIGEST, text))
}

fn blob_unknown(digest: &str) -> ApiError {
    ApiError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({ "digest": digest }))
}
