//! The idpbuilder cluster: which Kubernetes API to talk to (like kubectl), its
//! Localbuild, whether pushing is enabled there, the Gitea admin credentials
//! and the ingress certificate to pin. Read-only; never calls the registry or
//! the daemon (the push command combines them).

mod error;
mod feature;
mod kubeconfig;
mod kubectl;
mod localbuild;
mod proxy;
mod request;
mod secret;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use secrecy::SecretString;
use serde_json::Value;

pub use error::{Action, ClusterError, SecretRef};
pub use feature::{crd_knows_oci_push, patch_command};
pub use kubeconfig::IN_CLUSTER_CONTEXT;
pub use kubectl::Kubectl;
pub use localbuild::{choose_localbuild, parse_localbuild, Choice, Localbuild, DEFAULT_LOCALBUILD};
pub use secret::ClusterCredentials;

use request::Failure;
use secret::{certificate_from_pem, SecretData, SecretProblem};

/// `plural.group` of the Localbuild type, which is also its CRD's name.
pub const LOCALBUILD_RESOURCE: &str = "localbuilds.idpbuilder.cnoe.io";
const LOCALBUILDS_PATH: &str = "/apis/idpbuilder.cnoe.io/v1alpha1/localbuilds";
const CRDS_PATH: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
/// Where idpbuilder keeps the ingress certificate (key `ca.crt`).
const CERTIFICATE_SECRET: (&str, &str) = ("default", "idpbuilder-cert");
const CERTIFICATE_KEY: &str = "ca.crt";

/// Bound on each request to the Kubernetes API when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a kubeconfig's exec credential plugin (cloud CLIs take a few seconds).
const CREDENTIAL_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How to find the cluster: the `--kubeconfig`, `--context` and `--localbuild` flags.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub localbuild: Option<String>,
    /// Bound on each request, connection and credential plugin included.
    pub timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            kubeconfig: None,
            context: None,
            localbuild: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A client for one context's API server.
pub struct Cluster {
    client: kube::Client,
    context: String,
    server: String,
    kubectl: Kubectl,
    timeout: Duration,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("context", &self.context)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Reads the kubeconfig (or the in-cluster service account) like kubectl;
    /// sends nothing yet, so an unreachable server shows on the first request.
    pub async fn connect(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let kubectl = Kubectl::new(options.kubeconfig.as_deref(), options.context.as_deref());
        let kubeconfig::Connection {
            mut config,
            context,
            server,
        } = kubeconfig::load(
            options.kubeconfig.as_deref(),
            options.context.as_deref(),
            &kubeconfig::Environment::current(),
            &kubectl,
        )
        .await?;
        kubeconfig::bound(&mut config, options.timeout);
        tracing::debug!("Kubernetes context {context:?}, API server {server}");
        Cluster::with_config(config, context, server, kubectl, options.timeout).await
    }

    /// Builds the client. kube runs a kubeconfig's exec credential plugin right
    /// here, synchronously: it runs on the blocking pool so that a plugin
    /// waiting for a login cannot hang the push.
    async fn with_config(
        config: kube::Config,
        context: String,
        server: String,
        kubectl: Kubectl,
        timeout: Duration,
    ) -> Result<Cluster, ClusterError> {
        let building = tokio::task::spawn_blocking(move || kube::Client::try_from(config));
        let built =
            match tokio::time::timeout(CREDENTIAL_PLUGIN_TIMEOUT.max(timeout), building).await {
                Ok(Ok(built)) => built,
                Ok(Err(panicked)) => std::panic::resume_unwind(panicked.into_panic()),
                Err(_elapsed) => {
                    return Err(ClusterError::Authentication {
                        context,
                        kubectl,
                        timed_out: Some(CREDENTIAL_PLUGIN_TIMEOUT.max(timeout)),
                        source: None,
                    })
                }
            };
        match built {
            Ok(client) => Ok(Cluster {
                client,
                context,
                server,
                kubectl,
                timeout,
            }),
            Err(source @ kube::Error::Auth(_)) => Err(ClusterError::Authentication {
                context,
                kubectl,
                timed_out: None,
                source: Some(Box::new(source)),
            }),
            Err(source) => Err(ClusterError::Client {
                context,
                server,
                source: Box::new(source),
            }),
        }
    }

