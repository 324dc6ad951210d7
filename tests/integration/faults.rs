//! Flaky networks and interruptions, through a fault-injecting proxy in front
//! of the real registry: retries, resumption, timeouts, signals, 413.

use std::time::{Duration, Instant};

use crate::support::fake_daemon::{FakeDaemon, FakeImage};
use crate::support::layouts::{self, LayerInput};
use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::{
    docker, docker_build, docker_image_id, noise, registry_digest, services, skopeo_raw_manifest,
    unique, Push, Run, TempDir,
};

fn proxy() -> Proxy {
    Proxy::start(&services().plain).expect("the proxy starts")
}

fn image(name: &str, big: usize) -> (String, String) {
    let tag = format!("{name}:v1");
    let id = docker_build(
        &tag,
        &[
            vec![("big.bin".to_owned(), noise(51, big))],
            vec![("small.txt".to_owned(), b"small".repeat(100))],
        ],
    );
    (tag, id)
}

/// A push through `proxy` with a short backoff base, so retries take ms.
fn push(proxy: &Proxy, tag: &str) -> Push {
    Push::new()
        .env("IDPBUILDER_PUSH_RETRY_BASE_MS", "20")
        .args([
            "--registry",
            &format!("http://{}/team", proxy.address()),
            "--chunk-size",
            "2",
            tag,
        ])
}

fn count(proxy: &Proxy, method: &str, path_part: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|request| request.method == method && request.path.contains(path_part))
        .count()
}

#[test]
fn resets_in_the_middle_of_a_blob_resend_only_the_broken_blob() {
    let name = unique("reset");
    let (tag, image_id) = image(&name, 6 * 1024 * 1024);
    let proxy = proxy();
    proxy.add_rule(
        Rule::new(Fault::ResetAfterBodyBytes(500_000))
            .method("PATCH")
            .times(2),
    );
    let run = push(&proxy, &tag).run();
    run.success();
    assert!(run.stderr.contains("retry 1 of 10"), "{}", run.stderr);
    // Noise does not compress: the blobs total about 6 MiB. Each reset may cost
    // the bytes of the broken blob sent before it, never a finished blob.
    let blobs = 6 * 1024 * 1024 + 4096;
    let allowance = 2 * (2 * 1024 * 1024 + 500_000);
    assert!(
        proxy.body_bytes() <= (blobs + allowance) as u64,
        "{} bytes went through the proxy",
        proxy.body_bytes()
    );
    let (reference, _) = run.pinned();
    let direct = reference.replace(&proxy.address(), &services().plain);
    docker(&["rmi", "-f", &tag]);
    crate::support::assert_success(&docker(&["pull", &direct]), "docker pull");
    assert_eq!(docker_image_id(&direct), image_id);
}

#[test]
fn service_unavailable_a_few_times_then_ok() {
    let (tag, _) = image(&unique("s503"), 1000);
    let proxy = proxy();
    proxy.add_rule(Rule::new(Fault::status(503)).times(3));
    let run = push(&proxy, &tag).run();
    run.success()
        .stderr_contains("503")
        .stderr_contains("retry 3 of 10");
    assert!(!run.stderr.contains("retry 4 of 10"), "{}", run.stderr);
}

#[test]
fn too_many_requests_honours_retry_after() {
    let (tag, _) = image(&unique("s429"), 1000);
    let proxy = proxy();
    proxy.add_rule(
        Rule::new(Fault::retry_after(429, 1))
            .method("HEAD")
            .times(1),
    );
    let started = Instant::now();
    let run = push(&proxy, &tag).run();
    run.success()
        .stderr_contains("429")
        .stderr_contains("in 1.0 s");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the wait was honoured"
    );
}

#[test]
fn always_unavailable_gives_up_after_exactly_ten_retries() {
    let (tag, _) = image(&unique("always"), 1000);
    let proxy = proxy();
    proxy.add_rule(Rule::new(Fault::status(503)).times(usize::MAX));
    let run = push(&proxy, &tag).run();
    run.failure(1)
        .stderr_contains("after 11 attempts")
        .stderr_contains("retry 10 of 10");
    assert_eq!(count(&proxy, "GET", "/v2/"), 11);
}

