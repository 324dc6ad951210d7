//! What the user reads. stdout carries the result only: the pinned reference,
//! or with `-o json` one JSON object (`json`). Everything else goes to stderr:
//! progress (`reporter`: bars on a terminal, plain lines elsewhere), warnings,
//! and errors with their hints, as text or as one JSON object. Colors only on
//! a terminal and never with NO_COLOR (`style`).

mod json;
mod reporter;
mod style;
mod terminal;

use std::ffi::OsString;

pub use json::{ClusterResult, ErrorReport, PushResult};
pub use reporter::{Display, LayerProgress, Reporter};
pub use style::{stderr_is_terminal, Paint};

/// `-o/--output`: how the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    // Plain comments, not doc comments: clap would print them as a list of
    // values and switch --help to its long layout.
    // The pinned reference on stdout; errors as `error:` lines.
    #[default]
    Text,
    // One JSON object on stdout; errors as one JSON object on stderr.
    Json,
}

/// How a layer got into the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    Pushed,
    Exists,
    Mounted,
}

impl LayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerStatus::Pushed => "pushed",
            LayerStatus::Exists => "exists",
            LayerStatus::Mounted => "mounted",
        }
    }
}

/// Prints a failure on stderr: `error: ...` then `hint: ...` after a blank
/// line, or the JSON error object (its `exitCode` is the process's).
pub fn print_error(format: OutputFormat, message: &str, hint: Option<&str>, exit_code: i32) {
    match format {
        OutputFormat::Json => {
            eprintln!("{}", ErrorReport::new(message, hint, exit_code).to_json());
        }
        OutputFormat::Text => {
            let paint = Paint::for_stderr();
            eprintln!("{} {message}", paint.error("error:"));
            if let Some(hint) = hint {
                eprintln!("\n{} {hint}", paint.hint("hint:"));
            }
        }
    }
}

/// Prints a command-line error clap found: clap's own text (colored by clap's
/// rules, which honour NO_COLOR), or the JSON error object.
pub fn print_usage_error(format: OutputFormat, error: &clap::Error, exit_code: i32) {
    match format {
        OutputFormat::Text => {
            let _ = error.print();
        }
        OutputFormat::Json => {
            let (message, hint) = usage_error_parts(&error.render().to_string());
            print_error(format, &message, hint.as_deref(), exit_code);
        }
    }
}

/// Splits clap's rendered error into its message and a hint (its `tip:`
/// lines, else its pointer to --help).
fn usage_error_parts(rendered: &str) -> (String, Option<String>) {
    let mut lines = rendered.lines();
    // The message is the first paragraph: a list of missing arguments or
    // possible values continues it on indented lines.
    let message = lines
        .by_ref()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned();
    let rest: Vec<&str> = lines.map(str::trim).collect();
    let tips: Vec<&str> = rest
        .iter()
        .filter_map(|line| line.strip_prefix("tip: "))
        .collect();
    let hint = if tips.is_empty() {
        rest.iter()
            .find(|line| line.starts_with("For more information"))
            .map(|line| line.to_string())
    } else {
        Some(tips.join("; "))
    };
    (message, hint)
}

/// The `-o/--output` value in a raw command line, for errors found before the
/// command line is parsed (a usage error must still be JSON under `-o json`).
pub fn format_in_argv(argv: &[OsString]) -> OutputFormat {
    let mut format = OutputFormat::Text;
    let mut words = argv.iter().skip(1).map(|word| word.to_string_lossy());
    while let Some(word) = words.next() {
        let value = match word.as_ref() {
            "--" => break,
            "-o" | "--output" => words.next().map(|value| value.into_owned()),
            other => other
                .strip_prefix("--output=")
                .or_else(|| other.strip_prefix("-o="))
                .or_else(|| other.strip_prefix("-o"))
                .map(str::to_owned),
        };
        match value.as_deref() {
            Some("json") => format = OutputFormat::Json,
            Some("text") => format = OutputFormat::Text,
            _ => {}
        }
    }
    format
}

/// `12.3 MB` style sizes (powers of 1000, as docker prints them).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The short form of a digest for progress lines: `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |colon| colon + 13);
    &digest[..end.min(digest.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(307_000_000), "307.0 MB");
        assert_eq!(human_bytes(3_221_225_472), "3.2 GB");
    }

    #[test]
    fn short_digests_keep_twelve_hex_digits() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
    }

    #[test]
    fn the_output_format_is_found_in_a_raw_command_line() {
        let argv = |words: &[&str]| -> Vec<OsString> {
            std::iter::once("idpbuilder-push")
                .chain(words.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert_eq!(format_in_argv(&argv(&["img"])), OutputFormat::Text);
        for words in [
            &["-o", "json", "--bad"][..],
            &["--output", "json"],
            &["--output=json"],
            &["-ojson"],
            &["push", "-o=json"],
        ] {
            assert_eq!(
                format_in_argv(&argv(words)),
                OutputFormat::Json,
                "{words:?}"
            );
        }
        assert_eq!(
            format_in_argv(&argv(&["--", "-o", "json"])),
            OutputFormat::Text
        );
        assert_eq!(
            format_in_argv(&argv(&["-o", "yaml"])),
            OutputFormat::Text,
            "an invalid value is itself the usage error, printed as text"
        );
    }

    #[test]
    fn clap_errors_split_into_message_and_hint() {
        let rendered = "error: unexpected argument '--nope' found\n\n  tip: to pass '--nope' as a value, use '-- --nope'\n\nUsage: idpbuilder-push [OPTIONS] <IMAGE>\n\nFor more information, try '--help'.\n";
        let (message, hint) = usage_error_parts(rendered);
        assert_eq!(message, "unexpected argument '--nope' found");
        assert_eq!(
            hint.as_deref(),
            Some("to pass '--nope' as a value, use '-- --nope'")
        );
        let (message, hint) = usage_error_parts(
            "error: the following required arguments were not provided:\n  <IMAGE>\n\nUsage: x\n\nFor more information, try '--help'.\n",
        );
        assert_eq!(
            message,
            "the following required arguments were not provided: <IMAGE>"
        );
        assert_eq!(hint.as_deref(), Some("For more information, try '--help'."));
    }
}
