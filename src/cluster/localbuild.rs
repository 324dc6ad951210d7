//! The Localbuild resource as this program needs it (pure: from its JSON), and
//! the choice of which Localbuild to use.

use serde_json::Value;
use url::Url;

use super::error::{ClusterError, SecretRef};

/// idpbuilder's default `--name`.
pub const DEFAULT_LOCALBUILD: &str = "localdev";

/// Where idpbuilder keeps the Gitea admin credentials when the status does not say.
pub const DEFAULT_CREDENTIALS_SECRET: (&str, &str) = ("gitea", "gitea-credential");

/// What a push needs to know about one idpbuilder installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Localbuild {
    pub name: String,
    /// The Gitea registry, path `/`: `https://gitea.cnoe.localtest.me:8443/`, or
    /// `https://cnoe.localtest.me:8443/` with path routing (the ingress routes
    /// `/v2` at the root even though Gitea's pages are under `/gitea`).
    pub registry_url: Url,
    /// Gitea as idpbuilder reports it (`status.gitea.externalURL`, or built the
    /// same way from the spec), e.g. `https://cnoe.localtest.me:8443/gitea`.
    pub gitea_url: Url,
    /// `spec.packageConfigs.ociPush.enabled`; absent is false.
    pub oci_push_enabled: bool,
    pub path_routing: bool,
    /// The Secret holding `username`, `password`, `token`.
    pub credentials_secret: SecretRef,
    /// `spec.buildCustomization.selfSignedCert` (PEM), when set.
    pub self_signed_cert: Option<String>,
}

