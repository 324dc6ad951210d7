//! Validation of the command line into a push configuration: everything a user
//! can get wrong in the arguments is caught here, before any network call.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::cli::PushArgs;
use crate::error::Error;
use crate::manifest::Platform;
use crate::reference::{self, Destination, DestinationRequest, LocalReference};
use crate::registry::{self, Credentials, RegistryConfig, Trust};

/// A validated push.
#[derive(Debug)]
pub struct PushConfig {
    pub image: LocalReference,
    pub destination: Destination,
    pub registry: RegistryConfig,
    pub platform: Option<Platform>,
    pub compression_level: u32,
    pub compression_threads: usize,
    /// `None` when the cache is disabled.
    pub cache_directory: Option<PathBuf>,
    pub quiet: bool,
    /// Said on stderr before the push starts (insecure mode, visible password).
    pub warnings: Vec<String>,
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
) -> Result<PushConfig, Error> {
    let image = LocalReference::parse(&args.image)?;
    let mut warnings = Vec::new();
    let credentials = credentials(args, stdin)?;
    if password_on_command_line {
        warnings.push(
            "--password on the command line is visible to other users (shell history, ps); use --password-stdin or IDPBUILDER_REGISTRY_PASSWORD".to_owned(),
        );
    }
    let registry_url = args.registry.as_deref().ok_or_else(|| {
        Error::usage(
            "no registry given",
            Some("pass --registry URL (or set IDPBUILDER_REGISTRY_URL), e.g. --registry https://gitea.cnoe.localtest.me:8443"),
        )
    })?;
    let (base_url, namespace) = parse_registry_url(registry_url)?;
    let host = registry::host_of(&base_url);
    let destination = reference::destination(
        &image,
        &DestinationRequest {
            registry_host: &host,
            registry_path: namespace.as_deref(),
            username: credentials.username(),
            explicit: args.to.as_deref(),
        },
    )?;
    let trust = if args.insecure {
        warnings.push(format!(
            "--insecure: TLS certificates of {host} are not verified; anyone on the network path could read the credentials"
        ));
        Trust::Insecure
    } else if let Some(path) = &args.ca_file {
        Trust::SystemAnd(registry::tls::read_ca_file(path)?)
    } else {
        Trust::System
    };
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let cache_directory = if args.no_cache {
        None
    } else {
        crate::cache::default_directory(
            std::env::var("XDG_CACHE_HOME").ok().as_deref(),
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        )
    };
    Ok(PushConfig {
        registry: RegistryConfig {
            base_url,
            repository: destination.repository().to_owned(),
            credentials,
            trust,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            retry: retry_policy(),
            chunk_size: args.chunk_size * 1024 * 1024,
            on_retry: None,
        },
        image,
        destination,
        platform,
        compression_level: args.compression_level,
        compression_threads: args
            .compression_threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |cores| cores.get())),
        cache_directory,
        quiet: args.quiet,
        warnings,
    })
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
    match (token, args.username.as_deref(), password) {
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
        let config = from_args(&parsed, true, &mut FakeStdin(None)).unwrap();
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
        let config = from_args(&parsed, false, &mut FakeStdin(Some("s3cret\n"))).unwrap();
        match &config.registry.credentials {
            Credentials::Basic { password, .. } => assert_eq!(password.expose_secret(), "s3cret"),
            other => panic!("{other:?}"),
        }
        let error = from_args(&parsed, false, &mut FakeStdin(Some("\n"))).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn insecure_warns_naming_the_host() {
        let config = from_args(
            &args(&["-r", "https://r.example:8443", "--insecure", "img"]),
            false,
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
    fn missing_registry_is_a_usage_error_with_a_hint() {
        let error = from_args(&args(&["img"]), false, &mut FakeStdin(None)).unwrap_err();
        assert!(error.hint().unwrap().contains("--registry"));
    }
}
