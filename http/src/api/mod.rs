//! The endpoints: which method of which route runs which handler, and the small
//! pieces every handler shares (the reply builder, reading a bounded request body).

mod blobs;
mod listing;
mod manifests;
mod request_body;
mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use lain_store::Store;
use tokio::sync::watch;

use crate::body::ResponseBody;
use crate::budget::BodyBudget;
use crate::errors::{ApiError, ErrorCode};
use crate::names::check_repository;
use crate::route::{Route, query_pairs};
use crate::{Live, Settings};
pub use request_body::RequestBody;

/// What every handler can reach.
#[derive(Clone)]
pub struct Context {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    /// The settings that change while serving.
    pub live: watch::Receiver<Live>,
    /// Whether connections arrive over TLS (for URLs built from the request).
    pub tls: bool,
    pub writers: uploads::Writers,
    /// What upload bodies in flight may hold, all requests together.
    pub upload_memory: BodyBudget,
    /// What manifest bodies in flight may hold, all requests together.
    pub manifest_memory: BodyBudget,
    /// Authenticates the state in upload locations.
    pub upload_states: crate::upload_state::UploadStates,
}

impl Context {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        live: watch::Receiver<Live>,
        tls: bool,
    ) -> Context {
        let upload_states = match &settings.secret {
            Some(secret) => crate::upload_state::UploadStates::new(secret),
            None => crate::upload_state::UploadStates::random(),
        };
        Context {
            store,
            upload_states,
            upload_memory: BodyBudget::new(settings.upload_memory),
            // Four times the largest manifest: no buffer takes more than a quarter.
            manifest_memory: BodyBudget::new(4 * crate::manifest::MAX_MANIFEST_BYTES),
            settings: Arc::new(settings),
            live,
            tls,
            writers: uploads::Writers::default(),
        }
    }
}

/// A request taken apart: method, decoded query, headers, and the body still streaming.
pub struct Call {
    pub method: Method,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// Where a cross-repository mount may take a blob from.
    pub mounts: Mounts,
    /// The client's address: the owner of the upload sessions it opens.
    pub client: std::net::IpAddr,
}

/// What the caller's credentials let a mount (`POST ...?mount=[&from=]`) reach. A mount
/// that cannot reach the blob becomes an upload session, as distribution does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// No authentication: `from`, or without it any repository that has the blob.
    Anywhere,
    /// Token auth: the repositories the token may pull. `from` must be one of them;
    /// without `from` the blob is looked for in them alone.
    Among(Vec<String>),
}

impl Call {
    /// The value of header `name`, if the request has it. A value that is not visible
    /// ASCII is a 400: taken as absent, it would have the request do what the client
    /// did not ask (a chunk without its range, a manifest without its type).
    pub fn header(&self, name: HeaderName) -> Result<Option<&str>, ApiError> {
        match self.headers.get(&name) {
            None => Ok(None),
            Some(value) => value.to_str().map(Some).map_err(|_| unreadable(&name)),
        }
    }

    /// Every value of header `name`, each as [`Call::header`] takes it.
    pub fn header_values(&self, name: HeaderName) -> Result<Vec<&str>, ApiError> {
        self.headers
            .get_all(&name)
            .iter()
            .map(|v| v.to_str().map_err(|_| unreadable(&name)))
            .collect()
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        crate::route::query_value(&self.query, key)
    }

    /// The declared body length, if the client sent a valid `Content-Length`.
    /// hyper has checked `Content-Length` before the request got here.
    pub fn content_length(&self) -> Option<u64> {
        self.header(header::CONTENT_LENGTH)
            .ok()
            .flatten()?
            .trim()
            .parse()
            .ok()
    }
}

fn unreadable(name: &HeaderName) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("the {name} header is not visible ASCII"),
    )
    .with_status(StatusCode::BAD_REQUEST)
}

/// A successful response being built. Header values that are not valid header text
/// are dropped rather than failing the request (every value set here is ASCII).
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody,
}

