//! TLS trust for registry connections: system roots plus a private CA, or
//! (only when the user asked for `--insecure`) no verification at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Which server certificates a connection accepts.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The operating system's roots, plus any certificates from a `--ca-file`.
    #[default]
    System,
    /// System roots plus the CA certificates read from a PEM file.
    SystemAnd(Vec<CertificateDer<'static>>),
    /// Accept any certificate (`--insecure`).
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the CA file {path} is not valid PEM")]
    InvalidPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot set up TLS")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    pub fn hint(&self) -> Option<String> {
        match self {
            TlsError::NoCertificate { .. } | TlsError::InvalidPem { .. } => Some(
                "--ca-file expects PEM text with one or more '-----BEGIN CERTIFICATE-----' blocks"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// Reads every certificate of a PEM file, for `--ca-file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::ReadCaFile {
        path: path.to_owned(),
        source,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::InvalidPem {
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// The one crypto provider of this program; kube and reqwest share it.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for a trust choice.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, TlsError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
        Trust::System | Trust::SystemAnd(_) => {
            let mut roots = system_roots();
            if let Trust::SystemAnd(extra) = trust {
                for certificate in extra {
                    roots.add(certificate.clone())?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::debug!("skipping an unreadable system certificate: {error}");
    }
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    tracing::debug!("loaded {added} system root certificates ({ignored} ignored)");
    roots
}

/// `--insecure`: any certificate passes, but handshake signatures are still checked
/// so the connection is at least with the holder of the presented key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_rejected_with_a_hint() {
        let directory = std::env::temp_dir().join(format!("idpb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = read_ca_file(&path).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
        assert!(error.to_string().contains("empty.pem"));
        assert!(error.hint().unwrap().contains("BEGIN CERTIFICATE"));
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn every_trust_choice_builds_a_config() {
        for trust in [Trust::System, Trust::Insecure, Trust::SystemAnd(vec![])] {
            client_config(&trust).unwrap();
        }
    }
}
