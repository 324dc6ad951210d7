//! Distribution: krew-plugin.yaml against krew's own validation rules
//! (sigs.k8s.io/krew internal/index/validation and cmd/validate-krew-manifest),
//! the archive scripts/release.sh builds, and how kubectl discovers the three
//! program names. None of these need the test services.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::support::{assert_success, TempDir};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/krew-plugin.yaml");
const API_VERSION: &str = "krew.googlecontainertools.github.com/v1alpha2";
const PLUGIN_NAME: &str = "idpbuilder";
const REQUIRED_PLATFORMS: [(&str, &str); 5] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
];
const PROGRAM_NAMES: [&str; 3] = [
    "kubectl-idpbuilder",
    "kubectl-idpbuilder-push",
    "idpbuilder-push",
];

// krew itself ignores unknown fields; denying them here catches a misspelt key
// (`shortDescripton`) that krew would silently drop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    version: String,
    short_description: String,
    description: String,
    caveats: Option<String>,
    homepage: String,
    platforms: Vec<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Selector,
    uri: String,
    sha256: String,
    files: Option<Vec<FileOperation>>,
    bin: String,
}

// matchExpressions is left out on purpose: our selectors are plain os/arch labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperation {
    from: String,
    to: String,
}

fn parse_manifest(text: &str) -> Plugin {
    serde_saphyr::from_str(text).unwrap_or_else(|error| panic!("krew manifest: {error}"))
}

/// Every broken krew rule, as a sentence naming the field.
fn violations(plugin: &Plugin) -> Vec<String> {
    let mut found = Vec::new();
    if plugin.api_version != API_VERSION {
        found.push(format!(
            "apiVersion {} is not {API_VERSION}",
            plugin.api_version
        ));
    }
    if plugin.kind != "Plugin" {
        found.push(format!("kind {} is not Plugin", plugin.kind));
    }
    // krew links `kubectl-<name>`; `kubectl-idpbuilder` is what answers
    // `kubectl idpbuilder push`. (The name also passes krew's safe-name rule.)
    let name = &plugin.metadata.name;
    if name != PLUGIN_NAME {
        found.push(format!("metadata.name {name:?} is not {PLUGIN_NAME:?}"));
    }
    found.extend(spec_violations(&plugin.spec));
    found.extend(platform_set_violations(&plugin.spec.platforms));
    for (index, platform) in plugin.spec.platforms.iter().enumerate() {
        found.extend(
            platform_violations(platform)
                .into_iter()
                .map(|problem| format!("platforms[{index}]: {problem}")),
        );
    }
    found
}

fn spec_violations(spec: &Spec) -> Vec<String> {
    let mut found = Vec::new();
    // krew wants `v` + semver; Cargo's version is semver already.
    let expected = format!("v{}", env!("CARGO_PKG_VERSION"));
    if spec.version != expected {
        found.push(format!("spec.version {} is not {expected}", spec.version));
    }
    let short = spec.short_description.trim();
    if short.is_empty() || short.contains(['\r', '\n']) {
        found.push("spec.shortDescription must be one non-empty line".to_owned());
    }
    if !spec.description.contains("kubectl idpbuilder push") {
        found.push("spec.description does not show `kubectl idpbuilder push`".to_owned());
    }
    if !spec.homepage.starts_with("https://") {
        found.push(format!("spec.homepage {} is not https", spec.homepage));
    }
    if spec.caveats.as_deref().is_some_and(|c| c.trim().is_empty()) {
        found.push("spec.caveats is empty".to_owned());
    }
    found
}

fn os_arch(platform: &Platform) -> (&str, &str) {
    let label = |key| {
        platform
            .selector
            .match_labels
            .get(key)
            .map_or("", String::as_str)
    };
    (label("os"), label("arch"))
}

fn platform_set_violations(platforms: &[Platform]) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for (os, arch) in platforms.iter().map(os_arch) {
        if !seen.insert((os, arch)) {
            found.push(format!("two platforms select {os}/{arch}"));
        }
        // Also keeps every selector on a pair krew's validator knows.
        if !REQUIRED_PLATFORMS.contains(&(os, arch)) {
            found.push(format!(
                "{os}/{arch} is not one of the five release platforms"
            ));
        }
    }
    for (os, arch) in REQUIRED_PLATFORMS {
        if !seen.contains(&(os, arch)) {
            found.push(format!("no platform for {os}/{arch}"));
        }
    }
    found
}

