//! Command-line surface: the raw flags as clap parses them, and the choice of
//! grammar by the name the program was started under.
//!
//! The program answers to several names (see `Invocation`): as `idpbuilder-push`
//! or `kubectl-idpbuilder-push` its arguments are the push arguments directly, so an
//! image literally called `push` still works; as `kubectl-idpbuilder` (krew's name)
//! it has the subcommands `push` and `version`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// Which grammar argv follows, decided by the basename of argv[0].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// `idpbuilder-push IMAGE`
    Standalone,
    /// `kubectl idpbuilder push IMAGE` through the file `kubectl-idpbuilder-push`
    KubectlPush,
    /// `kubectl idpbuilder push IMAGE` through krew's `kubectl-idpbuilder`
    KubectlPlugin,
}

impl Invocation {
    pub fn from_argv0(argv0: &str) -> Self {
        let base = Path::new(argv0)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(argv0);
        let base = base.strip_suffix(".exe").unwrap_or(base);
        if base.ends_with("-push") {
            if base.starts_with("kubectl-") {
                Invocation::KubectlPush
            } else {
                Invocation::Standalone
            }
        } else {
            Invocation::KubectlPlugin
        }
    }

    /// The command line a user types, used in usage lines and hints.
    pub fn display_name(self) -> &'static str {
        match self {
            Invocation::Standalone => "idpbuilder-push",
            Invocation::KubectlPush | Invocation::KubectlPlugin => "kubectl idpbuilder push",
        }
    }
}

/// What the user asked for, once argv is parsed.
#[derive(Debug)]
pub enum Command {
    Push(Box<PushArgs>),
    Version,
}

/// The push flags, as typed. Validation into a usable configuration happens in
/// `config`, so that these stay a plain description of the command line.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local image to push: NAME[:TAG] or NAME@sha256:DIGEST
    // Required unless --completions asks for a script; empty then.
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "completions",
        default_value = "",
        hide_default_value = true
    )]
    pub image: String,

    /// Registry URL (default: the idpbuilder cluster's Gitea); its scheme picks
    /// the protocol and its path is the namespace (https://r.example/team -> r.example/team/IMAGE)
    #[arg(short = 'r', long, env = "IDPBUILDER_REGISTRY_URL", value_name = "URL")]
    pub registry: Option<String>,

    /// Registry username (also the default namespace, lowercased)
    #[arg(short = 'u', long, env = "IDPBUILDER_REGISTRY_USERNAME")]
    pub username: Option<String>,

    /// Registry password (visible to other users: prefer --password-stdin or the env var)
    #[arg(
        short = 'p',
        long,
        env = "IDPBUILDER_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub password: Option<SecretString>,

    /// Read the registry password from standard input
    #[arg(long, conflicts_with = "token_stdin")]
    pub password_stdin: bool,

    /// Pre-issued bearer token for the registry
    #[arg(
        short = 't',
        long,
        env = "IDPBUILDER_REGISTRY_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub token: Option<SecretString>,

    /// Read the bearer token from standard input
    #[arg(long)]
    pub token_stdin: bool,

    /// Skip TLS certificate verification (prints a warning naming the host)
    #[arg(long, env = "IDPBUILDER_REGISTRY_INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure: bool,

    /// Trust this PEM certificate authority in addition to the system roots
    #[arg(long, env = "IDPBUILDER_REGISTRY_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Kubeconfig file of the idpbuilder cluster (default: KUBECONFIG, then ~/.kube/config)
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context of the idpbuilder cluster (default: the current context)
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Localbuild resource to use when the cluster has several (default: the only one, else localdev)
    #[arg(long, value_name = "NAME")]
    pub localbuild: Option<String>,

    /// Destination REPOSITORY[:TAG] below the registry, instead of the derived name
    #[arg(long, value_name = "REPOSITORY[:TAG]")]
    pub to: Option<String>,

    /// Platform to push from a multi-platform image: os/arch[/variant]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Compression of the layers idpbuilder-push compresses (classic Docker store, Podman);
    /// zstd pushes an OCI manifest. Layers the containerd store holds compressed are pushed as stored
    #[arg(
        long,
        env = "IDPBUILDER_PUSH_COMPRESSION",
        value_enum,
        value_name = "ALGORITHM",
        default_value_t = crate::compress::Compression::Gzip
    )]
    pub compression: crate::compress::Compression,

    // Help from `compression_level_help`, so the defaults live in one place.
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32))]
    pub compression_level: Option<u32>,

    /// Threads compressing layers (default: number of cores)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub compression_threads: Option<u16>,

    /// Blobs uploading at once: one still sending its last chunks while the next is read.
    /// Each holds up to two chunks and eight compressed blocks of memory
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_uploads: u16,

    /// Largest request body of a blob upload, in MiB (stay below any proxy limit)
    #[arg(long, value_name = "MiB", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1023))]
    pub chunk_size: u64,

    /// Seconds to wait for a TCP/TLS connection
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,

    /// Seconds a request may go without progress before it is retried
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,

    /// Seconds each Kubernetes API request may take
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub kube_timeout: u64,

    /// Seconds the container daemon may take to answer an API call
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub daemon_timeout: u64,

    /// Do not read or write the local layer cache
    #[arg(long, env = "IDPBUILDER_PUSH_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cache: bool,

    /// Print only the pushed reference and errors
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Log level on stderr
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Print the result as text (the pinned reference) or json (one object; errors as one on stderr)
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = crate::output::OutputFormat::Text)]
    pub output: crate::output::OutputFormat,

    /// Print the completion script for SHELL (bash, zsh or fish) and exit
    // Not `exclusive`: that would count flags set through environment variables.
    #[arg(long, value_enum, value_name = "SHELL", conflicts_with = "image")]
    pub completions: Option<crate::completions::CompletionShell>,

    /// Whether --password came from argv (visible in `ps`), not the env var.
    #[arg(skip)]
    pub password_from_command_line: bool,

    /// Whether --token came from argv, not the env var.
    #[arg(skip)]
    pub token_from_command_line: bool,

    /// Whether --username came from argv, not the env var.
    #[arg(skip)]
    pub username_from_command_line: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
}

