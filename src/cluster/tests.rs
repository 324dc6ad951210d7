//! Which cluster errors count as "no cluster to consult". Behaviour against
//! an API server is tested by driving the binary against the Kubernetes API
//! test server (tests/integration/cluster.rs): unit tests stay pure.

use super::*;

#[test]
fn absent_means_no_cluster_to_consult() {
    let absent = [
        ClusterError::NoKubeconfig {
            tried: "~/.kube/config".into(),
        },
        ClusterError::NoCurrentContext {
            kubeconfig: "k".into(),
            available: vec![],
        },
        ClusterError::NoLocalbuildType {
            context: "c".into(),
        },
        ClusterError::NoLocalbuilds {
            context: "c".into(),
        },
    ];
    for error in absent {
        assert!(error.is_absent(), "{error:?}");
        assert!(error.hint().unwrap().contains("--registry"), "{error:?}");
    }
    let forbidden = ClusterError::Forbidden {
        context: "c".into(),
        action: Box::new(Action::get_localbuild("localdev")),
        message: "no".into(),
        kubectl: Kubectl::default(),
    };
    assert!(!forbidden.is_absent());
}
