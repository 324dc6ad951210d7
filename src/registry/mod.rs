//! The registry side of a push: one repository of one OCI registry, spoken to over
//! our own HTTP stack (reqwest + rustls) so that bodies stream, trust can be
//! configured precisely and credentials never leave the registry's origin.
//!
//! oci-client needs whole blobs in memory and cannot pin a certificate, so only its
//! manifest types are used (see `crate::manifest`); the wire protocol lives here.

pub mod auth;
pub mod tls;

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use url::Url;

pub use auth::{Challenge, Credentials};
pub use tls::{TlsError, Trust};

/// Everything needed to talk to one repository.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `http(s)://host[:port]`, without path.
    pub base_url: Url,
    /// `namespace/name`, the repository pushed to.
    pub repository: String,
    pub credentials: Credentials,
    pub trust: Trust,
    pub connect_timeout: Duration,
    /// Longest silence while waiting for response bytes.
    pub read_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the registry at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the registry {registry} rejected {credentials} ({detail})")]
    Unauthorized {
        registry: String,
        credentials: String,
        detail: String,
    },
    #[error("{action} failed: {url} answered {status}{detail}")]
    Status {
        action: String,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{action} failed ({url})")]
    Request {
        action: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{action}: {detail}")]
    Protocol { action: String, detail: String },
}

impl RegistryError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unreachable { source, .. } | RegistryError::Request { source, .. } => {
                let chain = error_chain_text(source);
                if chain.contains("certificate") || chain.contains("UnknownIssuer") {
                    Some("the registry's TLS certificate is not trusted: pass its CA with --ca-file PATH (or --insecure to skip verification)".to_owned())
                } else if source.is_connect() {
                    Some("check that the registry is running and that --registry names the right host, port and scheme (http:// or https://)".to_owned())
                } else if source.is_timeout() {
                    Some("the registry did not answer in time; check the network path to it".to_owned())
                } else {
                    None
                }
            }
            RegistryError::Unauthorized { .. } => Some(
                "check --username and --password (or --token); an idpbuilder cluster's admin password is in Secret gitea/gitea-credential".to_owned(),
            ),
            RegistryError::Tls(error) => error.hint(),
            RegistryError::Status { status, detail, .. } => {
                if *status == StatusCode::PAYLOAD_TOO_LARGE {
                    Some("the registry or a proxy in front of it refused the request size; ingress-nginx in idpbuilder limits bodies to 1024 MiB".to_owned())
                } else if *status == StatusCode::NOT_FOUND && detail.contains("NAME_UNKNOWN") {
                    Some("the repository's namespace must exist and be lowercase (Gitea: the owner, e.g. giteaadmin)".to_owned())
                } else if *status == StatusCode::FORBIDDEN || detail.contains("DENIED") {
                    Some("the user may not push to this repository; check the namespace (--to, or the path of --registry)".to_owned())
                } else {
                    None
                }
            }
            RegistryError::Protocol { .. } => None,
        }
    }

    /// True when the registry rejected the credentials (exit code mapping, tests).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }
}

