//! Round trips through the private dockerd and the plain-HTTP registry.

use crate::support::{
    docker, docker_build, docker_image_id, noise, registry_digest, services, skopeo_inspect,
    unique, LayerFiles, Push,
};

fn files(entries: &[(&str, Vec<u8>)]) -> LayerFiles {
    entries
        .iter()
        .map(|(path, bytes)| (path.to_string(), bytes.clone()))
        .collect()
}

/// Pushes `tag` to `<plain>/team/...` and returns (pushed reference, digest).
fn push_plain(tag: &str) -> (String, String, crate::support::Run) {
    let run = Push::new()
        .args([
            "--registry",
            &format!("http://{}/team", services().plain),
            tag,
        ])
        .run();
    run.success();
    let (reference, digest) = run.pinned();
    (reference, digest, run)
}

#[test]
fn round_trip_gives_the_same_image_id_and_the_registry_digest() {
    let name = unique("roundtrip");
    let tag = format!("{name}:v1");
    let image_id = docker_build(
        &tag,
        &[
            files(&[("bin/app", noise(1, 300_000))]),
            files(&[("etc/config.txt", b"hello\n".repeat(1000))]),
        ],
    );
    let (reference, digest, _) = push_plain(&tag);
    assert_eq!(reference, format!("{}/team/{name}:v1", services().plain));
    assert_eq!(
        registry_digest(&services().plain, &format!("team/{name}"), "v1").as_deref(),
        Some(digest.as_str()),
        "stdout digest is the one the registry serves"
    );
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false"]);
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    docker(&["rmi", "-f", &tag]);
    let pulled = docker(&["pull", &reference]);
    crate::support::assert_success(&pulled, "docker pull");
    assert_eq!(
        docker_image_id(&reference),
        image_id,
        "pulled image ID equals the local one"
    );

    // The pulled image has a digest reference; pushing it goes by digest.
    let by_digest = format!(
        "{reference_without_tag}@{digest}",
        reference_without_tag = reference.trim_end_matches(":v1")
    );
    let run = Push::new()
        .args([
            "--registry",
            &format!("http://{}/mirror", services().plain),
            &by_digest,
        ])
        .run();
    run.success();
    assert_eq!(
        run.stdout.trim(),
        format!("{}/mirror/{name}@{digest}", services().plain)
    );
}

#[test]
fn multi_layer_image_with_a_layer_over_100_mb_round_trips() {
    let name = unique("big");
    let tag = format!("{name}:latest");
    let image_id = docker_build(
        &tag,
        &[
            files(&[("big.bin", noise(2, 110 * 1024 * 1024))]),
            files(&[("text/a.txt", b"abc".repeat(200_000))]),
            files(&[("small", noise(3, 10))]),
        ],
    );
    let (reference, _, run) = push_plain(&name);
    assert!(
        reference.ends_with(&format!("/team/{name}:latest")),
        "{reference}"
    );
    assert_eq!(run.stderr.matches(": pushed").count(), 3, "{}", run.stderr);
    docker(&["rmi", "-f", &tag]);
    crate::support::assert_success(&docker(&["pull", &reference]), "docker pull");
    assert_eq!(docker_image_id(&reference), image_id);
}

#[test]
fn an_image_with_an_empty_layer_round_trips() {
    // `docker import` of an empty tar makes an image whose only layer is empty.
    let name = unique("empty");
    let tag = format!("{name}:v1");
    let directory = crate::support::TempDir::new("emptytar");
    let path = directory.path().join("empty.tar");
    std::fs::write(&path, vec![0u8; 10240]).unwrap();
    crate::support::assert_success(
        &docker(&["import", &path.to_string_lossy(), &tag]),
        "docker import",
    );
    let image_id = docker_image_id(&tag);
    let layers = docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &tag,
    ]);
    assert_eq!(String::from_utf8_lossy(&layers.stdout).trim(), "1");
    let (reference, _, _) = push_plain(&tag);
    docker(&["rmi", "-f", &tag]);
    crate::support::assert_success(&docker(&["pull", &reference]), "docker pull");
    assert_eq!(docker_image_id(&reference), image_id);
}

#[test]
fn a_layer_already_in_the_registry_is_skipped_not_uploaded_again() {
    let name = unique("shared");
    let base = files(&[("base.bin", noise(4, 2_000_000))]);
    docker_build(&format!("{name}:one"), std::slice::from_ref(&base));
    docker_build(
        &format!("{name}:two"),
        &[base, files(&[("top.txt", b"top".to_vec())])],
    );
    let cache = crate::support::TempDir::new("shared-cache");
    let registry = format!("http://{}/team", services().plain);
    let first = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry, &format!("{name}:one")])
        .run();
    first.success();
    let second = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry, &format!("{name}:two")])
        .run();
    second.success();
    assert_eq!(
        second.stderr.matches(": exists").count(),
        1,
        "{}",
        second.stderr
    );
    assert_eq!(
        second.stderr.matches(": pushed").count(),
        1,
        "{}",
        second.stderr
    );
    let (reference, _) = second.pinned();
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false"]);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    // Pushing the same image again exports nothing: every blob exists.
    let third = Push::new()
        .cache(cache.path())
        .args(["--registry", &registry, &format!("{name}:two")])
        .run();
    third.success();
    assert_eq!(
        third.stderr.matches(": exists").count(),
        2,
        "{}",
        third.stderr
    );
    assert_eq!(third.pinned().1, second.pinned().1, "same manifest digest");
}

#[test]
fn to_sets_the_destination_repository_and_tag() {
    let name = unique("dest");
    let tag = format!("{name}:v1");
    docker_build(&tag, &[files(&[("f", b"dest".to_vec())])]);
    let run = Push::new()
        .args([
            "--registry",
            &format!("http://{}", services().plain),
            "--to",
            &format!("tools/{name}-renamed:v9"),
            &tag,
        ])
        .run();
    run.success();
    let (reference, digest) = run.pinned();
    assert_eq!(
        reference,
        format!("{}/tools/{name}-renamed:v9", services().plain)
    );
    assert_eq!(
        registry_digest(&services().plain, &format!("tools/{name}-renamed"), "v9").as_deref(),
        Some(digest.as_str())
    );
}
