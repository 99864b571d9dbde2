//! `registry config check`: the effective configuration, one applied key per line, with
//! the source each value came from; secrets are never printed.

use super::{Config, EtcdApi, Origin, format_duration};

/// One line of the report: key, value as written, where it came from.
pub struct Row {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// Every key this registry applies, with its effective value.
pub fn rows(config: &Config) -> Vec<Row> {
    let http = &config.http;
    let mut rows = Vec::new();
    let mut row = |key: &'static str, value: String| {
        let path: Vec<&str> = key.split('.').collect();
        let origin = config
            .tree
            .get(&path)
            .map_or(Origin::Default, |node| node.origin.clone());
        rows.push(Row { key, value, origin });
    };
    row("http.addr", config.addr.to_string());
    row("http.prefix", http.prefix.clone());
    row(
        "http.relativeurls",
        matches!(http.locations, lain_http::Locations::Relative).to_string(),
    );
    row(
        "http.host",
        match &http.locations {
            lain_http::Locations::Absolute(base) => base.clone(),
            _ => String::new(),
        },
    );
    row(
        "http.headers",
        http.headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
            .join("; "),
    );
    row("http.draintimeout", format_duration(http.drain_timeout));
    row("http.http2.disabled", (!http.http2).to_string());
    match &config.tls {
        None => row("http.tls", "off".into()),
        Some(tls) => {
            row(
                "http.tls.certificate",
                tls.certificate.display().to_string(),
            );
            row("http.tls.key", tls.key.display().to_string());
            row(
                "http.tls.clientcas",
                tls.client_cas
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            row(
                "http.tls.minimumtls",
                if tls.tls13_only { "tls1.3" } else { "tls1.2" }.into(),
            );
        }
    }
    if http.secret.is_some() {
        row("http.secret", "(redacted)".into());
    }
    match &config.cluster {
        None => row(
            "storage.filesystem.rootdirectory",
            config.root.display().to_string(),
        ),
        Some(cluster) => {
            let bucket = &cluster.bucket;
            row("storage.s3.bucket", bucket.bucket.clone());
            row("storage.s3.region", bucket.region.clone());
            row(
                "storage.s3.regionendpoint",
                bucket.endpoint.clone().unwrap_or_default(),
            );
            row("storage.s3.rootdirectory", cluster.options.root.clone());
            row("storage.s3.secure", bucket.secure.to_string());
            row(
                "storage.s3.chunksize",
                cluster.options.part_size.to_string(),
            );
            row("storage.s3.accesskey", bucket.access_key.clone());
            row("storage.s3.secretkey", "(redacted)".into());
        }
    }
    row("storage.delete.enabled", http.delete_enabled.to_string());
    row(
        "storage.maintenance.uploadpurging.enabled",
        http.upload_purge_interval.is_some().to_string(),
    );
    row(
        "storage.maintenance.uploadpurging.age",
        format_duration(http.upload_purge_age),
    );
    if let Some(every) = http.upload_purge_interval {
        row(
            "storage.maintenance.uploadpurging.interval",
            format_duration(every),
        );
    }
    row(
        "storage.maintenance.readonly.enabled",
        config.live.read_only.to_string(),
    );
    let options = config.engine.options();
    row(
        "storage.engine.packsealsize",
        options.pack_seal_size.to_string(),
    );
    row(
        "storage.engine.blockcache",
        options.block_cache_bytes.to_string(),
    );
    row(
        "storage.engine.memtable",
        options.write_buffer_bytes.to_string(),
    );
    row(
        "storage.engine.uploadsessions",
        options.max_upload_sessions.to_string(),
    );
    row(
        "http.connections.max",
        config.http.max_connections.to_string(),
    );
    row(
        "http.connections.perclient",
        config.http.max_connections_per_client.to_string(),
    );
    row(
        "storage.engine.uploadmemory",
        config.http.upload_memory.to_string(),
    );
    row(
        "storage.engine.uploadsessionsperclient",
        options.max_upload_sessions_per_owner.to_string(),
    );
    row(
        "storage.engine.compactionrate",
        options.compaction_busy_rate.to_string(),
    );
    row(
        "storage.engine.reservedspace",
        options.reserved_space.to_string(),
    );
    row(
        "storage.engine.collection.grace",
        format_duration(config.collect.grace),
    );
    row(
        "storage.engine.collection.compactthreshold",
        config.collect.compact_threshold.to_string(),
    );
    row("log.level", config.log.level.clone());
    row(
        "log.formatter",
        if config.log.json { "json" } else { "text" }.into(),
    );
    match &config.auth {
        None => row("auth", "off".into()),
        Some(auth) => {
            for key in ["realm", "service", "issuer", "rootcertbundle"] {
                let path = format!("{}.{key}", auth.key);
                let parts: Vec<&str> = path.split('.').collect();
                if let Some(node) = config.tree.get(&parts) {
                    rows.push(Row {
                        key: match key {
                            "realm" => "auth.*.realm",
                            "service" => "auth.*.service",
                            "issuer" => "auth.*.issuer",
                            _ => "auth.*.rootcertbundle",
                        },
                        value: node.display_value().trim_matches('"').to_owned(),
                        origin: node.origin.clone(),
                    });
                }
            }
            rows.push(Row {
                key: "auth",
                value: format!("{} (not enforced by this build: serve refuses)", auth.key),
                origin: auth.origin.clone(),
            });
        }
    }
    match &config.etcd {
        None => rows.push(Row {
            key: "etcd",
            value: "off".into(),
            origin: Origin::Default,
        }),
        Some(etcd) => {
            let mut row = |key: &'static str, value: String| {
                let path: Vec<&str> = key.split('.').collect();
                rows.push(Row {
                    key,
                    value,
                    origin: config.tree.origin_of(&path),
                });
            };
            row("etcd.endpoints", etcd.endpoints.join(","));
            row(
                "etcd.api",
                match etcd.api {
                    EtcdApi::V3 => "v3",
                    EtcdApi::V2 => "v2",
                }
                .into(),
            );
            row("etcd.authkey", etcd.auth_key.clone());
            row("etcd.configkey", etcd.config_key.clone());
            if config.cluster.is_some() {
                row("etcd.prefix", etcd.prefix.clone());
            }
            if let Some((user, _)) = &etcd.credentials {
                row("etcd.username", user.clone());
                row("etcd.password", "(redacted)".into());
            }
        }
    }
    rows
}

/// The report as text.
pub fn render(config: &Config, etcd_note: Option<&str>) -> String {
    let rows = rows(config);
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let mut out = format!(
        "configuration: {}\n",
        config
            .file
            .as_deref()
            .map_or("(embedded default)".into(), |f| f.display().to_string())
    );
    if let Some(note) = etcd_note {
        out.push_str(&format!("etcd: {note}\n"));
    }
    for row in rows {
        out.push_str(&format!(
            "{:width$}  {}  ({})\n",
            row.key,
            if row.value.is_empty() {
                "-"
            } else {
                &row.value
            },
            row.origin
        ));
    }
    if !config.not_applied.is_empty() {
        out.push_str(&format!(
            "accepted, not applied: {}\n",
            config.not_applied.join(", ")
        ));
    }
    out
}
