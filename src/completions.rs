//! Shell completion. `--completions bash|zsh|fish` prints a script (clap_complete)
//! for the name the program was invoked under. `__complete WORDS...` answers
//! kubectl's plugin completion: kubectl runs `kubectl_complete-idpbuilder` with
//! the words after `kubectl idpbuilder` (the last one being completed), and
//! expects Cobra's `__complete` answer: one candidate per line (`value<TAB>help`)
//! and a last line `:DIRECTIVE`. scripts/kubectl_complete-idpbuilder forwards
//! to `kubectl-idpbuilder __complete`.

use std::io::Write;

use clap::builder::ValueHint;
use clap::{Arg, ArgAction, Command};

use crate::cli::{self, Invocation};

/// The shells `--completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The hidden first argument kubectl's helper passes.
pub const COMPLETE_REQUEST: &str = "__complete";

/// Writes the completion script of `shell` for the invoked name to stdout.
pub fn print_script(shell: CompletionShell, invocation: Invocation) {
    let bin_name = match invocation {
        Invocation::Standalone => "idpbuilder-push",
        Invocation::KubectlPush => "kubectl-idpbuilder-push",
        Invocation::KubectlPlugin => "kubectl-idpbuilder",
    };
    let mut command = cli::command_for(invocation).name(bin_name);
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    // Generated in memory: clap_complete panics on a write error, and a
    // closed pipe (`| head`) is not worth a panic.
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut command, bin_name, &mut script);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&script).and_then(|()| stdout.flush());
}

/// `argv[2..]` when argv is `PROGRAM __complete ...`.
pub fn complete_request(argv: &[std::ffi::OsString]) -> Option<Vec<String>> {
    if argv.get(1)? != COMPLETE_REQUEST {
        return None;
    }
    Some(
        argv[2..]
            .iter()
            .map(|word| word.to_string_lossy().into_owned())
            .collect(),
    )
}

/// Cobra's directives (a bit set), as kubectl passes them to the shell.
mod directive {
    /// Let the shell complete file names.
    pub const FILES: u32 = 0;
    /// No space after the completion (a `--flag=` prefix, a directory).
    pub const NO_SPACE: u32 = 2;
    /// No file names.
    pub const NO_FILES: u32 = 4;
}

/// The answer to `__complete WORDS...` in Cobra's format.
pub fn complete(invocation: Invocation, words: &[String]) -> String {
    let mut root = cli::command_for(invocation);
    root.build();
    let (candidates, directive) = candidates(&root, words);
    let mut answer = String::new();
    for (value, help) in candidates {
        answer.push_str(&value);
        if !help.is_empty() {
            answer.push('\t');
            answer.push_str(&help);
        }
        answer.push('\n');
    }
    answer.push_str(&format!(":{directive}\n"));
    answer
}

type Candidate = (String, String);

