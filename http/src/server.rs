//! The accept loop: connections (HTTP/1.1 with keep-alive, or h2c), graceful shutdown,
//! the upload purge timer, and the headers and access log every response gets.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lain_engine::Engine;
use tokio::net::TcpListener;

use crate::Settings;
use crate::api::{self, Context};
use crate::body::ResponseBody;
use crate::errors::{ApiError, ErrorCode};
use crate::route::Route;

/// Sent on every response, as the V2 API requires.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// How long a client may take to send a request's headers (and, on h2, to answer a
/// keep-alive ping).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish (up to 30 s) and returns, dropping its engine handles.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let purge = settings.upload_purge_interval.map(|every| {
        tokio::spawn(purge_uploads(
            engine.clone(),
            every,
            settings.upload_purge_age,
        ))
    });
    let ctx = Context::new(engine, settings);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper enforces its header-read timeout only when it has a timer; without one a
    // client could hold a connection open forever with half a request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HEADER_READ_TIMEOUT))
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin or exit.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, req, peer).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if let Some(purge) = purge {
        purge.abort();
    }
    drop(ctx);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
    Ok(())
}

async fn handle(ctx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let reply = match Route::parse(&path) {
        Some(route) => api::dispatch(ctx, route, req).await,
        None => api::error_reply(
            ApiError::new(ErrorCode::Unsupported, "no such endpoint")
                .with_status(hyper::StatusCode::NOT_FOUND),
        ),
    };
    let mut response = reply.into_response();
    response
        .headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    if method == Method::HEAD {
        // HTTP/1 drops a HEAD response's body by itself; h2 would send it and break
        // the stream. The length it would have had stays in Content-Length.
        let length = hyper::body::Body::size_hint(response.body()).exact();
        if let Some(length) = length
            && !response.headers().contains_key(header::CONTENT_LENGTH)
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, length.into());
        }
        *response.body_mut() = ResponseBody::Empty;
    }
    tracing::info!(
        target: "access",
        %peer,
        method = %method,
        path,
        query,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
    );
    response
}

/// Cancels idle upload sessions every `every`.
async fn purge_uploads(engine: Engine, every: Duration, age: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.purge_uploads(age)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "cancelled idle upload sessions"),
            Err(e) => tracing::error!(error = %e, "upload purge failed"),
        }
    }
}