fn platform_violations(platform: &Platform) -> Vec<String> {
    let mut found = Vec::new();
    let labels = &platform.selector.match_labels;
    if labels.keys().any(|key| key != "os" && key != "arch") || labels.len() != 2 {
        found.push(format!(
            "matchLabels {labels:?} must be exactly os and arch"
        ));
    }
    let (os, arch) = os_arch(platform);
    let sha256 = &platform.sha256;
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        found.push(format!("sha256 {sha256} is not 64 lowercase hex digits"));
    }
    let extension = if os == "windows" { "zip" } else { "tar.gz" };
    let expected_uri = format!(
        "{repository}/releases/download/v{version}/idpbuilder-push-v{version}-{os}-{arch}.{extension}",
        repository = env!("CARGO_PKG_REPOSITORY").trim_end_matches('/'),
        version = env!("CARGO_PKG_VERSION"),
    );
    if !platform.uri.starts_with("https://") || platform.uri != expected_uri {
        found.push(format!("uri {} is not {expected_uri}", platform.uri));
    }
    let expected_bin = if os == "windows" {
        "kubectl-idpbuilder.exe"
    } else {
        "kubectl-idpbuilder"
    };
    if platform.bin != expected_bin {
        found.push(format!("bin {} is not {expected_bin}", platform.bin));
    }
    found.extend(file_violations(platform));
    found
}

/// `files` must copy the binary krew links and a license to the install root.
fn file_violations(platform: &Platform) -> Vec<String> {
    let Some(files) = &platform.files else {
        return vec!["files is not set, so nothing says LICENSE is installed".to_owned()];
    };
    let mut found = Vec::new();
    if files.is_empty() {
        found.push("files is empty".to_owned());
    }
    // krew needs a non-empty `from` and a clean `to`; the archive is flat, so
    // everything goes to the install root.
    for operation in files {
        if operation.from.is_empty() || operation.to != "." {
            found.push(format!("file operation {operation:?} is not FILE to ."));
        }
    }
    let copies = |name: &str| files.iter().any(|op| op.from == name && op.to == ".");
    if !copies(&platform.bin) {
        found.push(format!(
            "files do not copy {} to the install root",
            platform.bin
        ));
    }
    // krew's validator wants a LICENSE (or COPYING...) in the install folder.
    if !copies("LICENSE") {
        found.push("files do not install the LICENSE".to_owned());
    }
    found
}

#[test]
fn krew_manifest_follows_krew_rules() {
    let text = std::fs::read_to_string(MANIFEST).expect("read krew-plugin.yaml");
    let problems = violations(&parse_manifest(&text));
    assert!(
        problems.is_empty(),
        "krew-plugin.yaml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn krew_rules_catch_broken_manifests() {
    let text = std::fs::read_to_string(MANIFEST).expect("read krew-plugin.yaml");
    type Breakage = fn(&mut Plugin);
    let breakages: [(&str, Breakage); 10] = [
        ("apiVersion", |p| {
            p.api_version = "krew.googlecontainertools.github.com/v1alpha1".into()
        }),
        ("metadata.name", |p| {
            p.metadata.name = "idpbuilder-push".into()
        }),
        ("spec.version", |p| {
            p.spec.version = env!("CARGO_PKG_VERSION").into()
        }),
        ("shortDescription", |p| {
            p.spec.short_description.push_str("\nmore")
        }),
        ("two platforms", |p| {
            p.spec.platforms[1].selector = p.spec.platforms[0].selector.clone()
        }),
        ("matchLabels", |p| {
            let labels = &mut p.spec.platforms[0].selector.match_labels;
            labels.insert("libc".into(), "musl".into());
        }),
        ("sha256", |p| p.spec.platforms[1].sha256 = "A".repeat(64)),
        ("uri http:", |p| {
            p.spec.platforms[2].uri = p.spec.platforms[2].uri.replace("https:", "http:")
        }),
        ("bin idpbuilder-push", |p| {
            p.spec.platforms[3].bin = "idpbuilder-push".into()
        }),
        ("LICENSE", |p| {
            let files = p.spec.platforms[4].files.as_mut().expect("files");
            files.retain(|op| op.from != "LICENSE");
        }),
    ];
    for (rule, breakage) in breakages {
        let mut plugin = parse_manifest(&text);
        breakage(&mut plugin);
        let problems = violations(&plugin);
        assert!(
            problems.iter().any(|problem| problem.contains(rule)),
            "breaking {rule} was not noticed: {problems:?}"
        );
    }
    let misspelt = text.replacen("shortDescription:", "shortDescripton:", 1);
    assert!(
        serde_saphyr::from_str::<Plugin>(&misspelt).is_err(),
        "misspelt key not noticed"
    );
}

/// This machine's platform in krew's (Go's) words.
fn host_platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

fn sha256_of_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer).expect("read to hash") {
            0 => return hex::encode(hasher.finalize()),
            read => hasher.update(&buffer[..read]),
        }
    }
}

