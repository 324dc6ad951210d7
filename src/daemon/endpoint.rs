//! Owns finding the Docker or Podman API endpoint, in the docker CLI's order, then Podman's.
//!
//! Resolution is pure over an injected [`Environment`] so every branch is unit-testable;
//! [`SystemEnvironment`] is the only part that touches the real process environment and disk.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

const DOCKER_HOST: &str = "DOCKER_HOST";
const DOCKER_TLS_VERIFY: &str = "DOCKER_TLS_VERIFY";
const DOCKER_CONTEXT: &str = "DOCKER_CONTEXT";
const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
/// The context name that means "no context: use DOCKER_HOST or the default socket".
const DEFAULT_CONTEXT: &str = "default";
const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
const ROOTFUL_PODMAN_SOCKET: &str = "/run/podman/podman.sock";
/// The docker CLI's default ports for plain and TLS tcp:// endpoints without a port.
const PLAIN_TCP_PORT: u16 = 2375;
const TLS_TCP_PORT: u16 = 2376;
/// The docker CLI's host for a tcp:// endpoint without one.
const DEFAULT_TCP_HOST: &str = "localhost";

/// What resolution may read; injected so tests can fake it.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    /// None when missing or unreadable.
    fn read_file(&self, path: &Path) -> Option<String>;
    fn exists(&self, path: &Path) -> bool;
    fn home_dir(&self) -> Option<PathBuf>;
}

/// The real process environment and filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn home_dir(&self) -> Option<PathBuf> {
        // The docker CLI uses $HOME on Unix; std::env::home_dir is deprecated before 1.87.
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
    }
}

/// Where the daemon's API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host` is "host:port" (IPv6 hosts in brackets).
    Tcp {
        host: String,
        tls: bool,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(formatter, "unix://{}", path.display()),
            Self::Tcp { host, .. } => write!(formatter, "tcp://{host}"),
        }
    }
}

/// Which rule chose the endpoint, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    DockerHost,
    Context { name: String },
    DefaultSocket,
    RootlessDocker,
    Podman,
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DockerHost => write!(formatter, "{DOCKER_HOST}"),
            Self::Context { name } => write!(formatter, "docker context {name:?}"),
            Self::DefaultSocket => write!(formatter, "default socket"),
            Self::RootlessDocker => write!(formatter, "rootless Docker socket"),
            Self::Podman => write!(formatter, "Podman socket"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub endpoint: Endpoint,
    pub source: EndpointSource,
}

impl fmt::Display for ResolvedEndpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} (from {})", self.endpoint, self.source)
    }
}

/// What chose a docker context, so the hint can say how to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSelection {
    Variable,
    ConfigFile(PathBuf),
}

impl fmt::Display for ContextSelection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Variable => write!(formatter, "{DOCKER_CONTEXT}"),
            Self::ConfigFile(path) => write!(formatter, "currentContext in {}", path.display()),
        }
    }
}

/// Why a DOCKER_HOST-style value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostProblem {
    MissingScheme,
    UnsupportedScheme(String),
    EmptySocketPath,
    InvalidTcpHost(String),
    InvalidPort(String),
    PathNotSupported(String),
}

impl fmt::Display for HostProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingScheme => write!(formatter, "it has no unix:// or tcp:// scheme"),
            Self::UnsupportedScheme(scheme) if scheme == "npipe" => {
                write!(
                    formatter,
                    "Windows named pipes (npipe://) are not supported"
                )
            }
            Self::UnsupportedScheme(scheme) => {
                write!(formatter, "{scheme}:// endpoints are not supported")
            }
            Self::EmptySocketPath => write!(formatter, "the unix:// socket path is empty"),
            Self::InvalidTcpHost(host) => write!(formatter, "{host:?} is not a valid host"),
            Self::InvalidPort(port) => {
                write!(formatter, "port {port:?} is not a number from 1 to 65535")
            }
            Self::PathNotSupported(path) => {
                write!(
                    formatter,
                    "a path after the address ({path:?}) is not supported"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{origin} endpoint {value:?} is not usable: {problem}")]
    InvalidHost {
        origin: EndpointSource,
        value: String,
        problem: HostProblem,
    },
    #[error("docker config file {path:?} is not valid: {reason}")]
    MalformedConfig { path: PathBuf, reason: String },
    #[error(
        "docker context {name:?} (selected by {DOCKER_CONTEXT}) cannot be read: \
         neither DOCKER_CONFIG nor HOME is set"
    )]
    ContextWithoutConfigDirectory { name: String },
    #[error("docker context {name:?} (selected by {selection}) does not exist: no {path:?}")]
    ContextNotFound {
        name: String,
        selection: ContextSelection,
        path: PathBuf,
    },
    #[error("docker context {name:?} metadata {path:?} is not valid: {reason}")]
    MalformedContext {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("docker context {name:?} has no docker endpoint host in {path:?}")]
    ContextWithoutDockerEndpoint { name: String, path: PathBuf },
    #[error(
        "no Docker or Podman daemon found: {}{}",
        list_paths(tried),
        runtime_dir_note(*runtime_dir_set)
    )]
    NoDaemon {
        tried: Vec<PathBuf>,
        runtime_dir_set: bool,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    let listed: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    format!("none of {} exists", listed.join(", "))
}

fn runtime_dir_note(runtime_dir_set: bool) -> &'static str {
    if runtime_dir_set {
        ""
    } else {
        " (XDG_RUNTIME_DIR is not set, so rootless sockets were not looked for)"
    }
}

impl EndpointError {
    /// A next step the caller can print under the error.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::InvalidHost {
                origin,
                value,
                problem,
            } => invalid_host_hint(origin, value, problem),
            Self::MalformedConfig { path, .. } => format!(
                "fix the JSON in {} (the docker CLI reads it too), \
                 or point {DOCKER_CONFIG} at another directory",
                path.display()
            ),
            Self::ContextWithoutConfigDirectory { .. } => {
                format!("set {DOCKER_CONFIG} or HOME, or unset {DOCKER_CONTEXT}")
            }
            Self::ContextNotFound { selection, .. } => context_not_found_hint(selection),
            Self::MalformedContext { name, .. }
            | Self::ContextWithoutDockerEndpoint { name, .. } => {
                format!(
                    "`docker context inspect {name}` shows the context; choose another \
                     with `docker context use` or {DOCKER_CONTEXT}"
                )
            }
            Self::NoDaemon { .. } => format!(
                "start Docker, or Podman's API socket (`systemctl --user start podman.socket`), \
                 or set {DOCKER_HOST} (e.g. {DOCKER_HOST}=unix:///path/to/docker.sock)"
            ),
        })
    }
}

