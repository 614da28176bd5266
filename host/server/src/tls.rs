//! TLS from PEM files, with rustls.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

use crate::settings::SettingsError;

/// A server config from a PEM certificate chain and private key, offering HTTP/2 and 1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SettingsError> {
    let fail = |what: &Path, e: &dyn std::fmt::Display| SettingsError::Tls(format!("{}: {e}", what.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert, &e))?;
    if chain.is_empty() {
        return Err(fail(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, &e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| SettingsError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| SettingsError::Tls(format!("the certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