/// `tar --list --verbose` of the archive: entry name => mode string, whose
/// first character is the entry type (`-` for a regular file). GNU tar rather
/// than the tar crate: inflating a debug binary three times in a debug build
/// takes over a minute.
fn archive_listing(archive: &Path) -> BTreeMap<String, String> {
    let output = Command::new("tar")
        .args(["--list", "--verbose", "--numeric-owner", "--gzip", "--file"])
        .arg(archive)
        .output()
        .expect("run tar --list");
    assert_success(&output, "tar --list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.last()?.to_string(), fields.first()?.to_string()))
        })
        .collect()
}

fn extract(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("create extraction dir");
    let output = Command::new("tar")
        .args(["--extract", "--gzip", "--file"])
        .arg(archive)
        .arg("--directory")
        .arg(into)
        .output()
        .expect("run tar --extract");
    assert_success(&output, "tar --extract");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn release_script(args: &[&Path]) -> Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // A debug binary is ~100 MB: level 1 keeps this test in seconds.
        .env("RELEASE_GZIP_LEVEL", "1")
        .output()
        .expect("run scripts/release.sh")
}

#[test]
fn release_script_packages_a_built_binary_and_records_it() {
    let (os, arch) = host_platform();
    assert_ne!(
        os, "windows",
        "release.sh packs .zip on Windows; this test reads .tar.gz"
    );
    let scratch = TempDir::new("release");
    let dist = scratch.path().join("dist");
    let manifest = scratch.path().join("idpbuilder.yaml");
    // A private copy: a concurrent cargo build may replace the one in target/.
    let binary = &scratch.path().join("kubectl-idpbuilder");
    std::fs::copy(env!("CARGO_BIN_EXE_kubectl-idpbuilder"), binary).expect("copy binary");
    let output = release_script(&[
        Path::new("--binary"),
        binary,
        Path::new("--dist"),
        &dist,
        Path::new("--manifest-out"),
        &manifest,
    ]);
    assert_success(&output, "scripts/release.sh --binary");

    let file_name = format!(
        "idpbuilder-push-v{}-{os}-{arch}.tar.gz",
        env!("CARGO_PKG_VERSION")
    );
    let archive = dist.join(&file_name);
    let listing = archive_listing(&archive);
    // krew extracts regular files only: a hard link or symlink fails the install.
    assert!(
        listing.values().all(|mode| mode.starts_with('-')),
        "{listing:?}"
    );
    for name in PROGRAM_NAMES {
        let mode = listing.get(name).map(String::as_str);
        assert_eq!(mode, Some("-rwxr-xr-x"), "{name} in {listing:?}");
    }
    let extracted = scratch.path().join("extracted");
    extract(&archive, &extracted);
    let program = read(binary);
    for name in PROGRAM_NAMES {
        // Compared as a whole: not one assert_eq! of 100 MB that would print them.
        assert!(
            read(&extracted.join(name)) == program,
            "{name} is not the given binary"
        );
    }
    let license = Path::new(env!("CARGO_MANIFEST_DIR")).join("LICENSE");
    assert!(
        read(&extracted.join("LICENSE")) == read(&license),
        "LICENSE differs"
    );

    let archive_sha256 = sha256_of_file(&archive);
    let sidecar =
        std::fs::read_to_string(dist.join(format!("{file_name}.sha256"))).expect("sha256 file");
    assert_eq!(sidecar, format!("{archive_sha256}  {file_name}\n"));

    let written_text = std::fs::read_to_string(&manifest).expect("written manifest");
    let written = parse_manifest(&written_text);
    let problems = violations(&written);
    assert!(
        problems.is_empty(),
        "rewritten manifest:\n  {}",
        problems.join("\n  ")
    );
    let original = parse_manifest(&std::fs::read_to_string(MANIFEST).expect("read manifest"));
    for (before, after) in original.spec.platforms.iter().zip(&written.spec.platforms) {
        if os_arch(after) == (os, arch) {
            assert_eq!(after.sha256, archive_sha256);
            assert!(
                after.uri.ends_with(&format!("/{file_name}")),
                "{}",
                after.uri
            );
        } else {
            assert_eq!((&before.uri, &before.sha256), (&after.uri, &after.sha256));
        }
    }

    // Recording the same archive again (without building) changes nothing.
    let again = scratch.path().join("again.yaml");
    let output = release_script(&[
        Path::new("--archive"),
        &archive,
        Path::new("--manifest-out"),
        &again,
    ]);
    assert_success(&output, "scripts/release.sh --archive");
    assert_eq!(
        std::fs::read_to_string(&again).expect("second manifest"),
        written_text
    );
}

