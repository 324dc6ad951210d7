//! Validation of the command line into a push configuration: everything a user
//! can get wrong in the arguments is caught here, before any network call.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::cli::PushArgs;
use crate::cluster::ClusterOptions;
use crate::compress::Compression;
use crate::error::Error;
use crate::manifest::Platform;
use crate::reference::{self, Destination, DestinationRequest, LocalReference};
use crate::registry::{self, Credentials, RegistryConfig, Trust};

/// A validated push, with its registry settled.
#[derive(Debug)]
pub struct PushConfig {
    pub image: LocalReference,
    pub destination: Destination,
    pub registry: RegistryConfig,
    pub platform: Option<Platform>,
    pub compression: Compression,
    /// Within `compression.levels()`.
    pub compression_level: u32,
    pub compression_threads: usize,
    /// Blob uploads in flight at once (at least 1).
    pub max_concurrent_uploads: usize,
    /// `None` when the cache is disabled.
    pub cache_directory: Option<PathBuf>,
    pub quiet: bool,
    /// Longest wait for a daemon API answer (exports get longer).
    pub daemon_timeout: Duration,
    /// Said on stderr before the push starts (insecure mode, visible password).
    pub warnings: Vec<String>,
}

/// The command line, validated, before the cluster is consulted: the
/// registry, credentials and trust may still come from the cluster.
#[derive(Debug)]
pub struct PushRequest {
    pub image: LocalReference,
    /// `--registry`: the base URL and the namespace (its path).
    pub registry: Option<(Url, Option<String>)>,
    /// From flags or environment; `Anonymous` when none were given.
    pub credentials: Credentials,
    pub insecure: bool,
    /// `--ca-file` certificates.
    pub ca_certificates: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    pub to: Option<String>,
    pub cluster: ClusterOptions,
    settings: Settings,
}

/// What the command line fixes whatever the registry turns out to be.
#[derive(Debug)]
struct Settings {
    platform: Option<Platform>,
    compression: Compression,
    compression_level: u32,
    compression_threads: usize,
    max_concurrent_uploads: usize,
    cache_directory: Option<PathBuf>,
    quiet: bool,
    warnings: Vec<String>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    daemon_timeout: Duration,
    chunk_size: u64,
}

/// Where the push goes, once the cluster (if any) was consulted.
#[derive(Debug)]
pub struct Target {
    pub base_url: Url,
    pub namespace: Option<String>,
    pub credentials: Credentials,
    pub trust: Trust,
}

/// Where standard input comes from, so `--password-stdin` is testable.
pub trait Stdin {
    fn read_all(&mut self) -> std::io::Result<String>;
}

pub struct ProcessStdin;

impl Stdin for ProcessStdin {
    fn read_all(&mut self) -> std::io::Result<String> {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    }
}

pub fn from_args(
    args: &PushArgs,
    password_on_command_line: bool,
    stdin: &mut dyn Stdin,
) -> Result<PushRequest, Error> {
    let image = LocalReference::parse(&args.image)?;
    let compression_level = compression_level(args.compression, args.compression_level)?;
    let mut warnings = Vec::new();
    let credentials = credentials(args, stdin)?;
    if password_on_command_line {
        warnings.push(
            "--password on the command line is visible to other users (shell history, ps); use --password-stdin or IDPBUILDER_REGISTRY_PASSWORD".to_owned(),
        );
    }
    let registry = args
        .registry
        .as_deref()
        .map(parse_registry_url)
        .transpose()?;
    if let Some((base_url, namespace)) = &registry {
        // Names are checked now, before anything is read or sent; a namespace
        // from the cluster's username is checked again once it is known.
        reference::destination(
            &image,
            &DestinationRequest {
                registry_host: &registry::host_of(base_url),
                registry_path: namespace.as_deref(),
                username: credentials.username(),
                explicit: args.to.as_deref(),
            },
        )?;
    }
    let ca_certificates = args
        .ca_file
        .as_deref()
        .map(registry::tls::read_ca_file)
        .transpose()?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let cache_directory = if args.no_cache {
        None
    } else {
        crate::cache::default_directory(
            std::env::var("XDG_CACHE_HOME").ok().as_deref(),
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        )
    };
    Ok(PushRequest {
        image,
        registry,
        credentials,
        insecure: args.insecure,
        ca_certificates,
        to: args.to.clone(),
        cluster: ClusterOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            localbuild: args.localbuild.clone(),
            timeout: Duration::from_secs(args.kube_timeout),
        },
        settings: Settings {
            platform,
            compression: args.compression,
            compression_level,
            compression_threads: args
                .compression_threads
                .map(usize::from)
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(2, |cores| cores.get())
                }),
            max_concurrent_uploads: usize::from(args.max_concurrent_uploads),
            cache_directory,
            quiet: args.quiet,
            warnings,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            daemon_timeout: Duration::from_secs(args.daemon_timeout),
            chunk_size: args.chunk_size * 1024 * 1024,
        },
    })
}

