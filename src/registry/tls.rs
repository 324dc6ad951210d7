//! TLS trust for registry connections: system roots plus a private CA, one pinned
//! certificate (an idpbuilder cluster's ingress certificate), or (only when the user
//! asked for `--insecure`) no verification at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_name;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// Which server certificates a connection accepts.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The operating system's roots, plus any certificates from a `--ca-file`.
    #[default]
    System,
    /// System roots plus the CA certificates read from a PEM file.
    SystemAnd(Vec<CertificateDer<'static>>),
    /// Exactly this certificate, as served by the registry (still checked for the
    /// host name and validity period). idpbuilder's ingress certificate is a
    /// self-signed CA:TRUE certificate served as the leaf, which webpki refuses
    /// (`CaUsedAsEndEntity`) even as a trusted root, so it is pinned instead.
    Pinned(CertificateDer<'static>),
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
    parse_ca_pem(&bytes, path)
}

/// The certificates of PEM text read from `path` (named in errors).
pub fn parse_ca_pem(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
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
            .with_custom_certificate_verifier(Arc::new(CustomVerifier {
                check: CertificateCheck::AnyCertificate,
                provider,
            }))
            .with_no_client_auth(),
        Trust::Pinned(certificate) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CustomVerifier {
                check: CertificateCheck::Pinned(certificate.clone()),
                provider,
            }))
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

/// The two certificate checks rustls's webpki cannot do for us. Handshake
/// signatures are verified in both cases, so the connection is with the
/// holder of the presented key.
#[derive(Debug)]
enum CertificateCheck {
    /// `--insecure`: any certificate passes.
    AnyCertificate,
    /// An idpbuilder cluster's ingress certificate: CA:TRUE and served as the
    /// leaf, which webpki refuses even as a root. Exactly that certificate
    /// passes, for the right name, within its validity.
    Pinned(CertificateDer<'static>),
}

#[derive(Debug)]
struct CustomVerifier {
    check: CertificateCheck,
    provider: Arc<CryptoProvider>,
}

/// The server presented a certificate other than the pinned one.
struct NotThePinnedCertificate;

const NOT_THE_PINNED_CERTIFICATE: &str =
    "x509: the server's certificate is not the pinned certificate of the idpbuilder cluster";

impl std::fmt::Display for NotThePinnedCertificate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(NOT_THE_PINNED_CERTIFICATE)
    }
}

// rustls prints `CertificateError::Other` with `{:?}`: make that readable too.
impl std::fmt::Debug for NotThePinnedCertificate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(NOT_THE_PINNED_CERTIFICATE)
    }
}

impl std::error::Error for NotThePinnedCertificate {}

impl ServerCertVerifier for CustomVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = match &self.check {
            CertificateCheck::AnyCertificate => return Ok(ServerCertVerified::assertion()),
            CertificateCheck::Pinned(pinned) => pinned,
        };
        if end_entity.as_ref() != pinned.as_ref() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotThePinnedCertificate)),
            )));
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_name(&parsed, server_name)?;
        check_validity(end_entity, now)?;
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

/// Checks `now` against the certificate's notBefore/notAfter. webpki does this
/// only while building a chain, which a pinned CA:TRUE leaf never gets through.
fn check_validity(certificate: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (not_before, not_after) = der::validity(certificate.as_ref()).ok_or(
        rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
    )?;
    let now_seconds = now.as_secs();
    if now_seconds < not_before {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before: UnixTime::since_unix_epoch(Duration::from_secs(not_before)),
            },
        ));
    }
    if now_seconds > not_after {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(not_after)),
            },
        ));
    }
    Ok(())
}

/// Just enough DER to read an X.509 certificate's validity period
/// (RFC 5280 4.1: Certificate, TBSCertificate, Validity, Time).
mod der {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    /// `(notBefore, notAfter)` in seconds since the Unix epoch (times before
    /// 1970 read as about 1970); `None` when the bytes are not a certificate.
    pub(super) fn validity(certificate: &[u8]) -> Option<(u64, u64)> {
        let (certificate, _) = expect(certificate, SEQUENCE)?;
        let (tbs, _) = expect(certificate, SEQUENCE)?;
        let mut rest = tbs;
        if rest.first() == Some(&VERSION) {
            rest = element(rest)?.2;
        }
        let (_serial, rest) = expect(rest, INTEGER)?;
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (validity, _) = expect(rest, SEQUENCE)?;
        let (not_before, rest) = time(validity)?;
        let (not_after, rest) = time(rest)?;
        rest.is_empty().then_some((not_before, not_after))
    }