/// The first `kubectl` on PATH. Missing is a failure in CI (CI=true), where
/// kubectl is installed, and a skip elsewhere.
fn find_kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is not on PATH, and CI=true needs the kubectl plugin checks to run"
        );
        eprintln!("skipping: kubectl is not on PATH");
    }
    found
}

/// A directory holding the built programs under the given names, as an
/// install would (symlinks: kubectl runs them by the link's name).
fn plugin_dir(names: &[&str]) -> TempDir {
    let dir = TempDir::new("kubectl-plugins");
    for name in names {
        let program = match *name {
            "kubectl-idpbuilder" => env!("CARGO_BIN_EXE_kubectl-idpbuilder"),
            "kubectl-idpbuilder-push" => env!("CARGO_BIN_EXE_kubectl-idpbuilder-push"),
            _ => env!("CARGO_BIN_EXE_idpbuilder-push"),
        };
        std::os::unix::fs::symlink(program, dir.path().join(name)).expect("link program");
    }
    dir
}

/// kubectl with nothing but `dir` on PATH, so other plugins cannot interfere.
fn kubectl(kubectl: &Path, dir: &TempDir, args: &[&str]) -> Output {
    Command::new(kubectl)
        .args(args)
        .env_clear()
        .env("PATH", dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("run kubectl")
}

#[test]
fn kubectl_plugin_list_shows_both_plugin_names_without_warnings() {
    let Some(kubectl_path) = find_kubectl() else {
        return;
    };
    let dir = plugin_dir(&PROGRAM_NAMES);
    let output = kubectl(&kubectl_path, &dir, &["plugin", "list"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("warning"),
        "kubectl plugin list ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let listed: HashSet<&str> = stdout.lines().map(str::trim).collect();
    for name in ["kubectl-idpbuilder", "kubectl-idpbuilder-push"] {
        let path = dir.path().join(name);
        assert!(
            listed.contains(path.to_str().expect("utf-8 path")),
            "{name} not listed:\n{stdout}"
        );
    }
}

#[test]
fn kubectl_idpbuilder_push_reaches_the_program_through_either_name() {
    let Some(kubectl_path) = find_kubectl() else {
        return;
    };
    // cargo install's names, where kubectl picks the longer kubectl-idpbuilder-push,
    // and krew's single kubectl-idpbuilder, which gets `push` as its first argument.
    for names in [&PROGRAM_NAMES[..], &["kubectl-idpbuilder"]] {
        let dir = plugin_dir(names);
        let output = kubectl(&kubectl_path, &dir, &["idpbuilder", "push", "--help"]);
        assert_success(
            &output,
            &format!("kubectl idpbuilder push --help with {names:?}"),
        );
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            help.contains("Usage:\n  kubectl idpbuilder push [options] IMAGE"),
            "{names:?}:\n{help}"
        );
    }
}
