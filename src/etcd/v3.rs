//! etcd's v3 API (gRPC) through `etcd-client`.

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions, WatchOptions};

use crate::config::Etcd;

pub async fn connect(settings: &Etcd) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(settings.timeout)
        .with_keep_alive(std::time::Duration::from_secs(5), settings.timeout);
    if let Some((user, password)) = &settings.credentials {
        options = options.with_user(user.clone(), password.clone());
    }
    if settings.endpoints.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &settings.ca {
            let pem = std::fs::read(ca).map_err(|e| io_error(ca, e))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &settings.identity {
            let cert = std::fs::read(cert).map_err(|e| io_error(cert, e))?;
            let key = std::fs::read(key).map_err(|e| io_error(key, e))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        options = options.with_tls(tls);
    }
    Client::connect(&settings.endpoints, Some(options)).await
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> etcd_client::Error {
    etcd_client::Error::IoError(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// The keys' values and the store's revision at the earlier of the two reads (a
/// change between them is then seen again by the watch, never missed).
pub async fn read(
    client: &mut Client,
    keys: [&str; 2],
) -> Result<([Option<String>; 2], i64), etcd_client::Error> {
    let mut values = [None, None];
    let mut revision = i64::MAX;
    for (i, key) in keys.iter().enumerate() {
        let response = client.get(*key, None).await?;
        revision = revision.min(response.header().map_or(0, |h| h.revision()));
        values[i] = response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    }
    Ok((values, revision))
}

/// Returns at the first change of either key after `revision`.
pub async fn wait(
    client: &mut Client,
    keys: [&str; 2],
    revision: i64,
) -> Result<(), etcd_client::Error> {
    let from = || Some(WatchOptions::new().with_start_revision(revision + 1));
    let mut stream = client.watch(keys[0], from()).await?;
    stream.watch(keys[1], from()).await?;
    loop {
        match stream.message().await? {
            Some(response) if response.canceled() => {
                return Err(etcd_client::Error::WatchError(format!(
                    "watch cancelled: {}",
                    response.cancel_reason()
                )));
            }
            Some(response) if !response.events().is_empty() => return Ok(()),
            Some(_) => {}
            None => {
                return Err(etcd_client::Error::WatchError("the watch ended".into()));
            }
        }
    }
}
