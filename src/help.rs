//! `--help` laid out like kubectl's: what the command does, examples written
//! for the name it was invoked under, the flags, the environment variables,
//! and the usage line last.

use crate::cli::Invocation;

/// What the push command does, the first line of its help.
pub const PUSH_ABOUT: &str =
    "Push a local Docker or Podman image to an idpbuilder cluster or any OCI registry";

/// The help of the push command, as `name` (e.g. `kubectl idpbuilder push`).
pub fn push_template(name: &str) -> String {
    format!(
        "{{about-with-newline}}
Examples:
{examples}

{{all-args}}

Environment:
{ENVIRONMENT}

Usage:
  {{usage}}
",
        examples = push_examples(name)
    )
}

/// Usage lines of the push command.
pub fn push_usage(name: &str) -> String {
    format!("{name} [options] IMAGE\n  {name} --completions bash|zsh|fish")
}

fn push_examples(name: &str) -> String {
    format!(
        "  # Push into the Gitea registry of the idpbuilder cluster of the current kubectl context
  {name} myapp:latest

  # Choose the cluster by kubeconfig context, and the destination repository and tag
  {name} --context kind-localdev --to tools/web:v2 myapp:latest

  # A local registry over plain HTTP, below the namespace \"team\"
  {name} --registry http://127.0.0.1:5000/team myapp:latest

  # CI: settings from environment variables, only the pinned reference on stdout
  export IDPBUILDER_REGISTRY_URL=https://registry.example.com/team
  export IDPBUILDER_REGISTRY_USERNAME=ci IDPBUILDER_REGISTRY_PASSWORD=\"$REGISTRY_TOKEN\"
  ref=$({name} --quiet myapp:1.2.0)

  # JSON for scripts: one object on stdout (errors: one object on stderr)
  {name} -o json myapp:latest | jq -r .digest"
    )
}

const ENVIRONMENT: &str = "  IDPBUILDER_REGISTRY_URL        registry URL (--registry)
  IDPBUILDER_REGISTRY_USERNAME   registry username (--username)
  IDPBUILDER_REGISTRY_PASSWORD   registry password (--password)
  IDPBUILDER_REGISTRY_TOKEN      bearer token (--token)
  IDPBUILDER_REGISTRY_INSECURE   skip TLS verification (--insecure)
  IDPBUILDER_REGISTRY_CA_FILE    extra PEM certificate authority (--ca-file)
  IDPBUILDER_PUSH_COMPRESSION    layer compression, gzip or zstd (--compression)
  IDPBUILDER_PUSH_NO_CACHE       do not use the layer cache (--no-cache)
  KUBECONFIG                     kubeconfig files of the idpbuilder cluster
  DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG
                                 which Docker or Podman daemon holds the image
  XDG_CACHE_HOME                 where the layer cache lives (default ~/.cache)
  NO_COLOR                       no colors on a terminal
  Flags take precedence over environment variables.";

/// The help of `kubectl idpbuilder` (krew's name, with subcommands).
pub fn plugin_template() -> String {
    let name = Invocation::KubectlPlugin.display_name();
    let name_only = name.trim_end_matches(" push");
    format!(
        "{{about-with-newline}}
Examples:
  # Push a local image into the Gitea registry of the idpbuilder cluster
  {name} myapp:latest

  # Print the version, the commit and the versions of the client libraries
  kubectl idpbuilder version

Available Commands:
{{subcommands}}

Options:
{{options}}

Usage:
  {name_only} [command]

Use \"kubectl idpbuilder <command> --help\" for more information about a command.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_use_the_invoked_name_and_cover_the_main_uses() {
        let help = push_template("kubectl idpbuilder push");
        for expected in [
            "kubectl idpbuilder push myapp:latest",
            "--context",
            "--registry http://127.0.0.1:5000",
            "IDPBUILDER_REGISTRY_PASSWORD",
            "-o json",
            "NO_COLOR",
        ] {
            assert!(help.contains(expected), "{expected} missing:\n{help}");
        }
        assert!(!push_template("idpbuilder-push").contains("kubectl idpbuilder push myapp"));
    }
}