fn invalid_host_hint(origin: &EndpointSource, value: &str, problem: &HostProblem) -> String {
    let fix = host_fix(value, problem);
    match origin {
        EndpointSource::Context { name } => {
            format!("{fix}; `docker context inspect {name}` shows the context")
        }
        _ => format!("set {DOCKER_HOST} so that {fix}"),
    }
}

fn host_fix(value: &str, problem: &HostProblem) -> String {
    match problem {
        HostProblem::MissingScheme if value.starts_with(['/', '.', '~']) => {
            format!("it reads unix://{value}")
        }
        HostProblem::MissingScheme => format!("it reads tcp://{value}"),
        HostProblem::UnsupportedScheme(scheme) if scheme == "ssh" => {
            "it names a forwarded socket: run \
             `ssh -NL /tmp/docker.sock:/var/run/docker.sock USER@HOST` \
             and use unix:///tmp/docker.sock"
                .to_string()
        }
        HostProblem::EmptySocketPath => {
            "it names the socket, e.g. unix:///var/run/docker.sock".to_string()
        }
        _ => "it is unix:///PATH or tcp://HOST:PORT, e.g. tcp://localhost:2376".to_string(),
    }
}

fn context_not_found_hint(selection: &ContextSelection) -> String {
    match selection {
        ContextSelection::Variable => format!(
            "`docker context ls` lists the contexts; \
             set {DOCKER_CONTEXT} to one of them or unset it"
        ),
        ContextSelection::ConfigFile(_) => "`docker context ls` lists the contexts; \
            `docker context use default` switches back to the default daemon"
            .to_string(),
    }
}

/// Finds the daemon endpoint: DOCKER_HOST, then the docker context, then the well-known
/// Docker sockets, then Podman's.
pub fn resolve(env: &impl Environment) -> Result<ResolvedEndpoint, EndpointError> {
    if let Some(value) = non_empty_var(env, DOCKER_HOST) {
        let tls = non_empty_var(env, DOCKER_TLS_VERIFY).is_some();
        return resolve_host(EndpointSource::DockerHost, &value, tls);
    }
    if let Some(resolved) = resolve_context(env)? {
        return Ok(resolved);
    }
    resolve_socket(env)
}

/// Like the docker CLI, an empty (or blank) variable counts as unset.
fn non_empty_var(env: &impl Environment, name: &str) -> Option<String> {
    env.var(name)
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

fn resolve_host(
    origin: EndpointSource,
    value: &str,
    tls: bool,
) -> Result<ResolvedEndpoint, EndpointError> {
    match parse_host(value, tls) {
        Ok(endpoint) => Ok(ResolvedEndpoint {
            endpoint,
            source: origin,
        }),
        Err(problem) => Err(EndpointError::InvalidHost {
            origin,
            value: value.to_string(),
            problem,
        }),
    }
}

/// Parses a DOCKER_HOST-style value: unix:///PATH or tcp://HOST[:PORT].
pub fn parse_host(value: &str, tls: bool) -> Result<Endpoint, HostProblem> {
    // Unlike the docker CLI we do not guess tcp:// for a bare value: a bare socket path
    // would otherwise become a host name, and the hint makes the fix one edit.
    let (scheme, rest) = value.split_once("://").ok_or(HostProblem::MissingScheme)?;
    match scheme {
        "unix" if rest.is_empty() => Err(HostProblem::EmptySocketPath),
        "unix" => Ok(Endpoint::Unix(PathBuf::from(rest))),
        "tcp" => parse_tcp_address(rest, tls),
        other => Err(HostProblem::UnsupportedScheme(other.to_string())),
    }
}

fn parse_tcp_address(address: &str, tls: bool) -> Result<Endpoint, HostProblem> {
    let address = address.strip_suffix('/').unwrap_or(address);
    if let Some(slash) = address.find('/') {
        return Err(HostProblem::PathNotSupported(address[slash..].to_string()));
    }
    let (host, port) = split_tcp_host_port(address)?;
    let host = if host.is_empty() {
        DEFAULT_TCP_HOST
    } else {
        host
    };
    if !is_plausible_tcp_host(host) {
        return Err(HostProblem::InvalidTcpHost(host.to_string()));
    }
    let default_port = if tls { TLS_TCP_PORT } else { PLAIN_TCP_PORT };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => parse_port(port)?,
    };
    Ok(Endpoint::Tcp {
        host: format!("{host}:{port}"),
        tls,
    })
}

/// Splits "host", "host:port", "[v6]" or "[v6]:port"; an unbracketed IPv6 host is ambiguous.
fn split_tcp_host_port(address: &str) -> Result<(&str, Option<&str>), HostProblem> {
    let invalid_host = || HostProblem::InvalidTcpHost(address.to_string());
    if address.starts_with('[') {
        let close = address.find(']').ok_or_else(invalid_host)?;
        let (host, rest) = address.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(invalid_host),
        };
    }
    match address.split_once(':') {
        Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
        Some(_) => Err(invalid_host()),
        None => Ok((address, None)),
    }
}

/// A DNS name or IPv4 address, or a bracketed IPv6 address (with an optional zone).
fn is_plausible_tcp_host(host: &str) -> bool {
    match host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(inside) => {
            !inside.is_empty()
                && inside
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '%'))
        }
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
    }
}

fn parse_port(port: &str) -> Result<u16, HostProblem> {
    match port.parse::<u16>() {
        Ok(number) if number > 0 && port.bytes().all(|byte| byte.is_ascii_digit()) => Ok(number),
        _ => Err(HostProblem::InvalidPort(port.to_string())),
    }
}

