//! `HEAD`/`GET`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use bytes::Bytes;
use hyper::header;
use hyper::{Method, StatusCode};
use lain_store::{Algorithm, Reference, References};

use super::{Call, Context, DOCKER_CONTENT_DIGEST, Reply, read_manifest_body};
use crate::body::ResponseBody;
use crate::errors::{ApiError, ErrorCode};
use crate::manifest::{self, EMPTY_BLOB, MAX_MANIFEST_BYTES};
use crate::names::parse_reference;

pub async fn put(
    ctx: &Context,
    name: String,
    reference: &str,
    call: &mut Call,
) -> Result<Reply, ApiError> {
    let reference = parse_reference(reference)?;
    let bytes = read_manifest_body(call, MAX_MANIFEST_BYTES, &ctx.manifest_memory).await?;
    let parsed = manifest::parse(&bytes, call.header(header::CONTENT_TYPE)?)?;
    let subject = parsed.meta.subject.clone();
    let store = &ctx.store;
    let empty = Algorithm::Sha256.digest(EMPTY_BLOB);
    if parsed.blobs.contains(&empty) && store.blob(&name, &empty).await?.is_none() {
        // Artifacts' empty config: store it rather than fail the client.
        store
            .put_blob(&name, Bytes::from_static(EMPTY_BLOB), &empty)
            .await?;
    }
    // The store checks every reference atomically with the write (a collection may be
    // sweeping the repository): `ReferenceUnknown` becomes MANIFEST_BLOB_UNKNOWN.
    let references = References {
        blobs: parsed.blobs,
        manifests: parsed.children,
    };
    let record = store
        .put_manifest(&name, bytes, &reference, parsed.meta, &references)
        .await?;
    let mut reply = Reply::new(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{name}/manifests/{}", record.digest),
        )
        .header(header::CONTENT_LENGTH, "0")
        .named(DOCKER_CONTENT_DIGEST, record.digest.to_string());
    if let Some(subject) = subject {
        reply = reply.named("oci-subject", subject.to_string());
    }
    Ok(reply)
}

pub async fn get(
    ctx: &Context,
    name: &str,
    reference: &str,
    call: &Call,
) -> Result<Reply, ApiError> {
    let reference = parse_reference(reference).map_err(|_| unknown(reference))?;
    let head = call.method == Method::HEAD;
    let (record, bytes) = if head {
        let record = ctx.store.manifest(name, &reference).await?;
        (record, None)
    } else {
        match ctx.store.get_manifest(name, &reference).await? {
            Some((record, bytes)) => (Some(record), Some(bytes)),
            None => (None, None),
        }
    };
    let Some(record) = record else {
        return Err(unknown(&reference_text(&reference)));
    };
    // By digest the client asks for exact bytes; by tag it says what it can read.
    if let Reference::Tag(_) = reference {
        let accept = call.header_values(header::ACCEPT)?;
        if !manifest::accepts(accept.into_iter(), &record.meta.media_type) {
            return Err(ApiError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "the manifest is a {}, which the Accept header does not list",
                    record.meta.media_type
                ),
            ));
        }
    }
    let reply = Reply::new(StatusCode::OK)
        .header(header::CONTENT_TYPE, record.meta.media_type.clone())
        .header(header::CONTENT_LENGTH, record.size.to_string())
        .header(header::ETAG, format!("\"{}\"", record.digest))
        .named(DOCKER_CONTENT_DIGEST, record.digest.to_string());
    Ok(match bytes {
        Some(bytes) => reply.body(ResponseBody::full(bytes)),
        None => reply,
    })
}

/// By tag: removes the tag. By digest: removes the manifest and its tags.
pub async fn delete(ctx: &Context, name: String, reference: &str) -> Result<Reply, ApiError> {
    let reference = parse_reference(reference).map_err(|_| unknown(reference))?;
    let text = reference_text(&reference);
    let removed = match &reference {
        Reference::Tag(tag) => ctx.store.untag(&name, tag).await?,
        Reference::Digest(digest) => ctx.store.delete_manifest(&name, digest).await?,
    };
    if !removed {
        return Err(unknown(&text));
    }
    Ok(Reply::new(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, "0"))
}

fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Tag(tag) => tag.clone(),
        Reference::Digest(digest) => digest.to_string(),
    }
}

fn unknown(reference: &str) -> ApiError {
    ApiError::new(ErrorCode::ManifestUnknown, "manifest unknown")
        .with_detail(serde_json::json!({ "reference": reference }))
}