    /// One element of the expected tag: its contents and what follows it.
    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (found, contents, rest) = element(input)?;
        (found == tag).then_some((contents, rest))
    }

    /// Tag, contents and the rest, for the single-byte tags of a certificate.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, input) = input.split_first()?;
        let (&first, mut input) = input.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || input.len() < count {
                return None;
            }
            let (bytes, after) = input.split_at(count);
            input = after;
            bytes
                .iter()
                .fold(0usize, |length, &byte| (length << 8) | usize::from(byte))
        };
        if input.len() < length {
            return None;
        }
        let (contents, rest) = input.split_at(length);
        Some((tag, contents, rest))
    }

    fn time(input: &[u8]) -> Option<(u64, &[u8])> {
        let (tag, contents, rest) = element(input)?;
        let text = std::str::from_utf8(contents).ok()?;
        let text = text.strip_suffix('Z').filter(|text| text.is_ascii())?;
        let (year, rest_of_time) = match tag {
            // RFC 5280: two-digit years 50-99 are 19xx, 00-49 are 20xx.
            UTC_TIME if text.len() == 12 => {
                let year = digits(&text[..2])?;
                (
                    if year >= 50 { 1900 + year } else { 2000 + year },
                    &text[2..],
                )
            }
            GENERALIZED_TIME if text.len() == 14 => (digits(&text[..4])?, &text[4..]),
            _ => return None,
        };
        let month = digits(&rest_of_time[0..2])?;
        let day = digits(&rest_of_time[2..4])?;
        let hour = digits(&rest_of_time[4..6])?;
        let minute = digits(&rest_of_time[6..8])?;
        let second = digits(&rest_of_time[8..10])?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        // 60 allows a leap second.
        if second > 60 {
            return None;
        }
        let days = days_since_epoch(year, month, day)?;
        Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
    }

    fn digits(text: &str) -> Option<u64> {
        if text.bytes().all(|byte| byte.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
    /// `days_from_civil`); earlier dates count as 1970-01-01.
    fn days_since_epoch(year: u64, month: u64, day: u64) -> Option<u64> {
        let year = if month <= 2 {
            year.checked_sub(1)?
        } else {
            year
        };
        let era = year / 400;
        let year_of_era = year - era * 400;
        let month_index = (month + 9) % 12;
        let day_of_year = (153 * month_index + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Some((era * 146_097 + day_of_era).saturating_sub(719_468))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_certificates_is_rejected_with_a_hint() {
        let path = Path::new("/etc/ssl/empty.pem");
        let error = parse_ca_pem(b"not a certificate\n", path).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
        assert!(error.to_string().contains("empty.pem"));
        assert!(error.hint().unwrap().contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn pem_certificates_are_all_read() {
        let first = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let second = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        let text = format!("{}{}", first.cert.pem(), second.cert.pem());
        let certificates = parse_ca_pem(text.as_bytes(), Path::new("ca.pem")).unwrap();
        assert_eq!(certificates.len(), 2);
        assert_eq!(certificates[0].as_ref(), first.cert.der().as_ref());
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn every_trust_choice_builds_a_config() {
        for trust in [
            Trust::System,
            Trust::Insecure,
            Trust::SystemAnd(vec![]),
            Trust::Pinned(CertificateDer::from(vec![0x30, 0x00])),
        ] {
            client_config(&trust).unwrap();
        }
    }

    mod pinned {
        use super::super::*;
        use rcgen::{
            date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair,
            PKCS_ECDSA_P256_SHA256,
        };
        use rustls::pki_types::PrivateKeyDer;

        /// A certificate made like idpbuilder's: ECDSA P-256, CA:TRUE, SANs host and *.host.
        fn idpbuilder_like(
            not_before: (i32, u8, u8),
            not_after: (i32, u8, u8),
        ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(vec![
                "cnoe.localtest.me".to_owned(),
                "*.cnoe.localtest.me".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .unwrap();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "cnoe.io");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
            params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
            let certificate = params.self_signed(&key).unwrap();
            (
                certificate.der().clone(),
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
        }

        fn current() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            idpbuilder_like((2020, 1, 1), (2095, 1, 1))
        }

        fn verify(
            pinned: &CertificateDer<'static>,
            presented: &CertificateDer<'static>,
            host: &str,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let verifier = CustomVerifier {
                check: CertificateCheck::Pinned(pinned.clone()),
                provider: crypto_provider(),
            };
            verifier.verify_server_cert(
                presented,
                &[],
                &ServerName::try_from(host.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
        }

        #[test]
        fn the_pinned_ca_certificate_is_accepted_for_a_covered_host() {
            let (certificate, _) = current();
            for host in ["gitea.cnoe.localtest.me", "cnoe.localtest.me", "127.0.0.1"] {
                verify(&certificate, &certificate, host)
                    .unwrap_or_else(|error| panic!("{host}: {error}"));
            }
        }

        #[test]
        fn a_host_outside_the_names_is_rejected() {
            let (certificate, _) = current();
            for host in ["other.example", "a.b.cnoe.localtest.me", "127.0.0.2"] {
                let error = verify(&certificate, &certificate, host).unwrap_err();
                assert!(
                    matches!(
                        error,
                        rustls::Error::InvalidCertificate(
                            CertificateError::NotValidForName
                                | CertificateError::NotValidForNameContext { .. }
                        )
                    ),
                    "{host}: {error:?}"
                );
            }
        }

        #[test]
        fn a_different_certificate_is_rejected_even_with_the_same_names() {
            let (pinned, _) = current();
            let (other, _) = current();
            let error = verify(&pinned, &other, "gitea.cnoe.localtest.me").unwrap_err();
            assert_eq!(
                error.to_string(),
                "invalid peer certificate: Other(OtherError(x509: the server's certificate is not the pinned certificate of the idpbuilder cluster))"
            );
        }

        #[test]
        fn an_expired_certificate_is_rejected() {
            let (certificate, _) = idpbuilder_like((2020, 1, 1), (2021, 1, 1));
            let error = verify(&certificate, &certificate, "gitea.cnoe.localtest.me").unwrap_err();
            assert!(
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
                ),
                "{error:?}"
            );
        }

        #[test]
        fn a_certificate_not_yet_valid_is_rejected() {
            // 2060 is written as GeneralizedTime, 2049 as UTCTime: both forms are read.
            let (certificate, _) = idpbuilder_like((2060, 1, 1), (2070, 1, 1));
            let error = verify(&certificate, &certificate, "gitea.cnoe.localtest.me").unwrap_err();
            assert!(
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
                ),
                "{error:?}"
            );
        }

        #[test]
        fn validity_is_read_from_both_time_forms() {
            let (certificate, _) = idpbuilder_like((2049, 12, 31), (2050, 1, 1));
            let (not_before, not_after) = der::validity(certificate.as_ref()).unwrap();
            assert_eq!(not_before, 2_524_521_600); // 2049-12-31T00:00:00Z
            assert_eq!(not_after, 2_524_608_000); // 2050-01-01T00:00:00Z
            let (from_1950, _) =
                der::validity(idpbuilder_like((1950, 1, 1), (2095, 1, 1)).0.as_ref()).unwrap();
            assert!(from_1950 < 86_400, "{from_1950}");
            assert_eq!(der::validity(b"\x30\x03\x02\x01\x00"), None);
            assert_eq!(der::validity(&[]), None);
        }

        /// A rustls client with `Trust::Pinned` completes a handshake with a server
        /// presenting that certificate (in memory, no sockets), and fails against
        /// a server presenting another one.
        #[test]
        fn a_client_with_the_pin_completes_a_handshake() {
            let (certificate, key) = current();
            let pinned = Trust::Pinned(certificate.clone());
            handshake(&pinned, (certificate.clone(), key.clone_key())).unwrap();
            let (other, other_key) = current();
            let error = handshake(&pinned, (other, other_key)).unwrap_err();
            assert!(error.to_string().contains("pinned certificate"), "{error}");
        }

        /// Why pinning exists: webpki refuses the same certificate as a root.
        #[test]
        fn the_certificate_as_a_root_is_refused_by_webpki() {
            let (certificate, key) = current();
            let as_root = Trust::SystemAnd(vec![certificate.clone()]);
            let error = handshake(&as_root, (certificate, key)).unwrap_err();
            assert!(
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(CertificateError::Other(_))
                ),
                "{error:?}"
            );
            assert!(
                format!("{error:?}").contains("CaUsedAsEndEntity"),
                "{error:?}"
            );
        }

        fn handshake(
            trust: &Trust,
            (served, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
        ) -> Result<(), rustls::Error> {
            let client_config = client_config(trust).unwrap();
            let server_config = rustls::ServerConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![served], key)
                .unwrap();
            let mut client = rustls::ClientConnection::new(
                Arc::new(client_config),
                ServerName::try_from("gitea.cnoe.localtest.me").unwrap(),
            )
            .unwrap();
            let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
            for _ in 0..10 {
                if !client.is_handshaking() && !server.is_handshaking() {
                    return Ok(());
                }
                let mut buffer = Vec::new();
                client.write_tls(&mut buffer).unwrap();
                server.read_tls(&mut buffer.as_slice()).unwrap();
                server.process_new_packets()?;
                let mut buffer = Vec::new();
                server.write_tls(&mut buffer).unwrap();
                client.read_tls(&mut buffer.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            panic!("the handshake did not finish");
        }
    }
}