/// The subset of ~/.docker/config.json we read; everything else is ignored.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// The subset of contexts/meta/<id>/meta.json we read.
#[derive(Debug, Deserialize)]
struct ContextMetadata {
    #[serde(rename = "Endpoints", default)]
    endpoints: Option<ContextEndpoints>,
}

#[derive(Debug, Deserialize)]
struct ContextEndpoints {
    #[serde(default)]
    docker: Option<DockerEndpointMetadata>,
}

#[derive(Debug, Deserialize)]
struct DockerEndpointMetadata {
    #[serde(rename = "Host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: Option<bool>,
}

/// `$DOCKER_CONFIG`, else `~/.docker`.
fn config_directory(env: &impl Environment) -> Option<PathBuf> {
    match non_empty_var(env, DOCKER_CONFIG) {
        Some(directory) => Some(PathBuf::from(directory)),
        None => env.home_dir().map(|home| home.join(".docker")),
    }
}

/// The endpoint of the selected docker context; None when none or "default" is selected.
fn resolve_context(env: &impl Environment) -> Result<Option<ResolvedEndpoint>, EndpointError> {
    let directory = config_directory(env);
    let Some((name, selection)) = selected_context(env, directory.as_deref())? else {
        return Ok(None);
    };
    if name == DEFAULT_CONTEXT {
        return Ok(None);
    }
    // A context can only come from DOCKER_CONTEXT when there is no config directory.
    let directory = directory
        .ok_or_else(|| EndpointError::ContextWithoutConfigDirectory { name: name.clone() })?;
    context_endpoint(env, &directory, name, selection).map(Some)
}

/// DOCKER_CONTEXT, else `currentContext` from config.json.
fn selected_context(
    env: &impl Environment,
    directory: Option<&Path>,
) -> Result<Option<(String, ContextSelection)>, EndpointError> {
    if let Some(name) = non_empty_var(env, DOCKER_CONTEXT) {
        return Ok(Some((name, ContextSelection::Variable)));
    }
    let Some(directory) = directory else {
        return Ok(None);
    };
    let path = directory.join("config.json");
    let current = read_current_context(env, &path)?;
    Ok(current.map(|name| (name, ContextSelection::ConfigFile(path))))
}

fn read_current_context(
    env: &impl Environment,
    path: &Path,
) -> Result<Option<String>, EndpointError> {
    let Some(text) = env.read_file(path) else {
        return Ok(None);
    };
    // The docker CLI accepts an empty config file.
    if text.trim().is_empty() {
        return Ok(None);
    }
    let config: ConfigFile =
        parse_json_object(&text).map_err(|reason| EndpointError::MalformedConfig {
            path: path.to_path_buf(),
            reason,
        })?;
    Ok(config.current_context.filter(|name| !name.is_empty()))
}

/// Parses `text` as a JSON object into `T`; serde alone would also accept an array.
fn parse_json_object<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    if !value.is_object() {
        return Err("the top level is not a JSON object".to_string());
    }
    serde_json::from_value(value).map_err(|error| error.to_string())
}

/// The docker CLI stores a context under the hex SHA-256 of its name.
pub fn context_directory_name(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn context_endpoint(
    env: &impl Environment,
    directory: &Path,
    name: String,
    selection: ContextSelection,
) -> Result<ResolvedEndpoint, EndpointError> {
    let id = context_directory_name(&name);
    let contexts = directory.join("contexts");
    let path = contexts.join("meta").join(&id).join("meta.json");
    let Some(text) = env.read_file(&path) else {
        return Err(EndpointError::ContextNotFound {
            name,
            selection,
            path,
        });
    };
    let (host, skip_tls_verify) = match docker_endpoint(&text) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(EndpointError::ContextWithoutDockerEndpoint { name, path }),
        Err(reason) => return Err(EndpointError::MalformedContext { name, path, reason }),
    };
    // Like the docker CLI: TLS when the context stores TLS material or skips verification.
    let tls = skip_tls_verify || env.exists(&contexts.join("tls").join(&id).join("docker"));
    resolve_host(EndpointSource::Context { name }, &host, tls)
}

/// The docker endpoint's non-empty host and SkipTLSVerify from a context's meta.json.
fn docker_endpoint(text: &str) -> Result<Option<(String, bool)>, String> {
    let metadata: ContextMetadata = parse_json_object(text)?;
    let docker = metadata.endpoints.and_then(|endpoints| endpoints.docker);
    Ok(docker.and_then(|docker| {
        let skip_tls_verify = docker.skip_tls_verify.unwrap_or(false);
        docker
            .host
            .filter(|host| !host.is_empty())
            .map(|host| (host, skip_tls_verify))
    }))
}

/// The well-known sockets in order of preference, each with the rule it stands for.
fn socket_candidates(env: &impl Environment) -> Vec<(PathBuf, EndpointSource)> {
    let mut candidates = vec![(
        PathBuf::from(DEFAULT_DOCKER_SOCKET),
        EndpointSource::DefaultSocket,
    )];
    if let Some(runtime_directory) = non_empty_var(env, XDG_RUNTIME_DIR).map(PathBuf::from) {
        candidates.push((
            runtime_directory.join("docker.sock"),
            EndpointSource::RootlessDocker,
        ));
        let podman_socket = runtime_directory.join("podman").join("podman.sock");
        candidates.push((podman_socket, EndpointSource::Podman));
    }
    candidates.push((PathBuf::from(ROOTFUL_PODMAN_SOCKET), EndpointSource::Podman));
    candidates
}