impl PushRequest {
    pub fn quiet(&self) -> bool {
        self.settings.quiet
    }

    /// Trust for `base_url` from the flags alone: `--insecure` (warned about),
    /// `--ca-file`, else the system roots.
    pub fn flag_trust(&self, base_url: &Url) -> Option<Trust> {
        if self.insecure {
            Some(Trust::Insecure)
        } else {
            self.ca_certificates
                .clone()
                .map(Trust::SystemAnd)
                .or_else(|| (base_url.scheme() == "http").then_some(Trust::System))
        }
    }

    /// The push configuration once the target is known.
    pub fn finish(self, target: Target) -> Result<PushConfig, Error> {
        let host = registry::host_of(&target.base_url);
        let destination = reference::destination(
            &self.image,
            &DestinationRequest {
                registry_host: &host,
                registry_path: target.namespace.as_deref(),
                username: target.credentials.username(),
                explicit: self.to.as_deref(),
            },
        )?;
        let mut warnings = self.settings.warnings;
        if matches!(target.trust, Trust::Insecure) {
            warnings.push(format!(
                "--insecure: TLS certificates of {host} are not verified; anyone on the network path could read the credentials"
            ));
        }
        Ok(PushConfig {
            registry: RegistryConfig {
                base_url: target.base_url,
                repository: destination.repository().to_owned(),
                credentials: target.credentials,
                trust: target.trust,
                connect_timeout: self.settings.connect_timeout,
                idle_timeout: self.settings.idle_timeout,
                retry: retry_policy(),
                chunk_size: self.settings.chunk_size,
                on_retry: None,
            },
            image: self.image,
            destination,
            platform: self.settings.platform,
            compression: self.settings.compression,
            compression_level: self.settings.compression_level,
            compression_threads: self.settings.compression_threads,
            max_concurrent_uploads: self.settings.max_concurrent_uploads,
            cache_directory: self.settings.cache_directory,
            quiet: self.settings.quiet,
            daemon_timeout: self.settings.daemon_timeout,
            warnings,
        })
    }
}

/// `--compression-level`, checked against the range of the chosen algorithm;
/// the algorithm's default when it was not given.
fn compression_level(compression: Compression, level: Option<u32>) -> Result<u32, Error> {
    let Some(level) = level else {
        return Ok(compression.default_level());
    };
    let levels = compression.levels();
    if levels.contains(&level) {
        return Ok(level);
    }
    Err(Error::usage(
        format!(
            "--compression-level {level} is out of range for {}: allowed {}..={}",
            compression.name(),
            levels.start(),
            levels.end()
        ),
        Some(&format!(
            "choose a level from {} (fastest) to {} (smallest); without the flag {} uses {}",
            levels.start(),
            levels.end(),
            compression.name(),
            compression.default_level()
        )),
    ))
}

/// The backoff base can be shortened for tests through a hidden variable, so
/// the retry schedule is exercised without waiting for real seconds.
fn retry_policy() -> crate::registry::RetryPolicy {
    let mut policy = crate::registry::RetryPolicy::default();
    if let Some(milliseconds) = std::env::var("IDPBUILDER_PUSH_RETRY_BASE_MS")
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
    {
        policy.base = Duration::from_millis(milliseconds);
        policy.cap = policy.base * 30;
    }
    policy
}

