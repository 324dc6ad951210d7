//! What the user reads: progress bars in a real pseudo-terminal, plain lines
//! in pipes, `-o json` checked against the schema in the repo, help text
//! snapshots, `--version`, and shell completion.
//!
//! Help snapshots live in tests/integration/snapshots/; after an intended
//! change, rewrite them with `UPDATE_SNAPSHOTS=1 cargo test --test integration output::`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{docker_build, noise, services, unique, LayerFiles, Push, Run};

fn files(entries: &[(&str, Vec<u8>)]) -> LayerFiles {
    entries
        .iter()
        .map(|(path, bytes)| (path.to_string(), bytes.clone()))
        .collect()
}

/// A two-layer image: a large one (several progress updates) and a small one.
fn two_layer_image(prefix: &str, seed: u64) -> String {
    let name = unique(prefix);
    let tag = format!("{name}:v1");
    docker_build(
        &tag,
        &[
            files(&[("big.bin", noise(seed, 12_000_000))]),
            files(&[("small.txt", noise(seed + 1, 50_000))]),
        ],
    );
    tag
}

fn registry(namespace: &str) -> String {
    format!("http://{}/{namespace}", services().plain)
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs the binary under `script`, so its stdout and stderr are a real
/// pseudo-terminal; returns the terminal transcript as stdout.
fn in_terminal(push: Push, args: &[&str]) -> Run {
    let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
    let command_line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_idpbuilder-push"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    push.env("TERM", "xterm-256color")
        .args(["-qec", &command_line.join(" "), "/dev/null"])
        .run()
}

/// The transcript without escape sequences, as the lines a person sees last.
fn visible_lines(transcript: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = transcript.chars().peekable();
    while let Some(character) = chars.next() {
        if character == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for next in chars.by_ref() {
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(character);
    }
    plain
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// SGR sequences (`ESC [ ... m`): colors and bold.
fn has_color(transcript: &str) -> bool {
    transcript.split("\x1b[").skip(1).any(|rest| {
        rest.chars()
            .find(|c| !(c.is_ascii_digit() || *c == ';'))
            .is_some_and(|end| end == 'm')
    })
}

#[test]
fn a_terminal_shows_a_bar_per_layer_and_ends_with_the_summary() {
    let tag = two_layer_image("tty", 61);
    let run = in_terminal(
        Push::binary("script"),
        &["--registry", &registry("tty"), "--chunk-size", "1", &tag],
    );
    run.success();
    let transcript = &run.stdout;
    assert!(
        transcript.contains("\x1b["),
        "no terminal control: {transcript:?}"
    );
    assert!(
        has_color(transcript),
        "colors on a terminal: {transcript:?}"
    );
    let lines = visible_lines(transcript);
    assert!(
        lines.iter().any(|line| line.starts_with("layer 1/2 ")
            && line.contains(" [")
            && line.contains(" ETA ")),
        "a bar with bytes, rate and ETA: {lines:#?}"
    );
    for label in ["layer 1/2 sha256:", "layer 2/2 sha256:"] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(label) && line.contains(": pushed (")),
            "{label} ends as a line: {lines:#?}"
        );
    }
    let last = lines.last().expect("some output");
    assert!(
        last.starts_with("Done in ") && last.contains("2 layers pushed, 0 skipped"),
        "the summary comes last: {lines:#?}"
    );
}

#[test]
fn no_color_keeps_the_bars_but_drops_the_colors() {
    let tag = two_layer_image("nocolor", 63);
    let run = in_terminal(
        Push::binary("script").env("NO_COLOR", "1"),
        &["--registry", &registry("nocolor"), &tag],
    );
    run.success();
    assert!(run.stdout.contains("\x1b["), "bars still redraw");
    assert!(!has_color(&run.stdout), "NO_COLOR: {:?}", run.stdout);
    let lines = visible_lines(&run.stdout);
    assert!(lines.last().unwrap().starts_with("Done in "), "{lines:#?}");
    // clap's own errors follow the same rule.
    let usage = in_terminal(
        Push::binary("script").env("NO_COLOR", "1"),
        &["--no-such-flag", "x"],
    );
    usage.failure(1);
    assert!(usage.stdout.contains("--no-such-flag"), "{}", usage.stdout);
    assert!(!has_color(&usage.stdout), "{:?}", usage.stdout);
}

#[test]
fn piped_progress_is_plain_lines_without_control_characters() {
    let tag = two_layer_image("piped", 65);
    let run = Push::new()
        .args(["--registry", &registry("piped"), &tag])
        .run();
    run.success();
    assert!(
        !run.stderr.contains('\x1b') && !run.stderr.contains('\r'),
        "{:?}",
        run.stderr
    );
    for line in ["layer 1/2: pushing", "layer 2/2: pushing"] {
        assert_eq!(run.stderr.matches(line).count(), 1, "{}", run.stderr);
    }
    assert_eq!(
        run.stderr.matches(": pushed (").count(),
        2,
        "{}",
        run.stderr
    );
    let last = run.stderr.lines().last().unwrap();
    assert!(last.starts_with("Done in "), "{}", run.stderr);
    run.pinned();

    let quiet = Push::new()
        .args(["--registry", &registry("piped"), "--quiet", &tag])
        .run();
    quiet.success();
    assert_eq!(quiet.stderr, "", "quiet leaves only the result");
    quiet.pinned();
}

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_file("schema/push-result.schema.json"))
        .expect("schema/push-result.schema.json is readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::meta::validate(&schema).expect("the schema is a valid JSON Schema");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{instance:#}\n{errors:#?}");
}

