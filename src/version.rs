//! What `--version` and `kubectl idpbuilder version` print: our version, the
//! git commit it was built from, and the versions of the crates that speak to
//! the outside worlds (set by build.rs from git and Cargo.lock).

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short commit hash, or "unknown" when not built from a git checkout.
pub const COMMIT: &str = env!("IDPB_GIT_COMMIT");
pub const OCI_CLIENT: &str = env!("IDPB_OCI_CLIENT_VERSION");
pub const KUBE: &str = env!("IDPB_KUBE_VERSION");
pub const BOLLARD: &str = env!("IDPB_BOLLARD_VERSION");

/// The full version text; its first line is `idpbuilder-push X.Y.Z`.
pub fn text() -> String {
    format!(
        "idpbuilder-push {VERSION}\n\
         commit:     {COMMIT}\n\
         oci-client: {OCI_CLIENT}\n\
         kube:       {KUBE}\n\
         bollard:    {BOLLARD}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_commit_and_the_client_crates() {
        let text = text();
        assert!(text.starts_with(&format!("idpbuilder-push {VERSION}\n")));
        for crate_name in ["oci-client: 0.", "kube:       ", "bollard:    0."] {
            assert!(text.contains(crate_name), "{text}");
        }
        assert!(!COMMIT.is_empty());
    }
}
