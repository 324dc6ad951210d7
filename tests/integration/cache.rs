//! The layer cache: unchanged images push without an export, cross-repository
//! mounts, a re-push through the cached manifest, and a stale or corrupt cache
//! only costs time.

use std::path::PathBuf;

use crate::support::fake_daemon::{FakeDaemon, FakeImage};
use crate::support::layouts::{self, ImageFixture, LayerInput};
use crate::support::proxy::{Proxy, RequestRecord};
use crate::support::{
    docker, docker_build, docker_image_id, noise, registry_digest, services, skopeo_inspect,
    unique, Push, Run, TempDir,
};

fn registry(namespace: &str) -> String {
    format!("http://{}/{namespace}", services().plain)
}

/// `DELETE url` straight at the registry: the HTTP status it answered.
fn delete(url: &str) -> String {
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
            url,
        ])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
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
    let daemon = FakeDaemon::serving(
        &directory,
        vec![FakeImage::of(&format!("{name}:v1"), &fixture)],
    );
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
        assert_eq!(delete(&url), "202", "blob deleted");
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

/// Two images (`a`, `b`) in a fake daemon that counts exports, pushed to
/// `team/<name>` through a proxy that records every registry request, with a
/// cache directory shared by all runs.
struct Repush {
    name: String,
    images: [ImageFixture; 2],
    daemon: FakeDaemon,
    proxy: Proxy,
    cache: TempDir,
    _directory: TempDir,
}

impl Repush {
    fn new(prefix: &str) -> Repush {
        let name = unique(prefix);
        let fixture = |image: &str, seed: u64| {
            let layers = vec![
                LayerInput::from_files(&[("a", &layouts::pseudo_random_bytes(seed, 100_000))]),
                LayerInput::from_files(&[("b", image.as_bytes())]),
            ];
            layouts::docker25_classic(&[&format!("{name}-{image}:v1")], &layers, "linux", "amd64")
        };
        let images = [fixture("a", 61), fixture("b", 62)];
        let directory = TempDir::new(prefix);
        let daemon = FakeDaemon::serving(
            &directory,
            ["a", "b"]
                .iter()
                .zip(&images)
                .map(|(image, fixture)| FakeImage::of(&format!("{name}-{image}:v1"), fixture))
                .collect(),
        );
        Repush {
            name,
            images,
            daemon,
            proxy: Proxy::start(&services().plain).expect("the proxy starts"),
            cache: TempDir::new(&format!("{prefix}-cache")),
            _directory: directory,
        }
    }

    /// Pushes local image `image` ("a" or "b") to `team/<name>:<tag>`.
    fn push(&self, image: &str, tag: &str) -> Run {
        Push::new()
            .cache(self.cache.path())
            .env("DOCKER_HOST", self.daemon.docker_host())
            .args([
                "--registry",
                &format!("http://{}/team", self.proxy.address()),
                "--to",
                &format!("team/{}:{tag}", self.name),
                &format!("{}-{image}:v1", self.name),
            ])
            .run()
    }

    /// Registry requests from `mark` (a count of earlier requests) on.
    fn requests_since(&self, mark: usize) -> Vec<RequestRecord> {
        self.proxy.requests().split_off(mark)
    }

    fn cache_file(&self) -> PathBuf {
        self.cache
            .path()
            .join("idpbuilder-push")
            .join(format!("{}.json", self.proxy.address().replace(':', "_")))
    }

    /// The manifest digest the registry serves for `tag`, asked directly.
    fn served(&self, tag: &str) -> Option<String> {
        registry_digest(&services().plain, &format!("team/{}", self.name), tag)
    }
}

fn count(requests: &[RequestRecord], method: &str, path_part: &str) -> usize {
    requests
        .iter()
        .filter(|request| request.method == method && request.path.contains(path_part))
        .count()
}