#[test]
fn a_stalled_upload_times_out_and_is_retried() {
    let (tag, _) = image(&unique("stall"), 300_000);
    let proxy = proxy();
    proxy.add_rule(
        Rule::new(Fault::Stall(Duration::from_secs(30)))
            .method("PATCH")
            .times(1),
    );
    let started = Instant::now();
    let run = push(&proxy, &tag).args(["--idle-timeout", "2"]).run();
    run.success().stderr_contains("retry 1 of 10");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the stall was not waited out"
    );
}

#[test]
fn a_registry_that_dies_between_layers_and_comes_back() {
    let (tag, image_id) = image(&unique("dies"), 200_000);
    let proxy = std::sync::Arc::new(proxy());
    let watcher = {
        let proxy = std::sync::Arc::clone(&proxy);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            // After the first blob is closed, the registry goes away for 2 s.
            while Instant::now() < deadline && count(&proxy, "PUT", "digest=") == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            proxy.set_upstream_down(true);
            std::thread::sleep(Duration::from_secs(2));
            proxy.set_upstream_down(false);
        })
    };
    let run = Push::new()
        .env("IDPBUILDER_PUSH_RETRY_BASE_MS", "200")
        .args([
            "--registry",
            &format!("http://{}/team", proxy.address()),
            &tag,
        ])
        .run();
    watcher.join().unwrap();
    run.success();
    let (reference, _) = run.pinned();
    let direct = reference.replace(&proxy.address(), &services().plain);
    docker(&["rmi", "-f", &tag]);
    crate::support::assert_success(&docker(&["pull", &direct]), "docker pull");
    assert_eq!(docker_image_id(&direct), image_id);
}

#[test]
fn a_proxy_413_is_explained_with_the_request_size() {
    let (tag, _) = image(&unique("big413"), 3 * 1024 * 1024);
    let proxy = proxy();
    proxy.add_rule(Rule::new(Fault::BodyLimit(1024 * 1024)).times(usize::MAX));
    let run: Run = push(&proxy, &tag).run();
    run.failure(1)
        .stderr_contains("refused a request of 2097152 bytes")
        .stderr_contains("--chunk-size");
    let retry = Push::new()
        .args([
            "--registry",
            &format!("http://{}/team", proxy.address()),
            "--chunk-size",
            "1",
            &tag,
        ])
        .run();
    // 1 MiB chunks are exactly at the limit: accepted.
    retry.success();
}

#[test]
fn sigint_during_an_upload_leaves_no_tag_and_no_session() {
    interrupted_upload(2, 130);
}

#[test]
fn sigterm_during_an_upload_exits_143_and_leaves_no_tag() {
    interrupted_upload(15, 143);
}

fn interrupted_upload(signal: i32, expected_code: i32) {
    let name = unique("sigint");
    let (tag, _) = image(&name, 2 * 1024 * 1024);
    let proxy = proxy();
    let registry = format!("http://{}/team", proxy.address());
    // An earlier tag of the same repository must survive intact.
    Push::new()
        .args(["--registry", &registry, &tag])
        .run()
        .success();
    let earlier =
        registry_digest(&services().plain, &format!("team/{name}"), "v1").expect("v1 is there");
    docker_build(
        &format!("{name}:v2"),
        &[vec![("other.bin".to_owned(), noise(52, 1024 * 1024))]],
    );
    proxy.add_rule(
        Rule::new(Fault::Stall(Duration::from_secs(60)))
            .method("PATCH")
            .times(usize::MAX),
    );
    let patches_before = count(&proxy, "PATCH", "/blobs/uploads/");
    let child = spawn_push(
        &services().docker_host,
        &["--registry", &registry, &format!("{name}:v2")],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&proxy, "PATCH", "/blobs/uploads/") == patches_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        count(&proxy, "PATCH", "/blobs/uploads/") > patches_before,
        "an upload started"
    );
    let interrupted = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(child.id() as i32, signal) };
    let output = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        output.status.code(),
        Some(expected_code),
        "signal {:?}, stderr: {}",
        output.status.signal(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "stopped at once"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(
        registry_digest(&services().plain, &format!("team/{name}"), "v2"),
        None,
        "no tag written"
    );
    assert_eq!(
        registry_digest(&services().plain, &format!("team/{name}"), "v1").as_deref(),
        Some(earlier.as_str()),
        "the earlier tag is intact"
    );
    assert!(
        count(&proxy, "DELETE", "/blobs/uploads/") > 0,
        "the open upload session was deleted"
    );
}

