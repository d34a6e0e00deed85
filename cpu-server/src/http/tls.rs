//! Native TLS (`TLS_CERT` + `TLS_KEY`): the rustls server configuration. Each
//! connection shakes hands in its own task, bounded by `TLS_HANDSHAKE_TIMEOUT`
//! (see [`super::conn`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::TlsPaths;

/// Loads the certificate chain and key into a rustls server config (ring provider).
pub fn load_config(paths: &TlsPaths) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs(&paths.cert)?;
    let key = PrivateKeyDer::from_pem_file(&paths.key)
        .with_context(|| format!("TLS_KEY {}: no PEM private key", paths.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS_CERT and TLS_KEY do not form a usable certificate")?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("TLS_CERT {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("TLS_CERT {}: bad PEM", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "TLS_CERT {}: no certificate", path.display());
    Ok(certs)
}
