//! What can go wrong while asking a cluster about its idpbuilder installation:
//! each variant names the context, server or object it concerns, knows its
//! `hint:`, and says whether it means "there is no idpbuilder cluster here".

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::feature::patch_command;
use super::kubectl::Kubectl;

/// One request to the Kubernetes API, in the words RBAC uses: verb, resource
/// (`plural.group`), namespace and object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Action {
    pub(crate) fn get_localbuild(name: &str) -> Action {
        Action::cluster_scoped("get", super::LOCALBUILD_RESOURCE, Some(name))
    }

    pub(crate) fn list_localbuilds() -> Action {
        Action::cluster_scoped("list", super::LOCALBUILD_RESOURCE, None)
    }

    pub(crate) fn get_localbuild_crd() -> Action {
        Action::cluster_scoped(
            "get",
            "customresourcedefinitions.apiextensions.k8s.io",
            Some(super::LOCALBUILD_RESOURCE),
        )
    }

    pub(crate) fn get_secret(namespace: &str, name: &str) -> Action {
        Action {
            verb: "get",
            resource: "secrets",
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
        }
    }

    fn cluster_scoped(verb: &'static str, resource: &'static str, name: Option<&str>) -> Action {
        Action {
            verb,
            resource,
            namespace: None,
            name: name.map(str::to_owned),
        }
    }

    /// `kubectl auth can-i` arguments that check this permission.
    fn can_i(&self) -> String {
        let mut arguments = format!("auth can-i {} {}", self.verb, self.resource);
        if let Some(name) = &self.name {
            arguments.push('/');
            arguments.push_str(name);
        }
        if let Some(namespace) = &self.namespace {
            arguments.push_str(" -n ");
            arguments.push_str(namespace);
        }
        arguments
    }
}

/// `get secrets in namespace gitea (gitea-credential)`.
impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.verb, self.resource)?;
        if let Some(namespace) = &self.namespace {
            write!(formatter, " in namespace {namespace}")?;
        }
        if let Some(name) = &self.name {
            write!(formatter, " ({name})")?;
        }
        Ok(())
    }
}

