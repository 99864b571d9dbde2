//! `http.tls`: the server's certificate and key, and the client CAs of mutual TLS, read
//! from their PEM files into a rustls configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::Tls;

/// The acceptor for `settings`; HTTP/2 is offered by ALPN when `http2`.
pub fn acceptor(settings: &Tls, http2: bool) -> Result<lain_http::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("http.tls: {e}"))?;
    let builder = if settings.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for file in &settings.client_cas {
            for cert in certificates(file, "http.tls.clientcas")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("http.tls.clientcas: {}: {e}", file.display()))?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("http.tls.clientcas: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let chain = certificates(&settings.certificate, "http.tls.certificate")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| {
        format!(
            "http.tls.key: {}: no usable private key: {e}",
            settings.key.display()
        )
    })?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("http.tls: the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(lain_http::TlsAcceptor::from(Arc::new(config)))
}

/// The certificates of a PEM file; at least one.
pub fn certificates(file: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key}: {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {} holds no certificate", file.display()));
    }
    Ok(certs)
}