fn parse_secret(value: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-idpbuilder",
    bin_name = "kubectl idpbuilder",
    version,
    about = "Work with an idpbuilder cluster from kubectl",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct PluginCli {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Push a local image to the cluster's Gitea registry (or any OCI registry)
    Push(Box<PushArgs>),
    /// Print version information
    Version,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Push a local Docker or Podman image to an idpbuilder cluster's registry or any OCI registry"
)]
struct PushCli {
    #[command(flatten)]
    args: Box<PushArgs>,
}

/// The command line grammar of the name the program was invoked under, with
/// kubectl-style help for that name.
pub fn command_for(invocation: Invocation) -> clap::Command {
    use clap::CommandFactory;
    let name = invocation.display_name();
    let push_help = |command: clap::Command| {
        command
            .about(crate::help::PUSH_ABOUT)
            .help_template(crate::help::push_template(name))
            .override_usage(crate::help::push_usage(name))
            .next_line_help(true)
            .mut_arg("compression_level", |argument| {
                argument.help(compression_level_help())
            })
    };
    match invocation {
        Invocation::KubectlPlugin => PluginCli::command()
            .propagate_version(true)
            .help_template(crate::help::plugin_template())
            .mut_subcommand("push", push_help),
        Invocation::Standalone | Invocation::KubectlPush => {
            push_help(PushCli::command().name(name).bin_name(name))
        }
    }
}

/// The help of `--compression-level`, from the ranges and defaults in `compress`.
fn compression_level_help() -> String {
    use crate::compress::Compression;
    let describe = |compression: Compression| {
        let levels = compression.levels();
        format!(
            "{} {}..{} (default {})",
            compression.name(),
            levels.start(),
            levels.end(),
            compression.default_level()
        )
    };
    format!(
        "Compression level (fastest .. smallest): {}, {}",
        describe(Compression::Gzip),
        describe(Compression::Zstd)
    )
}

