//! The cluster store's failures, and which kind of store error each is: a service that
//! does not answer is [`lain_store::Error::Unavailable`] (the client may retry), a value
//! that does not decode is damage.

use lain_store::Error as StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),

    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),

    /// A value in etcd that this version cannot read.
    #[error("etcd key {key} holds a value that does not decode: {detail}")]
    Corrupt { key: String, detail: String },

    /// A transaction lost to others more times than it retries.
    #[error("{what} kept racing other writers; try again")]
    Contended { what: &'static str },

    /// This instance's etcd lease is gone (etcd unreachable for longer than its TTL):
    /// it may not write upload parts until it has a new one.
    #[error("this instance's etcd lease lapsed")]
    LeaseLapsed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the failure is a service not answering (or answering "not now"), so
    /// that the request may succeed when retried.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Etcd(e) => etcd_unreachable(e),
            Error::Objects(e) => objects_unreachable(e),
            Error::Contended { .. } | Error::LeaseLapsed => true,
            Error::Corrupt { .. } => false,
        }
    }
}

pub(crate) fn etcd_unreachable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted
            ) || (status.code() == Code::Unknown
                // A connection reset mid-call (etcd stopping) is "Unknown", with the
                // transport's error underneath.
                && std::error::Error::source(status)
                    .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some()))
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// A transport failure (connect, request, timeout) or a 5xx the retries did not get
/// past: object_store wraps both as `Generic`; the HTTP error underneath tells.
fn objects_unreachable(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        let text = cause.to_string();
        if text.contains("Server returned non-2xx status code: 5")
            || text.contains("status code: 503")
            || text.contains("status code: 500")
        {
            return true;
        }
        source = cause.source();
    }
    false
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        if e.is_unavailable() {
            StoreError::Unavailable {
                detail: e.to_string(),
            }
        } else {
            StoreError::internal(e)
        }
    }
}
