//! Program entry: parse argv by the invoked name, set up logging and the
//! runtime, run the push, and turn the outcome into output and an exit code.

use std::sync::Arc;

use clap::error::ErrorKind;

use crate::cli::{self, Command, Invocation, LogLevel};
use crate::config::{self, ProcessStdin};
use crate::error::{exit_code, Error};
use crate::output::Reporter;

pub fn main() -> std::process::ExitCode {
    let code = run(std::env::args_os().collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs the program on `argv` and returns the exit code.
pub fn run(argv: Vec<std::ffi::OsString>) -> i32 {
    let argv0 = argv
        .first()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let invocation = Invocation::from_argv0(&argv0);
    if let Some(words) = crate::completions::complete_request(&argv) {
        print!("{}", crate::completions::complete(invocation, &words));
        return exit_code::SUCCESS;
    }
    let format = crate::output::format_in_argv(&argv);
    let command = match cli::parse(invocation, argv) {
        Ok(command) => command,
        Err(error) => {
            return match error.kind() {
                ErrorKind::DisplayHelp => {
                    let _ = error.print();
                    exit_code::SUCCESS
                }
                ErrorKind::DisplayVersion => {
                    println!("{}", version_text());
                    exit_code::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = error.print();
                    exit_code::FAILURE
                }
                _ => {
                    crate::output::print_usage_error(format, &error, exit_code::FAILURE);
                    exit_code::FAILURE
                }
            };
        }
    };
    match command {
        Command::Version => {
            println!("{}", version_text());
            exit_code::SUCCESS
        }
        Command::Push(args) => match args.completions {
            Some(shell) => {
                crate::completions::print_script(shell, invocation);
                exit_code::SUCCESS
            }
            None => run_push(&args),
        },
    }
}

/// `--version` and `kubectl idpbuilder version`: one text for both.
pub fn version_text() -> String {
    crate::version::text()
}

fn run_push(args: &cli::PushArgs) -> i32 {
    crate::redact::install_panic_hook();
    init_logging(args.log_level);
    let reporter = Arc::new(Reporter::for_stderr(
        args.quiet,
        args.output,
        args.log_level == LogLevel::Debug,
    ));
    let result = config::from_args(args, args.password_from_command_line, &mut ProcessStdin)
        .and_then(|request| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|error| Error::Image {
                    image: args.image.clone(),
                    detail: format!("cannot start the async runtime: {error}"),
                })?;
            let outcome = runtime.block_on(resolve_and_push(request, Arc::clone(&reporter)));
            // Blocking readers of the export may still wait on the daemon.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            outcome
        });
    match result {
        Ok((outcome, cluster)) => {
            reporter.clear();
            print_result(args.output, &outcome, cluster.as_ref(), reporter.elapsed());
            if let Some(cluster) = cluster.filter(|cluster| cluster.registry_is_gitea) {
                reporter.info(&format!(
                    "Pods in the cluster (context {}) pull it as {}",
                    cluster.context, outcome.pinned
                ));
            }
            reporter.finish(outcome.layers.iter().map(|layer| layer.status));
            exit_code::SUCCESS
        }
        Err(error) => {
            reporter.clear();
            let hint = error.hint().map(|hint| crate::redact::filter(&hint));
            crate::output::print_error(
                args.output,
                &crate::redact::filter(&error.render()),
                hint.as_deref(),
                error.exit_code(),
            );
            error.exit_code()
        }
    }
}

/// The result on stdout: the pinned reference, or one JSON object.
fn print_result(
    format: crate::output::OutputFormat,
    outcome: &crate::push::PushOutcome,
    cluster: Option<&crate::target::ClusterUsed>,
    duration: std::time::Duration,
) {
    use crate::output::{ClusterResult, OutputFormat, PushResult};
    match format {
        OutputFormat::Text => println!("{}", outcome.pinned),
        OutputFormat::Json => {
            // A cluster was used when the push went to its Gitea.
            let cluster = cluster
                .filter(|cluster| cluster.registry_is_gitea)
                .map(|cluster| ClusterResult {
                    context: cluster.context.clone(),
                    localbuild: cluster.localbuild.clone(),
                });
            println!(
                "{}",
                PushResult::new(outcome, cluster, None, duration).to_json()
            );
        }
    }
}

/// Consults the cluster, settles the target, then pushes.
async fn resolve_and_push(
    request: config::PushRequest,
    reporter: Arc<Reporter>,
) -> Result<(crate::push::PushOutcome, Option<crate::target::ClusterUsed>), Error> {
    let (target, cluster) = crate::target::resolve(&request, &reporter).await?;
    let config = request.finish(target)?;
    for warning in &config.warnings {
        reporter.warn(warning);
    }
    if std::env::var_os("IDPBUILDER_PUSH_TEST_PANIC").is_some() {
        // Hidden: proves in tests that panic messages are filtered.
        panic_with_configuration(&config);
    }
    let outcome = push_until_interrupted(&config, reporter).await?;
    Ok((outcome, cluster))
}

fn panic_with_configuration(config: &config::PushConfig) -> ! {
    use secrecy::ExposeSecret;
    let exposed = match &config.registry.credentials {
        crate::registry::Credentials::Basic { password, .. } => password.expose_secret().to_owned(),
        crate::registry::Credentials::Bearer(token) => token.expose_secret().to_owned(),
        crate::registry::Credentials::Anonymous => String::new(),
    };
    panic!("test panic: {config:?} {exposed}");
}

/// Runs the push until it ends or SIGINT/SIGTERM arrives. Dropping the push
/// future abandons its uploads; the manifest is written last, so no tag points
/// at a partial image.
async fn push_until_interrupted(
    config: &config::PushConfig,
    reporter: Arc<Reporter>,
) -> Result<crate::push::PushOutcome, Error> {
    let interrupted = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut terminate = match signal(SignalKind::terminate()) {
                Ok(stream) => stream,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return exit_code::INTERRUPTED;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => exit_code::INTERRUPTED,
                _ = terminate.recv() => exit_code::TERMINATED,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            exit_code::INTERRUPTED
        }
    };
    let registry_slot = crate::push::RegistrySlot::new();
    let signal_exit_code = tokio::select! {
        outcome = crate::push::push(config, Arc::clone(&reporter), &registry_slot) => return outcome,
        signal_exit_code = interrupted => signal_exit_code,
    };
    // The push future is dropped: no manifest is written. Cancel the upload
    // sessions it left open, briefly; a second signal exits at once. Its
    // listeners exist before the cleanup starts, so none slips in between.
    let second_signal = next_signal();
    tokio::spawn(async move {
        second_signal.await;
        std::process::exit(signal_exit_code);
    });
    if let Some(registry) = registry_slot.get() {
        let cancelled = registry
            .cancel_open_uploads(std::time::Duration::from_secs(3))
            .await;
        if let Some(line) = cancelled.report() {
            reporter.info(&line);
        }
    }
    Err(Error::Interrupted { signal_exit_code })
}

/// Resolves at the next SIGINT or SIGTERM after the call (not after the
/// first poll: the listeners are set up here).
fn next_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let interrupt = next(signal(SignalKind::interrupt()).ok());
        let terminate = next(signal(SignalKind::terminate()).ok());
        async move {
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
    };
    // Only our own crate logs at debug; dependencies' debug output can carry
    // headers we do not control.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("idpbuilder_push", filter)
        .with_default(tracing::Level::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(crate::redact::FilteringWriter::new)
        .with_target(false)
        .with_ansi(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(targets)
        .try_init();
}
