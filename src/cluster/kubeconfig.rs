//! Finding the Kubernetes API the way kubectl does: `--kubeconfig PATH`, else
//! the files listed in `KUBECONFIG` (merged, missing ones skipped), else
//! `~/.kube/config`, else the in-cluster service account; `--context NAME`,
//! else the kubeconfig's current context.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use super::error::ClusterError;
use super::kubectl::Kubectl;
use super::proxy::bypasses_proxy;

/// The name used for the in-cluster configuration, which has no context.
pub const IN_CLUSTER_CONTEXT: &str = "in-cluster";

/// What kubectl would read, captured so that tests do not depend on the process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    /// `KUBECONFIG`, a list of paths.
    pub kubeconfig: Option<OsString>,
    pub home: Option<PathBuf>,
    /// `NO_PROXY` (or `no_proxy`).
    pub no_proxy: Option<String>,
}

impl Environment {
    pub(crate) fn current() -> Environment {
        Environment {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            home: std::env::var_os("HOME")
                .or_else(|| std::env::var_os("USERPROFILE"))
                .filter(|home| !home.is_empty())
                .map(PathBuf::from),
            no_proxy: std::env::var("NO_PROXY")
                .or_else(|_| std::env::var("no_proxy"))
                .ok()
                .filter(|value| !value.is_empty()),
        }
    }
}

/// The kubeconfig files to read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sources {
    /// `--kubeconfig`: must be readable.
    Explicit(PathBuf),
    /// The existing files among those looked for.
    Files(Vec<PathBuf>),
    /// None of the looked-for files exist.
    Nothing { tried: Vec<PathBuf> },
}

