//! The accept loop and the router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lain_engine::Engine;
use tokio::net::TcpListener;

use crate::errors::{ErrorCode, error_response};

/// Sent on every response, as the V2 API requires.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting and
/// returns. Each connection speaks HTTP/1.1 (keep-alive) or h2c.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    _settings: crate::Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, Infallible>(handle(req, &engine, peer)) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn handle(req: Request<Incoming>, _engine: &Engine, peer: SocketAddr) -> Response<Full<Bytes>> {
    let mut response = route(&req);
    response.headers_mut().insert(
        API_VERSION.0,
        header::HeaderValue::from_static(API_VERSION.1),
    );
    tracing::info!(
        target: "access",
        %peer,
        method = %req.method(),
        path = req.uri().path(),
        status = response.status().as_u16(),
    );
    response
}

fn route(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/v2/" | "/v2") => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => error_response(ErrorCode::Unsupported, "this endpoint is not served yet"),
    }
}