/// `namespace/name` of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no kubeconfig found (tried {tried}) and not running inside a cluster")]
    NoKubeconfig { tried: String },

    #[error("cannot read the kubeconfig {path}")]
    KubeconfigRead {
        path: PathBuf,
        #[source]
        source: Box<kube::config::KubeconfigError>,
    },

    #[error("the kubeconfig ({kubeconfig}) has no current context")]
    NoCurrentContext {
        kubeconfig: String,
        available: Vec<String>,
    },

    #[error("context {context:?} not found in the kubeconfig ({kubeconfig})")]
    ContextNotFound {
        context: String,
        kubeconfig: String,
        available: Vec<String>,
        /// Asked for with `--context` (an error even with `--registry`), rather
        /// than a stale `current-context`.
        requested: bool,
    },

    #[error("cannot use context {context:?} of the kubeconfig ({kubeconfig})")]
    InvalidContext {
        context: String,
        kubeconfig: String,
        kubectl: Kubectl,
        #[source]
        source: Box<kube::config::KubeconfigError>,
    },

    #[error("cannot set up a Kubernetes client for {server} (context {context:?})")]
    Client {
        context: String,
        server: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("cannot reach the Kubernetes API server {server} (context {context:?}){}", timed_out_text(.timed_out))]
    Unreachable {
        context: String,
        server: String,
        timed_out: Option<Duration>,
        kubectl: Kubectl,
        #[source]
        source: Option<Box<kube::Error>>,
    },

    #[error("the TLS certificate of the Kubernetes API server {server} (context {context:?}) is not trusted")]
    ApiServerCertificate {
        context: String,
        server: String,
        kubectl: Kubectl,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("cannot get credentials for context {context:?}{}", plugin_timed_out_text(.timed_out))]
    Authentication {
        context: String,
        kubectl: Kubectl,
        /// The exec credential plugin did not finish in time.
        timed_out: Option<Duration>,
        #[source]
        source: Option<Box<kube::Error>>,
    },

    #[error("the Kubernetes API server {server} rejected the credentials of context {context:?} (401 Unauthorized) when asked to {action}")]
    Unauthorized {
        context: String,
        server: String,
        action: Box<Action>,
        kubectl: Kubectl,
    },

    #[error("not allowed to {action} (context {context:?}): {message}")]
    Forbidden {
        context: String,
        action: Box<Action>,
        message: String,
        kubectl: Kubectl,
    },

    #[error("the Kubernetes API server {server} (context {context:?}) failed to {action}: {code} {message}")]
    ApiStatus {
        context: String,
        server: String,
        action: Box<Action>,
        code: u16,
        message: String,
    },

    #[error("unexpected answer from {server} (context {context:?}) to {action}: {detail}")]
    Response {
        context: String,
        server: String,
        action: Box<Action>,
        detail: String,
    },

    #[error("the cluster of context {context:?} is not an idpbuilder cluster: it has no Localbuild resource type ({})", super::LOCALBUILD_RESOURCE)]
    NoLocalbuildType { context: String },

    #[error("the cluster of context {context:?} has no Localbuild")]
    NoLocalbuilds { context: String },

    #[error("Localbuild {name:?} not found in the cluster of context {context:?}")]
    LocalbuildNotFound {
        name: String,
        context: String,
        /// `None` when the names could not be listed.
        available: Option<Vec<String>>,
        requested: bool,
    },

    #[error("the cluster of context {context:?} has several Localbuilds ({}) and none is named localdev", names.join(", "))]
    SeveralLocalbuilds { context: String, names: Vec<String> },

    #[error("Localbuild {name:?} cannot be read: {detail}")]
    InvalidLocalbuild { name: String, detail: String },

    #[error("pushing to the idpbuilder cluster (context {context:?}) is disabled: Localbuild {localbuild:?} does not set spec.packageConfigs.ociPush.enabled to true")]
    FeatureDisabled {
        localbuild: String,
        context: String,
        /// Whether the CRD was read and knows the flag; `false` when it could not be read.
        crd_checked: bool,
        kubectl: Kubectl,
    },

    #[error("the idpbuilder cluster (context {context:?}) does not know the push feature flag: the Localbuild CRD ({}) has no spec.packageConfigs.ociPush", super::LOCALBUILD_RESOURCE)]
    FeatureUnknown {
        localbuild: String,
        context: String,
        kubectl: Kubectl,
    },

    #[error("Secret {secret} not found (context {context:?})")]
    SecretNotFound {
        secret: SecretRef,
        context: String,
        purpose: &'static str,
    },

    #[error(
        "Secret {secret} (context {context:?}) has no key {missing} (keys present: {})",
        list_or_none(present)
    )]
    SecretKeyMissing {
        secret: SecretRef,
        context: String,
        missing: &'static str,
        present: Vec<String>,
    },

    #[error("Secret {secret} (context {context:?}) key {key} is not {expected}")]
    SecretValueInvalid {
        secret: SecretRef,
        context: String,
        key: String,
        expected: &'static str,
    },

    #[error("the idpbuilder cluster (context {context:?}) has no ingress certificate: neither Secret default/idpbuilder-cert (key ca.crt) nor spec.buildCustomization.selfSignedCert of Localbuild {localbuild:?}")]
    CertificateMissing { localbuild: String, context: String },

    #[error(
        "the ingress certificate in {origin} (context {context:?}) cannot be parsed: {detail}"
    )]
    CertificateInvalid {
        origin: String,
        context: String,
        detail: String,
    },
}

fn timed_out_text(timed_out: &Option<Duration>) -> String {
    match timed_out {
        Some(duration) => format!(": no answer within {}", humanize(*duration)),
        None => String::new(),
    }
}

