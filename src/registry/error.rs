//! Registry errors: what failed, against which URL, and the hint that fixes it.
//! URLs in messages never carry userinfo or query strings.

use reqwest::{Response, StatusCode};
use url::Url;

use super::tls::TlsError;

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
    #[error("{action} failed after {attempts} attempts; last: {last}")]
    GaveUp {
        action: String,
        attempts: u32,
        last: String,
    },
    #[error("{action}: the registry or a proxy in front of it refused a request of {bytes} bytes ({url} answered 413)")]
    TooLarge {
        action: String,
        url: String,
        bytes: u64,
    },
    #[error("{action}: the registry lost the upload session ({url})")]
    SessionLost { action: String, url: String },
}

impl RegistryError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unreachable { source, .. } | RegistryError::Request { source, .. } => {
                let chain = crate::error::chain_text(source);
                if chain.contains("pinned certificate") {
                    Some("the registry presented another certificate than the idpbuilder cluster's: --registry may name a host that is not the cluster's Gitea, or the cluster was recreated since (check `kubectl get localbuild`)".to_owned())
                } else if chain.contains("certificate") || chain.contains("UnknownIssuer") {
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
                    Some("the registry or a proxy in front of it refused the request size; use --chunk-size smaller than its limit".to_owned())
                } else if *status == StatusCode::NOT_FOUND && detail.contains("NAME_UNKNOWN") {
                    Some("the repository's namespace must exist and be lowercase (Gitea: the owner, e.g. giteaadmin)".to_owned())
                } else if *status == StatusCode::FORBIDDEN || detail.contains("DENIED") {
                    Some("the user may not push to this repository; check the namespace (--to, or the path of --registry)".to_owned())
                } else {
                    None
                }
            }
            RegistryError::Protocol { .. } => None,
            RegistryError::TooLarge { .. } => Some(
                "use --chunk-size smaller than its limit (ingress-nginx in front of idpbuilder's Gitea allows 1024 MiB)".to_owned(),
            ),
            RegistryError::GaveUp { .. } => Some(
                "the registry kept failing; check its health and the network, then run the push again (blobs already uploaded are skipped)".to_owned(),
            ),
            RegistryError::SessionLost { .. } => Some(
                "the registry restarted or expired the upload; run the push again (blobs already uploaded are skipped)".to_owned(),
            ),
        }
    }

    /// True when the registry rejected the credentials (exit code mapping, tests).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }
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

/// An error for an unexpected status, with the registry's OCI error codes when
/// it sent them (and a short excerpt otherwise, e.g. a proxy's HTML page).
pub(super) async fn status_error(action: &str, response: Response) -> RegistryError {
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
    fn display_url_drops_userinfo_and_state() {
        let url = Url::parse(
            "https://user:secret@r.example:8443/v2/a/b/blobs/uploads/x?_state=abc&digest=sha256:1",
        )
        .unwrap();
        assert_eq!(
            display_url(&url),
            "https://r.example:8443/v2/a/b/blobs/uploads/x"
        );
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
    fn gave_up_says_how_many_attempts() {
        let error = RegistryError::GaveUp {
            action: "checking blob sha256:ab".into(),
            attempts: 11,
            last: "503 Service Unavailable".into(),
        };
        assert!(error.to_string().contains("after 11 attempts"), "{error}");
        assert!(error.hint().is_some());
    }
}