/// Parses argv according to the name the program was invoked under.
pub fn parse<I, T>(invocation: Invocation, argv: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    match invocation {
        Invocation::KubectlPlugin => {
            let matches = command_for(invocation).try_get_matches_from(argv)?;
            let cli = PluginCli::from_arg_matches(&matches)?;
            Ok(match cli.command {
                PluginCommand::Push(mut args) => {
                    if let Some(("push", push_matches)) = matches.subcommand() {
                        args.password_from_command_line =
                            from_command_line(push_matches, "password");
                        args.token_from_command_line = from_command_line(push_matches, "token");
                        args.username_from_command_line =
                            from_command_line(push_matches, "username");
                    }
                    Command::Push(args)
                }
                PluginCommand::Version => Command::Version,
            })
        }
        Invocation::Standalone | Invocation::KubectlPush => {
            let matches = command_for(invocation).try_get_matches_from(argv)?;
            let mut cli = PushCli::from_arg_matches(&matches)?;
            cli.args.password_from_command_line = from_command_line(&matches, "password");
            cli.args.token_from_command_line = from_command_line(&matches, "token");
            cli.args.username_from_command_line = from_command_line(&matches, "username");
            Ok(Command::Push(cli.args))
        }
    }
}

fn from_command_line(matches: &clap::ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn argv0_decides_the_grammar() {
        let cases = [
            ("idpbuilder-push", Invocation::Standalone),
            ("/usr/local/bin/idpbuilder-push", Invocation::Standalone),
            ("kubectl-idpbuilder-push", Invocation::KubectlPush),
            (
                "/home/u/.krew/bin/kubectl-idpbuilder",
                Invocation::KubectlPlugin,
            ),
            ("kubectl-idpbuilder.exe", Invocation::KubectlPlugin),
        ];
        for (argv0, expected) in cases {
            assert_eq!(Invocation::from_argv0(argv0), expected, "{argv0}");
        }
    }

    #[test]
    fn standalone_takes_push_arguments_directly_even_an_image_named_push() {
        let command = parse(Invocation::Standalone, ["idpbuilder-push", "push"]).unwrap();
        match command {
            Command::Push(args) => assert_eq!(args.image, "push"),
            Command::Version => panic!("expected push"),
        }
    }

    #[test]
    fn plugin_name_has_push_and_version_subcommands() {
        let command = parse(
            Invocation::KubectlPlugin,
            ["kubectl-idpbuilder", "push", "-r", "http://h:5000", "myapp"],
        )
        .unwrap();
        match command {
            Command::Push(args) => {
                assert_eq!(args.image, "myapp");
                assert_eq!(args.registry.as_deref(), Some("http://h:5000"));
            }
            Command::Version => panic!("expected push"),
        }
        let command = parse(Invocation::KubectlPlugin, ["kubectl-idpbuilder", "version"]).unwrap();
        assert!(matches!(command, Command::Version));
    }

    #[test]
    fn secrets_parse_into_secret_strings() {
        let command = parse(
            Invocation::Standalone,
            ["idpbuilder-push", "-p", "hunter2", "myapp"],
        )
        .unwrap();
        let Command::Push(args) = command else {
            panic!("expected push")
        };
        assert_eq!(args.password.unwrap().expose_secret(), "hunter2");
    }

    #[test]
    fn compression_defaults_to_gzip_and_reads_its_environment_variable() {
        let parse_push = |argv: &[&str]| match parse(Invocation::Standalone, argv).unwrap() {
            Command::Push(args) => args,
            Command::Version => panic!("expected push"),
        };
        let args = parse_push(&["idpbuilder-push", "myapp"]);
        assert_eq!(args.compression, crate::compress::Compression::Gzip);
        assert_eq!(args.compression_level, None);
        let args = parse_push(&[
            "idpbuilder-push",
            "--compression",
            "zstd",
            "--compression-level",
            "19",
            "myapp",
        ]);
        assert_eq!(args.compression, crate::compress::Compression::Zstd);
        assert_eq!(args.compression_level, Some(19));
        let error = parse(
            Invocation::Standalone,
            ["idpbuilder-push", "--compression", "brotli", "myapp"],
        )
        .unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        let environment = command_for(Invocation::Standalone)
            .get_arguments()
            .find(|argument| argument.get_id() == "compression")
            .and_then(|argument| argument.get_env().map(|name| name.to_owned()));
        assert_eq!(
            environment.as_deref(),
            Some(std::ffi::OsStr::new("IDPBUILDER_PUSH_COMPRESSION"))
        );
    }
}
