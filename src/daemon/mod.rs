//! The local image source: finds the Docker or Podman API endpoint, inspects
//! the image and streams its `docker save` export.

pub mod endpoint;
pub mod export_stream;

use std::time::Duration;

use bollard::Docker;

pub use endpoint::{Endpoint, EndpointError, ResolvedEndpoint};
pub use export_stream::{ExportAbort, ExportRequest, ExportStream};

/// What the daemon says about an image, reduced to what a push needs.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The name the daemon found it under (Podman: `localhost/NAME`).
    pub name: String,
    /// `sha256:` image ID. Classic store: the config digest. containerd store:
    /// the digest of the image index or manifest.
    pub id: String,
    /// Layer diffIDs, bottom first.
    pub diff_ids: Vec<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// The image's OCI descriptor (containerd store, Docker >= 25).
    pub descriptor: Option<DescriptorInfo>,
}

#[derive(Debug, Clone)]
pub struct DescriptorInfo {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot reach the container daemon at {endpoint} (from {source_name})")]
    Unreachable {
        endpoint: String,
        source_name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "the daemon endpoint {endpoint} needs TLS (DOCKER_TLS_VERIFY), which is not supported"
    )]
    TlsEndpoint { endpoint: String },
    #[error(
        "image {image:?} not found in the container daemon at {endpoint} (looked up as {tried})"
    )]
    ImageNotFound {
        image: String,
        endpoint: String,
        tried: String,
    },
    #[error("the container daemon failed to {action}")]
    Api {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl DaemonError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DaemonError::Endpoint(error) => error.hint(),
            DaemonError::Unreachable { .. } => Some(
                "start Docker or Podman (Podman: `systemctl --user start podman.socket`), or point DOCKER_HOST at a running daemon".to_owned(),
            ),
            DaemonError::ImageNotFound { .. } => Some(
                "build or tag the image first (`docker build -t NAME .`) and check the name with `docker images`".to_owned(),
            ),
            DaemonError::TlsEndpoint { .. } => Some(
                "reach the daemon through its unix socket, or an SSH tunnel to it, and set DOCKER_HOST=unix://PATH".to_owned(),
            ),
            DaemonError::Api { .. } => None,
        }
    }

    /// Exit code 2 covers "image not found" and "daemon not reachable".
    pub fn is_not_found_or_unreachable(&self) -> bool {
        !matches!(
            self,
            DaemonError::Api { .. } | DaemonError::TlsEndpoint { .. }
        )
    }
}

/// A connection to the local daemon.
pub struct Daemon {
    docker: Docker,
    resolved: ResolvedEndpoint,
    timeout: Duration,
}

/// The classic store stages a whole export on disk before its first byte, so
/// the wait for bytes of an export is long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3600);

impl Daemon {
    /// Resolves the endpoint like the docker CLI, connects and negotiates the API
    /// version (bollard pins a recent one that older daemons refuse).
    pub async fn connect(timeout: Duration) -> Result<Daemon, DaemonError> {
        let resolved = endpoint::resolve(&endpoint::SystemEnvironment)?;
        tracing::debug!(
            "container daemon: {} (from {})",
            resolved.endpoint,
            resolved.source
        );
        let unreachable = |source| DaemonError::Unreachable {
            endpoint: resolved.endpoint.to_string(),
            source_name: resolved.source.to_string(),
            source,
        };
        let docker = match &resolved.endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                timeout.as_secs(),
                bollard::API_DEFAULT_VERSION,
            ),
            Endpoint::Tcp { host, tls: false } => Docker::connect_with_http(
                &format!("http://{host}"),
                timeout.as_secs(),
                bollard::API_DEFAULT_VERSION,
            ),
            Endpoint::Tcp { tls: true, .. } => {
                return Err(DaemonError::TlsEndpoint {
                    endpoint: resolved.endpoint.to_string(),
                })
            }
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(Daemon {
            docker,
            resolved,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &ResolvedEndpoint {
        &self.resolved
    }

    /// Inspects the first of `candidates` the daemon knows.
    pub async fn inspect(
        &self,
        image: &str,
        candidates: &[String],
    ) -> Result<ImageInfo, DaemonError> {
        for candidate in candidates {
            let started = std::time::Instant::now();
            let result = self.docker.inspect_image(candidate).await;
            tracing::debug!(
                "daemon -> GET /images/{candidate}/json: {} in {} ms",
                match &result {
                    Ok(_) => "200".to_owned(),
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code, ..
                    }) => status_code.to_string(),
                    Err(error) => error.to_string(),
                },
                started.elapsed().as_millis()
            );
            match result {
                Ok(inspect) => return Ok(image_info(candidate, inspect)),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    tracing::debug!("daemon has no image {candidate:?}");
                }
                Err(source) => {
                    return Err(DaemonError::Api {
                        action: format!("inspect image {candidate:?}"),
                        source,
                    })
                }
            }
        }
        Err(DaemonError::ImageNotFound {
            image: image.to_owned(),
            endpoint: self.resolved.endpoint.to_string(),
            tried: candidates.join(", "),
        })
    }

    /// The request for `docker save NAME`, at the negotiated API version; it is
    /// opened and read on a blocking thread (see `export_stream`).
    pub fn export(&self, name: &str) -> ExportRequest {
        let path = format!(
            "/v{}/images/{}/get",
            self.docker.client_version(),
            encode_path_segment(name)
        );
        tracing::debug!("daemon -> GET {path} (export stream)");
        ExportRequest {
            endpoint: self.resolved.endpoint.clone(),
            path,
            timeout: EXPORT_TIMEOUT,
            connect_timeout: self.timeout,
            abort: Default::default(),
        }
    }
}

/// Percent-encodes what may not appear in a path as it is; `/` and `:` stay,
/// as the daemon routes `/images/{name:.*}/get` (`localhost/app:1`).
fn encode_path_segment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/:@".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn image_info(name: &str, inspect: bollard::models::ImageInspect) -> ImageInfo {
    ImageInfo {
        name: name.to_owned(),
        id: inspect.id.unwrap_or_default(),
        diff_ids: inspect
            .root_fs
            .and_then(|root_fs| root_fs.layers)
            .unwrap_or_default(),
        os: inspect.os.unwrap_or_else(|| "linux".to_owned()),
        architecture: inspect.architecture.unwrap_or_else(|| "amd64".to_owned()),
        variant: inspect.variant.filter(|variant| !variant.is_empty()),
        descriptor: inspect.descriptor.and_then(|descriptor| {
            Some(DescriptorInfo {
                media_type: descriptor.media_type?,
                digest: descriptor.digest?,
                size: u64::try_from(descriptor.size?).ok()?,
            })
        }),
    }
}
