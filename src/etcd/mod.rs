//! etcd as a configuration source: the LAIN auth key (JSON `{"realm", "issuer",
//! "service"}`) and a key holding a YAML fragment laid over the file. Read at start,
//! then followed: a change applies within moments (read-only mode, authentication on
//! or off); settings that cannot change while serving are logged as needing a restart;
//! a malformed value is logged and the last good configuration stays. etcd being away
//! never blocks a request: the server keeps its configuration and reconnects.
//!
//! Both of etcd's APIs: v3 (gRPC, `etcd-client`) and v2 (the HTTP keys API older LAIN
//! clusters use), behind [`Client`].

mod v2;
pub mod v3;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{self, Base, Config, Etcd, EtcdApi, Node, Origin, Override};

/// What the two keys hold (`None`: absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub auth: Option<String>,
    pub config: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    V3(#[from] etcd_client::Error),
    #[error("{0}")]
    V2(#[from] v2::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where a read left off, for a watch to start right after it.
#[derive(Debug, Clone, Copy)]
pub struct Position(i64);

pub enum Client {
    V3(Box<etcd_client::Client>),
    V2(v2::Client),
}

impl Client {
    pub async fn connect(settings: &Etcd) -> Result<Client, Error> {
        match settings.api {
            EtcdApi::V3 => Ok(Client::V3(Box::new(v3::connect(settings).await?))),
            EtcdApi::V2 => Ok(Client::V2(v2::Client::new(settings)?)),
        }
    }

    /// Both keys, and the store's position at the read.
    pub async fn read(&mut self, settings: &Etcd) -> Result<(Values, Position), Error> {
        let keys = [settings.auth_key.as_str(), settings.config_key.as_str()];
        let ([auth, config], position) = match self {
            Client::V3(client) => v3::read(client, keys).await?,
            Client::V2(client) => client.read(keys).await?,
        };
        Ok((Values { auth, config }, Position(position)))
    }

    /// Returns once either key may have changed after `position`.
    pub async fn wait(&mut self, settings: &Etcd, position: Position) -> Result<(), Error> {
        let keys = [settings.auth_key.as_str(), settings.config_key.as_str()];
        match self {
            Client::V3(client) => v3::wait(client, keys, position.0).await?,
            Client::V2(client) => client.wait(keys, position.0).await?,
        }
        Ok(())
    }
}

/// Both keys, once (at start, and for `registry config check`).
pub async fn read_once(settings: &Etcd) -> Result<Values, Error> {
    let read = async {
        let mut client = Client::connect(settings).await?;
        client.read(settings).await.map(|(values, _)| values)
    };
    tokio::time::timeout(settings.timeout, read)
        .await
        .map_err(|_| Error::Timeout(settings.timeout))?
}

impl Values {
    /// What the keys change in the file's tree. LAIN's rule for the auth key: token
    /// authentication is on exactly when it holds realm, issuer and service (with the
    /// file's `rootcertbundle`), and off when it is absent or incomplete, whatever the
    /// file's `auth.token` says.
    pub fn overrides(&self, settings: &Etcd) -> Result<Vec<Override>, config::Error> {
        let mut changes = Vec::new();
        if let Some(text) = self.config.as_deref().filter(|t| !t.trim().is_empty()) {
            let origin = Origin::Etcd {
                key: settings.config_key.clone(),
            };
            let node = Node::parse_yaml(text, &|_| origin.clone()).map_err(|error| {
                config::Error::Yaml {
                    source_name: format!("etcd key {}", settings.config_key),
                    error,
                }
            })?;
            changes.push(Override::Merge(node));
        }
        let origin = Origin::Etcd {
            key: settings.auth_key.clone(),
        };
        let token = match self.auth.as_deref() {
            None => None,
            Some(text) => lain_token(text).map_err(|message| config::Error::Invalid {
                key: "auth".into(),
                origin: origin.clone(),
                message,
            })?,
        };
        match token {
            // Only token auth follows the key: htpasswd from the file stays.
            None => changes.push(Override::Remove {
                path: vec!["auth".into(), "token".into()],
            }),
            Some(fields) => {
                for kind in ["htpasswd", "silly"] {
                    changes.push(Override::Remove {
                        path: vec!["auth".into(), kind.into()],
                    });
                }
                for (name, value) in fields {
                    changes.push(Override::Set {
                        path: vec!["auth".into(), "token".into(), name.into()],
                        node: Node::new(config::Value::Str(value), origin.clone()),
                    });
                }
            }
        }
        Ok(changes)
    }
}

impl Values {
    /// Whether the auth key turns token authentication on (by LAIN's rule), whatever
    /// else is wrong.
    fn asks_for_token_auth(&self) -> bool {
        self.auth
            .as_deref()
            .is_some_and(|text| matches!(lain_token(text), Ok(Some(_))))
    }
}

/// The LAIN auth key's realm, issuer and service, when all three are set.
fn lain_token(text: &str) -> Result<Option<[(&'static str, String); 3]>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not the JSON object LAIN writes ({e})"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("not a JSON object with realm, issuer and service".into());
    };
    let field = |name: &str| {
        object
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(match (field("realm"), field("issuer"), field("service")) {
        (Some(realm), Some(issuer), Some(service)) => {
            Some([("realm", realm), ("issuer", issuer), ("service", service)])
        }
        _ => None,
    })
}

/// The settings that differ between `old` and `new` and only apply at start.
fn needing_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differ = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differ("http.addr", old.addr != new.addr);
    differ("storage.filesystem.rootdirectory", old.root != new.root);
    differ("http.tls", old.tls != new.tls);
    differ(
        "http (or storage.delete, storage.maintenance.uploadpurging)",
        old.http != new.http,
    );
    differ("storage.engine", old.engine != new.engine);
    differ("storage.engine.collection", old.collect != new.collect);
    differ("log", old.log != new.log);
    keys
}

/// Follows etcd for the life of the server: applies each change to `live`, keeps the
/// last good configuration when a value is malformed, reconnects with backoff when
/// etcd goes away. `running` is the configuration the server started with; `last`,
/// what etcd's keys held then (if it answered).
pub async fn follow(
    settings: Etcd,
    base: Base,
    running: Config,
    mut last: Option<Values>,
    live: Arc<watch::Sender<lain_http::Live>>,
) {
    const FIRST_RETRY: Duration = Duration::from_millis(200);
    const LAST_RETRY: Duration = Duration::from_secs(5);
    let settings = Arc::new(settings);
    let mut current = running.clone();
    let mut backoff = FIRST_RETRY;
    let mut reported = false;
    loop {
        let session = async {
            let mut client = Client::connect(&settings).await?;
            loop {
                let (values, position) = client.read(&settings).await?;
                tracing::debug!(revision = position.0, "etcd read");
                if reported {
                    tracing::info!("etcd is reachable again");
                    reported = false;
                }
                if last.as_ref() != Some(&values) {
                    apply(&settings, &base, &running, &mut current, &values, &live);
                    last = Some(values);
                }
                client.wait(&settings, position).await?;
                // A whole round: etcd is well again.
                backoff = FIRST_RETRY;
            }
        };
        let ended: Result<(), Error> = session.await;
        if let Err(e) = ended
            && !reported
        {
            tracing::warn!(
                endpoints = %settings.endpoints.join(","),
                "etcd: {e}; serving on the last configuration, reconnecting"
            );
            reported = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LAST_RETRY);
    }
}

/// Applies what etcd now holds: the per-request settings go live at once; settings
/// that only apply at start are named. A protection (TLS) that etcd asks for but the
/// running server cannot give closes the registry until a restart, rather than
/// serving without it.
fn apply(
    settings: &Etcd,
    base: &Base,
    running: &Config,
    current: &mut Config,
    values: &Values,
    live: &watch::Sender<lain_http::Live>,
) {
    let next = values
        .overrides(settings)
        .and_then(|overrides| base.config(&overrides));
    let next = match next {
        Ok(next) => next,
        Err(e) if values.asks_for_token_auth() => {
            // Authentication asked for in a form that cannot be used: closed, never
            // the last configuration's (perhaps open) access.
            tracing::error!("etcd: {e}; every request is refused until it is fixed");
            let mut closed = live.borrow().clone();
            closed.access = lain_http::Access::Closed {
                reason: format!("etcd asks for token authentication that cannot be used: {e}"),
            };
            live.send_replace(closed);
            return;
        }
        Err(e) => {
            tracing::error!("etcd: {e}; keeping the last good configuration");
            return;
        }
    };
    for key in needing_restart(current, &next) {
        tracing::warn!("etcd changed {key}, which applies at the next start");
    }
    let mut settings_now = crate::access::live(&next);
    if next.tls.is_some() && next.tls != running.tls {
        settings_now.access = lain_http::Access::Closed {
            reason: "etcd asks for TLS settings (http.tls) that apply at the next start; \
                     every request is refused until the registry is restarted with them"
                .into(),
        };
    }
    // A new token auth instance is made on every apply: put it in place only when the
    // configuration behind it changed, so verified tokens stay cached.
    let unchanged_auth = match (&settings_now.access, &live.borrow().access) {
        (lain_http::Access::Token(new), lain_http::Access::Token(old)) => {
            current.auth == next.auth && new.fingerprint == old.fingerprint
        }
        _ => false,
    };
    if unchanged_auth {
        settings_now.access = live.borrow().access.clone();
    }
    if *live.borrow() != settings_now {
        tracing::info!(
            read_only = settings_now.read_only,
            open = matches!(settings_now.access, lain_http::Access::Open),
            "configuration from etcd applied"
        );
        if let lain_http::Access::Closed { reason } = &settings_now.access {
            tracing::error!("{reason}");
        }
        live.send_replace(settings_now);
    }
    *current = next;
}
