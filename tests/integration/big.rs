//! A single 3 GiB layer through a proxy that refuses request bodies over
//! 1 GiB with 413, as ingress-nginx in front of idpbuilder's Gitea does.

use std::process::Command;

use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::{
    assert_success, docker, docker_image_id, services, skopeo_raw_manifest, unique, TempDir,
};

const LAYER_BYTES: u64 = 3 << 30;
const BODY_LIMIT: u64 = 1 << 30;

#[test]
fn a_3_gib_layer_passes_a_1_gib_body_limit_in_chunks() {
    let name = unique("huge");
    let tag = format!("{name}:v1");
    let context = TempDir::new("huge");
    // Random bytes: compression must not shrink the layer below the limit.
    let file = context.path().join("huge.bin");
    let written = Command::new("head")
        .args(["-c", &LAYER_BYTES.to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(written.success());
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY huge.bin /\n",
    )
    .unwrap();
    assert_success(
        &docker(&["build", "-q", "-t", &tag, &context.path().to_string_lossy()]),
        "docker build",
    );
    drop(context);
    let image_id = docker_image_id(&tag);

    let proxy = Proxy::start(&services().plain).unwrap();
    proxy.add_rule(Rule::new(Fault::BodyLimit(BODY_LIMIT)).times(usize::MAX));
    let cache = TempDir::new("huge-cache");
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib=%M"])
        .arg(env!("CARGO_BIN_EXE_idpbuilder-push"))
        .args([
            "--registry",
            &format!("http://{}/team", proxy.address()),
            "--compression-level",
            "1",
            &tag,
        ])
        .env("DOCKER_HOST", &services().docker_host)
        .env("XDG_CACHE_HOME", cache.path())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("/usr/bin/time runs the push (Debian package `time`)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    eprintln!(
        "{}",
        stderr
            .lines()
            .find(|line| line.starts_with("peak-rss-kib="))
            .unwrap_or("no rss")
    );
    // From the proxy's records, not stderr: "413" also turns up in port numbers.
    let refused = proxy
        .requests()
        .iter()
        .filter(|request| request.status == Some(413))
        .count();
    assert_eq!(refused, 0, "requests refused with 413:\n{stderr}");
    let largest = proxy
        .requests()
        .iter()
        .map(|request| request.body_bytes)
        .max()
        .unwrap_or(0);
    assert!(largest <= BODY_LIMIT, "a request of {largest} bytes");
    let pinned = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // skopeo takes a tag or a digest, not both.
    let direct = pinned
        .replace(&proxy.address(), &services().plain)
        .replace(":v1@", "@");
    let manifest = skopeo_raw_manifest(&direct, &["--tls-verify=false"]);
    assert_eq!(
        manifest["config"]["digest"],
        image_id.as_str(),
        "same image ID"
    );
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    assert!(
        size > BODY_LIMIT * 2,
        "the layer stayed over 2 GiB compressed: {size}"
    );
    docker(&["rmi", "-f", &tag]);
}
