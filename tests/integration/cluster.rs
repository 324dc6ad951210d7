//! Zero-config pushes into an idpbuilder cluster, against the Kubernetes API
//! test server and the Gitea-like registry (self-signed CA:TRUE certificate,
//! mixed-case admin user).

use crate::support::kube_server::{
    cert_secret, gitea_secret, localbuild, localbuild_crd, secret, ClientAuth, KubeServer,
    KubeState,
};
use crate::support::{docker_build, noise, skopeo_inspect, unique, Push, TempDir};

/// The Gitea-like registry of the test services.
struct Gitea {
    port: String,
    cert_pem: String,
    user: String,
    password: String,
}

fn gitea() -> Gitea {
    crate::support::services();
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh"))
    };
    Gitea {
        port: var("IDPB_TEST_GITEA_PORT"),
        cert_pem: std::fs::read_to_string(var("IDPB_TEST_GITEA_CERT"))
            .expect("the Gitea-like certificate"),
        user: var("IDPB_TEST_GITEA_USER"),
        password: var("IDPB_TEST_GITEA_PASSWORD"),
    }
}

/// A cluster whose Localbuild `localdev` points at the Gitea-like registry
/// (path routing on localhost, as `idpbuilder create --use-path-routing`).
fn cluster_state(gitea: &Gitea, oci_push: Option<bool>, crd_knows_flag: bool) -> KubeState {
    let mut state = KubeState {
        localbuilds: vec![localbuild(
            "localdev",
            "localhost",
            &gitea.port,
            true,
            oci_push,
            None,
        )],
        crd: Some(localbuild_crd(crd_knows_flag)),
        ..KubeState::default()
    };
    state.insert_secret(gitea_secret(&gitea.user, &gitea.password, "unused-token"));
    state.insert_secret(cert_secret(&gitea.cert_pem));
    state
}

struct Rig {
    server: KubeServer,
    directory: TempDir,
}

impl Rig {
    fn start(state: KubeState) -> Rig {
        let server = KubeServer::start(state, ClientAuth::BearerToken(unique("kube-token")))
            .expect("kube server");
        let directory = TempDir::new("kube");
        server
            .write_kubeconfig(&directory.path().join("config"), "kind-localdev")
            .unwrap();
        Rig { server, directory }
    }

    fn kubeconfig(&self) -> String {
        self.directory
            .path()
            .join("config")
            .to_string_lossy()
            .into_owned()
    }

    /// A push with this cluster as the current context, and no flags at all.
    fn push(&self) -> Push {
        Push::new().env("KUBECONFIG", self.kubeconfig())
    }
}

fn image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let tag = format!("{}:v1", unique("clusterapp"));
            docker_build(&tag, &[vec![("app".to_owned(), noise(61, 100_000))]]);
            tag
        })
        .clone()
}

#[test]
fn no_flags_at_all_pushes_to_the_clusters_gitea_with_its_credentials_and_certificate() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    let run = rig.push().arg(image()).run();
    run.success()
        .stderr_contains("Pods in the cluster (context kind-localdev) pull it as");
    let (reference, digest) = run.pinned();
    let name = image().replace(":v1", "");
    assert_eq!(
        reference,
        format!("localhost:{}/giteaadmin/{name}:v1", gitea.port),
        "lowercase owner"
    );
    let creds = format!("{}:{}", gitea.user, gitea.password);
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false", "--creds", &creds]);
    assert_eq!(inspected["Digest"], digest.as_str());
    let requests = rig.server.requests();
    for expected in [
        "GET /apis/idpbuilder.cnoe.io/v1alpha1/localbuilds",
        "GET /api/v1/namespaces/gitea/secrets/gitea-credential",
        "GET /api/v1/namespaces/default/secrets/idpbuilder-cert",
    ] {
        assert!(
            requests.iter().any(|request| request.starts_with(expected)),
            "{expected} in {requests:?}"
        );
    }
}

#[test]
fn the_clusters_certificate_is_pinned_not_skipped() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    // Another certificate in the Secret: the registry's must then be refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    state.insert_secret(cert_secret(&other.cert.pem()));
    let rig = Rig::start(state);
    rig.push()
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("pinned certificate")
        .stderr_contains("hint:");
}

#[test]
fn a_disabled_flag_refuses_the_push_before_touching_the_daemon() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(false), true));
    rig.push()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("kubectl patch localbuild localdev --type merge -p '{\"spec\":{\"packageConfigs\":{\"ociPush\":{\"enabled\":true}}}}'");
}

#[test]
fn a_crd_without_the_flag_says_to_apply_the_manifests() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, None, false));
    let run = rig
        .push()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg(image())
        .run();
    run.failure(1)
        .stderr_contains("manifests/")
        .stderr_contains("idpbuilder create");
}

