//! Failures a user can cause: each with its exit code, a message naming the
//! input, and a hint.

use crate::support::{services, unique, Push};

#[test]
fn unknown_image_exits_2_naming_the_image() {
    let name = unique("missing");
    Push::new()
        .args(["--registry", &format!("http://{}", services().plain), &name])
        .run()
        .failure(2)
        .stderr_contains(&format!("image \"{name}:latest\" not found"))
        .stderr_contains("hint:");
}

#[test]
fn missing_daemon_socket_exits_2_with_a_hint() {
    Push::new()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args([
            "--registry",
            &format!("http://{}", services().plain),
            "anything:latest",
        ])
        .run()
        .failure(2)
        .stderr_contains("/nonexistent/docker.sock")
        .stderr_contains("hint:");
}

#[test]
fn invalid_reference_exits_1_before_any_network_call() {
    // The daemon and the registry point nowhere: reaching either would be a
    // different error (exit 2, or a connection error).
    let run = Push::new()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["--registry", "http://127.0.0.1:9", "My_App::bad"])
        .run();
    run.failure(1).stderr_contains("My_App::bad");
    assert!(!run.stderr.contains("nonexistent"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn usage_errors_exit_1_with_clap_message() {
    Push::new()
        .args([
            "--registry",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--username",
            "u",
            "img",
        ])
        .run()
        .failure(1)
        .stderr_contains("token cannot be combined");
    Push::new()
        .args(["--no-such-flag", "img"])
        .run()
        .failure(1)
        .stderr_contains("--no-such-flag");
}

#[test]
fn registry_down_fails_with_a_hint() {
    let name = unique("down");
    crate::support::docker_build(
        &format!("{name}:v1"),
        &[vec![("f".to_owned(), b"x".to_vec())]],
    );
    Push::new()
        .args(["--registry", "http://127.0.0.1:9", &format!("{name}:v1")])
        .run()
        .failure(1)
        .stderr_contains("127.0.0.1:9")
        .stderr_contains("hint:");
}

#[test]
fn plugin_names_dispatch_like_kubectl_expects() {
    let directory = crate::support::TempDir::new("names");
    let plugin = directory.path().join("kubectl-idpbuilder");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_idpbuilder-push"), &plugin).unwrap();
    let run = Push::binary(&plugin.to_string_lossy())
        .args(["version"])
        .run();
    run.success();
    assert!(run.stdout.starts_with("idpbuilder-push "), "{}", run.stdout);
    let help = Push::binary(env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"))
        .args(["--help"])
        .run();
    help.success();
    assert!(
        help.stdout.contains("kubectl idpbuilder push"),
        "{}",
        help.stdout
    );
}
