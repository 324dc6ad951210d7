//! Opt-in: a push into a real idpbuilder cluster (`idpbuilder create`, then
//! the flag enabled as the README says). Not run by scripts/test.sh, which has
//! no cluster; run it with
//!
//!     IDPB_REAL_CLUSTER=1 cargo test --test integration real_cluster -- --ignored
//!
//! It uses the current kube context and the local Docker daemon (DOCKER_HOST
//! or the default socket), builds a tiny image and pushes it with no flags.

use std::process::Command;

#[test]
#[ignore = "needs a real idpbuilder cluster: IDPB_REAL_CLUSTER=1 ... -- --ignored"]
fn push_into_a_real_idpbuilder_cluster_with_no_flags() {
    assert_eq!(
        std::env::var("IDPB_REAL_CLUSTER").as_deref(),
        Ok("1"),
        "set IDPB_REAL_CLUSTER=1 to confirm a real cluster is the current kube context"
    );
    let directory = std::env::temp_dir().join(format!("idpb-real-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(
        directory.join("hello.txt"),
        format!("hello {}\n", std::process::id()),
    )
    .unwrap();
    std::fs::write(
        directory.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\n",
    )
    .unwrap();
    let tag = format!("idpbuilder-push-e2e:{}", std::process::id());
    let build = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(&directory)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let first = Command::new(env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"))
        .arg(&tag)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let pinned = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert!(
        pinned.contains("/giteaadmin/idpbuilder-push-e2e:"),
        "{pinned}"
    );
    assert!(stderr.contains("Pods in the cluster"), "{stderr}");
    let second = Command::new(env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"))
        .arg(&tag)
        .output()
        .unwrap();
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        pinned,
        "same digest again"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains(": exists"));
    let _ = std::fs::remove_dir_all(&directory);
}