fn error_chain_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL as it may appear in messages: no userinfo, no query (upload `_state`
/// parameters are opaque server state and may carry tokens).
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// How requests are currently authorised, learnt from the registry's challenge.
enum Session {
    Anonymous,
    Basic,
    Bearer(SecretString),
}

/// A connection to one repository of a registry.
pub struct Registry {
    http: reqwest::Client,
    config: RegistryConfig,
    session: Mutex<Session>,
}

impl Registry {
    /// Builds the client and settles authentication with `GET /v2/`, so bad
    /// credentials or an unreachable registry fail before any image is read.
    pub async fn connect(config: RegistryConfig) -> Result<Registry, RegistryError> {
        let http = build_http_client(&config)?;
        let registry = Registry {
            http,
            config,
            session: Mutex::new(Session::Anonymous),
        };
        registry.authenticate(None).await?;
        Ok(registry)
    }

    pub fn repository(&self) -> &str {
        &self.config.repository
    }

    /// `host[:port]` as it appears in references.
    pub fn host(&self) -> String {
        host_of(&self.config.base_url)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.config.base_url.clone();
        url.set_path(path);
        url
    }

    fn blob_url(&self, digest: &str) -> Url {
        self.url(&format!("/v2/{}/blobs/{digest}", self.config.repository))
    }

    /// Probes `/v2/` and acquires whatever the registry asks for. `previous`
    /// is the 401 challenge of a failed request, when re-authenticating.
    async fn authenticate(&self, previous: Option<Challenge>) -> Result<(), RegistryError> {
        let challenge = match previous {
            Some(challenge) => Some(challenge),
            None => self.probe().await?,
        };
        let session = match (challenge, &self.config.credentials) {
            (None, _) => Session::Anonymous,
            (Some(_), Credentials::Bearer(token)) => Session::Bearer(token.clone()),
            (Some(Challenge::Basic), Credentials::Basic { .. }) => Session::Basic,
            (Some(Challenge::Basic), _) => {
                return Err(self.unauthorized("the registry requires a username and password"))
            }
            (Some(challenge @ Challenge::Bearer { .. }), _) => {
                Session::Bearer(self.fetch_token(&challenge).await?)
            }
        };
        *self.session.lock().await = session;
        Ok(())
    }

    /// `GET /v2/`: `None` when no authentication is needed.
    async fn probe(&self) -> Result<Option<Challenge>, RegistryError> {
        let url = self.url("/v2/");
        let response = self.http.get(url.clone()).send().await.map_err(|source| {
            RegistryError::Unreachable {
                url: display_url(&url),
                source,
            }
        })?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(Some(challenge_of(&response).ok_or_else(|| {
                self.unauthorized(
                    "the registry answered 401 without a usable WWW-Authenticate challenge",
                )
            })?)),
            status if status.is_success() => Ok(None),
            _ => Err(status_error("checking the registry API (/v2/)", response).await),
        }
    }

    /// Asks the token realm for a push token for our repository.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<SecretString, RegistryError> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            unreachable!("fetch_token is only called for bearer challenges")
        };
        let mut url = Url::parse(realm).map_err(|error| RegistryError::Protocol {
            action: "reading the registry's auth challenge".into(),
            detail: format!("token realm {realm:?} is not a URL: {error}"),
        })?;
        if self.config.base_url.scheme() == "https" && url.scheme() == "http" {
            return Err(RegistryError::Protocol {
                action: "reading the registry's auth challenge".into(),
                detail: format!(
                    "refusing to send credentials to the plain-HTTP token realm {}",
                    display_url(&url)
                ),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.config.repository),
            );
        }
        let mut request = self.http.get(url.clone());
        if let Credentials::Basic { username, password } = &self.config.credentials {
            request = request.basic_auth(username, Some(password.expose_secret()));
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Request {
                action: "requesting a registry token".into(),
                url: display_url(&url),
                source,
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(&format!(
                "token endpoint {} answered {status}",
                display_url(&url)
            )));
        }
        if !status.is_success() {
            // The body of a token endpoint may echo secrets: never shown.
            return Err(RegistryError::Status {
                action: "requesting a registry token".into(),
                url: display_url(&url),
                status,
                detail: String::new(),
            });
        }
        let body: auth::TokenResponse =
            response
                .json()
                .await
                .map_err(|source| RegistryError::Request {
                    action: "reading the registry token".into(),
                    url: display_url(&url),
                    source,
                })?;
        body.into_token().ok_or_else(|| RegistryError::Protocol {
            action: "reading the registry token".into(),
            detail: format!("{} answered without a token", display_url(&url)),
        })
    }

    fn unauthorized(&self, detail: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.host(),
            credentials: self.config.credentials.describe(),
            detail: detail.to_owned(),
        }
    }

    /// The Authorization header for `url`, only when it is the registry's own
    /// origin: credentials never follow a Location to another host.
    async fn authorization(&self, url: &Url) -> Option<HeaderValue> {
        if url.origin() != self.config.base_url.origin() {
            return None;
        }
        let value = match &*self.session.lock().await {
            Session::Anonymous => return None,
            Session::Basic => {
                let Credentials::Basic { username, password } = &self.config.credentials else {
                    return None;
                };
                basic_header(username, password.expose_secret())
            }
            Session::Bearer(token) => format!("Bearer {}", token.expose_secret()),
        };
        let mut header = HeaderValue::from_str(&value).ok()?;
        header.set_sensitive(true);
        Some(header)
    }

    /// Sends a request built by `build` (called again for the retry), adding
    /// authorisation; a 401 re-authenticates once and retries.
    async fn send(
        &self,
        action: &str,
        method: Method,
        url: &Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        loop {
            let mut request = build(self.http.request(method.clone(), url.clone()));
            if let Some(header) = self.authorization(url).await {
                request = request.header(AUTHORIZATION, header);
            }
            let response = request
                .send()
                .await
                .map_err(|source| RegistryError::Request {
                    action: action.to_owned(),
                    url: display_url(url),
                    source,
                })?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            if reauthenticated || matches!(self.config.credentials, Credentials::Bearer(_)) {
                return Err(
                    self.unauthorized(&format!("{action}: {} answered 401", display_url(url)))
                );
            }
            reauthenticated = true;
            let challenge = challenge_of(&response);
            tracing::debug!("{action}: 401, authenticating again");
            self.authenticate(challenge).await?;
        }
    }

    /// `HEAD` a blob: its size when the repository has it.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<u64>, RegistryError> {
        let url = self.blob_url(digest);
        let action = format!("checking blob {digest}");
        let response = self
            .send(&action, Method::HEAD, &url, |request| request)
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Some(
                response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&action, response).await),
        }
    }

    /// Opens an upload session; returns where to send the bytes.
    pub async fn start_upload(&self) -> Result<Url, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/uploads/", self.config.repository));
        let action = format!(
            "starting a blob upload to {}/{}",
            self.host(),
            self.config.repository
        );
        let response = self
            .send(&action, Method::POST, &url, |request| {
                request.header(CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&action, response).await);
        }
        self.location(&action, &response)
    }

    /// Streams `body` into an open upload session with one PATCH.
    pub async fn patch_upload(
        &self,
        location: &Url,
        body: reqwest::Body,
        action: &str,
    ) -> Result<Url, RegistryError> {
        let mut request = self
            .http
            .patch(location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(header) = self.authorization(location).await {
            request = request.header(AUTHORIZATION, header);
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Request {
                action: action.to_owned(),
                url: display_url(location),
                source,
            })?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(&format!("{action}: upload answered 401")));
        }
        if !response.status().is_success() {
            return Err(status_error(action, response).await);
        }
        self.location(action, &response)
    }

    /// Closes an upload session, naming the digest of everything sent; `body`
    /// carries the final bytes when the blob is sent in this one request.
    pub async fn finish_upload(
        &self,
        location: &Url,
        digest: &str,
        body: Option<bytes::Bytes>,
        action: &str,
    ) -> Result<(), RegistryError> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .send(action, Method::PUT, &url, |request| match &body {
                Some(bytes) => request
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone()),
                None => request.header(CONTENT_LENGTH, "0"),
            })
            .await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(status_error(action, response).await);
        }
        Ok(())
    }

    /// Uploads a small blob (the image config) in one request.
    pub async fn upload_small_blob(
        &self,
        digest: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let location = self.start_upload().await?;
        let action = format!(
            "uploading blob {digest} to {}/{}",
            self.host(),
            self.config.repository
        );
        self.finish_upload(&location, digest, Some(bytes), &action)
            .await
    }

    /// Abandons an upload session (best effort, for interrupted pushes).
    pub async fn cancel_upload(&self, location: &Url) {
        let result = self
            .send(
                "cancelling an upload",
                Method::DELETE,
                location,
                |request| request,
            )
            .await;
        if let Err(error) = result {
            tracing::debug!("could not cancel upload session: {error}");
        }
    }

    /// Stores a manifest under `reference` (a tag or digest) and returns the
    /// digest the registry reports.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: bytes::Bytes,
        expected_digest: &str,
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!(
            "/v2/{}/manifests/{reference}",
            self.config.repository
        ));
        let action = format!(
            "pushing the manifest to {}/{}:{reference}",
            self.host(),
            self.config.repository
        );
        let response = self
            .send(&action, Method::PUT, &url, |request| {
                request.header(CONTENT_TYPE, media_type).body(body.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&action, response).await);
        }
        let reported = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        match reported {
            Some(digest) if digest != expected_digest => Err(RegistryError::Protocol {
                action,
                detail: format!("the registry stored digest {digest}, but the manifest sent has {expected_digest}"),
            }),
            _ => Ok(expected_digest.to_owned()),
        }
    }

    fn location(&self, action: &str, response: &Response) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                action: action.to_owned(),
                detail: "the registry sent no Location for the upload".into(),
            })?;
        response
            .url()
            .join(location)
            .map_err(|error| RegistryError::Protocol {
                action: action.to_owned(),
                detail: format!("upload Location is not a URL: {error}"),
            })
    }
}