#[test]
fn an_explicit_registry_still_enforces_the_flag() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(false), true));
    let services = crate::support::services();
    rig.push()
        .args(["--registry", &format!("http://{}/team", services.plain)])
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("ociPush");
}

#[test]
fn several_localbuilds_need_a_choice() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    let first = state.localbuilds.remove(0);
    let renamed = |name: &str| {
        let mut object = first.clone();
        object["metadata"]["name"] = name.into();
        object
    };
    state.localbuilds = vec![renamed("alpha"), renamed("beta")];
    let rig = Rig::start(state);
    rig.push()
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("alpha")
        .stderr_contains("beta")
        .stderr_contains("--localbuild");
    rig.push()
        .args(["--localbuild", "beta"])
        .arg(image())
        .run()
        .success();
}

#[test]
fn credentials_precedence_is_flags_then_environment_then_the_secret() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    // Each level may be absent, right or wrong; the highest present one wins.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Level {
        Absent,
        Right,
        Wrong,
    }
    let levels = [Level::Absent, Level::Right, Level::Wrong];
    for flags in levels {
        for environment in levels {
            let mut push = rig.push().env("IDPBUILDER_PUSH_RETRY_BASE_MS", "1");
            let password = |level: Level| match level {
                Level::Right => gitea.password.clone(),
                _ => "wrong-password".to_owned(),
            };
            if flags != Level::Absent {
                push = push.args(["--username", &gitea.user, "--password-stdin"]);
                push = push.stdin(format!("{}\n", password(flags)).as_bytes());
            }
            if environment != Level::Absent {
                push = push
                    .env("IDPBUILDER_REGISTRY_USERNAME", &gitea.user)
                    .env("IDPBUILDER_REGISTRY_PASSWORD", password(environment));
            }
            let winner = [flags, environment]
                .into_iter()
                .find(|level| *level != Level::Absent)
                .unwrap_or(Level::Right);
            let run = push.arg(image()).run();
            eprintln!(
                "flags {flags:?}, environment {environment:?}: exit {}",
                run.code
            );
            if winner == Level::Right {
                run.success();
            } else {
                run.failure(1).stderr_contains("rejected");
            }
        }
    }
}

#[test]
fn forbidden_secret_names_the_verb_and_resource() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    state
        .forbidden
        .push("/api/v1/namespaces/gitea/secrets/gitea-credential".to_owned());
    let rig = Rig::start(state);
    let run = rig.push().arg(image()).run();
    run.failure(1)
        .stderr_contains("secrets")
        .stderr_contains("gitea")
        .stderr_contains("hint:");
    assert!(run.stderr.contains("get"), "{}", run.stderr);
}

#[test]
fn an_unreachable_cluster_is_skipped_with_a_registry_and_an_error_without() {
    let directory = TempDir::new("unreachable");
    let kubeconfig = directory.path().join("config");
    let server =
        KubeServer::start(KubeState::default(), ClientAuth::BearerToken("t".into())).unwrap();
    server
        .write_kubeconfig_with_unreachable(&kubeconfig, "alive", "kind-gone", "kind-gone")
        .unwrap();
    let services = crate::support::services();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--registry", &format!("http://{}/team", services.plain)])
        .arg(image())
        .run()
        .success()
        .stderr_contains("No idpbuilder cluster was consulted");
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("kind-gone")
        .stderr_contains("hint:");
}

#[test]
fn context_selects_between_two_contexts() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    let kubeconfig = rig.directory.path().join("two-contexts");
    rig.server
        .write_kubeconfig_with_unreachable(&kubeconfig, "kind-localdev", "kind-gone", "kind-gone")
        .unwrap();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--context", "kind-localdev"])
        .arg(image())
        .run()
        .success();
    Push::new()
        .args([
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--context",
            "no-such-context",
        ])
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("no-such-context");
}

