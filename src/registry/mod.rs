//! The registry side of a push: one repository of one OCI registry, spoken to over
//! our own HTTP stack (reqwest + rustls) so that bodies stream, trust can be
//! configured precisely and credentials never leave the registry's origin.
//!
//! oci-client needs whole blobs in memory and cannot pin a certificate, so only its
//! manifest types are used (see `crate::manifest`); the wire protocol lives here.

pub mod auth;
pub mod error;
pub mod retry;
pub mod tls;
mod trace;
pub mod upload;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use url::Url;

pub use auth::{Challenge, Credentials};
use error::status_error;
pub use error::{describe_error_body, display_url, RegistryError};
pub use retry::RetryPolicy;
pub use tls::{TlsError, Trust};
pub use upload::{Mount, UploadSession};

/// Told about every retry, so the user sees what failed and what happens next.
#[derive(Clone)]
pub struct RetryNotifier(pub Arc<dyn Fn(&str) + Send + Sync>);

impl fmt::Debug for RetryNotifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("RetryNotifier")
    }
}

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
    /// Longest silence while waiting for response bytes, and the allowance
    /// for a request body to make progress.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// Bytes per PATCH request of a blob upload.
    pub chunk_size: u64,
    pub on_retry: Option<RetryNotifier>,
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
    /// Upload sessions opened and not yet closed, cancelled on interruption.
    open_uploads: std::sync::Mutex<Vec<Url>>,
}

