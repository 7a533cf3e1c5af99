//! TLS to an external broker: the broker's CA (PEM) and, for brokers that want it, a client
//! certificate and key. rustls with the ring provider; no system certificate store is used, the
//! establishment's broker is trusted through its CA file only.

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Builds the client configuration from a CA file and an optional client certificate and key.
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| file_error(ca_file, e))?;
    for cert in certs {
        let cert = cert.map_err(|e| file_error(ca_file, e))?;
        roots
            .add(cert)
            .map_err(|e| file_error(ca_file, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(file_error(ca_file, "holds no certificate"));
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| file_error(cert_file, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(cert_file, e))?;
            if chain.is_empty() {
                return Err(file_error(cert_file, "holds no certificate"));
            }
            let key =
                PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(&missing, None).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(&empty, None).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}