fn resolve_socket(env: &impl Environment) -> Result<ResolvedEndpoint, EndpointError> {
    let candidates = socket_candidates(env);
    if let Some((path, source)) = candidates.iter().find(|(path, _)| env.exists(path)) {
        return Ok(ResolvedEndpoint {
            endpoint: Endpoint::Unix(path.clone()),
            source: source.clone(),
        });
    }
    Err(EndpointError::NoDaemon {
        tried: candidates.into_iter().map(|(path, _)| path).collect(),
        runtime_dir_set: non_empty_var(env, XDG_RUNTIME_DIR).is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const HOME: &str = "/home/me";
    const RUNTIME: &str = "/run/user/1000";
    const COLIMA_ID: &str = "f24fd3749c1368328e2b149bec149cb6795619f244c5b584e844961215dadd16";
    const COLIMA_SOCKET: &str = "unix:///Users/x/.colima/default/docker.sock";

    /// A HashMap-backed environment; files also count as existing paths.
    #[derive(Debug, Clone, Default)]
    struct FakeEnvironment {
        variables: HashMap<String, String>,
        files: HashMap<PathBuf, String>,
        paths: HashSet<PathBuf>,
        home: Option<PathBuf>,
    }

    impl FakeEnvironment {
        /// A user with a home directory and a runtime directory, and nothing else.
        fn user() -> Self {
            Self::default()
                .with_home(HOME)
                .with_var(XDG_RUNTIME_DIR, RUNTIME)
        }

        fn with_var(mut self, name: &str, value: &str) -> Self {
            self.variables.insert(name.to_string(), value.to_string());
            self
        }

        fn with_file(mut self, path: impl Into<PathBuf>, text: &str) -> Self {
            self.files.insert(path.into(), text.to_string());
            self
        }

        fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
            self.paths.insert(path.into());
            self
        }

        fn with_home(mut self, home: &str) -> Self {
            self.home = Some(PathBuf::from(home));
            self
        }

        fn with_context(self, config_directory: &str, name: &str, metadata: &str) -> Self {
            self.with_file(meta_path(config_directory, name), metadata)
        }
    }

    impl Environment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.variables.get(name).cloned()
        }

        fn read_file(&self, path: &Path) -> Option<String> {
            self.files.get(path).cloned()
        }

        fn exists(&self, path: &Path) -> bool {
            self.paths.contains(path) || self.files.contains_key(path)
        }

        fn home_dir(&self) -> Option<PathBuf> {
            self.home.clone()
        }
    }

    fn default_config() -> String {
        format!("{HOME}/.docker")
    }

    fn meta_path(config_directory: &str, name: &str) -> PathBuf {
        let id = context_directory_name(name);
        PathBuf::from(format!("{config_directory}/contexts/meta/{id}/meta.json"))
    }

    fn config_path() -> PathBuf {
        PathBuf::from(format!("{HOME}/.docker/config.json"))
    }

    /// The meta.json the docker CLI writes for a context with a docker endpoint.
    fn metadata(name: &str, host: &str, skip_tls_verify: bool) -> String {
        let endpoint = serde_json::json!({"Host": host, "SkipTLSVerify": skip_tls_verify});
        let metadata = serde_json::json!({
            "Name": name,
            "Metadata": {"Description": "x"},
            "Endpoints": {"docker": endpoint},
        });
        metadata.to_string()
    }

    fn unix(path: &str, source: EndpointSource) -> Result<ResolvedEndpoint, EndpointError> {
        Ok(ResolvedEndpoint {
            endpoint: Endpoint::Unix(PathBuf::from(path)),
            source,
        })
    }

    fn tcp(
        host: &str,
        tls: bool,
        source: EndpointSource,
    ) -> Result<ResolvedEndpoint, EndpointError> {
        Ok(ResolvedEndpoint {
            endpoint: Endpoint::Tcp {
                host: host.to_string(),
                tls,
            },
            source,
        })
    }

    fn context(name: &str) -> EndpointSource {
        EndpointSource::Context {
            name: name.to_string(),
        }
    }

    #[test]
    fn context_directory_is_the_hex_sha256_of_the_name() {
        assert_eq!(context_directory_name("colima"), COLIMA_ID);
        assert_eq!(
            context_directory_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
        for name in ["", "a", "desktop-linux", "rootless", "ünïcode"] {
            let id = context_directory_name(name);
            assert_eq!(id.len(), 64, "{name:?}");
            assert!(
                id.bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')),
                "{name:?}"
            );
        }
    }

    #[test]
    fn parses_usable_hosts() {
        let unix = |path: &str| Endpoint::Unix(PathBuf::from(path));
        let tcp = |host: &str, tls| Endpoint::Tcp {
            host: host.to_string(),
            tls,
        };
        let cases = [
            (
                "unix:///var/run/docker.sock",
                false,
                unix("/var/run/docker.sock"),
            ),
            ("unix://relative.sock", false, unix("relative.sock")),
            ("tcp://host:2376", false, tcp("host:2376", false)),
            ("tcp://host:2376", true, tcp("host:2376", true)),
            ("tcp://host", false, tcp("host:2375", false)),
            ("tcp://host", true, tcp("host:2376", true)),
            ("tcp://host:", false, tcp("host:2375", false)),
            ("tcp://", false, tcp("localhost:2375", false)),
            ("tcp://:1234", false, tcp("localhost:1234", false)),
            ("tcp://host:2376/", true, tcp("host:2376", true)),
            ("tcp://10.0.0.5:2375", false, tcp("10.0.0.5:2375", false)),
            ("tcp://[::1]:2375", false, tcp("[::1]:2375", false)),
            ("tcp://[::1]", true, tcp("[::1]:2376", true)),
            (
                "tcp://docker_host.local:2375",
                false,
                tcp("docker_host.local:2375", false),
            ),
        ];
        for (value, tls, expected) in cases {
            assert_eq!(parse_host(value, tls), Ok(expected), "{value:?} tls={tls}");
        }
    }

    #[test]
    fn rejects_unusable_hosts_with_the_reason() {
        use HostProblem::*;
        let unsupported = |scheme: &str| UnsupportedScheme(scheme.to_string());
        let cases = [
            ("/var/run/docker.sock", MissingScheme),
            ("localhost:2375", MissingScheme),
            ("unix:/var/run/docker.sock", MissingScheme),
            ("unix://", EmptySocketPath),
            ("npipe:////./pipe/docker_engine", unsupported("npipe")),
            ("ssh://me@remote", unsupported("ssh")),
            ("fd://", unsupported("fd")),
            ("http://host:2375", unsupported("http")),
            ("UNIX:///var/run/docker.sock", unsupported("UNIX")),
            ("tcp://host:abc", InvalidPort("abc".into())),
            ("tcp://host:0", InvalidPort("0".into())),
            ("tcp://host:65536", InvalidPort("65536".into())),
            ("tcp://host:+80", InvalidPort("+80".into())),
            ("tcp://host:2375/v1.40", PathNotSupported("/v1.40".into())),
            ("tcp://::1:2375", InvalidTcpHost("::1:2375".into())),
            ("tcp://[::1", InvalidTcpHost("[::1".into())),
            ("tcp://[::1]x", InvalidTcpHost("[::1]x".into())),
            ("tcp://[]:1", InvalidTcpHost("[]".into())),
            ("tcp://bad host:1", InvalidTcpHost("bad host".into())),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_host(value, false), Err(expected), "{value:?}");
        }
    }

    /// Every port in range parses, and display re-parses to the same endpoint.
    #[test]
    fn every_port_round_trips_through_display() {
        for port in 1..=u16::MAX {
            for tls in [false, true] {
                let endpoint = parse_host(&format!("tcp://host:{port}"), tls);
                let expected = Endpoint::Tcp {
                    host: format!("host:{port}"),
                    tls,
                };
                assert_eq!(endpoint.as_ref(), Ok(&expected), "port {port}");
                assert_eq!(
                    parse_host(&expected.to_string(), tls),
                    Ok(expected),
                    "port {port}"
                );
            }
        }
        for port in ["0", "65536", "99999", "-1", "1e3", " 80"] {
            let result = parse_host(&format!("tcp://host:{port}"), false);
            assert_eq!(
                result,
                Err(HostProblem::InvalidPort(port.to_string())),
                "{port:?}"
            );
        }
    }

    #[test]
    fn displays_endpoints_and_sources() {
        let cases = [
            (
                Endpoint::Unix(PathBuf::from("/var/run/docker.sock")).to_string(),
                "unix:///var/run/docker.sock",
            ),
            (
                Endpoint::Tcp {
                    host: "host:2376".into(),
                    tls: true,
                }
                .to_string(),
                "tcp://host:2376",
            ),
            (EndpointSource::DockerHost.to_string(), "DOCKER_HOST"),
            (context("colima").to_string(), "docker context \"colima\""),
            (EndpointSource::DefaultSocket.to_string(), "default socket"),
            (
                EndpointSource::RootlessDocker.to_string(),
                "rootless Docker socket",
            ),
            (EndpointSource::Podman.to_string(), "Podman socket"),
            (ContextSelection::Variable.to_string(), "DOCKER_CONTEXT"),
            (
                ContextSelection::ConfigFile(config_path()).to_string(),
                "currentContext in /home/me/.docker/config.json",
            ),
            (
                ResolvedEndpoint {
                    endpoint: Endpoint::Unix(PathBuf::from("/run/podman/podman.sock")),
                    source: EndpointSource::Podman,
                }
                .to_string(),
                "unix:///run/podman/podman.sock (from Podman socket)",
            ),
        ];
        for (actual, expected) in cases {
            assert_eq!(actual, expected);
        }
    }

    #[test]
    fn resolves_each_source_in_order() {
        let config = "/cfg";
        let docker_config = default_config();
        let colima = metadata("colima", COLIMA_SOCKET, false);
        let remote = metadata("remote", "tcp://1.2.3.4:2376", false);
        let insecure = metadata("insecure", "tcp://1.2.3.4", true);
        let tls_directory = format!(
            "{docker_config}/contexts/tls/{}/docker",
            context_directory_name("remote")
        );
        let current = |name: &str| format!(r#"{{"auths":{{}},"currentContext":"{name}"}}"#);
        let cases: Vec<(
            &str,
            FakeEnvironment,
            Result<ResolvedEndpoint, EndpointError>,
        )> = vec![
            (
                "DOCKER_HOST unix",
                FakeEnvironment::user().with_var(DOCKER_HOST, "unix:///tmp/d.sock"),
                unix("/tmp/d.sock", EndpointSource::DockerHost),
            ),
            (
                "DOCKER_HOST tcp with DOCKER_TLS_VERIFY",
                FakeEnvironment::user()
                    .with_var(DOCKER_HOST, "tcp://h")
                    .with_var(DOCKER_TLS_VERIFY, "1"),
                tcp("h:2376", true, EndpointSource::DockerHost),
            ),
            (
                "empty DOCKER_TLS_VERIFY is off",
                FakeEnvironment::user()
                    .with_var(DOCKER_HOST, "tcp://h:1")
                    .with_var(DOCKER_TLS_VERIFY, ""),
                tcp("h:1", false, EndpointSource::DockerHost),
            ),
            (
                "DOCKER_HOST is trimmed",
                FakeEnvironment::user().with_var(DOCKER_HOST, " unix:///tmp/d.sock\n"),
                unix("/tmp/d.sock", EndpointSource::DockerHost),
            ),
            (
                "empty DOCKER_HOST counts as unset",
                FakeEnvironment::user()
                    .with_var(DOCKER_HOST, "")
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "blank DOCKER_HOST counts as unset",
                FakeEnvironment::user()
                    .with_var(DOCKER_HOST, "  ")
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "DOCKER_HOST wins over a context and sockets",
                FakeEnvironment::user()
                    .with_var(DOCKER_HOST, "tcp://h:1")
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(&docker_config, "colima", &colima)
                    .with_path(DEFAULT_DOCKER_SOCKET),
                tcp("h:1", false, EndpointSource::DockerHost),
            ),
            (
                "DOCKER_CONTEXT under DOCKER_CONFIG",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_var(DOCKER_CONFIG, config)
                    .with_context(config, "colima", &colima),
                unix("/Users/x/.colima/default/docker.sock", context("colima")),
            ),
            (
                "DOCKER_CONTEXT under ~/.docker",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(&docker_config, "colima", &colima),
                unix("/Users/x/.colima/default/docker.sock", context("colima")),
            ),
            (
                "currentContext from config.json",
                FakeEnvironment::user()
                    .with_file(config_path(), &current("colima"))
                    .with_context(&docker_config, "colima", &colima)
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix("/Users/x/.colima/default/docker.sock", context("colima")),
            ),
            (
                "currentContext from $DOCKER_CONFIG/config.json",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONFIG, config)
                    .with_file("/cfg/config.json", &current("colima"))
                    .with_file(config_path(), &current("other"))
                    .with_context(config, "colima", &colima),
                unix("/Users/x/.colima/default/docker.sock", context("colima")),
            ),
            (
                "DOCKER_CONTEXT wins over currentContext",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "remote")
                    .with_file(config_path(), &current("colima"))
                    .with_context(&docker_config, "colima", &colima)
                    .with_context(&docker_config, "remote", &remote),
                tcp("1.2.3.4:2376", false, context("remote")),
            ),
            (
                "DOCKER_CONTEXT=default skips currentContext",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "default")
                    .with_file(config_path(), &current("colima"))
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "currentContext default",
                FakeEnvironment::user()
                    .with_file(config_path(), &current("default"))
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "empty currentContext",
                FakeEnvironment::user()
                    .with_file(config_path(), &current(""))
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "config.json without currentContext",
                FakeEnvironment::user()
                    .with_file(config_path(), r#"{"auths":{}}"#)
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "empty config.json",
                FakeEnvironment::user()
                    .with_file(config_path(), " \n")
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "null currentContext",
                FakeEnvironment::user()
                    .with_file(config_path(), r#"{"currentContext":null}"#)
                    .with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "no HOME and no DOCKER_CONFIG skips contexts",
                FakeEnvironment::default().with_path(DEFAULT_DOCKER_SOCKET),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "tcp context with TLS material",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "remote")
                    .with_context(&docker_config, "remote", &remote)
                    .with_path(&tls_directory),
                tcp("1.2.3.4:2376", true, context("remote")),
            ),
            (
                "tcp context skipping TLS verification",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "insecure")
                    .with_context(&docker_config, "insecure", &insecure),
                tcp("1.2.3.4:2376", true, context("insecure")),
            ),
            (
                "DOCKER_TLS_VERIFY does not apply to contexts",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "remote")
                    .with_var(DOCKER_TLS_VERIFY, "1")
                    .with_context(&docker_config, "remote", &remote),
                tcp("1.2.3.4:2376", false, context("remote")),
            ),
            (
                "context socket need not exist",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(&docker_config, "colima", &colima),
                unix("/Users/x/.colima/default/docker.sock", context("colima")),
            ),
            (
                "default socket",
                FakeEnvironment::user()
                    .with_path(DEFAULT_DOCKER_SOCKET)
                    .with_path(format!("{RUNTIME}/docker.sock")),
                unix(DEFAULT_DOCKER_SOCKET, EndpointSource::DefaultSocket),
            ),
            (
                "rootless Docker",
                FakeEnvironment::user()
                    .with_path(format!("{RUNTIME}/docker.sock"))
                    .with_path(format!("{RUNTIME}/podman/podman.sock")),
                unix("/run/user/1000/docker.sock", EndpointSource::RootlessDocker),
            ),
            (
                "rootless Podman",
                FakeEnvironment::user()
                    .with_path(format!("{RUNTIME}/podman/podman.sock"))
                    .with_path(ROOTFUL_PODMAN_SOCKET),
                unix("/run/user/1000/podman/podman.sock", EndpointSource::Podman),
            ),
            (
                "rootful Podman",
                FakeEnvironment::user().with_path(ROOTFUL_PODMAN_SOCKET),
                unix(ROOTFUL_PODMAN_SOCKET, EndpointSource::Podman),
            ),
            (
                "rootful Podman without XDG_RUNTIME_DIR",
                FakeEnvironment::default().with_path(ROOTFUL_PODMAN_SOCKET),
                unix(ROOTFUL_PODMAN_SOCKET, EndpointSource::Podman),
            ),
            (
                "empty XDG_RUNTIME_DIR is ignored",
                FakeEnvironment::default()
                    .with_var(XDG_RUNTIME_DIR, "")
                    .with_path("/docker.sock"),
                Err(EndpointError::NoDaemon {
                    tried: vec![
                        PathBuf::from(DEFAULT_DOCKER_SOCKET),
                        PathBuf::from(ROOTFUL_PODMAN_SOCKET),
                    ],
                    runtime_dir_set: false,
                }),
            ),
            (
                "nothing found",
                FakeEnvironment::user(),
                Err(EndpointError::NoDaemon {
                    tried: vec![
                        PathBuf::from(DEFAULT_DOCKER_SOCKET),
                        PathBuf::from("/run/user/1000/docker.sock"),
                        PathBuf::from("/run/user/1000/podman/podman.sock"),
                        PathBuf::from(ROOTFUL_PODMAN_SOCKET),
                    ],
                    runtime_dir_set: true,
                }),
            ),
        ];
        for (name, env, expected) in cases {
            assert_eq!(resolve(&env), expected, "{name}");
        }
    }

    #[test]
    fn reports_unusable_configuration() {
        let docker_config = default_config();
        let colima_meta = meta_path(&docker_config, "colima");
        let current = r#"{"currentContext":"colima"}"#;
        let cases: Vec<(&str, FakeEnvironment, EndpointError)> = vec![
            (
                "DOCKER_HOST npipe",
                FakeEnvironment::user().with_var(DOCKER_HOST, "npipe:////./pipe/docker_engine"),
                EndpointError::InvalidHost {
                    origin: EndpointSource::DockerHost,
                    value: "npipe:////./pipe/docker_engine".into(),
                    problem: HostProblem::UnsupportedScheme("npipe".into()),
                },
            ),
            (
                "DOCKER_HOST bare path",
                FakeEnvironment::user().with_var(DOCKER_HOST, "/var/run/docker.sock"),
                EndpointError::InvalidHost {
                    origin: EndpointSource::DockerHost,
                    value: "/var/run/docker.sock".into(),
                    problem: HostProblem::MissingScheme,
                },
            ),
            (
                "DOCKER_HOST empty unix path",
                FakeEnvironment::user().with_var(DOCKER_HOST, "unix://"),
                EndpointError::InvalidHost {
                    origin: EndpointSource::DockerHost,
                    value: "unix://".into(),
                    problem: HostProblem::EmptySocketPath,
                },
            ),
            (
                "DOCKER_CONTEXT without metadata",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_path(DEFAULT_DOCKER_SOCKET),
                EndpointError::ContextNotFound {
                    name: "colima".into(),
                    selection: ContextSelection::Variable,
                    path: colima_meta.clone(),
                },
            ),
            (
                "currentContext without metadata",
                FakeEnvironment::user().with_file(config_path(), current),
                EndpointError::ContextNotFound {
                    name: "colima".into(),
                    selection: ContextSelection::ConfigFile(config_path()),
                    path: colima_meta.clone(),
                },
            ),
            (
                "context without Endpoints",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(
                        &docker_config,
                        "colima",
                        r#"{"Name":"colima","Metadata":{}}"#,
                    ),
                EndpointError::ContextWithoutDockerEndpoint {
                    name: "colima".into(),
                    path: colima_meta.clone(),
                },
            ),
            (
                "context with null Endpoints",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(
                        &docker_config,
                        "colima",
                        r#"{"Name":"colima","Endpoints":null}"#,
                    ),
                EndpointError::ContextWithoutDockerEndpoint {
                    name: "colima".into(),
                    path: colima_meta.clone(),
                },
            ),
            (
                "context with only a kubernetes endpoint",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(
                        &docker_config,
                        "colima",
                        r#"{"Endpoints":{"kubernetes":{"Host":"x"}}}"#,
                    ),
                EndpointError::ContextWithoutDockerEndpoint {
                    name: "colima".into(),
                    path: colima_meta.clone(),
                },
            ),
            (
                "context with an empty host",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(&docker_config, "colima", &metadata("colima", "", false)),
                EndpointError::ContextWithoutDockerEndpoint {
                    name: "colima".into(),
                    path: colima_meta.clone(),
                },
            ),
            (
                "context with an unusable host",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_context(
                        &docker_config,
                        "colima",
                        &metadata("colima", "ssh://me@box", false),
                    ),
                EndpointError::InvalidHost {
                    origin: context("colima"),
                    value: "ssh://me@box".into(),
                    problem: HostProblem::UnsupportedScheme("ssh".into()),
                },
            ),
            (
                "DOCKER_CONTEXT without HOME or DOCKER_CONFIG",
                FakeEnvironment::default().with_var(DOCKER_CONTEXT, "colima"),
                EndpointError::ContextWithoutConfigDirectory {
                    name: "colima".into(),
                },
            ),
        ];
        for (name, env, expected) in cases {
            let error = resolve(&env).err();
            assert_eq!(error.as_ref(), Some(&expected), "{name}");
            assert!(expected.hint().is_some(), "{name}: hint");
        }
    }

    #[test]
    fn reports_malformed_json_naming_the_file() {
        let docker_config = default_config();
        let colima_meta = meta_path(&docker_config, "colima");
        let cases = [
            (
                "not JSON",
                FakeEnvironment::user().with_file(config_path(), "{not json"),
                config_path(),
            ),
            (
                "wrong type",
                FakeEnvironment::user().with_file(config_path(), r#"{"currentContext":42}"#),
                config_path(),
            ),
            (
                "an array",
                FakeEnvironment::user().with_file(config_path(), "[]"),
                config_path(),
            ),
            (
                "malformed meta.json",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_file(&colima_meta, "{"),
                colima_meta.clone(),
            ),
            (
                "meta.json with a non-string host",
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_file(&colima_meta, r#"{"Endpoints":{"docker":{"Host":1}}}"#),
                colima_meta.clone(),
            ),
        ];
        for (name, env, expected_path) in cases {
            match resolve(&env) {
                Err(EndpointError::MalformedConfig { path, reason }) => {
                    assert_eq!(path, expected_path, "{name}");
                    assert!(!reason.is_empty(), "{name}");
                }
                Err(EndpointError::MalformedContext {
                    name: context,
                    path,
                    reason,
                }) => {
                    assert_eq!(
                        (context.as_str(), &path),
                        ("colima", &expected_path),
                        "{name}"
                    );
                    assert!(!reason.is_empty(), "{name}");
                }
                other => panic!("{name}: expected a malformed-file error, got {other:?}"),
            }
            let message = resolve(&env)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(
                message.contains(&format!("{:?}", expected_path)),
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn messages_and_hints_name_the_inputs() {
        let docker_config = default_config();
        let colima_meta = meta_path(&docker_config, "colima").display().to_string();
        let cases = [
            (
                FakeEnvironment::user().with_var(DOCKER_HOST, "/var/run/docker.sock"),
                "DOCKER_HOST endpoint \"/var/run/docker.sock\" is not usable: \
                 it has no unix:// or tcp:// scheme",
                "set DOCKER_HOST so that it reads unix:///var/run/docker.sock",
            ),
            (
                FakeEnvironment::user().with_var(DOCKER_HOST, "localhost:2375"),
                "DOCKER_HOST endpoint \"localhost:2375\" is not usable",
                "it reads tcp://localhost:2375",
            ),
            (
                FakeEnvironment::user().with_var(DOCKER_HOST, "npipe:////./pipe/docker_engine"),
                "Windows named pipes (npipe://) are not supported",
                "unix:///PATH or tcp://HOST:PORT",
            ),
            (
                FakeEnvironment::user().with_var(DOCKER_HOST, "ssh://me@box"),
                "ssh:// endpoints are not supported",
                "ssh -NL /tmp/docker.sock:/var/run/docker.sock",
            ),
            (
                FakeEnvironment::user().with_var(DOCKER_HOST, "unix://"),
                "the unix:// socket path is empty",
                "unix:///var/run/docker.sock",
            ),
            (
                FakeEnvironment::user().with_var(DOCKER_CONTEXT, "colima"),
                "docker context \"colima\" (selected by DOCKER_CONTEXT) does not exist",
                "set DOCKER_CONTEXT to one of them or unset it",
            ),
            (
                FakeEnvironment::user().with_file(config_path(), r#"{"currentContext":"colima"}"#),
                "(selected by currentContext in /home/me/.docker/config.json)",
                "`docker context use default`",
            ),
            (
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_file(&colima_meta, "{}"),
                "docker context \"colima\" has no docker endpoint host in",
                "`docker context inspect colima`",
            ),
            (
                FakeEnvironment::user()
                    .with_var(DOCKER_CONTEXT, "colima")
                    .with_file(&colima_meta, &metadata("colima", "tcp://h:x", false)),
                "docker context \"colima\" endpoint \"tcp://h:x\" is not usable: \
                 port \"x\" is not a number",
                "`docker context inspect colima` shows the context",
            ),
            (
                FakeEnvironment::user().with_file(config_path(), "{"),
                "docker config file \"/home/me/.docker/config.json\" is not valid",
                "fix the JSON in /home/me/.docker/config.json",
            ),
            (
                FakeEnvironment::user(),
                "no Docker or Podman daemon found: none of /var/run/docker.sock, \
                 /run/user/1000/docker.sock, /run/user/1000/podman/podman.sock, \
                 /run/podman/podman.sock exists",
                "systemctl --user start podman.socket",
            ),
            (
                FakeEnvironment::default(),
                "(XDG_RUNTIME_DIR is not set, so rootless sockets were not looked for)",
                "or set DOCKER_HOST",
            ),
        ];
        for (env, message, hint) in cases {
            let error = resolve(&env).err();
            let actual_message = error.as_ref().map(ToString::to_string).unwrap_or_default();
            let actual_hint = error.and_then(|error| error.hint()).unwrap_or_default();
            assert!(
                actual_message.contains(message),
                "{actual_message:?} should contain {message:?}"
            );
            assert!(
                actual_hint.contains(hint),
                "{actual_hint:?} should contain {hint:?}"
            );
        }
        assert!(colima_meta.contains(COLIMA_ID));
    }

    /// For every subset of existing sockets, the first one in order wins.
    #[test]
    fn the_first_existing_socket_wins_for_every_combination() {
        let sockets = [
            (
                DEFAULT_DOCKER_SOCKET.to_string(),
                EndpointSource::DefaultSocket,
            ),
            (
                format!("{RUNTIME}/docker.sock"),
                EndpointSource::RootlessDocker,
            ),
            (
                format!("{RUNTIME}/podman/podman.sock"),
                EndpointSource::Podman,
            ),
            (ROOTFUL_PODMAN_SOCKET.to_string(), EndpointSource::Podman),
        ];
        for subset in 0..(1u32 << sockets.len()) {
            let mut env = FakeEnvironment::user();
            for (index, (path, _)) in sockets.iter().enumerate() {
                if subset & (1 << index) != 0 {
                    env = env.with_path(path);
                }
            }
            let first = sockets
                .iter()
                .enumerate()
                .find(|(index, _)| subset & (1 << index) != 0);
            match (resolve(&env), first) {
                (Ok(resolved), Some((_, (path, source)))) => {
                    assert_eq!(
                        resolved.endpoint,
                        Endpoint::Unix(PathBuf::from(path)),
                        "subset {subset:04b}"
                    );
                    assert_eq!(&resolved.source, source, "subset {subset:04b}");
                }
                (Err(EndpointError::NoDaemon { tried, .. }), None) => assert_eq!(tried.len(), 4),
                (result, _) => panic!("subset {subset:04b}: unexpected {result:?}"),
            }
        }
    }

    /// DOCKER_HOST wins, and a selected context beats every socket, whatever else is set.
    #[test]
    fn precedence_holds_for_every_combination_of_settings() {
        let docker_config = default_config();
        let colima = metadata("colima", COLIMA_SOCKET, false);
        for settings in 0..(1u32 << 5) {
            let has = |bit: u32| settings & (1 << bit) != 0;
            let mut env = FakeEnvironment::user().with_context(&docker_config, "colima", &colima);
            if has(0) {
                env = env.with_var(DOCKER_HOST, "tcp://h:1");
            }
            if has(1) {
                env = env.with_var(DOCKER_CONTEXT, "colima");
            }
            if has(2) {
                env = env.with_file(config_path(), r#"{"currentContext":"colima"}"#);
            }
            if has(3) {
                env = env.with_path(DEFAULT_DOCKER_SOCKET);
            }
            if has(4) {
                env = env.with_path(ROOTFUL_PODMAN_SOCKET);
            }
            let expected_source = match () {
                () if has(0) => Some(EndpointSource::DockerHost),
                () if has(1) || has(2) => Some(context("colima")),
                () if has(3) => Some(EndpointSource::DefaultSocket),
                () if has(4) => Some(EndpointSource::Podman),
                () => None,
            };
            let source = resolve(&env).ok().map(|resolved| resolved.source);
            assert_eq!(source, expected_source, "settings {settings:05b}");
        }
    }

    #[test]
    fn reads_the_documented_meta_json_shape() {
        let text = r#"{"Name":"colima","Metadata":{"Description":"colima"},
            "Endpoints":{"docker":{"Host":"unix:///Users/x/.colima/default/docker.sock",
            "SkipTLSVerify":false}}}"#;
        let env = FakeEnvironment::user()
            .with_var(DOCKER_CONTEXT, "colima")
            .with_file(
                format!("{HOME}/.docker/contexts/meta/{COLIMA_ID}/meta.json"),
                text,
            );
        assert_eq!(
            resolve(&env),
            unix("/Users/x/.colima/default/docker.sock", context("colima"))
        );
    }

    #[test]
    fn system_environment_reads_the_real_process() {
        let env = SystemEnvironment;
        assert_eq!(env.var("IDPBUILDER_PUSH_SURELY_UNSET_VARIABLE"), None);
        assert_eq!(
            env.read_file(Path::new("/surely/not/here/config.json")),
            None
        );
        assert!(!env.exists(Path::new("/surely/not/here")));
        assert!(env.exists(Path::new("/")));
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(env
            .read_file(&manifest)
            .is_some_and(|text| text.contains("[package]")));
    }
}
