//! Requests to the Kubernetes API for `Cluster`: bounded in time, bodies kept
//! as text (never logged, since Secrets pass through), and kube's errors sorted
//! into the cases a user can act on.

use kube::api::{GetParams, ListParams};
use serde_json::Value;

use super::error::{Action, ClusterError};
use super::Cluster;

/// A failed request: 404 is left to the caller, which knows what is missing.
pub(super) enum Failure {
    NotFound {
        /// The answer named the object (a missing object rather than a missing type).
        object_named: bool,
    },
    Error(ClusterError),
}

impl Cluster {
    pub(super) async fn get_json(
        &self,
        action: &Action,
        path: &str,
        name: Option<&str>,
    ) -> Result<Value, Failure> {
        let text = self.get_text(action, path, name).await?;
        serde_json::from_str(&text).map_err(|error| {
            Failure::Error(self.response_error(action, &format!("not JSON: {error}")))
        })
    }

    /// GET `path/name`, or a list of `path` without a name, within the timeout.
    /// The body is returned as text and never logged (Secrets pass through here).
    pub(super) async fn get_text(
        &self,
        action: &Action,
        path: &str,
        name: Option<&str>,
    ) -> Result<String, Failure> {
        let builder = kube::core::Request::new(path);
        let request = match name {
            Some(name) => builder.get(name, &GetParams::default()),
            None => builder.list(&ListParams::default()),
        }
        .map_err(|error| Failure::Error(self.response_error(action, &error.to_string())))?;
        let started = std::time::Instant::now();
        let shown = format!("{} {}", request.method(), request.uri().path());
        let outcome = tokio::time::timeout(self.timeout, self.client.request_text(request)).await;
        // The trace names the request and how it ended, never the body.
        let ended = match &outcome {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(kube::Error::Api(status))) => format!("{} {}", status.code, status.reason),
            Ok(Err(_)) => "failed".to_owned(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::debug!(
            "kube -> {shown} ({}): {ended} in {} ms",
            self.context,
            started.elapsed().as_millis()
        );
        match outcome {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(error)) => Err(self.classify(action, error)),
            Err(_elapsed) => Err(Failure::Error(ClusterError::Unreachable {
                context: self.context.clone(),
                server: self.server.clone(),
                timed_out: Some(self.timeout),
                kubectl: self.kubectl.clone(),
                source: None,
            })),
        }
    }

    fn classify(&self, action: &Action, error: kube::Error) -> Failure {
        let context = self.context.clone();
        let server = self.server.clone();
        let kubectl = self.kubectl.clone();
        let error = match error {
            kube::Error::Api(status) => match status.code {
                404 => {
                    return Failure::NotFound {
                        object_named: status
                            .details
                            .as_ref()
                            .is_some_and(|details| !details.name.is_empty()),
                    }
                }
                401 => ClusterError::Unauthorized {
                    context,
                    server,
                    action: Box::new(action.clone()),
                    kubectl,
                },
                403 => ClusterError::Forbidden {
                    context,
                    action: Box::new(action.clone()),
                    message: status.message.clone(),
                    kubectl,
                },
                code => ClusterError::ApiStatus {
                    context,
                    server,
                    action: Box::new(action.clone()),
                    code,
                    message: status.message.clone(),
                },
            },
            kube::Error::Auth(_) => ClusterError::Authentication {
                context,
                kubectl,
                timed_out: None,
                source: Some(Box::new(error)),
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                let chain = crate::error::chain_text(&error);
                if chain.contains("invalid peer certificate") {
                    ClusterError::ApiServerCertificate {
                        context,
                        server,
                        kubectl,
                        source: Box::new(error),
                    }
                } else {
                    ClusterError::Unreachable {
                        context,
                        server,
                        // hyper-timeout's connect and read timeouts.
                        timed_out: chain
                            .contains("deadline has elapsed")
                            .then_some(self.timeout),
                        kubectl,
                        source: Some(Box::new(error)),
                    }
                }
            }
            other => ClusterError::Response {
                context,
                server,
                action: Box::new(action.clone()),
                detail: crate::error::chain_text(&other),
            },
        };
        Failure::Error(error)
    }

    pub(super) fn response_error(&self, action: &Action, detail: &str) -> ClusterError {
        ClusterError::Response {
            context: self.context.clone(),
            server: self.server.clone(),
            action: Box::new(action.clone()),
            detail: detail.to_owned(),
        }
    }
}