fn candidates(root: &Command, words: &[String]) -> (Vec<Candidate>, u32) {
    let (current, before) = match words.split_last() {
        Some((current, before)) => (current.as_str(), before),
        None => ("", &[][..]),
    };
    let mut command = root;
    let mut pending_value: Option<&Arg> = None;
    for word in before {
        if pending_value.take().is_some() {
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            if !long.contains('=') {
                pending_value = find_long(command, long).filter(|arg| takes_value(arg));
            }
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-qr` ends in a flag that takes the next word; `-rURL` does not.
            let shorts: Vec<char> = shorts.chars().collect();
            if let Some((last, leading)) = shorts.split_last() {
                let takes_next = leading
                    .iter()
                    .all(|short| find_short(command, *short).is_some_and(|arg| !takes_value(arg)));
                if takes_next {
                    pending_value = find_short(command, *last).filter(|arg| takes_value(arg));
                }
            }
        } else if let Some(subcommand) = command.find_subcommand(word) {
            command = subcommand;
        }
    }
    if let Some(arg) = pending_value {
        return values(arg, current, "");
    }
    if let Some((flag, value)) = current
        .strip_prefix("--")
        .and_then(|rest| rest.split_once('='))
    {
        return match find_long(command, flag) {
            Some(arg) => values(arg, value, &format!("--{flag}=")),
            None => (Vec::new(), directive::NO_FILES),
        };
    }
    if current.starts_with('-') {
        return (flags(command, current), directive::NO_FILES);
    }
    let mut subcommands: Vec<Candidate> = command
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set() && subcommand.get_name() != "help")
        .filter(|subcommand| subcommand.get_name().starts_with(current))
        .map(|subcommand| {
            (
                subcommand.get_name().to_owned(),
                first_line(subcommand.get_about()),
            )
        })
        .collect();
    subcommands.sort();
    // The IMAGE argument: local image names are not offered (that would need
    // the daemon), and file names are never images.
    (subcommands, directive::NO_FILES)
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

fn find_long<'a>(command: &'a Command, long: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
}

fn find_short(command: &Command, short: char) -> Option<&Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_short() == Some(short))
}

fn flags(command: &Command, prefix: &str) -> Vec<Candidate> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| Some((format!("--{}", arg.get_long()?), arg)))
        .filter(|(flag, _)| flag.starts_with(prefix))
        .map(|(flag, arg)| (flag, first_line(arg.get_help())))
        .collect()
}

/// Values of `arg` starting with `prefix`, each prefixed with `insert`.
fn values(arg: &Arg, prefix: &str, insert: &str) -> (Vec<Candidate>, u32) {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        let candidates = possible
            .iter()
            .filter(|value| !value.is_hide_set() && value.get_name().starts_with(prefix))
            .map(|value| {
                (
                    format!("{insert}{}", value.get_name()),
                    first_line(value.get_help()),
                )
            })
            .collect();
        return (candidates, directive::NO_FILES);
    }
    let paths = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    );
    match (paths, insert.is_empty()) {
        (true, true) => (Vec::new(), directive::FILES),
        _ => (Vec::new(), directive::NO_FILES | directive::NO_SPACE),
    }
}

fn first_line(text: Option<&clap::builder::StyledStr>) -> String {
    text.map(|text| text.to_string())
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(invocation: Invocation, words: &[&str]) -> Vec<String> {
        let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
        complete(invocation, &words)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn values_of(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .filter(|line| !line.starts_with(':'))
            .map(|line| line.split('\t').next().unwrap())
            .collect()
    }

    #[test]
    fn the_first_word_of_the_plugin_is_a_subcommand() {
        let lines = answer(Invocation::KubectlPlugin, &[""]);
        assert_eq!(values_of(&lines), ["push", "version"]);
        assert_eq!(lines.last().unwrap(), ":4");
        let lines = answer(Invocation::KubectlPlugin, &["pu"]);
        assert_eq!(values_of(&lines), ["push"]);
    }

    #[test]
    fn flags_of_push_are_offered_with_their_help() {
        let lines = answer(Invocation::KubectlPlugin, &["push", "--reg"]);
        assert_eq!(values_of(&lines), ["--registry"]);
        assert!(lines[0].contains("\tRegistry URL"), "{lines:?}");
        let lines = answer(Invocation::Standalone, &["--no-"]);
        assert_eq!(values_of(&lines), ["--no-cache"]);
    }

    #[test]
    fn flag_values_are_completed_from_their_choices_or_as_files() {
        let lines = answer(Invocation::KubectlPlugin, &["push", "--log-level", "d"]);
        assert_eq!(values_of(&lines), ["debug"]);
        let lines = answer(Invocation::KubectlPlugin, &["push", "-o", ""]);
        assert_eq!(values_of(&lines), ["text", "json"]);
        let lines = answer(Invocation::Standalone, &["--output=j"]);
        assert_eq!(values_of(&lines), ["--output=json"]);
        let lines = answer(Invocation::Standalone, &["--ca-file", ""]);
        assert_eq!(lines, [":0"], "the shell completes file names");
        let lines = answer(Invocation::Standalone, &["-r", ""]);
        assert_eq!(lines, [":6"], "a URL: nothing to offer, no file names");
    }

    #[test]
    fn the_image_argument_offers_no_file_names() {
        let lines = answer(Invocation::KubectlPlugin, &["push", "-q", ""]);
        assert_eq!(lines, [":4"]);
    }

    #[test]
    fn only_the_complete_request_is_recognised() {
        let argv = |words: &[&str]| -> Vec<std::ffi::OsString> {
            words.iter().map(std::ffi::OsString::from).collect()
        };
        assert_eq!(
            complete_request(&argv(&["kubectl-idpbuilder", "__complete", "push", ""])),
            Some(vec!["push".to_owned(), String::new()])
        );
        assert_eq!(
            complete_request(&argv(&["kubectl-idpbuilder", "push"])),
            None
        );
        assert_eq!(complete_request(&argv(&["kubectl-idpbuilder"])), None);
    }
}
