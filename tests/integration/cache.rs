//! The layer cache: unchanged images push without an export, cross-repository
//! mounts, and a stale or corrupt cache only costs time.

use crate::support::fake_daemon::{FakeDaemon, FakeImage};
use crate::support::layouts::{self, LayerInput};
use crate::support::{
    docker, docker_build, docker_image_id, noise, services, skopeo_inspect, unique, Push, TempDir,
};

fn registry(namespace: &str) -> String {
    format!("http://{}/{namespace}", services().plain)
}

#[test]
fn an_unchanged_image_pushes_again_without_any_export() {
    let name = unique("noexport");
    let layers = vec![
        LayerInput::from_files(&[("a", &layouts::pseudo_random_bytes(41, 200_000))]),
        LayerInput::from_files(&[("b", b"second layer".as_slice())]),
    ];
    let fixture = layouts::docker25_classic(&[&format!("{name}:v1")], &layers, "linux", "amd64");
    let directory = TempDir::new("noexport");
    let daemon = FakeDaemon::start(
        &directory.path().join("fake.sock"),
        vec![FakeImage {
            names: vec![format!("{name}:v1")],
            inspect: fixture.inspect.clone(),
            archive: fixture.archive.clone(),
        }],
    )
    .unwrap();
    let cache = TempDir::new("noexport-cache");
    let push = || {
        Push::new()
            .cache(cache.path())
            .env("DOCKER_HOST", daemon.docker_host())
            .args(["--registry", &registry("team"), &format!("{name}:v1")])
            .run()
    };
    let first = push();
    first.success();
    assert_eq!(daemon.export_requests(), 1);
    let second = push();
    second.success();
    assert_eq!(
        daemon.export_requests(),
        1,
        "the second push asked for no export"
    );
    assert_eq!(
        second.stderr.matches(": exists").count(),
        2,
        "{}",
        second.stderr
    );
    assert_eq!(first.pinned(), second.pinned());
}

#[test]
fn a_cache_pointing_at_deleted_blobs_still_pushes_correctly() {
    let name = unique("stale");
    let tag = format!("{name}:v1");
    let image_id = docker_build(&tag, &[vec![("data".to_owned(), noise(42, 500_000))]]);
    let cache = TempDir::new("stale-cache");
    let first = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry("team"), &tag])
        .run();
    first.success();
    let (reference, _) = first.pinned();
    let layers = skopeo_inspect(&reference, &["--tls-verify=false"])["Layers"].clone();
    for layer in layers.as_array().unwrap() {
        let url = format!(
            "http://{}/v2/team/{name}/blobs/{}",
            services().plain,
            layer.as_str().unwrap()
        );
        let deleted = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
                &url,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&deleted.stdout),
            "202",
            "blob deleted"
        );
    }
    let second = Push::new()
        .cache(cache.path())
        .args([
            "--registry",
            &registry("team"),
            "--to",
            &format!("team/{name}:v2"),
            &tag,
        ])
        .run();
    second.success();
    assert!(
        second.stderr.contains(": pushed"),
        "the layer was uploaded again: {}",
        second.stderr
    );
    let (reference, _) = second.pinned();
    docker(&["rmi", "-f", &tag]);
    crate::support::assert_success(&docker(&["pull", &reference]), "docker pull");
    assert_eq!(docker_image_id(&reference), image_id);
}

#[test]
fn a_corrupt_cache_file_is_ignored_with_a_warning() {
    let name = unique("corrupt");
    let tag = format!("{name}:v1");
    docker_build(&tag, &[vec![("data".to_owned(), noise(43, 1000))]]);
    let cache = TempDir::new("corrupt-cache");
    let file = cache
        .path()
        .join("idpbuilder-push")
        .join(format!("{}.json", services().plain.replace(':', "_")));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"{ this is not json").unwrap();
    let run = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry("team"), &tag])
        .run();
    run.success()
        .stderr_contains("warning: ignoring the corrupt layer cache");
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(
        rewritten.contains("\"layers\""),
        "the cache was rewritten: {rewritten}"
    );
}

#[test]
fn layers_in_another_repository_are_mounted_not_uploaded() {
    let name = unique("mount");
    let tag = format!("{name}:v1");
    docker_build(&tag, &[vec![("data".to_owned(), noise(44, 300_000))]]);
    let cache = TempDir::new("mount-cache");
    Push::new()
        .cache(cache.path())
        .args(["--registry", &registry("first"), &tag])
        .run()
        .success();
    let second = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry("second"), &tag])
        .run();
    second.success().stderr_contains(": mounted");
    assert!(!second.stderr.contains(": pushed"), "{}", second.stderr);
    let (reference, digest) = second.pinned();
    assert_eq!(
        skopeo_inspect(&reference, &["--tls-verify=false"])["Digest"],
        digest.as_str()
    );
}