fn credentials(args: &PushArgs, stdin: &mut dyn Stdin) -> Result<Credentials, Error> {
    let from_stdin = |stdin: &mut dyn Stdin, flag: &str| -> Result<SecretString, Error> {
        let text = stdin.read_all().map_err(|error| {
            Error::usage(
                format!("cannot read {flag} from standard input: {error}"),
                None,
            )
        })?;
        let secret = text.trim_end_matches(['\n', '\r']).to_owned();
        if secret.is_empty() {
            return Err(Error::usage(
                format!("{flag}: standard input was empty"),
                Some("pipe the secret in, e.g. `printf '%s' \"$PASSWORD\" | idpbuilder-push --password-stdin ...`"),
            ));
        }
        Ok(SecretString::from(secret))
    };
    // The stdin forms are flags: they beat the environment variables, but two
    // flags for the same secret are a usage error.
    if args.password_stdin && args.password_from_command_line {
        return Err(Error::usage(
            "--password and --password-stdin were both given",
            Some("keep --password-stdin: a password on the command line is visible to other users"),
        ));
    }
    if args.token_stdin && args.token_from_command_line {
        return Err(Error::usage(
            "--token and --token-stdin were both given",
            Some("keep --token-stdin: a token on the command line is visible to other users"),
        ));
    }
    let password = if args.password_stdin {
        Some(from_stdin(stdin, "--password-stdin")?)
    } else {
        args.password.clone()
    };
    let token = if args.token_stdin {
        Some(from_stdin(stdin, "--token-stdin")?)
    } else {
        args.token.clone()
    };
    for secret in password.iter().chain(token.iter()) {
        crate::redact::register(secret);
    }
    // Flags beat environment variables across kinds too: a token flag wins
    // over a password from the environment, and the other way round.
    let token_flag = args.token_from_command_line || args.token_stdin;
    let password_flag = args.password_from_command_line || args.password_stdin;
    let (token, password) = match (token, password) {
        (Some(token), Some(_)) if token_flag && !password_flag => (Some(token), None),
        (Some(_), Some(password)) if password_flag && !token_flag => (None, Some(password)),
        other => other,
    };
    let username = if token.is_some() && token_flag && !args.username_from_command_line {
        None
    } else {
        args.username.as_deref()
    };
    match (token, username, password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Error::usage(
            "a token cannot be combined with a username or password",
            Some("use either --token (bearer) or --username with --password; check the IDPBUILDER_REGISTRY_* environment variables too"),
        )),
        (Some(token), None, None) => Ok(Credentials::Bearer(token)),
        (None, Some(username), Some(password)) => {
            crate::redact::register_basic(username, &password);
            Ok(Credentials::Basic {
                username: username.to_owned(),
                password,
            })
        }
        (None, Some(username), None) => Err(Error::usage(
            format!("username {username:?} given without a password"),
            Some("add --password-stdin (or set IDPBUILDER_REGISTRY_PASSWORD)"),
        )),
        (None, None, Some(password)) => {
            // Never echo the value, not even its length.
            let _ = password.expose_secret();
            Err(Error::usage(
                "a password was given without a username",
                Some("add --username (or set IDPBUILDER_REGISTRY_USERNAME)"),
            ))
        }
        (None, None, None) => Ok(Credentials::Anonymous),
    }
}

