//! `--compression zstd`: an OCI manifest whose layers are zstd frames that
//! decompress to the image's diffIDs, readable by Podman; the cache keeps gzip
//! and zstd blobs of a layer apart; levels are checked per algorithm.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::support::fake_daemon::{FakeDaemon, FakeImage};
use crate::support::layouts::{self, LayerInput};
use crate::support::{
    assert_success, docker, docker_build, noise, podman, services, skopeo_raw_manifest, unique,
    Push, TempDir,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn registry(namespace: &str) -> String {
    format!("http://{}/{namespace}", services().plain)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob of the plain registry, fetched with curl.
fn blob(repository: &str, digest: &str) -> Vec<u8> {
    let output = std::process::Command::new("curl")
        .args([
            "-sSf",
            &format!("http://{}/v2/{repository}/blobs/{digest}", services().plain),
        ])
        .output()
        .expect("curl runs");
    assert_success(&output, "curl blob");
    output.stdout
}

fn media_types(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

fn layer_digests(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn zstd_push_is_an_oci_image_of_zstd_frames_that_podman_pulls_to_the_same_id() {
    let name = unique("zstd");
    let tag = format!("{name}:v1");
    // The first layer spans several 1 MiB blocks: several frames in one blob.
    let image_id = docker_build(
        &tag,
        &[
            vec![("bin/app".to_owned(), noise(71, 2_500_000))],
            vec![("etc/motd".to_owned(), b"compress me\n".repeat(50_000))],
        ],
    );
    let inspected = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &tag,
    ]);
    assert_success(&inspected, "docker image inspect");
    let diff_ids: Vec<String> = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(diff_ids.len(), 2);

    let run = Push::new()
        .args([
            "--registry",
            &registry("team"),
            "--compression",
            "zstd",
            "-o",
            "json",
            &tag,
        ])
        .run();
    run.success();
    let result: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(result["mediaType"], OCI_MANIFEST, "{result}");
    let (reference, digest) = result["reference"]
        .as_str()
        .unwrap()
        .split_once('@')
        .unwrap();
    assert_eq!(result["digest"], digest);

    let manifest = skopeo_raw_manifest(reference, &["--tls-verify=false"]);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(
        manifest["config"]["digest"],
        image_id.as_str(),
        "the config is the local one, byte for byte"
    );
    assert_eq!(media_types(&manifest), [ZSTD_LAYER, ZSTD_LAYER]);
    let repository = format!("team/{name}");
    for ((layer, digest), diff_id) in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(layer_digests(&manifest))
        .zip(&diff_ids)
    {
        let bytes = blob(&repository, &digest);
        assert_eq!(sha256(&bytes), digest);
        assert_eq!(layer["size"], bytes.len() as u64);
        assert!(bytes.starts_with(&ZSTD_MAGIC), "{digest} is not zstd");
        let mut tar = Vec::new();
        zstd::stream::read::Decoder::new(bytes.as_slice())
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(&sha256(&tar), diff_id, "{digest} decompresses to the layer");
    }

    let pulled = podman(&["pull", "-q", "--tls-verify=false", reference]);
    assert_success(&pulled, "podman pull");
    let id = podman(&["image", "inspect", "--format", "{{.Id}}", reference]);
    assert_success(&id, "podman image inspect");
    assert_eq!(
        format!("sha256:{}", String::from_utf8_lossy(&id.stdout).trim()),
        image_id,
        "Podman's image ID of the pulled zstd image is the source image ID"
    );
    let _ = podman(&["rmi", "-f", reference]);
}

#[test]
fn gzip_and_zstd_pushes_never_reuse_each_others_cached_layers() {
    let name = unique("zstdcache");
    let layers = vec![
        LayerInput::from_files(&[("a", &layouts::pseudo_random_bytes(72, 300_000))]),
        LayerInput::from_files(&[("b", b"second layer".repeat(100).as_slice())]),
    ];
    let fixture = layouts::docker25_classic(&[&format!("{name}:v1")], &layers, "linux", "amd64");
    let directory = TempDir::new("zstdcache");
    let daemon = FakeDaemon::serving(
        &directory,
        vec![FakeImage::of(&format!("{name}:v1"), &fixture)],
    );
    let cache = TempDir::new("zstdcache-cache");
    let push = |compression: &str, tag: &str| {
        let run = Push::new()
            .cache(cache.path())
            .env("DOCKER_HOST", daemon.docker_host())
            .args([
                "--registry",
                &registry("team"),
                "--to",
                &format!("team/{name}:{tag}"),
                "--compression",
                compression,
                &format!("{name}:v1"),
            ])
            .run();
        run.success();
        let (reference, _) = run.pinned();
        (
            run,
            skopeo_raw_manifest(&reference, &["--tls-verify=false"]),
        )
    };

    let (_, gzip) = push("gzip", "gzip");
    assert_eq!(gzip["mediaType"], DOCKER_MANIFEST);
    assert_eq!(media_types(&gzip), [GZIP_LAYER, GZIP_LAYER]);
    assert_eq!(daemon.export_requests(), 1);

    // Same repository, same cache: the gzip blobs are there and cached, but a
    // zstd push must export and upload its own.
    let (second, zstd) = push("zstd", "zstd");
    assert_eq!(zstd["mediaType"], OCI_MANIFEST);
    assert_eq!(media_types(&zstd), [ZSTD_LAYER, ZSTD_LAYER]);
    assert_eq!(daemon.export_requests(), 2, "the zstd push exported");
    assert_eq!(
        second.stderr.matches(": pushed").count(),
        2,
        "{}",
        second.stderr
    );
    for digest in layer_digests(&zstd) {
        assert!(!layer_digests(&gzip).contains(&digest), "{digest} reused");
    }
    assert_eq!(zstd["config"]["digest"], gzip["config"]["digest"]);

    // Unchanged: the zstd entries are cache hits, nothing is exported.
    let (third, again) = push("zstd", "zstd");
    assert_eq!(
        daemon.export_requests(),
        2,
        "the third push exported nothing"
    );
    assert_eq!(
        third.stderr.matches(": exists").count(),
        2,
        "{}",
        third.stderr
    );
    assert_eq!(layer_digests(&again), layer_digests(&zstd));

    // The gzip entries were kept next to the zstd ones.
    let (fourth, gzip_again) = push("gzip", "gzip");
    assert_eq!(
        daemon.export_requests(),
        2,
        "the gzip entries are still cached"
    );
    assert_eq!(
        fourth.stderr.matches(": exists").count(),
        2,
        "{}",
        fourth.stderr
    );
    assert_eq!(layer_digests(&gzip_again), layer_digests(&gzip));
}

#[test]
fn a_level_outside_the_algorithms_range_is_a_usage_error() {
    // Against an address nothing listens on: a valid level gets as far as the registry.
    let attempt = |environment: &[(&str, &str)], flags: &[&str]| {
        let mut push = Push::new();
        for (key, value) in environment {
            push = push.env(key, value);
        }
        push.args(["--registry", "http://127.0.0.1:9"])
            .args(flags)
            .arg("img")
            .run()
    };
    let usage = |run: &crate::support::Run, range: &str| {
        run.failure(1)
            .stderr_contains("--compression-level 20")
            .stderr_contains(range)
            .stderr_contains("hint:");
    };
    let zstd = attempt(&[], &["--compression", "zstd", "--compression-level", "20"]);
    usage(&zstd, "out of range for zstd: allowed 1..=19");
    // The algorithm from the environment variable decides the range too.
    let from_environment = attempt(
        &[("IDPBUILDER_PUSH_COMPRESSION", "zstd")],
        &["--compression-level", "20"],
    );
    usage(&from_environment, "1..=19");
    let gzip = attempt(&[], &["--compression-level", "20"]);
    usage(&gzip, "out of range for gzip: allowed 1..=12");
    let valid = attempt(&[], &["--compression", "zstd", "--compression-level", "19"]);
    assert!(
        !valid.stderr.contains("--compression-level"),
        "{}",
        valid.stderr
    );
}
