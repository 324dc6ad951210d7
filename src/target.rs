//! Where a push goes: the idpbuilder cluster is consulted first (feature
//! flag, Gitea address, admin credentials, its certificate), then the
//! command line's `--registry`, credentials and trust take precedence.

use crate::cluster::{Cluster, ClusterError, Localbuild};
use crate::config::{PushRequest, Target};
use crate::error::Error;
use crate::output::Reporter;
use crate::registry::{self, Credentials, Trust};

/// The cluster a push used, for messages and JSON output.
#[derive(Debug, Clone)]
pub struct ClusterUsed {
    pub context: String,
    pub localbuild: String,
    /// Whether its credentials and certificate were used (the registry is its Gitea).
    pub registry_is_gitea: bool,
}

/// Consults the cluster and settles registry, credentials and trust.
pub async fn resolve(
    request: &PushRequest,
    reporter: &Reporter,
) -> Result<(Target, Option<ClusterUsed>), Error> {
    let found = match discover(request).await {
        Ok(found) => Some(found),
        Err(error) if request.registry.is_some() && error.is_absent() => {
            reporter.info(&format!(
                "No idpbuilder cluster was consulted ({}); pushing with what was given.",
                crate::redact::filter(&error.to_string())
            ));
            None
        }
        Err(error) => return Err(Error::Cluster(error)),
    };
    let Some((cluster, localbuild)) = found else {
        let (base_url, namespace) = request
            .registry
            .clone()
            .expect("without --registry a missing cluster is an error above");
        let trust = request.flag_trust(&base_url).unwrap_or(Trust::System);
        let target = Target {
            base_url,
            namespace,
            credentials: request.credentials.clone(),
            trust,
        };
        return Ok((target, None));
    };
    let (base_url, namespace) = match &request.registry {
        Some((url, namespace)) => (url.clone(), namespace.clone()),
        None => (localbuild.registry_url.clone(), None),
    };
    let registry_is_gitea = registry::host_of(&base_url) == localbuild.registry_host();
    let credentials = match (&request.credentials, registry_is_gitea) {
        (Credentials::Anonymous, true) => {
            let found = cluster.credentials(&localbuild).await?;
            crate::redact::register(&found.password);
            crate::redact::register_basic(&found.username, &found.password);
            Credentials::Basic {
                username: found.username,
                password: found.password,
            }
        }
        (given, _) => given.clone(),
    };
    let trust = match request.flag_trust(&base_url) {
        Some(trust) => trust,
        None if registry_is_gitea => Trust::Pinned(cluster.certificate(&localbuild).await?),
        None => Trust::System,
    };
    let used = ClusterUsed {
        context: cluster.context().to_owned(),
        localbuild: localbuild.name.clone(),
        registry_is_gitea,
    };
    let target = Target {
        base_url,
        namespace,
        credentials,
        trust,
    };
    Ok((target, Some(used)))
}

/// Connects, finds the Localbuild and enforces its feature flag.
async fn discover(request: &PushRequest) -> Result<(Cluster, Localbuild), ClusterError> {
    let cluster = Cluster::connect(&request.cluster).await?;
    let localbuild = cluster
        .localbuild(request.cluster.localbuild.as_deref())
        .await?;
    cluster.check_feature(&localbuild).await?;
    Ok((cluster, localbuild))
}
