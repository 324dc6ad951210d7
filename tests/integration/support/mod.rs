//! The integration harness: the real services that scripts/test.sh started
//! (read from its env file), fresh names per test, image builders, and a
//! runner for the built binary.
//!
//! A missing service is a failure, never a skip: run the suite through
//! `scripts/test.sh`, which starts everything.

#![allow(dead_code)]

pub mod fake_daemon;
pub mod http_server;
pub mod kube_server;
pub mod layouts;
pub mod proxy;
pub mod token_issuer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The services of one test run.
pub struct Services {
    pub docker_host: String,
    pub podman_host: String,
    pub podman_args: Vec<String>,
    pub plain: String,
    pub plain_dir: PathBuf,
    pub tls: String,
    pub ca_file: PathBuf,
    pub tls_user: String,
    pub tls_password: String,
    pub token_registry: String,
    pub token_user: String,
    pub token_password: String,
    pub issuer: token_issuer::TokenIssuer,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the integration tests need the services that scripts/test.sh starts \
             (run `scripts/test.sh`, or `scripts/test-services.sh start` and source the env file it prints)"
        )
    })
}

pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        assert_eq!(
            std::env::var("IDPB_TEST_SERVICES").as_deref(),
            Ok("1"),
            "IDPB_TEST_SERVICES is not 1: run the integration tests through scripts/test.sh"
        );
        let key = std::fs::read(required("IDPB_TEST_TOKEN_KEY_DER")).expect("token key readable");
        let issuer = token_issuer::TokenIssuer::start(token_issuer::TokenIssuerConfig {
            port: required("IDPB_TEST_TOKEN_PORT")
                .parse()
                .expect("IDPB_TEST_TOKEN_PORT is a port"),
            key_pkcs8_der: key,
            key_id: required("IDPB_TEST_TOKEN_KID"),
            service: required("IDPB_TEST_TOKEN_SERVICE"),
            issuer: required("IDPB_TEST_TOKEN_ISSUER"),
            username: required("IDPB_TEST_TOKEN_USER"),
            password: required("IDPB_TEST_TOKEN_PASSWORD"),
        })
        .expect("the token issuer starts on IDPB_TEST_TOKEN_PORT");
        Services {
            docker_host: required("IDPB_TEST_DOCKER_HOST"),
            podman_host: required("IDPB_TEST_PODMAN_HOST"),
            podman_args: required("IDPB_TEST_PODMAN_ARGS")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            plain: required("IDPB_TEST_REGISTRY_PLAIN"),
            plain_dir: PathBuf::from(required("IDPB_TEST_REGISTRY_PLAIN_DIR")),
            tls: required("IDPB_TEST_REGISTRY_TLS"),
            ca_file: PathBuf::from(required("IDPB_TEST_CA_FILE")),
            tls_user: required("IDPB_TEST_TLS_USER"),
            tls_password: required("IDPB_TEST_TLS_PASSWORD"),
            token_registry: required("IDPB_TEST_REGISTRY_TOKEN"),
            token_user: required("IDPB_TEST_TOKEN_USER"),
            token_password: required("IDPB_TEST_TOKEN_PASSWORD"),
            issuer,
        }
    })
}

/// Serialises tests that count failed logins at the shared token issuer, so
/// that one test's failures are not counted in another's.
pub fn token_failures_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A name no other test (or earlier run) uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("idpb-{prefix}")));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One layer's files: (path inside the image, contents).
pub type LayerFiles = Vec<(String, Vec<u8>)>;

/// Deterministic pseudo-random bytes (incompressible), seeded.
pub fn noise(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// Writes a build context with one `COPY layerN/ /` per layer.
fn write_context(directory: &Path, layers: &[LayerFiles]) {
    let mut dockerfile = String::from("FROM scratch\n");
    for (index, files) in layers.iter().enumerate() {
        let layer_dir = directory.join(format!("layer{index}"));
        std::fs::create_dir_all(&layer_dir).unwrap();
        for (path, contents) in files {
            let target = layer_dir.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, contents).unwrap();
        }
        dockerfile.push_str(&format!("COPY layer{index}/ /\n"));
    }
    std::fs::write(directory.join("Dockerfile"), dockerfile).unwrap();
}

