//! TLS settings from PEM files, for every TLS peer of fdmd: an external MQTT broker, the back
//! office (replication), a GKS 2.0 FDM (client side, with a client certificate for mTLS) and
//! fdmd's own GKS 2.0 emulator (server side, asking for client certificates when given a CA).
//! rustls with the ring provider. A client trusts the CA file it is given only; without one
//! (the back office on the Internet) the system's store.

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
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

/// Where a client's trusted certificates come from.
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// The certificates of this PEM file only.
    File(&'a Path),
    /// The system's store (`ca-certificates`).
    System,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(roots: Roots<'_>) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::File(ca_file) => {
            let certs =
                CertificateDer::pem_file_iter(ca_file).map_err(|e| file_error(ca_file, e))?;
            for cert in certs {
                let cert = cert.map_err(|e| file_error(ca_file, e))?;
                store.add(cert).map_err(|e| {
                    file_error(ca_file, format!("not a usable CA certificate: {e}"))
                })?;
            }
            if store.is_empty() {
                return Err(file_error(ca_file, "holds no certificate"));
            }
        }
        Roots::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A certificate the system store holds but rustls cannot use is skipped, as
                // every rustls client does.
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(TlsError::File {
                    path: PathBuf::from("/etc/ssl/certs"),
                    message: "the system holds no CA certificate (install ca-certificates, or give a CA file)".into(),
                });
            }
        }
    }
    Ok(store)
}

fn chain_and_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_file, e))?;
    if chain.is_empty() {
        return Err(file_error(cert_file, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    Ok((chain, key))
}

/// A client configuration: the trusted roots and, for a server that asks for one (mTLS), a
/// client certificate chain and its key.
pub fn client_config(
    roots: Roots<'_>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(roots)?);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let (chain, key) = chain_and_key(cert_file, key_file)?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

/// A server configuration: its certificate chain and key and, with `client_ca`, the CA whose
/// client certificates it requires (mTLS: a client without one is refused in the handshake).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(cert_file, key_file)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(Roots::File(ca))?),
                provider(),
            )
            .build()
            .map_err(|e| file_error(ca, format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(Roots::File(&missing), None).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(Roots::File(&empty), None).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}
