//! The push feature flag `spec.packageConfigs.ociPush.enabled` of a Localbuild:
//! whether the cluster's CRD knows it (the API server prunes fields its schema
//! does not declare), and the command that turns it on.

use serde_json::Value;

use super::kubectl::Kubectl;

/// The merge patch that enables pushing, as one shell word.
const ENABLE_PATCH: &str = r#"'{"spec":{"packageConfigs":{"ociPush":{"enabled":true}}}}'"#;

/// The exact command that enables the flag on `localbuild`.
pub fn patch_command(kubectl: &Kubectl, localbuild: &str) -> String {
    kubectl.command(&format!(
        "patch localbuild {} --type merge -p {ENABLE_PATCH}",
        super::kubectl::shell_quote(localbuild)
    ))
}

/// True when the Localbuild CRD (`customresourcedefinitions/localbuilds.idpbuilder.cnoe.io`
/// as JSON) keeps `spec.packageConfigs.ociPush.enabled` in its `v1alpha1` schema:
/// declared there, or below a node that preserves unknown fields.
/// Upstream idpbuilder's CRD does neither, so the flag cannot be set at all.
pub fn crd_knows_oci_push(crd: &Value) -> bool {
    let Some(versions) = crd.pointer("/spec/versions").and_then(Value::as_array) else {
        return false;
    };
    let Some(schema) = versions
        .iter()
        .find(|version| version.get("name").and_then(Value::as_str) == Some("v1alpha1"))
        .and_then(|version| version.pointer("/schema/openAPIV3Schema"))
    else {
        return false;
    };
    let mut node = schema;
    for field in ["spec", "packageConfigs", "ociPush", "enabled"] {
        match node.pointer(&format!("/properties/{field}")) {
            Some(child) => node = child,
            None => return preserves_unknown_fields(node),
        }
    }
    true
}

fn preserves_unknown_fields(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CRD as the API server returns it, with `package_configs` as the
    /// schema of `spec.packageConfigs` (upstream's, or ours with `ociPush`).
    fn crd(package_configs: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "localbuilds.idpbuilder.cnoe.io", "resourceVersion": "512"},
            "spec": {
                "group": "idpbuilder.cnoe.io",
                "names": {"kind": "Localbuild", "listKind": "LocalbuildList", "plural": "localbuilds", "singular": "localbuild"},
                "scope": "Cluster",
                "versions": [{
                    "name": "v1alpha1",
                    "served": true,
                    "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {"type": "object", "properties": {
                                "buildCustomization": {"type": "object", "properties": {
                                    "host": {"type": "string"}, "port": {"type": "string"}
                                }},
                                "packageConfigs": package_configs
                            }},
                            "status": {"type": "object"}
                        }
                    }}
                }]
            },
            "status": {"acceptedNames": {"kind": "Localbuild", "plural": "localbuilds"}}
        })
    }

    fn upstream_package_configs() -> Value {
        json!({"type": "object", "properties": {
            "argoPackageConfigs": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
            "customPackageDirs": {"type": "array", "items": {"type": "string"}}
        }})
    }

    #[test]
    fn upstream_crd_does_not_know_the_flag() {
        assert!(!crd_knows_oci_push(&crd(upstream_package_configs())));
    }

    #[test]
    fn extended_crd_knows_the_flag() {
        let mut package_configs = upstream_package_configs();
        package_configs["properties"]["ociPush"] = json!({
            "type": "object",
            "properties": {"enabled": {"type": "boolean"}}
        });
        assert!(crd_knows_oci_push(&crd(package_configs)));
    }

    #[test]
    fn oci_push_without_enabled_is_not_enough() {
        let mut package_configs = upstream_package_configs();
        package_configs["properties"]["ociPush"] = json!({"type": "object"});
        assert!(!crd_knows_oci_push(&crd(package_configs)));
    }

    #[test]
    fn preserved_unknown_fields_keep_the_flag() {
        let mut package_configs = upstream_package_configs();
        package_configs["x-kubernetes-preserve-unknown-fields"] = json!(true);
        assert!(crd_knows_oci_push(&crd(package_configs)));
    }

    #[test]
    fn other_versions_and_shapes_do_not_count() {
        let mut other_version = crd(json!({"type": "object", "properties": {
            "ociPush": {"type": "object", "properties": {"enabled": {"type": "boolean"}}}
        }}));
        other_version["spec"]["versions"][0]["name"] = json!("v1beta1");
        assert!(!crd_knows_oci_push(&other_version));
        assert!(!crd_knows_oci_push(&json!({})));
        assert!(!crd_knows_oci_push(&json!({"spec": {"versions": "x"}})));
    }

    #[test]
    fn patch_command_is_exact() {
        assert_eq!(
            patch_command(&Kubectl::default(), "localdev"),
            r#"kubectl patch localbuild localdev --type merge -p '{"spec":{"packageConfigs":{"ociPush":{"enabled":true}}}}'"#
        );
        assert_eq!(
            patch_command(&Kubectl::new(None, Some("kind-other")), "other"),
            r#"kubectl patch localbuild other --type merge -p '{"spec":{"packageConfigs":{"ociPush":{"enabled":true}}}}' --context kind-other"#
        );
    }
}