impl Reply {
    pub fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: ResponseBody::Empty,
        }
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        let value = HeaderValue::try_from(value.into());
        debug_assert!(value.is_ok(), "a header value that is not header text");
        if let Ok(value) = value {
            self.headers.insert(name, value);
        }
        self
    }

    /// A header by name; for the API's own `Docker-*` / `OCI-*` headers.
    pub fn named(self, name: &'static str, value: impl Into<String>) -> Reply {
        self.header(HeaderName::from_static(name), value)
    }

    pub fn body(mut self, body: ResponseBody) -> Reply {
        self.body = body;
        self
    }

    pub fn json(self, value: &serde_json::Value, content_type: &'static str) -> Reply {
        self.header(header::CONTENT_TYPE, content_type)
            .body(ResponseBody::full(value.to_string()))
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
pub const DOCKER_UPLOAD_UUID: &str = "docker-upload-uuid";

/// Reads a whole manifest body of at most `limit` bytes; a longer one is refused with
/// 413 `SIZE_INVALID` (before it is read when its `Content-Length` says so).
///
/// The bytes come from `budget`, all of them before the first is read (its
/// `Content-Length`, or `limit` without one): manifests in flight are bounded in
/// total, and no request waits for more while holding part, so every wait ends.
pub async fn read_manifest_body(
    call: &mut Call,
    limit: usize,
    budget: &BodyBudget,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::SizeInvalid,
            format!("body larger than {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let need = match call.content_length() {
        Some(n) if n > limit as u64 => return Err(too_large()),
        Some(n) => n as usize,
        None => limit,
    };
    let mut buffer = budget.buffer(need).await;
    while let Some(data) = call.body.next_data(ErrorCode::ManifestInvalid).await? {
        if buffer.fill(&data) < data.len() || buffer.len() > limit {
            return Err(too_large());
        }
    }
    Ok(buffer.freeze())
}

/// Runs the endpoint `route` names.
pub async fn dispatch(
    ctx: &Context,
    route: Route,
    req: Request<Incoming>,
    mounts: Mounts,
    client: std::net::IpAddr,
) -> Reply {
    let (parts, body) = req.into_parts();
    let mut call = Call {
        method: parts.method,
        query: query_pairs(parts.uri.query()),
        headers: parts.headers,
        body: RequestBody::new(body),
        mounts,
        client,
    };
    match run(ctx, route, &mut call).await {
        Ok(reply) => reply,
        Err(error) => {
            let reply = error_reply(error);
            let whole = call.body.read_out().await;
            if !whole && parts.version < hyper::Version::HTTP_2 {
                reply.header(header::CONNECTION, "close")
            } else {
                reply
            }
        }
    }
}

/// The response for an error.
pub fn error_reply(error: ApiError) -> Reply {
    let mut reply = Reply::new(error.status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::full(error.body()));
    for (name, value) in error.headers {
        reply.headers.insert(name, value);
    }
    reply
}

async fn run(ctx: &Context, route: Route, call: &mut Call) -> Result<Reply, ApiError> {
    use Method as M;
    let method = call.method.clone();
    let methods: &[Method] = match &route {
        Route::Base => &[M::GET, M::HEAD],
        Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => &[M::GET],
        Route::Manifest { .. } => &[M::GET, M::HEAD, M::PUT, M::DELETE],
        Route::Blob { .. } => &[M::GET, M::HEAD, M::DELETE],
        Route::UploadStart { .. } => &[M::POST],
        Route::Upload { .. } => &[M::GET, M::HEAD, M::PATCH, M::PUT, M::DELETE],
    };
    // Without storage.delete.enabled, blobs and manifests have no DELETE (cancelling
    // an upload is always allowed), as in distribution.
    let deletes_off = !ctx.settings.delete_enabled
        && matches!(route, Route::Manifest { .. } | Route::Blob { .. });
    let allowed = |m: &Method| methods.contains(m) && !(deletes_off && *m == M::DELETE);
    if !allowed(&method) {
        let message = if deletes_off && method == M::DELETE {
            "deletes are disabled (storage.delete.enabled)".to_owned()
        } else {
            format!("{method} is not supported here")
        };
        let allow: Vec<&str> = methods
            .iter()
            .filter(|m| allowed(m))
            .map(Method::as_str)
            .collect();
        return Err(ApiError::new(ErrorCode::Unsupported, message)
            .with_header(header::ALLOW, allow.join(", ")));
    }
    match route {
        Route::Base => {
            Ok(Reply::new(StatusCode::OK).json(&serde_json::json!({}), "application/json"))
        }
        Route::Catalog => listing::catalog(ctx, call).await,
        Route::Tags { name } => {
            check_repository(&name)?;
            listing::tags(ctx, &name, call).await
        }
        Route::Referrers { name, digest } => {
            check_repository(&name)?;
            listing::referrers(ctx, &name, &digest, call).await
        }
        Route::Manifest { name, reference } => {
            check_repository(&name)?;
            match method {
                M::PUT => manifests::put(ctx, name, &reference, call).await,
                M::DELETE => manifests::delete(ctx, name, &reference).await,
                _ => manifests::get(ctx, &name, &reference, call).await,
            }
        }
        Route::Blob { name, digest } => {
            check_repository(&name)?;
            match method {
                M::DELETE => blobs::delete(ctx, name, &digest).await,
                _ => blobs::get(ctx, &name, &digest, call).await,
            }
        }
        Route::UploadStart { name } => {
            check_repository(&name)?;
            uploads::start(ctx, name, call).await
        }
        Route::Upload { name, id } => {
            check_repository(&name)?;
            match method {
                M::PATCH => uploads::patch(ctx, name, id, call).await,
                M::PUT => uploads::finish(ctx, name, id, call).await,
                M::DELETE => uploads::cancel(ctx, name, id, call).await,
                _ => uploads::status(ctx, name, id, call).await,
            }
        }
    }
}
