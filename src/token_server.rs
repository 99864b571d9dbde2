//! `registry token-server CONFIG`: a small Docker token server, for trying token
//! authentication without LAIN Console and for the tests. Users come from an htpasswd
//! file (bcrypt), what they may do from a grant table (user × repository glob →
//! actions); tokens are signed with a configured key and name it the way any of the
//! generations of token server does: an `x5c` chain, a libtrust `kid`, or a JWK
//! thumbprint `kid`. It speaks the token endpoint protocol: `GET
//! /token?service=&scope=&account=` with Basic credentials, and the OAuth2 `POST` form
//! (`grant_type=password`) that newer clients send.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lain_http::auth::Htpasswd;
use lain_http::auth::jose::SigningKey;
use serde::Deserialize;

/// The token server's own configuration file (YAML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Where to listen (`127.0.0.1:5001`).
    addr: String,
    /// `iss` of the tokens; the registry's `auth.token.issuer`.
    issuer: String,
    /// The signing key (PEM, PKCS#8 or PKCS#1): RSA (RS256), P-256 (ES256) or Ed25519.
    key: PathBuf,
    /// Its certificate (PEM), which the registry's `rootcertbundle` holds (or whose
    /// issuer it holds, with `x5c`).
    certificate: PathBuf,
    /// How a token names its key: `libtrust` (default; distribution 2.x-era servers),
    /// `thumbprint` (RFC 7638) or `x5c` (the certificate in the header).
    #[serde(default)]
    kid: KeyNaming,
    /// The users (htpasswd, bcrypt).
    users: PathBuf,
    /// What users may do.
    #[serde(default)]
    grants: Vec<GrantRule>,
    /// How long a token is valid (Go duration; default 5m).
    expiration: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum KeyNaming {
    #[default]
    Libtrust,
    Thumbprint,
    X5c,
}

/// `user` (or `*`) may do `actions` on repositories matching `repository` (`*`, `?`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRule {
    user: String,
    repository: String,
    actions: Vec<String>,
}

struct Server {
    issuer: String,
    key: SigningKey,
    /// `kid` or `x5c`; the key adds `alg`.
    header: serde_json::Map<String, serde_json::Value>,
    users: Htpasswd,
    grants: Vec<GrantRule>,
    lifetime: Duration,
}

/// Runs the token server until SIGINT/SIGTERM.
pub fn run(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let settings: Settings =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let server = Arc::new(Server::new(&settings)?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&settings.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("token server listening on http://{addr}/token");
        let shutdown = crate::shutdown_signal().map_err(|e| e.to_string())?;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                () = &mut shutdown => break,
            };
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
        Ok(())
    })
}