pub(crate) fn sources(explicit: Option<&Path>, environment: &Environment) -> Sources {
    if let Some(path) = explicit {
        return Sources::Explicit(path.to_owned());
    }
    let listed: Vec<PathBuf> = environment
        .kubeconfig
        .as_ref()
        .map(|value| {
            std::env::split_paths(value)
                .filter(|path| !path.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let candidates = if listed.is_empty() {
        environment
            .home
            .iter()
            .map(|home| home.join(".kube").join("config"))
            .collect()
    } else {
        listed
    };
    let existing: Vec<PathBuf> = candidates
        .iter()
        .filter(|path| path.is_file())
        .cloned()
        .collect();
    if existing.is_empty() {
        Sources::Nothing { tried: candidates }
    } else {
        Sources::Files(existing)
    }
}

/// A kube configuration for one context, with the names messages need.
pub(crate) struct Connection {
    pub config: Config,
    pub context: String,
    /// The API server URL, for messages.
    pub server: String,
}

pub(crate) async fn load(
    explicit: Option<&Path>,
    context: Option<&str>,
    environment: &Environment,
    kubectl: &Kubectl,
) -> Result<Connection, ClusterError> {
    let (kubeconfig, description) = match sources(explicit, environment) {
        Sources::Explicit(path) => (read(&path)?, path.display().to_string()),
        Sources::Files(paths) => {
            let mut merged = Kubeconfig::default();
            for path in &paths {
                merged =
                    merged
                        .merge(read(path)?)
                        .map_err(|source| ClusterError::KubeconfigRead {
                            path: path.clone(),
                            source: Box::new(source),
                        })?;
            }
            (merged, join_paths(&paths))
        }
        Sources::Nothing { tried } => return in_cluster(context, &tried),
    };
    let available: Vec<String> = kubeconfig
        .contexts
        .iter()
        .map(|named| named.name.clone())
        .collect();
    let chosen = context.map(str::to_owned).or_else(|| {
        kubeconfig
            .current_context
            .clone()
            .filter(|name| !name.is_empty())
    });
    let Some(chosen) = chosen else {
        return Err(ClusterError::NoCurrentContext {
            kubeconfig: description,
            available,
        });
    };
    if !available.contains(&chosen) {
        return Err(ClusterError::ContextNotFound {
            context: chosen,
            kubeconfig: description,
            available,
            requested: context.is_some(),
        });
    }
    let cluster_sets_proxy = cluster_proxy_url(&kubeconfig, &chosen).is_some();
    let options = KubeConfigOptions {
        context: Some(chosen.clone()),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ClusterError::InvalidContext {
            context: chosen.clone(),
            kubeconfig: description,
            kubectl: kubectl.clone(),
            source: Box::new(source),
        })?;
    if !cluster_sets_proxy {
        skip_proxy_where_kubectl_would(&mut config, environment.no_proxy.as_deref());
    }
    Ok(Connection {
        server: server_text(&config),
        config,
        context: chosen,
    })
}

/// The `proxy-url` of the context's cluster entry.
fn cluster_proxy_url<'a>(kubeconfig: &'a Kubeconfig, context: &str) -> Option<&'a str> {
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|named| named.name == context)?
        .context
        .as_ref()?
        .cluster
        .as_str();
    kubeconfig
        .clusters
        .iter()
        .find(|named| named.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .as_deref()
        .filter(|url| !url.is_empty())
}

/// Drops the `HTTPS_PROXY` that kube applied when kubectl would connect directly.
fn skip_proxy_where_kubectl_would(config: &mut Config, no_proxy: Option<&str>) {
    if config.proxy_url.is_none() {
        return;
    }
    let Some(host) = config.cluster_url.host() else {
        return;
    };
    let default_port = if config.cluster_url.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let port = config.cluster_url.port_u16().unwrap_or(default_port);
    if bypasses_proxy(host, port, no_proxy) {
        tracing::debug!("connecting to {host} directly (loopback or NO_PROXY)");
        config.proxy_url = None;
    }
}

fn read(path: &Path) -> Result<Kubeconfig, ClusterError> {
    Kubeconfig::read_from(path).map_err(|source| ClusterError::KubeconfigRead {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn in_cluster(context: Option<&str>, tried: &[PathBuf]) -> Result<Connection, ClusterError> {
    if let Some(context) = context {
        return Err(ClusterError::ContextNotFound {
            context: context.to_owned(),
            kubeconfig: format!("no kubeconfig found, tried {}", join_paths(tried)),
            available: Vec::new(),
            requested: true,
        });
    }
    match Config::incluster() {
        Ok(config) => Ok(Connection {
            server: server_text(&config),
            config,
            context: IN_CLUSTER_CONTEXT.to_owned(),
        }),
        Err(error) => {
            tracing::debug!("no in-cluster configuration: {error}");
            Err(ClusterError::NoKubeconfig {
                tried: if tried.is_empty() {
                    "no path: neither KUBECONFIG nor HOME is set".to_owned()
                } else {
                    join_paths(tried)
                },
            })
        }
    }
}

/// Bounds every phase of a request so that a cluster that is down costs a few
/// seconds, not minutes.
pub(crate) fn bound(config: &mut Config, timeout: Duration) {
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the read timeout from the request, not from when a pooled
    // connection went idle.
    config.reset_reader_on_write = true;
}

fn server_text(config: &Config) -> String {
    config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned()
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reading, merging and choosing kubeconfig files is tested by driving the
    // binary (tests/integration/cluster.rs): unit tests stay pure.

    #[test]
    fn the_environment_proxy_is_dropped_where_kubectl_connects_directly() {
        let with_proxy = |server: &str| {
            let mut config = Config::new(server.parse().unwrap());
            config.proxy_url = Some("http://proxy.corp.example:3128".parse().unwrap());
            config
        };
        let mut kind = with_proxy("https://127.0.0.1:6443");
        skip_proxy_where_kubectl_would(&mut kind, None);
        assert_eq!(kind.proxy_url, None);
        let mut remote = with_proxy("https://api.corp.example");
        skip_proxy_where_kubectl_would(&mut remote, None);
        assert!(remote.proxy_url.is_some());
        skip_proxy_where_kubectl_would(&mut remote, Some("corp.example"));
        assert_eq!(remote.proxy_url, None);
    }

    #[test]
    fn a_proxy_set_in_the_kubeconfig_is_found() {
        let text = "clusters:\n- name: c\n  cluster:\n    server: https://h\n    proxy-url: http://p:3128\n- name: d\n  cluster:\n    server: https://h\ncontexts:\n- name: with\n  context:\n    cluster: c\n- name: without\n  context:\n    cluster: d\n";
        let kubeconfig = Kubeconfig::from_yaml(text).unwrap();
        assert_eq!(
            cluster_proxy_url(&kubeconfig, "with"),
            Some("http://p:3128")
        );
        assert_eq!(cluster_proxy_url(&kubeconfig, "without"), None);
        assert_eq!(cluster_proxy_url(&kubeconfig, "missing"), None);
    }
}
