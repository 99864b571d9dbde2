//! Protocol errors: the spec's error codes, the status each is sent with, and the JSON
//! body `{"errors":[{"code":"...","message":"...","detail":...}]}`.

use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use lain_store::Error as StoreError;

/// An error code from the distribution spec (and docker/distribution's additions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    RangeInvalid,
    PaginationNumberInvalid,
    TooManyRequests,
    Unsupported,
    /// The client may not do this.
    Denied,
    /// The request needs a (better) token: the challenge says which.
    Unauthorized,
    /// The server's own failure; never caused by what a client sends.
    Unknown,
    /// The registry's storage is full: `UNAVAILABLE` (distribution's code for a
    /// registry that cannot take the request now) with 507 Insufficient Storage
    /// (RFC 4918), because it is space that is short. Not 500: nothing is broken, and
    /// the operator's remedy (delete, collect) is known. Not 503 with a `Retry-After`:
    /// waiting frees nothing.
    StorageFull,
    /// Storage did not answer (a database or object store down or electing): 503
    /// with a `Retry-After`, distribution's code for a registry that cannot take the
    /// request now. Nothing acknowledged is affected.
    Unavailable,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::StorageFull | ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The status the code is normally sent with (docker/distribution's table).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One error response: code, status, message, optional detail and extra headers
/// (`Range` on a refused chunk, `Content-Range` on an unsatisfiable range, `Allow`).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: serde_json::Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = detail;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        if let Ok(value) = HeaderValue::try_from(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// 429 `TOOMANYREQUESTS`, with `Retry-After` saying in how many seconds to retry.
    pub fn too_many(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        ApiError::new(ErrorCode::TooManyRequests, message).with_header(
            hyper::header::RETRY_AFTER,
            retry_after.as_secs().max(1).to_string(),
        )
    }

    /// 416 for a read range outside a blob of `size` bytes.
    pub fn range_outside(size: u64) -> ApiError {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("the range lies outside the blob's {size} bytes"),
        )
        .with_header(hyper::header::CONTENT_RANGE, format!("bytes */{size}"))
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "errors": [{
                "code": self.code.name(),
                "message": self.message,
                "detail": self.detail,
            }]
        })
        .to_string()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let code = match &e {
            StoreError::DigestMismatch { .. } | StoreError::InvalidDigest(_) => {
                ErrorCode::DigestInvalid
            }
            StoreError::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            StoreError::UploadOffset { .. } => ErrorCode::RangeInvalid,
            StoreError::TooManyUploads { .. } | StoreError::TooManyUploadsFrom { .. } => {
                ErrorCode::TooManyRequests
            }
            StoreError::BlobUnknown(_) => ErrorCode::BlobUnknown,
            StoreError::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            // The spec's code for any unknown reference, blob or manifest.
            StoreError::ReferenceUnknown { .. } => ErrorCode::ManifestBlobUnknown,
            StoreError::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            StoreError::InvalidName { .. } => ErrorCode::NameInvalid,
            StoreError::StorageFull { .. } => {
                tracing::warn!(error = %e, "a write was refused");
                ErrorCode::StorageFull
            }
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "storage did not answer");
                ErrorCode::Unavailable
            }
            StoreError::Internal(_) => {
                tracing::error!(error = %e, "storage failure");
                return ApiError::new(ErrorCode::Unknown, "internal storage error");
            }
        };
        match e {
            StoreError::RangeNotSatisfiable { size, .. } => ApiError::range_outside(size),
            // Sessions end all the time (commits, cancels, idle ones evicted): soon.
            StoreError::TooManyUploads { .. } | StoreError::TooManyUploadsFrom { .. } => {
                ApiError::too_many(e.to_string(), std::time::Duration::from_secs(10))
            }
            StoreError::UploadOffset { received } => ApiError::new(code, e.to_string())
                .with_header(hyper::header::RANGE, crate::ranges::upload_range(received)),
            StoreError::Unavailable { .. } => ApiError::new(code, e.to_string()).with_header(
                hyper::header::RETRY_AFTER,
                UNAVAILABLE_RETRY.as_secs().to_string(),
            ),
            StoreError::ReferenceUnknown { ref digest, .. } => {
                let detail = serde_json::json!({ "digest": digest.to_string() });
                ApiError::new(code, e.to_string()).with_detail(detail)
            }
            e => ApiError::new(code, e.to_string()),
        }
    }
}

/// When a client may retry after storage did not answer: etcd elects a new leader,
/// and an object store's node restarts, within seconds.
const UNAVAILABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_says_when_to_retry() {
        let e = ApiError::from(StoreError::TooManyUploads { limit: 4 });
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let retry = e
            .headers
            .iter()
            .find(|(n, _)| n == hyper::header::RETRY_AFTER);
        assert_eq!(retry.map(|(_, v)| v.to_str().ok()), Some(Some("10")));
    }

    #[test]
    fn body_is_the_spec_shape_and_escapes() {
        let e = ApiError::new(ErrorCode::NameInvalid, "bad \"name\"\n")
            .with_detail(serde_json::json!({"name": "x"}));
        let parsed: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(parsed["errors"][0]["code"], "NAME_INVALID");
        assert_eq!(parsed["errors"][0]["message"], "bad \"name\"\n");
        assert_eq!(parsed["errors"][0]["detail"]["name"], "x");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
