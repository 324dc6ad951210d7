//! The YAML in `manifests/`: the Localbuild CRD is upstream's plus `ociPush.enabled` and nothing
//! else, the example patch enables exactly that flag, and the RBAC grants exactly what the
//! plugin reads. Needs no services.
//!
//! `manifests/localbuild-crd.yaml` is cnoe-io/idpbuilder's
//! `pkg/controllers/resources/idpbuilder.cnoe.io_localbuilds.yaml` (at bef38e6, Dec 2025) with
//! one block added: `diff` against upstream shows only the `ociPush` lines.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{json, Value};

fn manifest_text(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn manifest(name: &str) -> Value {
    serde_saphyr::from_str(&manifest_text(name))
        .unwrap_or_else(|error| panic!("manifests/{name} is not valid YAML: {error}"))
}

fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("expected a mapping, got {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

const SPEC_SCHEMA: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";

fn package_configs_properties(crd: &Value) -> &Value {
    crd.pointer(&format!("{SPEC_SCHEMA}/packageConfigs/properties"))
        .expect("the CRD has spec.packageConfigs.properties")
}

#[test]
fn crd_declares_oci_push_enabled_as_boolean() {
    let crd = manifest("localbuild-crd.yaml");
    let oci_push = &package_configs_properties(&crd)["ociPush"];
    assert_eq!(oci_push["type"], "object");
    assert_eq!(oci_push["properties"]["enabled"]["type"], "boolean");
    assert!(oci_push["description"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    // Nothing but a described boolean: no defaults, no preserve-unknown-fields.
    assert_eq!(
        keys(oci_push),
        BTreeSet::from(["description", "properties", "type"])
    );
    assert_eq!(keys(&oci_push["properties"]), BTreeSet::from(["enabled"]));
    assert_eq!(
        keys(&oci_push["properties"]["enabled"]),
        BTreeSet::from(["description", "type"])
    );
}

#[test]
fn crd_is_upstream_apart_from_oci_push() {
    let mut crd = manifest("localbuild-crd.yaml");
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"],
        json!({
            "annotations": {"controller-gen.kubebuilder.io/version": "v0.15.0"},
            "name": "localbuilds.idpbuilder.cnoe.io",
        })
    );
    assert_eq!(crd["spec"]["group"], "idpbuilder.cnoe.io");
    assert_eq!(
        crd["spec"]["names"],
        json!({"kind": "Localbuild", "listKind": "LocalbuildList", "plural": "localbuilds", "singular": "localbuild"})
    );
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let versions = crd["spec"]["versions"]
        .as_array()
        .expect("versions is a list");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["name"], "v1alpha1");
    assert_eq!(
        (&versions[0]["served"], &versions[0]["storage"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(versions[0]["subresources"], json!({"status": {}}));

    crd.pointer_mut(&format!("{SPEC_SCHEMA}/packageConfigs/properties"))
        .and_then(Value::as_object_mut)
        .and_then(|properties| properties.remove("ociPush"))
        .expect("ociPush is present");
    let spec = crd.pointer(SPEC_SCHEMA).expect("spec schema");
    assert_eq!(
        keys(spec),
        BTreeSet::from(["buildCustomization", "packageConfigs"])
    );
    assert_eq!(
        keys(&spec["packageConfigs"]["properties"]),
        BTreeSet::from([
            "argoPackageConfigs",
            "customPackageDirs",
            "customPackageFiles",
            "customPackageUrls",
            "embeddedArgoApplicationsPackageConfigs",
            "packageCustomization",
        ])
    );
    assert_eq!(
        keys(&spec["buildCustomization"]["properties"]),
        BTreeSet::from([
            "host",
            "ingressHost",
            "port",
            "protocol",
            "selfSignedCert",
            "staticPassword",
            "usePathRouting",
        ])
    );
    assert_eq!(
        spec["buildCustomization"]["properties"]["port"]["type"],
        "string"
    );
    let status = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties")
        .expect("status schema");
    assert_eq!(
        keys(status),
        BTreeSet::from(["ArgoCD", "gitea", "nginx", "observedGeneration"])
    );
    assert_eq!(
        keys(&status["gitea"]["properties"]),
        BTreeSet::from([
            "adminUserSecretNameecret",
            "adminUserSecretNamespace",
            "available",
            "externalURL",
            "internalURL",
        ])
    );
    // Upstream prunes unknown fields; the extension must not loosen that anywhere.
    assert!(!manifest_text("localbuild-crd.yaml").contains("x-kubernetes-preserve-unknown-fields"));
}

#[test]
fn enable_patch_sets_only_the_flag_and_shows_the_command() {
    let patch = manifest("enable-oci-push.yaml");
    assert_eq!(
        patch,
        json!({"spec": {"packageConfigs": {"ociPush": {"enabled": true}}}})
    );
    let text = manifest_text("enable-oci-push.yaml");
    assert!(text.contains(
        "kubectl patch localbuild localdev --type merge --patch-file manifests/enable-oci-push.yaml"
    ));
}

/// One permission: (namespace or "" for cluster-wide, API group, resource, resource name or
/// "" for any, verb).
type Grant = (String, String, String, String, String);

fn rbac_documents() -> Vec<Value> {
    serde_saphyr::from_multiple(&manifest_text("rbac.yaml"))
        .unwrap_or_else(|error| panic!("manifests/rbac.yaml is not valid YAML: {error}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn grants(role: &Value) -> Vec<Grant> {
    let namespace = role["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut grants = Vec::new();
    for rule in role["rules"].as_array().expect("a role has rules") {
        let allowed = BTreeSet::from(["apiGroups", "resources", "resourceNames", "verbs"]);
        assert!(
            keys(rule).is_subset(&allowed),
            "unexpected rule fields in {rule}"
        );
        let names = match strings(&rule["resourceNames"]) {
            names if names.is_empty() => vec![String::new()],
            names => names,
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for name in &names {
                    for verb in strings(&rule["verbs"]) {
                        let grant = (
                            namespace.into(),
                            group.clone(),
                            resource.clone(),
                            name.clone(),
                            verb,
                        );
                        grants.push(grant);
                    }
                }
            }
        }
    }
    grants
}

#[test]
fn rbac_grants_exactly_what_the_plugin_reads() {
    let documents = rbac_documents();
    let roles: Vec<&Value> = documents
        .iter()
        .filter(|document| matches!(document["kind"].as_str(), Some("ClusterRole" | "Role")))
        .collect();
    let kinds: Vec<(&str, &str)> = roles
        .iter()
        .map(|role| {
            let namespace = role["metadata"]["namespace"].as_str().unwrap_or_default();
            (role["kind"].as_str().unwrap(), namespace)
        })
        .collect();
    assert_eq!(
        kinds,
        [("ClusterRole", ""), ("Role", "gitea"), ("Role", "default")]
    );
    for role in &roles {
        assert_eq!(role["apiVersion"], "rbac.authorization.k8s.io/v1");
        assert_eq!(role["metadata"]["name"], "idpbuilder-push");
    }

    let granted: Vec<Grant> = roles.iter().flat_map(|role| grants(role)).collect();
    let grant = |namespace: &str, group: &str, resource: &str, name: &str, verb: &str| -> Grant {
        (
            namespace.into(),
            group.into(),
            resource.into(),
            name.into(),
            verb.into(),
        )
    };
    let expected = BTreeSet::from([
        grant("", "idpbuilder.cnoe.io", "localbuilds", "", "get"),
        grant("", "idpbuilder.cnoe.io", "localbuilds", "", "list"),
        grant(
            "",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "localbuilds.idpbuilder.cnoe.io",
            "get",
        ),
        grant("gitea", "", "secrets", "gitea-credential", "get"),
        grant("default", "", "secrets", "idpbuilder-cert", "get"),
    ]);
    assert_eq!(granted.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(granted.len(), expected.len(), "no grant is repeated");
    assert!(
        granted.iter().all(
            |(_, group, resource, name, verb)| ![group, resource, name, verb]
                .iter()
                .any(|part| part.contains('*'))
        ),
        "no wildcards"
    );
}

#[test]
fn rbac_bindings_point_at_the_roles_in_their_namespaces() {
    let documents = rbac_documents();
    let bindings: Vec<&Value> = documents
        .iter()
        .filter(|document| {
            matches!(
                document["kind"].as_str(),
                Some("ClusterRoleBinding" | "RoleBinding")
            )
        })
        .collect();
    let shapes: Vec<(&str, &str, &str)> = bindings
        .iter()
        .map(|binding| {
            (
                binding["kind"].as_str().unwrap(),
                binding["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default(),
                binding["roleRef"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            ("ClusterRoleBinding", "", "ClusterRole"),
            ("RoleBinding", "gitea", "Role"),
            ("RoleBinding", "default", "Role")
        ]
    );
    for binding in bindings {
        assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(binding["roleRef"]["name"], "idpbuilder-push");
        let subjects = binding["subjects"].as_array().expect("subjects");
        assert!(!subjects.is_empty());
        for subject in subjects {
            assert!(matches!(
                subject["kind"].as_str(),
                Some("User" | "Group" | "ServiceAccount")
            ));
        }
    }
    assert_eq!(
        documents.len(),
        6,
        "three roles and three bindings, nothing else"
    );
}
