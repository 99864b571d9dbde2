//! Who may use the API, from the configuration: token authentication's keys
//! (`rootcertbundle`, `jwks`) and htpasswd's users read from their files and handed to
//! the HTTP layer, and the htpasswd file followed while serving. Anything asked for
//! that cannot be put in place closes the registry; it never leaves it open.

use std::sync::Arc;

use lain_http::auth::{Htpasswd, TokenAuth, TokenKeys, TokenSettings, token};
use lain_http::{Access, Live};
use lain_registry::config::{Config, TokenConfig};

/// The per-request settings `config` asks for, with token auth in place when it is
/// configured; `Access::Closed` with the reason when it cannot be.
pub fn live(config: &Config) -> Live {
    let mut live = config.live.clone();
    let Some(auth) = &config.auth else {
        return live;
    };
    let loaded = match (&auth.token, &auth.htpasswd) {
        (Some(settings), _) => token_auth(settings).map(|a| Access::Token(Arc::new(a))),
        (None, Some((realm, file))) => htpasswd(realm, file).map(|h| Access::Basic(Arc::new(h))),
        (None, None) => return live,
    };
    live.access = loaded.unwrap_or_else(|why| Access::Closed {
        reason: format!(
            "{} ({}): {why}; every request is refused",
            auth.key, auth.origin
        ),
    });
    live
}

fn htpasswd(realm: &str, file: &std::path::Path) -> Result<Htpasswd, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("auth.htpasswd.path: {}: {e}", file.display()))?;
    Htpasswd::parse(realm.to_owned(), &text).map_err(|e| format!("{}: {e}", file.display()))
}

fn token_auth(settings: &TokenConfig) -> Result<TokenAuth, String> {
    if settings.rootcertbundle.is_none() && settings.jwks.is_none() {
        return Err("neither rootcertbundle nor jwks names the keys tokens are signed with".into());
    }
    let certificates: Vec<Vec<u8>> = match &settings.rootcertbundle {
        Some(file) => crate::tls::certificates(file, "auth.token.rootcertbundle")?
            .into_iter()
            .map(|c| c.to_vec())
            .collect(),
        None => Vec::new(),
    };
    let jwks = match &settings.jwks {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("auth.token.jwks: {}: {e}", file.display()))?,
        ),
        None => None,
    };
    let keys = TokenKeys::new(&certificates, jwks.as_deref()).map_err(|e| e.to_string())?;
    let algorithms = if settings.algorithms.is_empty() {
        lain_http::auth::jose::Algorithm::ALL.to_vec()
    } else {
        settings
            .algorithms
            .iter()
            .map(|name| token::algorithm(name))
            .collect::<Result<_, _>>()?
    };
    // The keys' material, so that a reload keeps the verified tokens only while the
    // keys stay the same.
    let mut material = certificates.concat();
    material.extend(jwks.as_deref().unwrap_or_default().as_bytes());
    let fingerprint = lain_engine::Algorithm::Sha256.digest(&material).to_string();
    Ok(TokenAuth::new(
        settings.realm.clone(),
        fingerprint,
        settings.autoredirect.clone(),
        TokenSettings {
            issuer: settings.issuer.clone(),
            service: settings.service.clone(),
            keys,
            algorithms,
        },
    ))
}

/// Re-reads the htpasswd file when it changes (checked every 2 seconds), while the
/// registry runs on htpasswd from `config`: a user added or removed takes effect
/// without a restart. A file that can no longer be read closes the registry.
pub async fn follow_files(config: Config, live: Arc<tokio::sync::watch::Sender<Live>>) {
    let Some((_, file)) = config.auth.as_ref().and_then(|a| a.htpasswd.as_ref()) else {
        return;
    };
    let stamp = |file: &std::path::Path| {
        std::fs::metadata(file)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(file);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        let now = stamp(file);
        if now == seen {
            continue;
        }
        seen = now;
        // Only while htpasswd is what serves: etcd may have changed the access since.
        if !matches!(live.borrow().access, Access::Basic(_)) {
            continue;
        }
        let reloaded = self::live(&config).access;
        match &reloaded {
            Access::Basic(_) => tracing::info!(file = %file.display(), "htpasswd file re-read"),
            Access::Closed { reason } => tracing::error!("{reason}"),
            _ => {}
        }
        live.send_modify(|settings| settings.access = reloaded);
    }
}