fn build_http_client(config: &RegistryConfig) -> Result<reqwest::Client, RegistryError> {
    let tls = tls::client_config(&config.trust)?;
    let https = config.base_url.scheme() == "https";
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if https && attempt.url().scheme() != "https" {
            attempt.error("refusing a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .redirect(policy)
        .user_agent(concat!("idpbuilder-push/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| RegistryError::Request {
            action: "setting up the HTTP client".into(),
            url: display_url(&config.base_url),
            source,
        })
}

fn challenge_of(response: &Response) -> Option<Challenge> {
    response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(Challenge::parse)
        .max_by_key(|challenge| matches!(challenge, Challenge::Bearer { .. }))
}

fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine as _;
    use std::io::Write;
    let mut raw = Vec::with_capacity(username.len() + password.len() + 1);
    let _ = write!(raw, "{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// `host[:port]` of a URL, the port only when it is not the scheme's default.
pub fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An error for an unexpected status, with the registry's OCI error codes when
/// it sent them (and a short excerpt otherwise, e.g. a proxy's HTML page).
async fn status_error(action: &str, response: Response) -> RegistryError {
    let status = response.status();
    let url = display_url(response.url());
    let body = response.text().await.unwrap_or_default();
    RegistryError::Status {
        action: action.to_owned(),
        url,
        status,
        detail: describe_error_body(&body),
    }
}

/// `": CODE: message; CODE2: message"` from an OCI error body, else a short excerpt.
pub fn describe_error_body(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(parsed) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = parsed
            .errors
            .into_iter()
            .map(|entry| {
                format!(
                    "{}: {}",
                    entry.code.unwrap_or_default(),
                    entry.message.unwrap_or_default()
                )
            })
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text = body.trim();
    if text.is_empty() || text.starts_with('<') {
        return String::new();
    }
    let excerpt: String = text.chars().take(200).collect();
    format!(": {excerpt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_is_rfc7617() {
        assert_eq!(
            basic_header("giteaAdmin", "pw"),
            "Basic Z2l0ZWFBZG1pbjpwdw=="
        );
    }

    #[test]
    fn display_url_drops_userinfo_and_state() {
        let url = Url::parse(
            "https://user:secret@r.example:8443/v2/a/b/blobs/uploads/x?_state=abc&digest=sha256:1",
        )
        .unwrap();
        let shown = display_url(&url);
        assert_eq!(shown, "https://r.example:8443/v2/a/b/blobs/uploads/x");
    }

    #[test]
    fn error_bodies_are_summarised() {
        let oci = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        assert_eq!(
            describe_error_body(oci),
            ": NAME_UNKNOWN: repository name not known to registry"
        );
        assert_eq!(
            describe_error_body("<html><body>413 Request Entity Too Large</body></html>"),
            ""
        );
        assert_eq!(describe_error_body(""), "");
        assert_eq!(describe_error_body("plain words"), ": plain words");
    }

    #[test]
    fn host_of_keeps_explicit_ports_only() {
        assert_eq!(
            host_of(&Url::parse("https://r.example/").unwrap()),
            "r.example"
        );
        assert_eq!(
            host_of(&Url::parse("https://r.example:443/").unwrap()),
            "r.example"
        );
        assert_eq!(
            host_of(&Url::parse("http://127.0.0.1:5000").unwrap()),
            "127.0.0.1:5000"
        );
    }
}
