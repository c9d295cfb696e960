//! Verified TLS for PostgreSQL connections (rotate's logins, snapshot's restore
//! drill): the trust roots are loaded once per cold start, and every connection
//! verifies the chain and the host name. There is no fallback to plaintext here.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// Trust roots for database TLS, loaded once per cold start.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The CA bundle at `path` (for RDS: the global bundle), or the system trust store.
    pub fn load(path: Option<&str>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        match path {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("CA bundle {path}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("CA bundle {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA bundle {path}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("CA bundle {path} holds no certificate"));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl Tls {
    /// A connector for `tokio_postgres::Config::connect`.
    pub fn connector(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        tokio_postgres_rustls::MakeRustlsConnect::new((*self.config).clone())
    }
}
