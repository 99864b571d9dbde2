//! The accept loop: connections (HTTP/1.1 with keep-alive, or HTTP/2; plain or TLS),
//! graceful shutdown, the upload purge timer, and what every request and response goes
//! through: the path prefix, access and read-only checks under the live settings, the
//! `Location` base, configured headers, the access log.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lain_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, Context, Mounts};
use crate::auth::{self, Problem};
use crate::body::ResponseBody;
use crate::connections::Connections;
use crate::errors::{ApiError, ErrorCode};
use crate::route::{Route, query_pairs, query_value};
use crate::unparsed::Unparsed;
use crate::{Access, Live, Locations, Settings};

/// Sent on every response, as the V2 API requires.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// How long a client may take to send a request's headers (and, on h2, to answer a
/// keep-alive ping).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most an HTTP/1 connection buffers of what it reads (hyper's default is about
/// 400 KiB): with a thousand uploading connections, their read buffers would otherwise
/// outgrow the body budget. It also bounds a request's header block.
const HTTP1_BUFFER: usize = 16 << 10;

/// HTTP/2 flow-control windows. hyper's h2 layer reads a connection's DATA frames off
/// the socket before the handlers ask for them, up to the window it granted, whatever
/// the upload memory budget says (over HTTP/1 unread bytes wait in the kernel's socket
/// buffer instead). With hyper's default windows (1 MiB), 1,000 h2c connections each
/// sending a blob at once held 1.1 GiB (`benches/h2c-uploads`). So a connection
/// opened while at most [`H2_WIDE_CONNECTIONS`] are open gets wide windows, which
/// several streams multiplexed on one connection need for full speed; one opened past
/// that gets the protocol's default window. At most that many wide connections are
/// ever open at once, so what h2 holds unread is bounded by 32 MiB plus 64 KiB a
/// connection.
const H2_WIDE_WINDOW: u32 = 1 << 20;
const H2_NARROW_WINDOW: u32 = 65_535;
const H2_WIDE_CONNECTIONS: usize = 32;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts TLS on a connection (rustls; the wiring builds its configuration).
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// Serves the API on `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves; then stops accepting, lets in-flight requests finish (up to the drain
/// timeout) and returns, dropping its store handles. `live` carries settings that
/// change while serving; each request takes the ones current when it arrives.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    live: watch::Receiver<Live>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let purge = settings.upload_purge_interval.map(|every| {
        tokio::spawn(purge_uploads(
            store.clone(),
            every,
            settings.upload_purge_age,
            live.clone(),
        ))
    });
    let drain_timeout = settings.drain_timeout;
    let connections = Connections::new(
        settings.max_connections,
        settings.max_connections_per_client,
    );
    let http2 = settings.http2;
    let ctx = Context::new(store, settings, live, tls.is_some());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_connection_window_size(H2_WIDE_WINDOW)
        .initial_stream_window_size(H2_WIDE_WINDOW);
    if !http2 {
        builder = builder.http1_only();
    }
    // hyper enforces its header-read timeout only when it has a timer; without one a
    // client could hold a connection open forever with half a request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HEADER_READ_TIMEOUT))
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    let wide = builder.clone();
    let mut narrow = builder.clone();
    narrow
        .http2()
        .initial_connection_window_size(H2_NARROW_WINDOW)
        .initial_stream_window_size(H2_NARROW_WINDOW);
    tokio::pin!(shutdown);
    loop {
        // Past the total, nothing is accepted until a connection closes.
        let room = tokio::select! {
            room = connections.room() => room,
            () = &mut shutdown => break,
        };
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
        let Some(slot) = connections.admit(room, peer.ip()) else {
            tracing::info!(%peer, "connection refused: the client has its share open");
            if tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Counted with this connection's own place.
        let builder = if connections.open() <= H2_WIDE_CONNECTIONS {
            &wide
        } else {
            &narrow
        };
        let ctx = ctx.clone();
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, req, peer).await) }
        });
        match &tls {
            None => {
                let connection = builder
                    .serve_connection(TokioIo::new(Unparsed::new(stream)), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, so that a slow or
                // silent client never holds up the accept loop.
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection(TokioIo::new(Unparsed::new(stream)), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if let Some(purge) = purge {
        purge.abort();
    }
    drop(ctx);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("requests still running after {drain_timeout:?}; stopping anyway");
        }
    }
    Ok(())
}

/// Answers a connection past its client's share with 429 and closes it, without
/// reading its request: the answer is the same whatever it asks.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let error = ApiError::too_many(
        "too many connections from this address; close some or retry later",
        Duration::from_secs(5),
    );
    let body = error.body();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nRetry-After: 5\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn handle(ctx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let started = Instant::now();
    let live = ctx.live.borrow().clone();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let base = location_base(ctx, req.headers(), req.uri().authority());
    let route = path
        .strip_prefix(ctx.settings.prefix.as_str())
        .and_then(Route::parse);
    let mut subject = None;
    let admitted = match route {
        None => Err(api::error_reply(
            ApiError::new(ErrorCode::Unsupported, "no such endpoint")
                .with_status(hyper::StatusCode::NOT_FOUND),
        )),
        Some(route) => admit(&live.access, route, &req, peer)
            .map(|(route, mounts, who)| {
                subject = who;
                (route, mounts)
            })
            .map_err(api::error_reply),
    };
    let reply = match admitted {
        Err(refused) => refused,
        Ok(_) if live.read_only && is_write(&method) => api::error_reply(ApiError::new(
            ErrorCode::Unsupported,
            "the registry is read-only (storage.maintenance.readonly.enabled)",
        )),
        Ok((route, mounts)) => api::dispatch(ctx, route, req, mounts, peer.ip()).await,
    };
    let mut response = reply.into_response();
    let headers = response.headers_mut();
    headers.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    rebase_locations(headers, &base);
    for (name, value) in &ctx.settings.headers {
        headers.append(name.clone(), value.clone());
    }
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
        subject = %subject.as_deref().unwrap_or("-"),
    );
    response
}