/// Blob uploads open at once, as the registry sees them arrive: POSTs that
/// start an upload minus PUTs that end one, at its worst.
fn most_uploads_open(proxy: &Proxy) -> usize {
    let (mut open, mut most) = (0usize, 0usize);
    for request in proxy.requests() {
        if !request.path.contains("/blobs/uploads/") {
            continue;
        }
        match request.method.as_str() {
            "POST" => open += 1,
            "PUT" | "DELETE" => open = open.saturating_sub(1),
            _ => {}
        }
        most = most.max(open);
    }
    most
}

/// A slow registry must not make every layer's upload wait in memory at once:
/// `--max-concurrent-uploads` bounds the uploads in flight (default 2, so the
/// last chunks of one layer still overlap with reading the next).
#[test]
fn uploads_in_flight_are_bounded_by_max_concurrent_uploads() {
    let name = unique("concurrent");
    let tag = format!("{name}:v1");
    let layers: Vec<_> = (0..4)
        .map(|index| vec![(format!("layer{index}.bin"), noise(90 + index, 64 * 1024))])
        .collect();
    let image_id = docker_build(&tag, &layers);
    let push = |proxy: &Proxy, limit: Option<&str>| {
        proxy.add_rule(
            Rule::new(Fault::Delay(Duration::from_millis(300)))
                .method("PATCH")
                .times(usize::MAX),
        );
        let mut push = Push::new().args([
            "--registry",
            &format!("http://{}/team", proxy.address()),
            "--to",
            &format!("team/{name}-{}:v1", limit.unwrap_or("default")),
        ]);
        if let Some(limit) = limit {
            push = push.args(["--max-concurrent-uploads", limit]);
        }
        push.arg(&tag).run()
    };

    let unbounded_enough = proxy();
    push(&unbounded_enough, Some("8")).success();
    assert!(
        most_uploads_open(&unbounded_enough) >= 3,
        "with room for 8, the layers' uploads overlap: {}",
        most_uploads_open(&unbounded_enough)
    );

    let default = proxy();
    push(&default, None).success();
    assert_eq!(most_uploads_open(&default), 2, "the default allows 2");

    let one = proxy();
    let pushed = push(&one, Some("1"));
    pushed.success();
    assert_eq!(most_uploads_open(&one), 1, "one upload at a time");
    let (reference, digest) = pushed.pinned();
    // skopeo takes a tag or a digest, not both.
    let direct = format!(
        "{}@{digest}",
        reference
            .replace(&one.address(), &services().plain)
            .trim_end_matches(":v1")
    );
    assert_eq!(
        skopeo_raw_manifest(&direct, &["--tls-verify=false"])["config"]["digest"],
        image_id.as_str()
    );
}