/// Splits `https://host:port/ns/sub` into the base URL and the namespace path.
pub fn parse_registry_url(value: &str) -> Result<(Url, Option<String>), Error> {
    let invalid = |detail: &str| {
        Error::usage(
            format!("invalid --registry {value:?}: {detail}"),
            Some("use a URL such as https://gitea.cnoe.localtest.me:8443 or http://127.0.0.1:5000/team"),
        )
    };
    if !value.contains("://") {
        return Err(invalid("it needs a scheme, http:// or https://"));
    }
    let url = Url::parse(value).map_err(|error| invalid(&error.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the value: it holds credentials.
        return Err(Error::usage(
            "--registry must not contain credentials",
            Some("pass them with --username and --password-stdin"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    let namespace = url.path().trim_matches('/').to_owned();
    let mut base = url.clone();
    base.set_path("/");
    Ok((base, (!namespace.is_empty()).then_some(namespace)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command, Invocation};

    struct FakeStdin(Option<&'static str>);

    impl Stdin for FakeStdin {
        fn read_all(&mut self) -> std::io::Result<String> {
            self.0
                .take()
                .map(str::to_owned)
                .ok_or_else(|| std::io::Error::other("stdin already read"))
        }
    }

    fn args(argv: &[&str]) -> Box<PushArgs> {
        let mut full = vec!["idpbuilder-push"];
        full.extend_from_slice(argv);
        match cli::parse(Invocation::Standalone, full).unwrap() {
            Command::Push(args) => args,
            Command::Version => unreachable!(),
        }
    }

    #[test]
    fn registry_urls_split_into_base_and_namespace() {
        let (base, namespace) = parse_registry_url("https://r.example/team/sub/").unwrap();
        assert_eq!(base.as_str(), "https://r.example/");
        assert_eq!(namespace.as_deref(), Some("team/sub"));
        let (base, namespace) = parse_registry_url("http://127.0.0.1:5000").unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(namespace, None);
        for bad in [
            "r.example",
            "ftp://r.example",
            "https://",
            "https://r.example/?x=1",
        ] {
            assert!(parse_registry_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_in_the_registry_url_are_refused_without_echo() {
        let error = parse_registry_url("https://u:sentinel-pw@r.example").unwrap_err();
        assert!(!error.to_string().contains("sentinel-pw"));
        assert!(!format!("{error:?}").contains("sentinel-pw"));
    }

    /// The config a push without a cluster gets: everything from the flags.
    fn without_cluster(parsed: &PushArgs, stdin: &mut dyn Stdin) -> Result<PushConfig, Error> {
        let request = from_args(parsed, parsed.password_from_command_line, stdin)?;
        let (base_url, namespace) = request.registry.clone().expect("tests pass --registry");
        let target = Target {
            trust: request.flag_trust(&base_url).unwrap_or(Trust::System),
            credentials: request.credentials.clone(),
            base_url,
            namespace,
        };
        request.finish(target)
    }

    #[test]
    fn destination_uses_lowercased_username_as_namespace() {
        let parsed = args(&[
            "-r",
            "https://gitea.cnoe.localtest.me:8443",
            "-u",
            "giteaAdmin",
            "-p",
            "x",
            "myapp:v1",
        ]);
        let config = without_cluster(&parsed, &mut FakeStdin(None)).unwrap();
        assert_eq!(
            config.destination.to_string(),
            "gitea.cnoe.localtest.me:8443/giteaadmin/myapp:v1"
        );
        assert_eq!(config.registry.repository, "giteaadmin/myapp");
        assert!(config
            .warnings
            .iter()
            .any(|warning| warning.contains("--password-stdin")));
    }

    #[test]
    fn invalid_names_are_refused_before_the_cluster_is_asked() {
        let parsed = args(&["-r", "https://r.example/Team", "myapp"]);
        let error = from_args(&parsed, false, &mut FakeStdin(None)).unwrap_err();
        assert!(matches!(error, Error::Reference(_)), "{error:?}");
    }

    #[test]
    fn token_with_username_or_password_is_a_usage_error() {
        for argv in [
            &["-r", "http://h:1", "-t", "tok", "-u", "me", "img"][..],
            &["-r", "http://h:1", "-t", "tok", "-p", "pw", "img"][..],
        ] {
            let error = from_args(&args(argv), false, &mut FakeStdin(None)).unwrap_err();
            assert!(matches!(error, Error::Usage { .. }), "{error:?}");
            assert_eq!(error.exit_code(), 1);
        }
    }

    #[test]
    fn password_stdin_reads_and_trims_and_rejects_empty_input() {
        let parsed = args(&["-r", "http://h:1", "-u", "me", "--password-stdin", "img"]);
        let config = without_cluster(&parsed, &mut FakeStdin(Some("s3cret\n"))).unwrap();
        match &config.registry.credentials {
            Credentials::Basic { password, .. } => assert_eq!(password.expose_secret(), "s3cret"),
            other => panic!("{other:?}"),
        }
        let error = from_args(&parsed, false, &mut FakeStdin(Some("\n"))).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn insecure_warns_naming_the_host() {
        let config = without_cluster(
            &args(&["-r", "https://r.example:8443", "--insecure", "img"]),
            &mut FakeStdin(None),
        )
        .unwrap();
        assert!(matches!(config.registry.trust, Trust::Insecure));
        assert!(config
            .warnings
            .iter()
            .any(|warning| warning.contains("r.example:8443")));
    }

    #[test]
    fn https_without_trust_flags_is_left_to_the_cluster() {
        let request = from_args(
            &args(&["-r", "https://r.example", "img"]),
            false,
            &mut FakeStdin(None),
        )
        .unwrap();
        let (url, _) = request.registry.clone().unwrap();
        assert!(
            request.flag_trust(&url).is_none(),
            "the cluster may pin its certificate"
        );
        let request = from_args(
            &args(&["-r", "http://r.example", "img"]),
            false,
            &mut FakeStdin(None),
        )
        .unwrap();
        let (url, _) = request.registry.clone().unwrap();
        assert!(matches!(request.flag_trust(&url), Some(Trust::System)));
    }

    #[test]
    fn compression_levels_are_checked_against_the_chosen_algorithm() {
        let level = |argv: &[&str]| {
            let mut full = argv.to_vec();
            full.extend(["-r", "http://h:1", "img"]);
            from_args(&args(&full), false, &mut FakeStdin(None))
                .map(|request| request.settings.compression_level)
        };
        assert_eq!(level(&[]).unwrap(), crate::compress::GZIP_DEFAULT_LEVEL);
        assert_eq!(level(&["--compression", "zstd"]).unwrap(), 3);
        assert_eq!(level(&["--compression-level", "12"]).unwrap(), 12);
        assert_eq!(
            level(&["--compression", "zstd", "--compression-level", "19"]).unwrap(),
            19
        );
        for (argv, range) in [
            (&["--compression-level", "13"][..], "1..=12"),
            (&["--compression-level", "0"][..], "1..=12"),
            (
                &["--compression", "zstd", "--compression-level", "20"][..],
                "1..=19",
            ),
        ] {
            let error = level(argv).unwrap_err();
            assert!(matches!(error, Error::Usage { .. }), "{error:?}");
            let text = error.to_string();
            assert!(
                text.contains("--compression-level") && text.contains(range),
                "{text}"
            );
            assert!(text.contains(argv[argv.len() - 1]), "{text}");
        }
    }
}