#[test]
fn json_output_is_one_object_that_matches_the_schema() {
    let validator = schema_validator();
    let tag = two_layer_image("json", 67);
    let cache = crate::support::TempDir::new("json-cache");
    let push = || {
        Push::new()
            .cache(cache.path())
            .args(["--registry", &registry("json"), "-o", "json", &tag])
            .run()
    };
    let run = push();
    run.success();
    assert_eq!(run.stdout.lines().count(), 1, "one line: {}", run.stdout);
    assert_eq!(
        run.stderr, "",
        "off a terminal, JSON mode keeps stderr for problems"
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_valid(&validator, &json);
    let name = tag.trim_end_matches(":v1");
    assert_eq!(json["registry"], services().plain.as_str());
    assert_eq!(json["repository"], format!("json/{name}").as_str());
    assert_eq!(json["tag"], "v1");
    assert_eq!(
        json["reference"],
        format!(
            "{}/json/{name}:v1@{}",
            services().plain,
            json["digest"].as_str().unwrap()
        )
        .as_str()
    );
    assert_eq!(json["inClusterReference"], json["reference"]);
    assert_eq!(json["cluster"], serde_json::Value::Null);
    let statuses: Vec<&str> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pushed", "pushed"]);

    // The same image again: the cache knows both layers, the registry has them.
    let again: serde_json::Value = serde_json::from_str(&push().stdout).unwrap();
    assert_valid(&validator, &again);
    assert_eq!(again["digest"], json["digest"]);
    assert_eq!(again["layers"][0]["status"], "exists");
    assert_eq!(again["layers"][1]["status"], "exists");
    assert_eq!(again["layers"][0]["size"], json["layers"][0]["size"]);
}

/// The error object on the last stderr line; checks it against the schema
/// and the process exit code.
fn assert_json_error(run: &Run, exit_code: i32) -> serde_json::Value {
    run.failure(exit_code);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let last = run.stderr.lines().last().expect("stderr has the error");
    let json: serde_json::Value = serde_json::from_str(last).expect("the error is JSON");
    assert_valid(&schema_validator(), &json);
    assert_eq!(json["error"]["exitCode"], exit_code, "{json}");
    json
}

#[test]
fn json_errors_carry_the_process_exit_code() {
    let missing = unique("json-missing");
    let run = Push::new()
        .args(["--registry", &registry("json"), "-o", "json", &missing])
        .run();
    let json = assert_json_error(&run, 2);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing),
        "{json}"
    );
    assert!(json["error"]["hint"].is_string(), "{json}");

    let run = Push::new()
        .args(["--output=json", "--no-such-flag", "img"])
        .run();
    let json = assert_json_error(&run, 1);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{json}"
    );

    let run = Push::new()
        .args([
            "-o",
            "json",
            "--registry",
            "http://127.0.0.1:9",
            "My_App::bad",
        ])
        .run();
    assert_json_error(&run, 1);
}

/// Compares `actual` with the stored snapshot, or rewrites it when
/// UPDATE_SNAPSHOTS is set.
fn assert_snapshot(name: &str, actual: &str) {
    let path = repo_file(&format!("tests/integration/snapshots/{name}"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(expected, actual)| expected != actual)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {} (rewrite with UPDATE_SNAPSHOTS=1 when intended)\n\
             expected: {:?}\nactual:   {:?}\n--- actual output ---\n{actual}",
            path.display(),
            first_difference + 1,
            expected.lines().nth(first_difference),
            actual.lines().nth(first_difference),
        );
    }
}

fn help(binary: &str, args: &[&str]) -> String {
    let run = Push::binary(binary)
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .args(args)
        .run();
    run.success();
    run.stdout
}

