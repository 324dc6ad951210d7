//! `-o json`: one object on stdout when the push succeeds, one `{"error": ...}`
//! object on stderr when it fails. `schema/push-result.schema.json` describes
//! both; change them together.

use std::time::Duration;

use serde::Serialize;

use crate::push::PushOutcome;

/// The success object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    /// `host/ns/name:tag@sha256:...`, the line text output prints.
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub registry: String,
    pub repository: String,
    /// Null when pushed by digest.
    pub tag: Option<String>,
    /// Bytes of the manifest, the size of the descriptor `digest` names.
    pub size: u64,
    pub layers: Vec<LayerResult>,
    pub duration_seconds: f64,
    /// The idpbuilder cluster whose registry was used, or null.
    pub cluster: Option<ClusterResult>,
    /// The reference pods in the cluster pull.
    pub in_cluster_reference: String,
}

#[derive(Debug, Serialize)]
pub struct LayerResult {
    pub digest: String,
    pub size: u64,
    /// `pushed`, `exists` or `mounted`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    pub context: String,
    pub localbuild: String,
}

impl PushResult {
    /// `in_cluster_reference` defaults to `reference`: idpbuilder's cluster
    /// resolves the registry's host name to the same Gitea.
    pub fn new(
        outcome: &PushOutcome,
        cluster: Option<ClusterResult>,
        in_cluster_reference: Option<String>,
        duration: Duration,
    ) -> PushResult {
        PushResult {
            reference: outcome.pinned.clone(),
            digest: outcome.digest.clone(),
            media_type: outcome.media_type.clone(),
            registry: outcome.registry.clone(),
            repository: outcome.repository.clone(),
            tag: outcome.tag.clone(),
            size: outcome.manifest_size,
            layers: outcome
                .layers
                .iter()
                .map(|layer| LayerResult {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    status: layer.status.as_str(),
                })
                .collect(),
            duration_seconds: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
            cluster,
            in_cluster_reference: in_cluster_reference.unwrap_or_else(|| outcome.pinned.clone()),
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The failure object: `{"error": {"message", "hint", "exitCode"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub hint: Option<String>,
    /// The process's exit code.
    pub exit_code: i32,
}

impl ErrorReport {
    pub fn new(message: &str, hint: Option<&str>, exit_code: i32) -> ErrorReport {
        ErrorReport {
            error: ErrorBody {
                message: message.to_owned(),
                hint: hint.map(str::to_owned),
                exit_code,
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::LayerStatus;
    use crate::push::LayerOutcome;

    #[test]
    fn the_result_is_camel_case_with_null_cluster_and_default_in_cluster_reference() {
        let outcome = PushOutcome {
            pinned: "127.0.0.1:5000/team/app:v1@sha256:ab".into(),
            digest: "sha256:ab".into(),
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            manifest_size: 428,
            registry: "127.0.0.1:5000".into(),
            repository: "team/app".into(),
            tag: Some("v1".into()),
            layers: vec![LayerOutcome {
                digest: "sha256:cd".into(),
                size: 12,
                status: LayerStatus::Mounted,
            }],
            exported: false,
        };
        let json: serde_json::Value = serde_json::from_str(
            &PushResult::new(&outcome, None, None, Duration::from_millis(1234)).to_json(),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "reference": "127.0.0.1:5000/team/app:v1@sha256:ab",
                "digest": "sha256:ab",
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "registry": "127.0.0.1:5000",
                "repository": "team/app",
                "tag": "v1",
                "size": 428,
                "layers": [{"digest": "sha256:cd", "size": 12, "status": "mounted"}],
                "durationSeconds": 1.234,
                "cluster": null,
                "inClusterReference": "127.0.0.1:5000/team/app:v1@sha256:ab"
            })
        );
    }

    #[test]
    fn errors_carry_the_exit_code_and_a_null_hint() {
        assert_eq!(
            ErrorReport::new("no registry given", None, 1).to_json(),
            r#"{"error":{"message":"no registry given","hint":null,"exitCode":1}}"#
        );
    }
}
