//! The same push from Podman's Docker-compatible API.

use crate::support::{noise, podman_build, services, skopeo_raw_manifest, unique, Push};

#[test]
fn podman_image_found_as_localhost_name_round_trips() {
    let services = services();
    let name = unique("podman");
    let image_id = podman_build(
        &format!("{name}:v1"),
        &[
            vec![("one".to_owned(), noise(9, 400_000))],
            vec![("two".to_owned(), b"two".repeat(1000))],
        ],
    );
    let run = Push::new()
        .env("DOCKER_HOST", &services.podman_host)
        .args([
            "--registry",
            &format!("http://{}/team", services.plain),
            &format!("{name}:v1"),
        ])
        .run();
    run.success();
    let (reference, _) = run.pinned();
    assert_eq!(reference, format!("{}/team/{name}:v1", services.plain));
    let manifest = skopeo_raw_manifest(&reference, &["--tls-verify=false"]);
    assert_eq!(
        manifest["config"]["digest"],
        image_id.as_str(),
        "config digest is Podman's image ID"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
}