/// Requests other than the `/v2/` probe and manifest requests.
fn others(requests: &[RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .filter(|request| request.path != "/v2/" && !request.path.contains("/manifests/"))
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

#[test]
fn a_repush_asks_one_manifest_head_and_sends_nothing() {
    let setup = Repush::new("repush");
    let first = setup.push("a", "v1");
    first.success();
    assert_eq!(setup.daemon.export_requests(), 1);

    let mark = setup.proxy.requests().len();
    let second = setup.push("a", "v1");
    second.success();
    let requests = setup.requests_since(mark);
    assert_eq!(count(&requests, "HEAD", "/manifests/"), 1, "{requests:?}");
    assert_eq!(count(&requests, "PUT", "/manifests/"), 0, "{requests:?}");
    assert_eq!(others(&requests), Vec::<String>::new(), "no blob requests");
    assert_eq!(setup.daemon.export_requests(), 1, "no export");
    assert_eq!(second.pinned(), first.pinned());
    assert_eq!(
        second.stderr.matches(": exists").count(),
        2,
        "{}",
        second.stderr
    );

    // Another tag: HEAD the tag (absent), HEAD the manifest, PUT it under the tag.
    let mark = setup.proxy.requests().len();
    let third = setup.push("a", "v2");
    third.success();
    let requests = setup.requests_since(mark);
    assert_eq!(count(&requests, "HEAD", "/manifests/"), 2, "{requests:?}");
    assert_eq!(count(&requests, "PUT", "/manifests/v2"), 1, "{requests:?}");
    assert_eq!(others(&requests), Vec::<String>::new(), "no blob requests");
    assert_eq!(setup.daemon.export_requests(), 1, "no export");
    let (_, digest) = first.pinned();
    assert_eq!(third.pinned().1, digest);
    assert_eq!(setup.served("v2"), Some(digest));
}

#[test]
fn a_tag_moved_to_another_image_is_pointed_back_with_one_put() {
    let setup = Repush::new("moved");
    let first = setup.push("a", "v1");
    first.success();
    let (_, digest_a) = first.pinned();
    let other = setup.push("b", "v1");
    other.success();
    assert_ne!(other.pinned().1, digest_a);
    assert_eq!(setup.served("v1"), Some(other.pinned().1));
    assert_eq!(setup.daemon.export_requests(), 2);

    let mark = setup.proxy.requests().len();
    let again = setup.push("a", "v1");
    again.success();
    let requests = setup.requests_since(mark);
    assert_eq!(count(&requests, "PUT", "/manifests/v1"), 1, "{requests:?}");
    assert_eq!(count(&requests, "HEAD", "/manifests/"), 2, "{requests:?}");
    assert_eq!(others(&requests), Vec::<String>::new(), "no blob requests");
    assert_eq!(setup.daemon.export_requests(), 2, "no export");
    assert_eq!(again.pinned(), first.pinned());
    assert_eq!(setup.served("v1"), Some(digest_a));
}

#[test]
fn a_cached_manifest_gone_from_the_registry_falls_back_to_a_full_push() {
    let setup = Repush::new("gone");
    let first = setup.push("a", "v1");
    first.success();
    let (_, digest) = first.pinned();
    let url = format!(
        "http://{}/v2/team/{}/manifests/{digest}",
        services().plain,
        setup.name
    );
    assert_eq!(delete(&url), "202", "manifest deleted");
    assert_eq!(setup.served("v1"), None);

    let mark = setup.proxy.requests().len();
    let again = setup.push("a", "v1");
    again.success();
    let requests = setup.requests_since(mark);
    assert!(
        count(&requests, "HEAD", "/blobs/") >= 2,
        "the full path checked the blobs: {requests:?}"
    );
    assert_eq!(count(&requests, "PUT", "/manifests/v1"), 1, "{requests:?}");
    assert_eq!(again.pinned(), first.pinned());
    assert_eq!(setup.served("v1"), Some(digest));
}

#[test]
fn a_corrupt_cached_manifest_is_ignored_with_a_warning() {
    let setup = Repush::new("badmanifest");
    let first = setup.push("a", "v1");
    first.success();
    let file = setup.cache_file();
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let repository = format!("team/{}", setup.name);
    let entry = &mut cache["images"][&setup.images[0].config_digest][&repository];
    let manifest = entry["manifest"]
        .as_str()
        .expect("a cached manifest")
        .to_owned();
    // Still a valid manifest, but no longer the bytes the digest names.
    entry["manifest"] = serde_json::Value::String(format!("{manifest} "));
    std::fs::write(&file, serde_json::to_vec(&cache).unwrap()).unwrap();

    let mark = setup.proxy.requests().len();
    let again = setup.push("a", "v1");
    again
        .success()
        .stderr_contains("warning: ignoring the corrupt entry")
        .stderr_contains(&file.display().to_string());
    assert_eq!(
        again.stderr.matches("corrupt").count(),
        1,
        "{}",
        again.stderr
    );
    let requests = setup.requests_since(mark);
    assert!(
        count(&requests, "HEAD", "/blobs/") >= 2,
        "the full path ran: {requests:?}"
    );
    let (_, digest) = first.pinned();
    assert_eq!(again.pinned().1, digest);
    assert_eq!(setup.served("v1"), Some(digest.clone()));
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entry = &rewritten["images"][&setup.images[0].config_digest][&repository];
    assert_eq!(entry["digest"], digest.as_str());
    assert_eq!(
        layouts::sha256_digest(entry["manifest"].as_str().unwrap().as_bytes()),
        digest,
        "the entry was recorded again"
    );
}

/// Two images sharing a big first layer whose blob sorts last in the archive,
/// so everything the second push needs comes before it.
fn shared_big_layer_images(name: &str) -> [ImageFixture; 2] {
    let big = LayerInput::from_files(&[("big", &layouts::pseudo_random_bytes(71, 12 << 20))]);
    let image = |seed: u64| {
        let small = LayerInput::from_files(&[("small", &layouts::pseudo_random_bytes(seed, 1000))]);
        layouts::docker25_classic(
            &[&format!("{name}-{seed}:v1")],
            &[big.clone(), small],
            "linux",
            "amd64",
        )
    };
    let mut seeds = 100u64..;
    let mut sorted_before_big = || loop {
        let fixture = image(seeds.next().unwrap());
        let big_digest = &fixture.diff_ids[0];
        if &fixture.diff_ids[1] < big_digest && &fixture.config_digest < big_digest {
            return fixture;
        }
    };
    [sorted_before_big(), sorted_before_big()]
}

#[test]
fn a_push_stops_reading_the_export_once_it_has_what_it_needs() {
    let name = unique("earlystop");
    let images = shared_big_layer_images(&name);
    let tag = |fixture: &ImageFixture| fixture.inspect["RepoTags"][0].as_str().unwrap().to_owned();
    let directory = TempDir::new("earlystop");
    let daemon = FakeDaemon::serving(
        &directory,
        images
            .iter()
            .map(|fixture| FakeImage::of(&tag(fixture), fixture))
            .collect(),
    );
    let cache = TempDir::new("earlystop-cache");
    let push = |fixture: &ImageFixture| {
        Push::new()
            .cache(cache.path())
            .env("DOCKER_HOST", daemon.docker_host())
            .args([
                "--registry",
                &registry("team"),
                "--to",
                &format!("team/{name}:{}", &fixture.config_digest[7..19]),
                &tag(fixture),
            ])
            .run()
    };
    push(&images[0]).success();
    let after_first = daemon.archive_bytes_sent();
    assert_eq!(
        after_first,
        images[0].archive.len() as u64,
        "the first push needs every layer"
    );
    let second = push(&images[1]);
    second.success();
    let sent = daemon.archive_bytes_sent() - after_first;
    let archive = images[1].archive.len() as u64;
    assert!(
        sent < archive - (8 << 20),
        "the 12 MiB layer the registry has, last in the archive, was not streamed: {sent} of {archive} bytes sent"
    );
    let (reference, digest) = second.pinned();
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false", "--config"]);
    assert_eq!(
        inspected["rootfs"]["diff_ids"],
        serde_json::json!(images[1].diff_ids),
        "{digest}: the pushed config is the second image's"
    );
    let layers = skopeo_inspect(&reference, &["--tls-verify=false"])["Layers"].clone();
    assert_eq!(layers.as_array().unwrap().len(), 2, "{layers}");
}

#[test]
fn docker_20_layers_are_recognised_by_their_v1_id_and_unchanged_ones_never_read() {
    let name = unique("v1id");
    let lower = [
        vec![("base".to_owned(), noise(81, 400_000))],
        vec![("mid".to_owned(), noise(82, 200_000))],
    ];
    let build = |version: &str, seed: u64| {
        let mut layers = lower.to_vec();
        layers.push(vec![("top".to_owned(), noise(seed, 5000))]);
        let tag = format!("{name}:{version}");
        let id = docker_build(&tag, &layers);
        let output = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            &tag,
        ]);
        let diff_ids: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
        (tag, id, diff_ids)
    };
    let (first_tag, _, first_layers) = build("v1", 83);
    let (second_tag, second_id, second_layers) = build("v2", 84);
    assert_eq!(
        first_layers[..2],
        second_layers[..2],
        "the build cache shares the lower layers"
    );
    assert_ne!(first_layers[2], second_layers[2]);
    let cache = TempDir::new("v1id-cache");
    let push = |tag: &str| {
        Push::new()
            .cache(cache.path())
            .args(["--registry", &registry("team"), "--log-level", "debug", tag])
            .run()
    };
    let first = push(&first_tag);
    first.success();
    for diff_id in &first_layers {
        assert!(
            first.stderr.contains(&format!("holds layer {diff_id}")),
            "cold push: {diff_id} recognised from its directory's json: {}",
            first.stderr
        );
    }
    let second = push(&second_tag);
    second.success();
    // Each unchanged layer is either recognised and skipped unread, or never
    // reached because the walk stopped once the new layer and config had passed
    // (the archive's order follows the v1 IDs, so either can happen).
    let stopped = second.stderr.contains("stop reading it");
    for diff_id in &second_layers[..2] {
        let skipped = second.stderr.contains(&format!(
            "is layer {diff_id}, which the registry has: not read"
        ));
        let reached = second.stderr.contains(&format!("holds layer {diff_id}"));
        assert!(
            skipped || (stopped && !reached),
            "{diff_id} skipped unread or never reached: {}",
            second.stderr
        );
    }
    assert!(
        second.stderr.contains("1 layer pushed, 2 skipped"),
        "only the changed layer was uploaded: {}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("it will be hashed"),
        "no directory needed hashing: {}",
        second.stderr
    );
    let (reference, _) = second.pinned();
    docker(&["rmi", "-f", &second_tag]);
    crate::support::assert_success(&docker(&["pull", &reference]), "docker pull");
    assert_eq!(docker_image_id(&reference), second_id);
}