fn plugin_timed_out_text(timed_out: &Option<Duration>) -> String {
    match timed_out {
        Some(duration) => format!(
            ": the credential plugin did not finish within {}",
            humanize(*duration)
        ),
        None => String::new(),
    }
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn contexts_text(available: &[String]) -> String {
    if available.is_empty() {
        "the kubeconfig has no contexts".to_owned()
    } else {
        format!("available contexts: {}", available.join(", "))
    }
}

const NO_CLUSTER_HINT: &str = "`idpbuilder create` starts a cluster (its context is kind-localdev by default); to push without one, pass --registry URL";

impl ClusterError {
    pub fn hint(&self) -> Option<String> {
        use ClusterError as E;
        let hint = match self {
            E::NoKubeconfig { .. } => format!("pass --kubeconfig PATH or set KUBECONFIG; {NO_CLUSTER_HINT}"),
            E::KubeconfigRead { .. } => "check the file given with --kubeconfig or listed in KUBECONFIG (`kubectl config view` reads the same files)".to_owned(),
            E::NoCurrentContext { available, .. } => format!(
                "choose one with --context NAME or `kubectl config use-context NAME` ({}); to push without a cluster, pass --registry URL",
                contexts_text(available)
            ),
            E::ContextNotFound { available, .. } => format!(
                "{}; idpbuilder names its context kind-<name> (kind-localdev by default)",
                contexts_text(available)
            ),
            E::InvalidContext { kubectl, .. } => {
                format!("check the context's cluster and user entries: `{}`", kubectl.command("config view --minify"))
            }
            E::Client { .. } => "check the proxy settings (HTTPS_PROXY, NO_PROXY) and the cluster entry of the kubeconfig".to_owned(),
            E::Unreachable { kubectl, .. } => format!(
                "is the cluster running? `kind get clusters` lists idpbuilder's clusters and `{}` tests the connection; {NO_CLUSTER_HINT}",
                kubectl.command("cluster-info")
            ),
            E::ApiServerCertificate { kubectl, .. } => format!(
                "the kubeconfig's certificate-authority does not match the server (was the cluster recreated?); `{}` shows the same error",
                kubectl.command("cluster-info")
            ),
            E::Authentication { kubectl, .. } => format!(
                "the context's credential plugin or token failed; run `{}` to log in again",
                kubectl.command("get localbuilds")
            ),
            E::Unauthorized { kubectl, .. } => format!(
                "the context's token or client certificate has expired or was revoked; `{}` shows the same error",
                kubectl.command("get localbuilds")
            ),
            E::Forbidden { action, kubectl, .. } => format!(
                "grant your user the permission to {action}: `kubectl apply -f manifests/rbac.yaml` creates the least-privilege roles (bind them to your user, see the file); check with `{}`",
                kubectl.command(&action.can_i())
            ),
            E::ApiStatus { .. } | E::Response { .. } | E::InvalidLocalbuild { .. } => return None,
            E::NoLocalbuildType { .. } | E::NoLocalbuilds { .. } => format!(
                "select the idpbuilder cluster with --context (e.g. --context kind-localdev); {NO_CLUSTER_HINT}"
            ),
            E::LocalbuildNotFound { available: Some(names), .. } => format!(
                "choose one with --localbuild NAME (Localbuilds: {})",
                list_or_none(names)
            ),
            E::LocalbuildNotFound { available: None, .. } => {
                "pass --localbuild NAME (the name given to `idpbuilder create --name`)".to_owned()
            }
            E::SeveralLocalbuilds { .. } => "choose one with --localbuild NAME".to_owned(),
            E::FeatureDisabled {
                localbuild,
                crd_checked: true,
                kubectl,
                ..
            } => format!("enable it with:\n  {}", patch_command(kubectl, localbuild)),
            E::FeatureDisabled {
                localbuild,
                crd_checked: false,
                kubectl,
                ..
            } => format!(
                "enable it with:\n  {}\nIf the flag does not stay set, the cluster's Localbuild CRD does not know it: apply manifests/ first (`{}`); note that `idpbuilder create` re-applies its own CRD and resets both",
                patch_command(kubectl, localbuild),
                kubectl.command("apply -f manifests/localbuild-crd.yaml")
            ),
            E::FeatureUnknown {
                localbuild,
                kubectl,
                ..
            } => format!(
                "apply manifests/ first, then enable the flag:\n  {}\n  {}\nNote that `idpbuilder create` re-applies its own CRD and resets both: run these again after it",
                kubectl.command("apply -f manifests/localbuild-crd.yaml"),
                patch_command(kubectl, localbuild)
            ),
            E::SecretNotFound { purpose, .. } => format!(
                "idpbuilder creates it together with {purpose}; wait until `idpbuilder get secrets` shows it, or pass --username and --password-stdin"
            ),
            E::SecretKeyMissing { .. } | E::SecretValueInvalid { .. } => "the Secret must hold username and password (or token) as idpbuilder writes them; or pass --username and --password-stdin".to_owned(),
            E::CertificateMissing { .. } | E::CertificateInvalid { .. } => "re-run `idpbuilder create` to restore the certificate, or pass --insecure to push without verifying TLS".to_owned(),
        };
        Some(hint)
    }

    /// True when there is simply no idpbuilder cluster to consult: no kubeconfig,
    /// no usable current context, an API server that does not answer, no
    /// Localbuild type or object. A push with an explicit `--registry` then goes
    /// on without the cluster; anything else (403, 401, a context asked for
    /// with `--context` that does not exist, ...) stops it.
    pub fn is_absent(&self) -> bool {
        use ClusterError as E;
        match self {
            E::NoKubeconfig { .. }
            | E::NoCurrentContext { .. }
            | E::Unreachable { .. }
            | E::NoLocalbuildType { .. }
            | E::NoLocalbuilds { .. } => true,
            E::ContextNotFound { requested, .. } => !requested,
            E::LocalbuildNotFound { requested, .. } => !requested,
            _ => false,
        }
    }

    /// True when the push must stop because the cluster does not allow it
    /// (the flag is off or unknown to the cluster's CRD).
    pub fn is_feature_off(&self) -> bool {
        matches!(
            self,
            ClusterError::FeatureDisabled { .. } | ClusterError::FeatureUnknown { .. }
        )
    }
}