/// A push in the background (stdout and stderr piped), to be signalled.
fn spawn_push(docker_host: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_idpbuilder-push"))
        .env("DOCKER_HOST", docker_host)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join(unique("signal-cache")),
        )
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The export is read on a blocking thread; while the daemon is still staging
/// the archive that thread waits on the socket. Ctrl-C must shut the socket
/// down, so that the reader gives up while the process is still there, rather
/// than leave it blocked until the runtime's 2 s shutdown timeout lets the
/// process exit around it (the daemon would hold the export back for 30 s).
#[test]
fn sigint_while_the_daemon_stages_the_export_wakes_the_reader() {
    let name = unique("staging");
    let layers = vec![LayerInput::from_files(&[(
        "a",
        &layouts::pseudo_random_bytes(77, 100_000),
    )])];
    let fixture = layouts::docker25_classic(&[&format!("{name}:v1")], &layers, "linux", "amd64");
    let directory = TempDir::new("staging");
    let daemon = FakeDaemon::serving(
        &directory,
        vec![FakeImage::of(&format!("{name}:v1"), &fixture)],
    );
    daemon.delay_exports(Duration::from_secs(30));
    let child = spawn_push(
        &daemon.docker_host(),
        &[
            "--log-level",
            "debug",
            "--registry",
            &format!("http://{}/team", services().plain),
            &format!("{name}:v1"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.export_requests() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(daemon.export_requests(), 1, "the export was asked for");
    // The request is in; the reader now waits for the first byte.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(child.id() as i32, 2) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    // The reader's own debug line: it was woken and gave up before the exit.
    assert!(
        stderr.contains("/get: the daemon closed the connection before answering"),
        "the blocked export reader was not woken:\n{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(
        registry_digest(&services().plain, &format!("team/{name}"), "v1"),
        None,
        "no tag written"
    );
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

/// Where each entry of a tar starts, by path.
fn entry_offsets(archive: &[u8]) -> Vec<(String, u64)> {
    let mut reader = tar::Archive::new(archive);
    reader
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            (path, entry.raw_header_position())
        })
        .collect()
}

/// A daemon that dies mid-export closes the connection. The export is read as
/// HTTP/1.0, framed by that close, so only the archive can tell that it was
/// cut: inside an entry or between two, the push fails naming the cut, and
/// writes no tag.
#[test]
fn an_export_cut_short_fails_and_writes_no_tag() {
    let name = unique("cut");
    let layers = vec![
        LayerInput::from_files(&[("a", &layouts::pseudo_random_bytes(78, 200_000))]),
        LayerInput::from_files(&[("b", &layouts::pseudo_random_bytes(79, 200_000))]),
    ];
    let fixture = layouts::docker25_classic(&[&format!("{name}:v1")], &layers, "linux", "amd64");
    let offsets = entry_offsets(&fixture.archive);
    let (last_path, last_layer) = offsets
        .iter()
        .filter(|(path, _)| {
            fixture
                .diff_ids
                .iter()
                .any(|diff_id| path == &format!("blobs/sha256/{}", &diff_id[7..]))
        })
        .max_by_key(|(_, offset)| *offset)
        .expect("the layers are in the archive")
        .clone();
    let directory = TempDir::new("cut");
    let daemon = FakeDaemon::serving(
        &directory,
        vec![FakeImage::of(&format!("{name}:v1"), &fixture)],
    );
    for (cut, what, says) in [
        (
            last_layer,
            "between two entries",
            "stopped between two entries".to_owned(),
        ),
        (
            last_layer + 512 + 1000,
            "inside a layer",
            format!("stopped 1000 bytes into {last_path} of "),
        ),
    ] {
        daemon.cut_exports_at(cut);
        let run = Push::new()
            .env("DOCKER_HOST", daemon.docker_host())
            .args([
                "--registry",
                &format!("http://{}/team", services().plain),
                &format!("{name}:v1"),
            ])
            .run();
        run.failure(1)
            .stderr_contains(&says)
            .stderr_contains("(the daemon closed the connection early)")
            .stderr_contains("hint: the daemon stopped sending the image");
        assert_eq!(
            registry_digest(&services().plain, &format!("team/{name}"), "v1"),
            None,
            "{what}: no tag written"
        );
    }
}

/// An interrupted push whose registry stalls both the chunks and the DELETEs
/// that cancel the open sessions; `second_signal` sends another SIGINT once
/// the first DELETE has reached the registry.
fn interrupted_with_stalled_cleanup(second_signal: bool) -> std::process::Output {
    let name = unique("cleanup");
    let (tag, _) = image(&name, 2 * 1024 * 1024);
    let proxy = proxy();
    for method in ["PATCH", "DELETE"] {
        proxy.add_rule(Rule::new(Fault::Stall(Duration::from_secs(60))).method(method));
    }
    let child = spawn_push(
        &services().docker_host,
        &[
            "--registry",
            &format!("http://{}/team", proxy.address()),
            &tag,
        ],
    );
    let wait_for = |method: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&proxy, method, "/blobs/uploads/") == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            count(&proxy, method, "/blobs/uploads/") > 0,
            "a {method} reached the registry"
        );
    };
    wait_for("PATCH");
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(child.id() as i32, 2) };
    if second_signal {
        wait_for("DELETE");
        // SAFETY: as above.
        unsafe { kill(child.id() as i32, 2) };
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());
    assert_eq!(
        registry_digest(&services().plain, &format!("team/{name}"), "v1"),
        None,
        "no tag written"
    );
    output
}

/// A DELETE the registry never answers is not reported as a cancelled upload.
#[test]
fn sigint_with_a_registry_that_ignores_the_cancel_says_so() {
    let output = interrupted_with_stalled_cleanup(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("interrupted: cancelled 0 of ")
            && stderr
                .contains("(the registry did not confirm the rest within 3 s; it expires them)"),
        "{stderr}"
    );
}

/// A second Ctrl-C during the cleanup exits at once: the cleanup's report,
/// printed when it ends, never comes.
#[test]
fn a_second_sigint_cuts_the_cleanup_short() {
    let output = interrupted_with_stalled_cleanup(true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("interrupted: cancelled"), "{stderr}");
}