/// Builds `tag` in the private dockerd; returns the image ID.
pub fn docker_build(tag: &str, layers: &[LayerFiles]) -> String {
    let context = TempDir::new("ctx");
    write_context(context.path(), layers);
    let output = docker(&["build", "-q", "-t", tag, &context.path().to_string_lossy()]);
    assert_success(&output, "docker build");
    docker_image_id(tag)
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(&services().docker_host)
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

pub fn docker_image_id(reference: &str) -> String {
    let output = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    assert_success(&output, "docker image inspect");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(&services().podman_args)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("podman runs")
}

/// Builds `tag` (stored by Podman as `localhost/<tag>`); returns the image ID.
pub fn podman_build(tag: &str, layers: &[LayerFiles]) -> String {
    let context = TempDir::new("pctx");
    write_context(context.path(), layers);
    let output = podman(&["build", "-q", "-t", tag, &context.path().to_string_lossy()]);
    assert_success(&output, "podman build");
    let output = podman(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert_success(&output, "podman image inspect");
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_start_matches("sha256:")
    )
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `skopeo inspect` of a pushed reference (manifest digest, layers, ...).
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .expect("skopeo runs");
    assert_success(&output, "skopeo inspect");
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// `skopeo inspect --config`: the pushed config, whose digest is the image ID.
pub fn skopeo_raw_manifest(reference: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .expect("skopeo runs");
    assert_success(&output, "skopeo inspect --raw");
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn failure(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn stderr_contains(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
        self
    }

    /// The single stdout line, split into (repository reference, digest).
    pub fn pinned(&self) -> (String, String) {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must be exactly one line: {:?}",
            self.stdout
        );
        let (reference, digest) = lines[0].split_once('@').expect("reference@digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        (reference.to_owned(), digest.to_owned())
    }
}

/// Runs the built binary with a clean environment: no IDPBUILDER_* variables
/// from the caller, the private dockerd, and a cache directory of its own.
pub struct Push {
    command: Command,
    stdin: Option<Vec<u8>>,
    _cache: Option<TempDir>,
}

impl Push {
    pub fn new() -> Push {
        Push::binary(env!("CARGO_BIN_EXE_idpbuilder-push"))
    }

    pub fn binary(path: &str) -> Push {
        let mut command = Command::new(path);
        let kept: HashMap<String, String> = std::env::vars()
            .filter(|(name, _)| matches!(name.as_str(), "PATH" | "HOME" | "TMPDIR" | "LANG"))
            .collect();
        command.env_clear().envs(kept);
        command.env("DOCKER_HOST", &services().docker_host);
        // No cluster unless a test provides one: a kubeconfig that does not exist.
        command.env("KUBECONFIG", "/nonexistent/idpbuilder-push-test/kubeconfig");
        let cache = TempDir::new("cache");
        command.env("XDG_CACHE_HOME", cache.path());
        Push {
            command,
            stdin: None,
            _cache: Some(cache),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Push
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Push {
        self.command.arg(arg);
        self
    }

    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Push {
        self.command.env(name, value);
        self
    }

    pub fn env_remove(mut self, name: &str) -> Push {
        self.command.env_remove(name);
        self
    }

    /// Shares a cache directory between runs (for cache tests).
    pub fn cache(mut self, directory: &Path) -> Push {
        self.command.env("XDG_CACHE_HOME", directory);
        self._cache = None;
        self
    }

    pub fn stdin(mut self, input: &[u8]) -> Push {
        self.stdin = Some(input.to_vec());
        self
    }

    pub fn run(mut self) -> Run {
        use std::io::Write;
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("the binary starts");
        if let Some(input) = self.stdin.take() {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(&input).expect("write stdin");
        }
        let output = child.wait_with_output().expect("the binary finishes");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The manifest digest the registry serves for `reference` (HEAD, plain HTTP).
pub fn registry_digest(registry: &str, repository: &str, reference: &str) -> Option<String> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "-I",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            &format!("http://{registry}/v2/{repository}/manifests/{reference}"),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.lines()
        .find_map(|line| {
            line.strip_prefix("Docker-Content-Digest: ")
                .or_else(|| line.strip_prefix("docker-content-digest: "))
        })
        .map(|digest| digest.trim().to_owned())
}