impl Localbuild {
    /// `host[:port]` of the registry as it appears in image references
    /// (`gitea.cnoe.localtest.me:8443`).
    pub fn registry_host(&self) -> String {
        let host = self.registry_url.host_str().unwrap_or_default();
        match self.registry_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Whether the registry is served over TLS (idpbuilder's `--protocol http`
    /// makes it plain HTTP, with no certificate to pin).
    pub fn uses_tls(&self) -> bool {
        self.registry_url.scheme() == "https"
    }
}

/// Reads a Localbuild object (`idpbuilder.cnoe.io/v1alpha1`, as served by the API).
/// The registry comes from `status.gitea.externalURL` when idpbuilder has
/// filled it in, otherwise from `spec.buildCustomization` the way idpbuilder
/// builds Gitea's URL (`util.GiteaBaseUrl`): `<protocol>://gitea.<host>:<port>`,
/// or `<protocol>://<host>:<port>/gitea` with path routing. `ingressHost` only
/// names an extra proxy in front of the ingress and is not used, as upstream.
pub fn parse_localbuild(value: &Value) -> Result<Localbuild, ClusterError> {
    let name = text(value, "/metadata/name").ok_or_else(|| ClusterError::InvalidLocalbuild {
        name: String::new(),
        detail: "the object has no metadata.name".to_owned(),
    })?;
    let invalid = |detail: String| ClusterError::InvalidLocalbuild {
        name: name.to_owned(),
        detail,
    };
    let build = value.pointer("/spec/buildCustomization");
    let path_routing = build
        .and_then(|build| build.get("usePathRouting"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let gitea_url = match text(value, "/status/gitea/externalURL") {
        Some(external) => Url::parse(external)
            .ok()
            .filter(|url| url.host_str().is_some())
            .ok_or_else(|| {
                invalid(format!(
                    "status.gitea.externalURL {external:?} is not a URL"
                ))
            })?,
        None => gitea_url_from_spec(build, path_routing).map_err(invalid)?,
    };
    let mut registry_url = gitea_url.clone();
    registry_url.set_path("/");
    registry_url.set_query(None);
    registry_url.set_fragment(None);
    let credentials_secret = SecretRef {
        namespace: text(value, "/status/gitea/adminUserSecretNamespace")
            .unwrap_or(DEFAULT_CREDENTIALS_SECRET.0)
            .to_owned(),
        // `adminUserSecretNameecret` is the real wire key (a typo upstream);
        // the spelling a fix would introduce is read too.
        name: text(value, "/status/gitea/adminUserSecretNameecret")
            .or_else(|| text(value, "/status/gitea/adminUserSecretName"))
            .unwrap_or(DEFAULT_CREDENTIALS_SECRET.1)
            .to_owned(),
    };
    Ok(Localbuild {
        name: name.to_owned(),
        registry_url,
        gitea_url,
        oci_push_enabled: value
            .pointer("/spec/packageConfigs/ociPush/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        path_routing,
        credentials_secret,
        self_signed_cert: text(value, "/spec/buildCustomization/selfSignedCert").map(str::to_owned),
    })
}

/// idpbuilder's `util.GiteaBaseUrl`, with `idpbuilder create`'s defaults for
/// fields left empty.
fn gitea_url_from_spec(build: Option<&Value>, path_routing: bool) -> Result<Url, String> {
    let field = |key: &str, default: &'static str| {
        build
            .and_then(|build| build.get(key))
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .unwrap_or(default)
            .to_owned()
    };
    let protocol = field("protocol", "https");
    let host = field("host", "cnoe.localtest.me");
    let port = field("port", "8443");
    let text = if path_routing {
        format!("{protocol}://{host}:{port}/gitea")
    } else {
        format!("{protocol}://gitea.{host}:{port}")
    };
    Url::parse(&text)
        .ok()
        .filter(|url| url.host_str().is_some())
        .ok_or_else(|| {
            format!("spec.buildCustomization gives the registry URL {text:?}, which is not a URL")
        })
}

/// A non-empty string at a JSON pointer.
fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// Which Localbuild of a listed set to use when none was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    Use(usize),
    None,
    Several,
}

/// The only Localbuild, else the one named `localdev` (idpbuilder's default),
/// else none can be chosen.
pub fn choose_localbuild(names: &[String]) -> Choice {
    match names {
        [] => Choice::None,
        [_] => Choice::Use(0),
        _ => names
            .iter()
            .position(|name| name == DEFAULT_LOCALBUILD)
            .map_or(Choice::Several, Choice::Use),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Localbuild as `idpbuilder create` leaves it (v0.10, subdomain routing).
    fn localdev() -> Value {
        json!({
            "apiVersion": "idpbuilder.cnoe.io/v1alpha1",
            "kind": "Localbuild",
            "metadata": {
                "name": "localdev",
                "uid": "8e0d6f5c-2f77-4c3f-9f3e-0c1b2b8b2e11",
                "resourceVersion": "1234",
                "generation": 1,
                "creationTimestamp": "2025-11-02T10:00:00Z",
                "annotations": {"cnoe.io/cli-start-time": "2025-11-02T10:00:00Z"}
            },
            "spec": {
                "buildCustomization": {
                    "protocol": "https",
                    "host": "cnoe.localtest.me",
                    "ingressHost": "cnoe.localtest.me",
                    "port": "8443",
                    "selfSignedCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                },
                "packageConfigs": {
                    "argoPackageConfigs": {"enabled": true},
                    "embeddedArgoApplicationsPackageConfigs": {"enabled": true}
                }
            },
            "status": {
                "observedGeneration": 1,
                "ArgoCD": {"available": true, "appsCreated": true},
                "nginx": {"available": true},
                "gitea": {
                    "available": true,
                    "externalURL": "https://gitea.cnoe.localtest.me:8443",
                    "internalURL": "https://gitea.cnoe.localtest.me:8443",
                    "adminUserSecretNameecret": "gitea-credential",
                    "adminUserSecretNamespace": "gitea"
                }
            }
        })
    }

    #[test]
    fn subdomain_routing_from_the_status() {
        let localbuild = parse_localbuild(&localdev()).unwrap();
        assert_eq!(localbuild.name, "localdev");
        assert_eq!(
            localbuild.registry_url.as_str(),
            "https://gitea.cnoe.localtest.me:8443/"
        );
        assert_eq!(localbuild.registry_host(), "gitea.cnoe.localtest.me:8443");
        assert!(localbuild.uses_tls());
        assert!(!localbuild.oci_push_enabled);
        assert!(!localbuild.path_routing);
        assert_eq!(
            localbuild.credentials_secret.to_string(),
            "gitea/gitea-credential"
        );
        assert!(localbuild
            .self_signed_cert
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn subdomain_routing_from_the_spec_without_status() {
        let mut value = localdev();
        value.as_object_mut().unwrap().remove("status");
        value["spec"]["buildCustomization"]["host"] = json!("idp.example.test");
        value["spec"]["buildCustomization"]["port"] = json!("443");
        let localbuild = parse_localbuild(&value).unwrap();
        // Port 443 is https' default and drops out of the URL, as in references.
        assert_eq!(
            localbuild.registry_url.as_str(),
            "https://gitea.idp.example.test/"
        );
        assert_eq!(localbuild.registry_host(), "gitea.idp.example.test");
        assert_eq!(
            localbuild.credentials_secret.to_string(),
            "gitea/gitea-credential"
        );
    }

    #[test]
    fn path_routing_puts_the_registry_at_the_root() {
        let mut value = localdev();
        value["spec"]["buildCustomization"]["usePathRouting"] = json!(true);
        value["status"]["gitea"]["externalURL"] = json!("https://cnoe.localtest.me:8443/gitea");
        let localbuild = parse_localbuild(&value).unwrap();
        assert!(localbuild.path_routing);
        assert_eq!(
            localbuild.gitea_url.as_str(),
            "https://cnoe.localtest.me:8443/gitea"
        );
        assert_eq!(
            localbuild.registry_url.as_str(),
            "https://cnoe.localtest.me:8443/"
        );

        value.as_object_mut().unwrap().remove("status");
        let localbuild = parse_localbuild(&value).unwrap();
        assert_eq!(
            localbuild.gitea_url.as_str(),
            "https://cnoe.localtest.me:8443/gitea"
        );
        assert_eq!(
            localbuild.registry_url.as_str(),
            "https://cnoe.localtest.me:8443/"
        );
    }

    #[test]
    fn the_status_url_wins_over_the_spec() {
        let mut value = localdev();
        value["spec"]["buildCustomization"]["host"] = json!("ignored.test");
        value["status"]["gitea"]["externalURL"] = json!("https://gitea.proxy.test:9443");
        let localbuild = parse_localbuild(&value).unwrap();
        assert_eq!(
            localbuild.registry_url.as_str(),
            "https://gitea.proxy.test:9443/"
        );
    }

    #[test]
    fn plain_http_and_empty_spec_defaults() {
        let value = json!({
            "metadata": {"name": "bare"},
            "spec": {"buildCustomization": {"protocol": "http", "port": "8080"}}
        });
        let localbuild = parse_localbuild(&value).unwrap();
        assert_eq!(
            localbuild.registry_url.as_str(),
            "http://gitea.cnoe.localtest.me:8080/"
        );
        assert!(!localbuild.uses_tls());
        assert_eq!(localbuild.self_signed_cert, None);
        let minimal = parse_localbuild(&json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(
            minimal.registry_url.as_str(),
            "https://gitea.cnoe.localtest.me:8443/"
        );
    }

    #[test]
    fn the_flag_absent_false_and_true() {
        let mut value = localdev();
        assert!(!parse_localbuild(&value).unwrap().oci_push_enabled);
        value["spec"]["packageConfigs"]["ociPush"] = json!({});
        assert!(!parse_localbuild(&value).unwrap().oci_push_enabled);
        value["spec"]["packageConfigs"]["ociPush"]["enabled"] = json!(false);
        assert!(!parse_localbuild(&value).unwrap().oci_push_enabled);
        value["spec"]["packageConfigs"]["ociPush"]["enabled"] = json!(true);
        assert!(parse_localbuild(&value).unwrap().oci_push_enabled);
        value["spec"]["packageConfigs"]["ociPush"]["enabled"] = json!("true");
        assert!(!parse_localbuild(&value).unwrap().oci_push_enabled);
    }

    #[test]
    fn the_secret_comes_from_the_typo_key() {
        let mut value = localdev();
        value["status"]["gitea"]["adminUserSecretNameecret"] = json!("admin-login");
        value["status"]["gitea"]["adminUserSecretNamespace"] = json!("git");
        let secret = parse_localbuild(&value).unwrap().credentials_secret;
        assert_eq!(secret.to_string(), "git/admin-login");

        // The correctly spelled key is not what idpbuilder writes, but is read
        // when the typo key is absent.
        let gitea = value["status"]["gitea"].as_object_mut().unwrap();
        gitea.remove("adminUserSecretNameecret");
        gitea.remove("adminUserSecretNamespace");
        gitea.insert("adminUserSecretName".into(), json!("fixed"));
        let secret = parse_localbuild(&value).unwrap().credentials_secret;
        assert_eq!(secret.to_string(), "gitea/fixed");
    }

    #[test]
    fn errors_name_the_localbuild() {
        let mut value = localdev();
        value["status"]["gitea"]["externalURL"] = json!("not a url");
        let error = parse_localbuild(&value).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Localbuild "localdev" cannot be read: status.gitea.externalURL "not a url" is not a URL"#
        );
        let error = parse_localbuild(&json!({"kind": "Localbuild"})).unwrap_err();
        assert!(error.to_string().contains("metadata.name"), "{error}");
    }

    #[test]
    fn choosing_without_a_name() {
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_localbuild(&names(&[])), Choice::None);
        assert_eq!(choose_localbuild(&names(&["dev"])), Choice::Use(0));
        assert_eq!(
            choose_localbuild(&names(&["a", "localdev"])),
            Choice::Use(1)
        );
        assert_eq!(choose_localbuild(&names(&["a", "b"])), Choice::Several);
    }
}
