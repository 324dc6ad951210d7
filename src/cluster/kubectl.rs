//! `kubectl` command lines for hints, selecting the same kubeconfig and context
//! as this program was told to use, so they can be pasted as they are.

use std::fmt;
use std::path::Path;

/// The `--kubeconfig`/`--context` flags given to this program, replayed for kubectl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kubectl {
    /// Empty, or the flags with a leading space.
    flags: String,
}

impl Kubectl {
    pub fn new(kubeconfig: Option<&Path>, context: Option<&str>) -> Kubectl {
        let mut flags = String::new();
        if let Some(path) = kubeconfig {
            flags.push_str(" --kubeconfig ");
            flags.push_str(&shell_quote(&path.to_string_lossy()));
        }
        if let Some(context) = context {
            flags.push_str(" --context ");
            flags.push_str(&shell_quote(context));
        }
        Kubectl { flags }
    }

    /// `kubectl ARGUMENTS [--kubeconfig PATH] [--context NAME]`: the flags go
    /// last so the command reads like the documented one.
    pub fn command(&self, arguments: &str) -> String {
        format!("kubectl {arguments}{}", self.flags)
    }
}

/// `kubectl` plus its flags, for messages.
impl fmt::Display for Kubectl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "kubectl{}", self.flags)
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:=@%+,-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_command_and_are_quoted() {
        assert_eq!(
            Kubectl::default().command("cluster-info"),
            "kubectl cluster-info"
        );
        let kubectl = Kubectl::new(Some(Path::new("/tmp/my config")), Some("kind-localdev"));
        assert_eq!(
            kubectl.command("cluster-info"),
            "kubectl cluster-info --kubeconfig '/tmp/my config' --context kind-localdev"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