impl Server {
    fn new(settings: &Settings) -> Result<Server, String> {
        let pem = std::fs::read(&settings.key)
            .map_err(|e| format!("key: {}: {e}", settings.key.display()))?;
        let key = SigningKey::from_pem(&pem).ok_or_else(|| {
            format!(
                "key: {}: not an RSA, P-256, P-384, P-521 or Ed25519 private key in PKCS#8 PEM",
                settings.key.display()
            )
        })?;
        let certificate = crate::tls::certificates(&settings.certificate, "certificate")?
            .into_iter()
            .next()
            .ok_or("certificate: none")?
            .to_vec();
        let (libtrust, thumbprint) = lain_http::auth::keys::certificate_key_ids(&certificate)
            .ok_or("certificate: no usable public key")?;
        let mut header = serde_json::Map::new();
        match settings.kid {
            KeyNaming::Libtrust => header.insert("kid".into(), libtrust.into()),
            KeyNaming::Thumbprint => header.insert(
                "kid".into(),
                thumbprint
                    .ok_or("certificate: no thumbprint for its key")?
                    .into(),
            ),
            KeyNaming::X5c => header.insert(
                "x5c".into(),
                serde_json::json!([base64::engine::general_purpose::STANDARD.encode(&certificate)]),
            ),
        };
        let users_text = std::fs::read_to_string(&settings.users)
            .map_err(|e| format!("users: {}: {e}", settings.users.display()))?;
        let users = Htpasswd::parse("token server".into(), &users_text)
            .map_err(|e| format!("users: {}: {e}", settings.users.display()))?;
        let lifetime = match &settings.expiration {
            None => Duration::from_secs(300),
            Some(text) => lain_registry::config::parse_go_duration(text)
                .map_err(|e| format!("expiration: {text:?}: {e}"))?,
        };
        Ok(Server {
            issuer: settings.issuer.clone(),
            key,
            header,
            users,
            grants: settings
                .grants
                .iter()
                .map(|g| GrantRule {
                    user: g.user.clone(),
                    repository: g.repository.clone(),
                    actions: g.actions.clone(),
                })
                .collect(),
            lifetime,
        })
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let basic = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let query = req.uri().query().unwrap_or_default().to_owned();
        let form = if req.method() == Method::POST {
            match req.into_body().collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                Err(_) => return reply(StatusCode::BAD_REQUEST, "unreadable body".into()),
            }
        } else {
            String::new()
        };
        let pairs: Vec<(String, String)> = form_pairs(&query)
            .into_iter()
            .chain(form_pairs(&form))
            .collect();
        let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        // The OAuth2 form carries the credentials; the GET form, a Basic header.
        let credentials = match (
            value("grant_type").as_deref(),
            value("username"),
            value("password"),
        ) {
            (Some("password"), Some(user), Some(password)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            _ => basic,
        };
        let user = match self.users.check(credentials.as_deref(), peer.ip()) {
            Ok(user) => user,
            Err(lain_http::auth::Refusal::TooMany) => {
                return reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    error("too many failed logins"),
                );
            }
            Err(lain_http::auth::Refusal::Unauthorized) => {
                let mut response = reply(StatusCode::UNAUTHORIZED, error("bad credentials"));
                response.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"token server\""),
                );
                return response;
            }
        };
        let service = value("service").unwrap_or_default();
        let access: Vec<serde_json::Value> = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|scope| self.grant(&user, &scope))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": user, "aud": service,
            "exp": now + self.lifetime.as_secs(), "nbf": now.saturating_sub(5), "iat": now,
            "jti": format!("{now}-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())),
            "access": access,
        });
        match self.key.sign(self.header.clone(), &claims) {
            Ok(token) => {
                tracing::info!(%peer, user = %claims["sub"], algorithm = %self.key.algorithm(), "token issued");
                reply(
                    StatusCode::OK,
                    serde_json::json!({
                        "token": token, "access_token": token,
                        "expires_in": self.lifetime.as_secs(), "issued_at": rfc3339(now),
                    })
                    .to_string(),
                )
            }
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, error(&e)),
        }
    }

    /// The part of `scope` (`repository:<name>:<actions>`) that `user` is granted.
    fn grant(&self, user: &str, scope: &str) -> Option<serde_json::Value> {
        let mut parts = scope.rsplitn(2, ':');
        let actions = parts.next()?;
        let (kind, name) = parts.next()?.split_once(':')?;
        if kind != "repository" {
            return None;
        }
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                self.grants.iter().any(|rule| {
                    (rule.user == user || rule.user == "*")
                        && lain_engine::glob_matches(&rule.repository, name)
                        && rule.actions.iter().any(|a| a == action || a == "*")
                })
            })
            .collect();
        (!granted.is_empty())
            .then(|| serde_json::json!({"type": kind, "name": name, "actions": granted}))
    }
}

fn error(message: &str) -> String {
    serde_json::json!({"details": message}).to_string()
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `a=b&c=d` with `+` and `%XX` decoded.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-30T06:20:00Z`).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_forms() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_019_600), "2026-11-30T06:20:00Z");
        assert_eq!(
            form_pairs("scope=repository%3Alain%2Fapp%3Apull+push&service=x&flag"),
            [
                (
                    "scope".to_owned(),
                    "repository:lain/app:pull push".to_owned()
                ),
                ("service".to_owned(), "x".to_owned()),
                ("flag".to_owned(), String::new())
            ]
        );
    }
}