    /// The context in use (`in-cluster` inside a pod).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `name` if given; else the only Localbuild, else the one named `localdev`.
    /// When listing is forbidden but getting is not, `localdev` is tried.
    pub async fn localbuild(&self, name: Option<&str>) -> Result<Localbuild, ClusterError> {
        match name {
            Some(name) => self.get_localbuild(name, true).await,
            None => self.find_localbuild().await,
        }
    }

    async fn get_localbuild(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Localbuild, ClusterError> {
        let action = Action::get_localbuild(name);
        match self.get_json(&action, LOCALBUILDS_PATH, Some(name)).await {
            Ok(value) => parse_localbuild(&value),
            Err(Failure::Error(error)) => Err(error),
            // A 404 may mean no such object or no such type: listing tells.
            Err(Failure::NotFound { object_named }) => match self.list_localbuilds().await {
                Ok(items) => Err(ClusterError::LocalbuildNotFound {
                    name: name.to_owned(),
                    context: self.context.clone(),
                    available: Some(names_of(&items)),
                    requested,
                }),
                Err(Failure::NotFound { .. }) => Err(self.no_localbuild_type()),
                Err(Failure::Error(_)) if !object_named => Err(self.no_localbuild_type()),
                Err(Failure::Error(_)) => Err(ClusterError::LocalbuildNotFound {
                    name: name.to_owned(),
                    context: self.context.clone(),
                    available: None,
                    requested,
                }),
            },
        }
    }

    async fn find_localbuild(&self) -> Result<Localbuild, ClusterError> {
        let items = match self.list_localbuilds().await {
            Ok(items) => items,
            Err(Failure::NotFound { .. }) => return Err(self.no_localbuild_type()),
            Err(Failure::Error(error @ ClusterError::Forbidden { .. })) => {
                // Some roles may get a named Localbuild but not list them.
                return match self.get_localbuild(DEFAULT_LOCALBUILD, false).await {
                    Ok(localbuild) => Ok(localbuild),
                    Err(other) => {
                        tracing::debug!(
                            "getting Localbuild {DEFAULT_LOCALBUILD} failed too: {other}"
                        );
                        Err(error)
                    }
                };
            }
            Err(Failure::Error(error)) => return Err(error),
        };
        let names = names_of(&items);
        match choose_localbuild(&names) {
            Choice::Use(index) => parse_localbuild(&items[index]),
            Choice::None => Err(ClusterError::NoLocalbuilds {
                context: self.context.clone(),
            }),
            Choice::Several => Err(ClusterError::SeveralLocalbuilds {
                context: self.context.clone(),
                names,
            }),
        }
    }

    async fn list_localbuilds(&self) -> Result<Vec<Value>, Failure> {
        let action = Action::list_localbuilds();
        let list = self.get_json(&action, LOCALBUILDS_PATH, None).await?;
        match list.get("items") {
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(_) => Err(Failure::Error(
                self.response_error(&action, "items is not a list"),
            )),
        }
    }

    /// `Ok` when the Localbuild enables pushing. Otherwise reads the Localbuild
    /// CRD to tell a disabled flag from a CRD that does not know it (the API
    /// server drops undeclared fields, so such a flag can never be set).
    pub async fn check_feature(&self, localbuild: &Localbuild) -> Result<(), ClusterError> {
        if localbuild.oci_push_enabled {
            return Ok(());
        }
        let action = Action::get_localbuild_crd();
        let knows_flag = match self
            .get_json(&action, CRDS_PATH, Some(LOCALBUILD_RESOURCE))
            .await
        {
            Ok(crd) => Some(crd_knows_oci_push(&crd)),
            Err(Failure::NotFound { .. }) => Some(false),
            Err(Failure::Error(error)) => {
                tracing::debug!("cannot read the Localbuild CRD: {error}");
                None
            }
        };
        Err(match knows_flag {
            Some(false) => ClusterError::FeatureUnknown {
                localbuild: localbuild.name.clone(),
                context: self.context.clone(),
                kubectl: self.kubectl.clone(),
            },
            Some(true) | None => ClusterError::FeatureDisabled {
                localbuild: localbuild.name.clone(),
                context: self.context.clone(),
                crd_checked: knows_flag.is_some(),
                kubectl: self.kubectl.clone(),
            },
        })
    }

    /// Gitea's admin login from the Secret the Localbuild's status names
    /// (default `gitea/gitea-credential`).
    pub async fn credentials(
        &self,
        localbuild: &Localbuild,
    ) -> Result<ClusterCredentials, ClusterError> {
        let secret = &localbuild.credentials_secret;
        let data = self.read_secret(secret, "Gitea").await?;
        data.credentials(secret)
            .map_err(|problem| self.secret_error(secret, problem))
    }

    /// The ingress certificate the registry serves: Secret
    /// `default/idpbuilder-cert` key `ca.crt`, else the Localbuild's
    /// `spec.buildCustomization.selfSignedCert`.
    pub async fn certificate(
        &self,
        localbuild: &Localbuild,
    ) -> Result<CertificateDer<'static>, ClusterError> {
        let secret = SecretRef {
            namespace: CERTIFICATE_SECRET.0.to_owned(),
            name: CERTIFICATE_SECRET.1.to_owned(),
        };
        let from_secret = match self.read_secret(&secret, "the ingress certificate").await {
            Ok(data) => data
                .pem(CERTIFICATE_KEY)
                .map_err(|problem| self.secret_error(&secret, problem))
                .and_then(|pem| {
                    certificate_from_pem(pem).map_err(|detail| ClusterError::CertificateInvalid {
                        origin: format!("Secret {secret} key {CERTIFICATE_KEY}"),
                        context: self.context.clone(),
                        detail,
                    })
                }),
            Err(error) => Err(error),
        };
        let error = match from_secret {
            Ok(certificate) => return Ok(certificate),
            Err(error) => error,
        };
        match &localbuild.self_signed_cert {
            Some(pem) => {
                tracing::debug!("using spec.buildCustomization.selfSignedCert: {error}");
                certificate_from_pem(pem.as_bytes()).map_err(|detail| {
                    ClusterError::CertificateInvalid {
                        origin: format!(
                            "spec.buildCustomization.selfSignedCert of Localbuild {:?}",
                            localbuild.name
                        ),
                        context: self.context.clone(),
                        detail,
                    }
                })
            }
            None => Err(match error {
                ClusterError::SecretNotFound { .. } | ClusterError::SecretKeyMissing { .. } => {
                    ClusterError::CertificateMissing {
                        localbuild: localbuild.name.clone(),
                        context: self.context.clone(),
                    }
                }
                other => other,
            }),
        }
    }