#[test]
fn secret_data_never_appears_in_any_output() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    let sentinel = format!("secret-sentinel-{}", unique("s"));
    state.insert_secret(secret(
        "gitea",
        "gitea-credential",
        &[
            ("username", &gitea.user),
            ("password", &sentinel),
            ("token", &sentinel),
        ],
    ));
    let rig = Rig::start(state);
    for level in ["debug", "info"] {
        let run = rig.push().args(["--log-level", level]).arg(image()).run();
        run.failure(1);
        assert!(
            !run.stderr.contains(&sentinel) && !run.stdout.contains(&sentinel),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn the_certificate_falls_back_to_the_localbuild_spec() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    state
        .secrets
        .remove(&("default".to_owned(), "idpbuilder-cert".to_owned()));
    state.localbuilds = vec![localbuild(
        "localdev",
        "localhost",
        &gitea.port,
        true,
        Some(true),
        Some(&gitea.cert_pem),
    )];
    let rig = Rig::start(state);
    rig.push().arg(image()).run().success();
}

#[test]
fn forbidden_listing_falls_back_to_localdev() {
    let gitea = gitea();
    let mut state = cluster_state(&gitea, Some(true), true);
    state
        .forbidden
        .push("/apis/idpbuilder.cnoe.io/v1alpha1/localbuilds".to_owned());
    let rig = Rig::start(state);
    rig.push().arg(image()).run().success();
}

#[test]
fn a_rejected_kube_credential_is_an_error_not_an_absent_cluster() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    let kubeconfig = rig.directory.path().join("wrong-token");
    let mut entry = rig.server.kubeconfig_entry("kind-localdev");
    entry.user = crate::support::kube_server::KubeconfigUser::Token("wrong-token".into());
    crate::support::kube_server::write_kubeconfig_multi(&kubeconfig, &[entry], "kind-localdev")
        .unwrap();
    let services = crate::support::services();
    let run = Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--registry", &format!("http://{}/team", services.plain)])
        .arg(image())
        .run();
    run.failure(1).stderr_contains("hint:");
    assert!(
        !run.stderr.contains("No idpbuilder cluster was consulted"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_silent_api_server_is_given_up_on_quickly() {
    let silent = crate::support::kube_server::SilentEndpoint::start().unwrap();
    let server =
        KubeServer::start(KubeState::default(), ClientAuth::BearerToken("t".into())).unwrap();
    let mut entry = server.kubeconfig_entry("kind-silent");
    entry.server = silent.url();
    let directory = TempDir::new("silent");
    let kubeconfig = directory.path().join("config");
    crate::support::kube_server::write_kubeconfig_multi(&kubeconfig, &[entry], "kind-silent")
        .unwrap();
    let services = crate::support::services();
    let started = std::time::Instant::now();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--registry", &format!("http://{}/team", services.plain)])
        .arg(image())
        .run()
        .success()
        .stderr_contains("No idpbuilder cluster was consulted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded wait"
    );
}

#[test]
fn an_api_server_signed_by_another_ca_is_not_trusted() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    let other =
        KubeServer::start(KubeState::default(), ClientAuth::BearerToken("t".into())).unwrap();
    let mut entry = rig.server.kubeconfig_entry("kind-localdev");
    entry.ca_pem = other.ca_pem().to_owned();
    let kubeconfig = rig.directory.path().join("other-ca");
    crate::support::kube_server::write_kubeconfig_multi(&kubeconfig, &[entry], "kind-localdev")
        .unwrap();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("kind-localdev");
}

#[test]
fn kubeconfig_lists_merge_skip_missing_files_and_the_first_current_context_wins() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    // First file: a dead cluster as current context; second: the live one.
    let first = rig.directory.path().join("first");
    let entry = rig.server.unreachable_entry("kind-gone");
    crate::support::kube_server::write_kubeconfig_multi(&first, &[entry], "kind-gone").unwrap();
    let second = rig.directory.path().join("config");
    let list = format!(
        "/nonexistent/kubeconfig:{}:{}",
        first.display(),
        second.display()
    );
    Push::new()
        .env("KUBECONFIG", &list)
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("kind-gone");
    Push::new()
        .env("KUBECONFIG", &list)
        .args(["--context", "kind-localdev"])
        .arg(image())
        .run()
        .success();
}

#[test]
fn an_unknown_context_lists_the_available_ones_and_a_stale_current_one_is_absent() {
    let gitea = gitea();
    let rig = Rig::start(cluster_state(&gitea, Some(true), true));
    let kubeconfig = rig.directory.path().join("stale");
    let entry = rig.server.kubeconfig_entry("kind-localdev");
    crate::support::kube_server::write_kubeconfig_multi(&kubeconfig, &[entry], "gone").unwrap();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--context", "kind-nope"])
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains("\"kind-nope\" not found")
        .stderr_contains("available contexts: kind-localdev");
    let services = crate::support::services();
    Push::new()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--registry", &format!("http://{}/team", services.plain)])
        .arg(image())
        .run()
        .success()
        .stderr_contains("No idpbuilder cluster was consulted");
}

#[test]
fn a_broken_kubeconfig_names_the_file() {
    let directory = TempDir::new("broken-kubeconfig");
    let broken = directory.path().join("broken");
    std::fs::write(&broken, "clusters: [unclosed\n").unwrap();
    Push::new()
        .args(["--kubeconfig", &broken.to_string_lossy()])
        .arg(image())
        .run()
        .failure(1)
        .stderr_contains(&broken.to_string_lossy());
}
