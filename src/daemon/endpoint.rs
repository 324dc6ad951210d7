//! Owns finding the Docker or Podman API endpoint, in the docker CLI's order, then Podman's.
//!
//! Resolution is pure over an injected [`Environment`] so every branch is unit-testable;
//! [`SystemEnvironment`] is the only part that touches the real process environment and disk.

use std::fmt;
use std::path::{Path, PathBuf};

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
    #[error("no Docker or Podman daemon found: {}{}", list_paths(tried), runtime_dir_note(*runtime_dir_set))]
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
                    "`docker context inspect {name}` shows the context; \
                     `docker context use default` switches back to the default daemon"
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
            "it names a forwarded socket, e.g. after \
             `ssh -NL /tmp/docker.sock:/var/run/docker.sock USER@HOST`, unix:///tmp/docker.sock"
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
            "`docker context ls` lists the contexts; set {DOCKER_CONTEXT} to one of them or unset it"
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

/// The endpoint of the selected docker context, or None when no context (or "default") is selected.
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
        serde_json::from_str(&text).map_err(|error| EndpointError::MalformedConfig {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok(config.current_context.filter(|name| !name.is_empty()))
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
    let path = directory
        .join("contexts")
        .join("meta")
        .join(&id)
        .join("meta.json");
    let Some(text) = env.read_file(&path) else {
        return Err(EndpointError::ContextNotFound {
            name,
            selection,
            path,
        });
    };
    let docker = match parse_context_metadata(&text) {
        Ok(docker) => docker,
        Err(reason) => return Err(EndpointError::MalformedContext { name, path, reason }),
    };
    let Some(host) = docker
        .as_ref()
        .and_then(|docker| docker.host.clone())
        .filter(|host| !host.is_empty())
    else {
        return Err(EndpointError::ContextWithoutDockerEndpoint { name, path });
    };
    // Like the docker CLI: TLS when the context stores TLS material or skips verification.
    let skip_tls_verify = docker
        .and_then(|docker| docker.skip_tls_verify)
        .unwrap_or(false);
    let tls_directory = directory
        .join("contexts")
        .join("tls")
        .join(&id)
        .join("docker");
    let tls = skip_tls_verify || env.exists(&tls_directory);
    resolve_host(EndpointSource::Context { name }, &host, tls)
}

fn parse_context_metadata(text: &str) -> Result<Option<DockerEndpointMetadata>, String> {
    let metadata: ContextMetadata =
        serde_json::from_str(text).map_err(|error| error.to_string())?;
    Ok(metadata.endpoints.and_then(|endpoints| endpoints.docker))
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