    async fn read_secret(
        &self,
        secret: &SecretRef,
        purpose: &'static str,
    ) -> Result<SecretData, ClusterError> {
        let action = Action::get_secret(&secret.namespace, &secret.name);
        let path = format!("/api/v1/namespaces/{}/secrets", secret.namespace);
        match self.get_text(&action, &path, Some(&secret.name)).await {
            Ok(text) => SecretData::parse(&SecretString::from(text))
                .map_err(|problem| self.secret_error(secret, problem)),
            Err(Failure::NotFound { .. }) => Err(ClusterError::SecretNotFound {
                secret: secret.clone(),
                context: self.context.clone(),
                purpose,
            }),
            Err(Failure::Error(error)) => Err(error),
        }
    }

    fn secret_error(&self, secret: &SecretRef, problem: SecretProblem) -> ClusterError {
        let context = self.context.clone();
        let secret = secret.clone();
        match problem {
            SecretProblem::NotASecret => ClusterError::Response {
                context,
                server: self.server.clone(),
                action: Box::new(Action::get_secret(&secret.namespace, &secret.name)),
                detail: "the answer is not a Secret object".to_owned(),
            },
            SecretProblem::NotBase64 { key } => ClusterError::SecretValueInvalid {
                secret,
                context,
                key,
                expected: "base64",
            },
            SecretProblem::NotText { key } => ClusterError::SecretValueInvalid {
                secret,
                context,
                key,
                expected: "UTF-8 text",
            },
            SecretProblem::MissingKey { key, present } => ClusterError::SecretKeyMissing {
                secret,
                context,
                missing: key,
                present,
            },
        }
    }

    fn no_localbuild_type(&self) -> ClusterError {
        ClusterError::NoLocalbuildType {
            context: self.context.clone(),
        }
    }
}

fn names_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| item.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
