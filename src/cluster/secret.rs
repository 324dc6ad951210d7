//! Secrets read from the cluster (pure: from the API's JSON): the Gitea admin
//! credentials and the ingress certificate. Values are decoded straight into
//! `secrecy` types and never appear in messages, `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;

use super::error::SecretRef;

/// The admin credentials of the cluster's Gitea.
#[derive(Clone)]
pub struct ClusterCredentials {
    pub username: String,
    /// The `password`, or the access `token` when there is no password
    /// (Gitea accepts a token as the password of Basic auth).
    pub password: SecretString,
    /// Which key the password came from: `password` or `token`.
    pub password_key: &'static str,
    /// Where they were read.
    pub secret: SecretRef,
}

impl fmt::Debug for ClusterCredentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ClusterCredentials")
            .field("username", &self.username)
            .field("password", &"****")
            .field("password_key", &self.password_key)
            .field("secret", &self.secret)
            .finish()
    }
}

/// The `data` of a Secret, every value base64-decoded into a secret buffer.
pub(crate) struct SecretData {
    values: BTreeMap<String, SecretSlice<u8>>,
}

/// Only the key names: the values are secret.
impl fmt::Debug for SecretData {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SecretData")
            .field("keys", &self.keys())
            .finish()
    }
}

/// Why a Secret could not give what was asked, without any of its values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SecretProblem {
    NotASecret,
    NotBase64 {
        key: String,
    },
    MissingKey {
        key: &'static str,
        present: Vec<String>,
    },
    NotText {
        key: String,
    },
}

/// A base64 value of `data`, held as a secret from the moment it is read.
struct EncodedValue(SecretString);

impl<'de> Deserialize<'de> for EncodedValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| EncodedValue(SecretString::from(text)))
    }
}

#[derive(Deserialize)]
struct EncodedSecret {
    #[serde(default)]
    data: Option<BTreeMap<String, EncodedValue>>,
}

impl SecretData {
    /// Decodes a Secret object as served by the API (`data` values in base64).
    pub(crate) fn parse(body: &SecretString) -> Result<SecretData, SecretProblem> {
        let encoded: EncodedSecret =
            serde_json::from_str(body.expose_secret()).map_err(|_| SecretProblem::NotASecret)?;
        let mut values = BTreeMap::new();
        for (key, value) in encoded.data.unwrap_or_default() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.0.expose_secret())
                .map_err(|_| SecretProblem::NotBase64 { key: key.clone() })?;
            values.insert(key, SecretSlice::from(decoded));
        }
        Ok(SecretData { values })
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    /// A non-empty value.
    fn bytes(&self, key: &str) -> Option<&[u8]> {
        self.values
            .get(key)
            .map(ExposeSecret::expose_secret)
            .filter(|bytes| !bytes.is_empty())
    }

    fn text(&self, key: &'static str) -> Result<Option<SecretString>, SecretProblem> {
        match self.bytes(key) {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(|text| Some(SecretString::from(text)))
                .map_err(|_| SecretProblem::NotText {
                    key: key.to_owned(),
                }),
        }
    }

    fn missing(&self, key: &'static str) -> SecretProblem {
        SecretProblem::MissingKey {
            key,
            present: self.keys(),
        }
    }

    /// `username`, and `password` or else `token`.
    pub(crate) fn credentials(
        &self,
        secret: &SecretRef,
    ) -> Result<ClusterCredentials, SecretProblem> {
        let username = self
            .text("username")?
            .ok_or_else(|| self.missing("username"))?
            .expose_secret()
            .trim()
            .to_owned();
        let (password, password_key) = match self.text("password")? {
            Some(password) => (password, "password"),
            None => (
                self.text("token")?
                    .ok_or_else(|| self.missing("password"))?,
                "token",
            ),
        };
        Ok(ClusterCredentials {
            username,
            password,
            password_key,
            secret: secret.clone(),
        })
    }

    /// The PEM certificate under `key` (public data, although kept in a Secret).
    pub(crate) fn pem(&self, key: &'static str) -> Result<&[u8], SecretProblem> {
        self.bytes(key).ok_or_else(|| self.missing(key))
    }
}

