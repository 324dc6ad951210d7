//! The two `docker save` layouts no daemon installable here produces (Docker
//! >= 25 classic store, containerd store), served by the fake daemon.

use crate::support::fake_daemon::{FakeDaemon, FakeImage};
use crate::support::layouts::{self, LayerInput};
use crate::support::{
    docker, docker_image_id, services, skopeo_raw_manifest, unique, Push, TempDir,
};

fn layers(seed: u64) -> Vec<LayerInput> {
    vec![
        LayerInput::from_files(&[("bin/tool", &layouts::pseudo_random_bytes(seed, 300_000))]),
        LayerInput::from_files(&[("etc/motd", b"hello from a layer\n".repeat(100).as_slice())]),
    ]
}

fn serve(
    directory: &TempDir,
    name: &str,
    inspect: serde_json::Value,
    archive: Vec<u8>,
) -> FakeDaemon {
    FakeDaemon::start(
        &directory.path().join("fake.sock"),
        vec![FakeImage {
            names: vec![format!("{name}:v1")],
            inspect,
            archive,
        }],
    )
    .expect("the fake daemon starts")
}

#[test]
fn docker25_oci_layout_round_trips_with_the_same_image_id() {
    let name = unique("d25");
    let fixture =
        layouts::docker25_classic(&[&format!("{name}:v1")], &layers(11), "linux", "amd64");
    let directory = TempDir::new("d25");
    let daemon = serve(
        &directory,
        &name,
        fixture.inspect.clone(),
        fixture.archive.clone(),
    );
    let run = Push::new()
        .env("DOCKER_HOST", daemon.docker_host())
        .args([
            "--registry",
            &format!("http://{}/team", services().plain),
            &format!("{name}:v1"),
        ])
        .run();
    run.success();
    assert_eq!(daemon.export_requests(), 1);
    let (reference, _) = run.pinned();
    let manifest = skopeo_raw_manifest(&reference, &["--tls-verify=false"]);
    assert_eq!(manifest["config"]["digest"], fixture.config_digest.as_str());
    let pushed_layers = manifest["layers"].as_array().unwrap();
    assert_eq!(pushed_layers.len(), 2);
    assert!(pushed_layers
        .iter()
        .all(|layer| layer["mediaType"].as_str().unwrap().ends_with("gzip")));
    // The real daemon pulls it and sees the image ID the fixture has.
    crate::support::assert_success(&docker(&["pull", &reference]), "docker pull");
    assert_eq!(docker_image_id(&reference), fixture.config_digest);
}

#[test]
fn containerd_store_pushes_blobs_and_manifest_as_stored() {
    let name = unique("ctrd");
    let fixture = layouts::containerd_store(
        &[&format!("{name}:v1")],
        &[
            ("linux", "amd64", layers(21)),
            ("linux", "arm64", layers(22)),
        ],
        0,
    );
    let directory = TempDir::new("ctrd");
    let daemon = serve(
        &directory,
        &name,
        fixture.inspect.clone(),
        fixture.archive.clone(),
    );
    let registry = format!("http://{}/team", services().plain);
    for (platform_flag, platform) in [
        (None, &fixture.platforms[0]),
        (Some("linux/arm64"), &fixture.platforms[1]),
    ] {
        let mut push = Push::new()
            .env("DOCKER_HOST", daemon.docker_host())
            .args(["--registry", &registry]);
        if let Some(flag) = platform_flag {
            push = push.args(["--platform", flag, "--to", &format!("team/{name}:arm")]);
        }
        let run = push.arg(format!("{name}:v1")).run();
        run.success();
        let (reference, digest) = run.pinned();
        assert_eq!(
            digest, platform.manifest_digest,
            "the stored manifest is pushed verbatim"
        );
        let manifest = skopeo_raw_manifest(&reference, &["--tls-verify=false"]);
        assert_eq!(
            manifest["config"]["digest"],
            platform.config_digest.as_str()
        );
        let pushed: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["digest"].as_str().unwrap())
            .collect();
        let stored: Vec<&str> = platform
            .compressed_layers
            .iter()
            .map(|(digest, _)| digest.as_str())
            .collect();
        assert_eq!(pushed, stored, "compressed layers go without recompression");
    }
}

#[test]
fn containerd_store_refuses_an_absent_platform_listing_the_others() {
    let name = unique("ctrdplat");
    let fixture = layouts::containerd_store(
        &[&format!("{name}:v1")],
        &[("linux", "amd64", layers(31))],
        0,
    );
    let directory = TempDir::new("ctrdplat");
    let daemon = serve(
        &directory,
        &name,
        fixture.inspect.clone(),
        fixture.archive.clone(),
    );
    Push::new()
        .env("DOCKER_HOST", daemon.docker_host())
        .args([
            "--registry",
            &format!("http://{}/team", services().plain),
            "--platform",
            "linux/s390x",
        ])
        .arg(format!("{name}:v1"))
        .run()
        .failure(1)
        .stderr_contains("linux/s390x")
        .stderr_contains("linux/amd64");
}