/// Whether the request may go on under `access`: the route, where its mounts may reach,
/// and who the caller is (a token's `sub`); or the refusal to send.
fn admit(
    access: &Access,
    route: Route,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<(Route, Mounts, Option<String>), ApiError> {
    let auth = match access {
        Access::Open => return Ok((route, Mounts::Anywhere, None)),
        Access::Closed { reason } => {
            return Err(ApiError::new(ErrorCode::Denied, reason.clone()));
        }
        Access::Basic(users) => {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            return match users.check(header, peer.ip()) {
                Ok(user) => Ok((route, Mounts::Anywhere, Some(user))),
                Err(auth::Refusal::Unauthorized) => Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "authentication required",
                )
                .with_header(header::WWW_AUTHENTICATE, users.challenge())),
                Err(auth::Refusal::TooMany) => Err(ApiError::too_many(
                    "too many failed logins from this address; try again in a minute",
                    Duration::from_secs(60),
                )),
            };
        }
        Access::Token(auth) => auth,
    };
    let query = query_pairs(req.uri().query());
    let from = query_value(&query, "from").filter(|_| query_value(&query, "mount").is_some());
    let needs = auth::needs(&route, req.method(), from);
    // The challenge asks for everything the request could use, a mount's source too.
    let asked: Vec<auth::Scope> = needs
        .all
        .iter()
        .chain(&needs.mount_source)
        .cloned()
        .collect();
    let realm = match &auth.autoredirect {
        Some(path) => match request_host(req.headers(), req.uri().authority()) {
            Some(host) => {
                let scheme = header_text(req.headers(), "x-forwarded-proto")
                    .filter(|p| matches!(*p, "http" | "https"))
                    .unwrap_or("https");
                format!("{scheme}://{host}{path}")
            }
            None => auth.realm.clone(),
        },
        None => auth.realm.clone(),
    };
    let challenge = |problem: Problem, message: String| {
        let value = auth::bearer_challenge(&realm, &auth.service, &asked, problem);
        ApiError::new(ErrorCode::Unauthorized, message).with_header(header::WWW_AUTHENTICATE, value)
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return Err(challenge(
            Problem::Missing,
            "authentication required".into(),
        ));
    };
    let grant = auth
        .check(token)
        .map_err(|e| challenge(Problem::InvalidToken, format!("invalid token: {e}")))?;
    if let Some(missing) = needs.all.iter().find(|s| !auth::allows(&grant.access, s)) {
        return Err(challenge(
            Problem::InsufficientScope,
            format!("the token does not grant {missing}"),
        ));
    }
    // Only a POST that starts an upload can mount.
    let mounts = match route {
        Route::UploadStart { .. } => Mounts::Among(auth::pullable(&grant.access)),
        _ => Mounts::Among(Vec::new()),
    };
    Ok((route, mounts, Some(grant.subject)))
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// What goes before `/v2/` in the URLs this response names: the prefix, on the base
/// the settings choose.
fn location_base(
    ctx: &Context,
    headers: &hyper::HeaderMap,
    authority: Option<&hyper::http::uri::Authority>,
) -> String {
    let settings = &ctx.settings;
    match &settings.locations {
        Locations::Relative => settings.prefix.clone(),
        Locations::Absolute(base) => format!("{base}{}", settings.prefix),
        Locations::FromRequest => {
            let scheme = header_text(headers, "x-forwarded-proto")
                .filter(|p| matches!(*p, "http" | "https"))
                .unwrap_or(if ctx.tls { "https" } else { "http" });
            match request_host(headers, authority) {
                Some(host) => format!("{scheme}://{host}{}", settings.prefix),
                None => settings.prefix.clone(),
            }
        }
    }
}

/// The first value of header `name`, trimmed, if it is text and not empty.
fn header_text<'h>(headers: &'h hyper::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The host the client addressed (`X-Forwarded-Host`, `Host`, or the HTTP/2
/// authority), if it is a plain `host[:port]`: anything else is never echoed back.
fn request_host<'h>(
    headers: &'h hyper::HeaderMap,
    authority: Option<&'h hyper::http::uri::Authority>,
) -> Option<&'h str> {
    header_text(headers, "x-forwarded-host")
        .or_else(|| header_text(headers, "host"))
        .or_else(|| authority.map(|a| a.as_str()))
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
}

/// Puts `base` before the `/v2/` URLs of `Location` and `Link` headers.
fn rebase_locations(headers: &mut hyper::HeaderMap, base: &str) {
    if base.is_empty() {
        return;
    }
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && location.starts_with("/v2/")
        && let Ok(value) = HeaderValue::try_from(format!("{base}{location}"))
    {
        headers.insert(header::LOCATION, value);
    }
    if let Some(link) = headers.get(header::LINK).and_then(|v| v.to_str().ok())
        && link.contains("</v2/")
        && let Ok(value) = HeaderValue::try_from(link.replace("</v2/", &format!("<{base}/v2/")))
    {
        headers.insert(header::LINK, value);
    }
}

/// Cancels idle upload sessions every `every`, except in read-only mode (which changes
/// nothing stored, as in distribution).
async fn purge_uploads(
    store: Arc<dyn Store>,
    every: Duration,
    age: Duration,
    live: watch::Receiver<Live>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if live.borrow().read_only {
            continue;
        }
        match store.purge_uploads(age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "cancelled idle upload sessions"),
            Err(e) => tracing::error!(error = %e, "upload purge failed"),
        }
    }
}