/// Whether a request may be retried after a transient failure: only when
/// sending it twice does no harm.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    Safe,
    Never,
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
            open_uploads: std::sync::Mutex::new(Vec::new()),
        };
        registry.authenticate(None).await?;
        Ok(registry)
    }

    pub fn repository(&self) -> &str {
        &self.config.repository
    }

    /// Bytes per PATCH request.
    pub fn chunk_size(&self) -> usize {
        usize::try_from(self.config.chunk_size)
            .unwrap_or(usize::MAX)
            .max(1)
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
        let action = "checking the registry API (/v2/)";
        let response = self
            .execute(action, Method::GET, &url, Replay::Safe, false, |request| {
                request
            })
            .await
            .map_err(|error| match error {
                RegistryError::Request { url, source, .. } => {
                    RegistryError::Unreachable { url, source }
                }
                other => other,
            })?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(Some(challenge_of(&response).ok_or_else(|| {
                self.unauthorized(
                    "the registry answered 401 without a usable WWW-Authenticate challenge",
                )
            })?)),
            status if status.is_success() => Ok(None),
            _ => Err(status_error(action, response).await),
        }
    }

    /// Asks the token realm for a push token for our repository.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<SecretString, RegistryError> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            unreachable!("fetch_token is only called for bearer challenges")
        };
        let action = "requesting a registry token";
        let mut url = Url::parse(realm).map_err(|error| RegistryError::Protocol {
            action: action.into(),
            detail: format!("token realm {realm:?} is not a URL: {error}"),
        })?;
        if self.config.base_url.scheme() == "https" && url.scheme() != "https" {
            return Err(RegistryError::Protocol {
                action: action.into(),
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
            let scope = format!("repository:{}:pull,push", self.config.repository);
            query.append_pair("scope", &scope);
        }
        let credentials = self.config.credentials.clone();
        let response =
            self.execute(action, Method::GET, &url, Replay::Safe, false, |request| {
                match &credentials {
                    Credentials::Basic { username, password } => {
                        request.basic_auth(username, Some(password.expose_secret()))
                    }
                    _ => request,
                }
            })
            .await?;
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
                action: action.into(),
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
                    action: action.into(),
                    url: display_url(&url),
                    source,
                })?;
        body.into_token().ok_or_else(|| RegistryError::Protocol {
            action: action.into(),
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

    fn notify_retry(&self, text: &str) {
        match &self.config.on_retry {
            Some(notifier) => (notifier.0)(text),
            None => tracing::warn!("{text}"),
        }
    }

    /// Sends one request (rebuilt by `build` for each attempt), retrying
    /// transient failures per the policy when `replay` allows it. Answers,
    /// including 4xx, are returned to the caller.
    async fn execute(
        &self,
        action: &str,
        method: Method,
        url: &Url,
        replay: Replay,
        authorize: bool,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let policy = self.config.retry;
        let mut retry = 0;
        loop {
            let mut request = build(self.http.request(method.clone(), url.clone()));
            let header = if authorize {
                self.authorization(url).await
            } else {
                None
            };
            let authorized = header.is_some();
            if let Some(header) = header {
                request = request.header(AUTHORIZATION, header);
            }
            let request = request.build().map_err(|source| RegistryError::Request {
                action: action.to_owned(),
                url: display_url(url),
                source,
            })?;
            trace::request(&method, url, request.headers(), authorized);
            let started = Instant::now();
            let (failure, retry_after) = match self.http.execute(request).await {
                Ok(response) => {
                    trace::response(&method, url, response.status(), response.headers(), started);
                    if !retry::is_transient_status(response.status()) || replay == Replay::Never {
                        return Ok(response);
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(retry::parse_retry_after);
                    let status = response.status();
                    if retry >= policy.max_retries {
                        return Err(RegistryError::GaveUp {
                            action: action.to_owned(),
                            attempts: retry + 1,
                            last: format!("{} answered {status}", display_url(url)),
                        });
                    }
                    (
                        format!("{} answered {status}", display_url(url)),
                        retry_after,
                    )
                }
                Err(source) => {
                    let text = crate::error::chain_text(&source);
                    trace::failure(&method, url, &text, started);
                    if !retry::is_transient_error(&source) || replay == Replay::Never {
                        return Err(RegistryError::Request {
                            action: action.to_owned(),
                            url: display_url(url),
                            source,
                        });
                    }
                    if retry >= policy.max_retries {
                        return Err(RegistryError::GaveUp {
                            action: action.to_owned(),
                            attempts: retry + 1,
                            last: text,
                        });
                    }
                    (text, None)
                }
            };
            retry += 1;
            let wait = policy.delay(retry, retry_after);
            self.notify_retry(&format!(
                "{action}: {failure}; retry {retry} of {} in {:.1} s",
                policy.max_retries,
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
        }
    }

    /// `execute` with authorisation: a 401 re-authenticates once (an expired
    /// token) and the request is sent again; a second 401 is final.
    async fn send(
        &self,
        action: &str,
        method: Method,
        url: &Url,
        replay: Replay,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        loop {
            let response = self
                .execute(action, method.clone(), url, replay, true, &build)
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            self.reauthenticate_once(
                &mut reauthenticated,
                challenge_of(&response),
                &format!("{action}: {} answered 401", display_url(url)),
            )
            .await?;
        }
    }

    /// After a 401: authenticates again (an expired token), unless that was
    /// already done for this request or the token was given and cannot be
    /// renewed; then the 401 is final, described by `detail`.
    async fn reauthenticate_once(
        &self,
        done: &mut bool,
        challenge: Option<Challenge>,
        detail: &str,
    ) -> Result<(), RegistryError> {
        if *done || matches!(self.config.credentials, Credentials::Bearer(_)) {
            return Err(self.unauthorized(detail));
        }
        *done = true;
        tracing::debug!("{detail}: authenticating again");
        self.authenticate(challenge).await
    }

    /// `HEAD` a blob: its size when the repository has it.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<u64>, RegistryError> {
        let url = self.blob_url(digest);
        let action = format!("checking blob {digest}");
        let response = self
            .send(&action, Method::HEAD, &url, Replay::Safe, |request| request)
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

    /// `HEAD` a manifest by tag or digest, accepting `accept` (media types):
    /// the digest the registry reports for it, `None` when the repository has
    /// no such manifest (404) or the answer names no digest.
    pub async fn manifest_digest(
        &self,
        reference: &str,
        accept: &[&str],
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!(
            "/v2/{}/manifests/{reference}",
            self.config.repository
        ));
        let separator = if reference.contains(':') { '@' } else { ':' };
        let action = format!(
            "checking the manifest {}/{}{separator}{reference}",
            self.host(),
            self.config.repository
        );
        let accept = accept.join(", ");
        let response = self
            .send(&action, Method::HEAD, &url, Replay::Safe, |request| {
                request.header(ACCEPT, accept.as_str())
            })
            .await?;
        match response.status() {
            status if status.is_success() => Ok(response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&action, response).await),
        }
    }

    /// Uploads a small blob (the image config) in one request.
    pub async fn upload_small_blob(
        &self,
        digest: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let mut session = self.start_upload().await?;
        let length = bytes.len() as u64;
        self.append(&mut session, bytes, &format!("uploading blob {digest}"))
            .await?;
        self.finish_upload(session, digest, length).await
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
            .send(&action, Method::PUT, &url, Replay::Safe, |request| {
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
                detail: format!(
                    "the registry stored digest {digest}, but the manifest sent has {expected_digest}"
                ),
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
        .read_timeout(config.idle_timeout)
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