#[test]
fn help_reads_like_kubectl_for_each_name() {
    let standalone = help(env!("CARGO_BIN_EXE_idpbuilder-push"), &["--help"]);
    let kubectl_push = help(env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"), &["--help"]);
    let plugin = help(env!("CARGO_BIN_EXE_kubectl-idpbuilder"), &["--help"]);
    assert_snapshot("help-idpbuilder-push.txt", &standalone);
    assert_snapshot("help-kubectl-idpbuilder-push.txt", &kubectl_push);
    assert_snapshot("help-kubectl-idpbuilder.txt", &plugin);
    assert_eq!(
        help(
            env!("CARGO_BIN_EXE_kubectl-idpbuilder"),
            &["push", "--help"]
        ),
        kubectl_push,
        "`kubectl idpbuilder push --help` is the same through either plugin name"
    );
    for text in [&standalone, &kubectl_push] {
        for section in ["Examples:\n", "Options:\n", "Environment:\n", "Usage:\n"] {
            assert!(text.contains(section), "{section} missing:\n{text}");
        }
        assert!(text.contains("-o json"), "a JSON example:\n{text}");
    }
    assert!(kubectl_push.contains("\n  kubectl idpbuilder push [options] IMAGE\n"));
    assert!(standalone.contains("\n  idpbuilder-push [options] IMAGE\n"));
    assert!(!standalone.contains("\x1b"), "no colors under NO_COLOR");
}

#[test]
fn version_names_the_commit_and_the_client_libraries() {
    let version = Push::new().arg("--version").run();
    version.success();
    let plugin = Push::binary(env!("CARGO_BIN_EXE_kubectl-idpbuilder"))
        .arg("version")
        .run();
    plugin.success();
    assert_eq!(version.stdout, plugin.stdout);
    let text = &version.stdout;
    assert!(
        text.starts_with(&format!("idpbuilder-push {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let commit = match git {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        _ => "unknown".to_owned(),
    };
    assert!(text.contains(&format!("commit:     {commit}\n")), "{text}");
    let lock = std::fs::read_to_string(repo_file("Cargo.lock")).unwrap();
    for name in ["oci-client", "kube", "bollard"] {
        let locked = lock
            .split("[[package]]")
            .find(|package| package.contains(&format!("name = \"{name}\"\n")))
            .and_then(|package| package.split("version = \"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(
            text.contains(&format!("{name}:")) && text.contains(locked),
            "{name} {locked} missing:\n{text}"
        );
    }
}

#[test]
fn completion_scripts_for_each_shell_name_the_flags() {
    // fish spells a long flag `-l registry`.
    for (shell, registry_flag) in [
        ("bash", "--registry"),
        ("zsh", "--registry"),
        ("fish", "-l registry"),
    ] {
        // Settings in the environment (as in CI) do not get in the way.
        let run = Push::new()
            .env("IDPBUILDER_REGISTRY_URL", "http://127.0.0.1:9")
            .args(["--completions", shell])
            .run();
        run.success();
        assert!(
            run.stdout.contains(registry_flag),
            "{shell}: {}",
            run.stdout
        );
        assert!(run.stdout.contains("idpbuilder-push"), "{shell}");
        let plugin = Push::binary(env!("CARGO_BIN_EXE_kubectl-idpbuilder"))
            .args(["push", "--completions", shell])
            .run();
        plugin.success();
        assert!(plugin.stdout.contains("kubectl-idpbuilder"), "{shell}");
        assert!(plugin.stdout.contains(registry_flag), "{shell}");
    }
    // It never goes with an image, so it never swallows a push.
    Push::new()
        .args(["--completions", "bash", "myapp"])
        .run()
        .failure(1);
    // Without it an image is required.
    Push::new()
        .args(["--registry", "http://127.0.0.1:9"])
        .run()
        .failure(1)
        .stderr_contains("IMAGE");
}

/// A PATH directory holding the plugin names and the completion helpers.
fn plugin_path(directory: &Path) -> String {
    for (name, target) in [
        (
            "kubectl-idpbuilder",
            env!("CARGO_BIN_EXE_kubectl-idpbuilder"),
        ),
        (
            "kubectl-idpbuilder-push",
            env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"),
        ),
    ] {
        std::os::unix::fs::symlink(target, directory.join(name)).unwrap();
    }
    for helper in [
        "kubectl_complete-idpbuilder",
        "kubectl_complete-idpbuilder-push",
    ] {
        std::fs::copy(
            repo_file(&format!("scripts/{helper}")),
            directory.join(helper),
        )
        .unwrap();
    }
    format!(
        "{}:{}",
        directory.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn kubectl_plugin_completion_goes_through_the_helper() {
    let directory = crate::support::TempDir::new("complete");
    let path = plugin_path(directory.path());
    let helper = directory.path().join("kubectl_complete-idpbuilder");
    let run = Push::binary(&helper.to_string_lossy())
        .env("PATH", &path)
        .args(["push", "--reg"])
        .run();
    run.success();
    assert!(run.stdout.starts_with("--registry\t"), "{}", run.stdout);
    assert!(run.stdout.ends_with("\n:4\n"), "{}", run.stdout);
    let run = Push::binary(&helper.to_string_lossy())
        .env("PATH", &path)
        .arg("")
        .run();
    assert!(run.stdout.contains("push\t") && run.stdout.contains("version\t"));

    // kubectl itself, when installed, finds and runs the helper.
    let kubectl_present = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if kubectl_present {
        let output = Command::new("kubectl")
            .args(["__complete", "idpbuilder", "push", "--log-level", ""])
            .env("PATH", &path)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("debug\n") && stdout.contains("warn\n"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
