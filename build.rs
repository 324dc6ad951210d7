//! Build-time facts for `--version`: the git commit of the checkout and the
//! versions of the crates that talk to the outside worlds, read from Cargo.lock.

use std::path::Path;
use std::process::Command;

/// The crates whose versions `--version` reports, with the env var each goes to.
const REPORTED_CRATES: [(&str, &str); 3] = [
    ("oci-client", "IDPB_OCI_CLIENT_VERSION"),
    ("kube", "IDPB_KUBE_VERSION"),
    ("bollard", "IDPB_BOLLARD_VERSION"),
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let root = Path::new(&manifest_dir);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    // Watch only files that exist: a missing one would rerun this on every build.
    for watched in git_files_to_watch(root) {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rustc-env=IDPB_GIT_COMMIT={}", git_commit(root));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    for (name, variable) in REPORTED_CRATES {
        let version = locked_version(&lock, name).unwrap_or_else(|| "unknown".to_owned());
        println!("cargo:rustc-env={variable}={version}");
    }
}

/// `git rev-parse --short HEAD`, or "unknown" outside a git checkout (a crate
/// tarball) or without git.
fn git_commit(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// HEAD, the branch it points to and packed-refs: a commit changes one of them.
fn git_files_to_watch(root: &Path) -> Vec<String> {
    let git_dir = Command::new("git")
        .args(["rev-parse", "--absolute-git-dir"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok());
    let Some(git_dir) = git_dir else {
        return Vec::new();
    };
    let git_dir = Path::new(git_dir.trim());
    let mut files = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            files.push(git_dir.join(reference));
        }
    }
    files
        .into_iter()
        .filter(|file| file.exists())
        .map(|file| file.display().to_string())
        .collect()
}

/// The version of `name` in Cargo.lock (the first entry when several are locked).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_owned());
        }
    }
    None
}