/// The first certificate of a PEM text, checked to be a well-formed X.509
/// certificate (the pinning verifier parses it again on every handshake).
pub(crate) fn certificate_from_pem(pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    let certificate = match CertificateDer::pem_slice_iter(pem).next() {
        None => return Err("no '-----BEGIN CERTIFICATE-----' block".to_owned()),
        Some(Err(error)) => return Err(format!("invalid PEM: {error}")),
        Some(Ok(certificate)) => certificate,
    };
    rustls::server::ParsedCertificate::try_from(&certificate)
        .map_err(|error| format!("not an X.509 certificate: {error}"))?;
    Ok(certificate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn secret_body(data: serde_json::Value) -> SecretString {
        SecretString::from(
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "gitea-credential", "namespace": "gitea", "resourceVersion": "77"},
                "type": "Opaque",
                "data": data
            })
            .to_string(),
        )
    }

    fn gitea_credential() -> SecretRef {
        SecretRef {
            namespace: "gitea".into(),
            name: "gitea-credential".into(),
        }
    }

    #[test]
    fn username_and_password() {
        let body = secret_body(json!({
            "username": encode("giteaAdmin"),
            "password": encode("s3cr3t-Pa55"),
            "token": encode("0123456789abcdef")
        }));
        let data = SecretData::parse(&body).unwrap();
        let credentials = data.credentials(&gitea_credential()).unwrap();
        assert_eq!(credentials.username, "giteaAdmin");
        assert_eq!(credentials.password.expose_secret(), "s3cr3t-Pa55");
        assert_eq!(credentials.password_key, "password");
        let shown = format!("{credentials:?} {data:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains(&encode("s3cr3t-Pa55")), "{shown}");
        assert!(
            shown.contains("giteaAdmin") && shown.contains("token"),
            "{shown}"
        );
    }

    #[test]
    fn the_token_stands_in_for_a_missing_password() {
        for password in [None, Some("")] {
            let mut data = json!({"username": encode("giteaAdmin"), "token": encode("tok")});
            if let Some(password) = password {
                data["password"] = json!(encode(password));
            }
            let data = SecretData::parse(&secret_body(data)).unwrap();
            let credentials = data.credentials(&gitea_credential()).unwrap();
            assert_eq!(credentials.password.expose_secret(), "tok");
            assert_eq!(credentials.password_key, "token");
        }
    }

    #[test]
    fn missing_keys_are_named_without_values() {
        let data = SecretData::parse(&secret_body(json!({"password": encode("pw")}))).unwrap();
        assert_eq!(
            data.credentials(&gitea_credential()).unwrap_err(),
            SecretProblem::MissingKey {
                key: "username",
                present: vec!["password".into()]
            }
        );
        let data = SecretData::parse(&secret_body(json!({"username": encode("u")}))).unwrap();
        assert_eq!(
            data.credentials(&gitea_credential()).unwrap_err(),
            SecretProblem::MissingKey {
                key: "password",
                present: vec!["username".into()]
            }
        );
        let without_data = SecretString::from(r#"{"kind":"Secret","metadata":{"name":"x"}}"#);
        let data = SecretData::parse(&without_data).unwrap();
        assert!(data.keys().is_empty());
    }

    #[test]
    fn undecodable_values_name_the_key() {
        let body = secret_body(json!({"username": "%%%", "password": encode("pw")}));
        assert_eq!(
            SecretData::parse(&body).unwrap_err(),
            SecretProblem::NotBase64 {
                key: "username".into()
            }
        );
        let body = secret_body(json!({
            "username": base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]),
            "password": encode("pw")
        }));
        let data = SecretData::parse(&body).unwrap();
        assert_eq!(
            data.credentials(&gitea_credential()).unwrap_err(),
            SecretProblem::NotText {
                key: "username".into()
            }
        );
        assert_eq!(
            SecretData::parse(&SecretString::from("<html>")).unwrap_err(),
            SecretProblem::NotASecret
        );
    }

    #[test]
    fn certificates_from_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["cnoe.localtest.me".to_owned()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let pem = certificate.pem();
        assert_eq!(
            certificate_from_pem(pem.as_bytes()).unwrap().as_ref(),
            certificate.der().as_ref()
        );
        assert!(certificate_from_pem(b"hello")
            .unwrap_err()
            .contains("BEGIN CERTIFICATE"));
        let garbage = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n";
        let error = certificate_from_pem(garbage.as_bytes()).unwrap_err();
        assert!(error.starts_with("not an X.509 certificate"), "{error}");
    }
}
