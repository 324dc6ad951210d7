//! Whether stderr is a terminal, and whether it gets colors: only on a
//! terminal, never with `NO_COLOR` set (https://no-color.org), forced by
//! `CLICOLOR_FORCE`, the same rules clap applies to its own help and errors.

use std::io::IsTerminal;

/// True when stderr is a terminal that can redraw lines (not `TERM=dumb`).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && !is_dumb(std::env::var("TERM").ok().as_deref())
}

fn is_dumb(term: Option<&str>) -> bool {
    term == Some("dumb")
}

/// Colors for text written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    enabled: bool,
}

impl Paint {
    pub fn for_stderr() -> Paint {
        Paint {
            enabled: colors_enabled(
                std::env::var_os("NO_COLOR").as_deref(),
                std::env::var_os("CLICOLOR_FORCE").as_deref(),
                stderr_is_terminal(),
            ),
        }
    }

    pub fn plain() -> Paint {
        Paint { enabled: false }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn error(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    pub fn warning(self, text: &str) -> String {
        self.wrap("1;33", text)
    }

    pub fn hint(self, text: &str) -> String {
        self.wrap("1;36", text)
    }

    pub fn success(self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
}

/// NO_COLOR (non-empty) wins, then CLICOLOR_FORCE (non-empty, not "0"), then
/// whether the stream is a terminal.
fn colors_enabled(
    no_color: Option<&std::ffi::OsStr>,
    force: Option<&std::ffi::OsStr>,
    terminal: bool,
) -> bool {
    if no_color.is_some_and(|value| !value.is_empty()) {
        return false;
    }
    if force.is_some_and(|value| !value.is_empty() && value != "0") {
        return true;
    }
    terminal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_beats_everything_and_colors_need_a_terminal() {
        let set = Some(OsStr::new("1"));
        assert!(!colors_enabled(set, None, true));
        assert!(!colors_enabled(set, set, true));
        assert!(colors_enabled(Some(OsStr::new("")), None, true));
        assert!(colors_enabled(None, None, true));
        assert!(!colors_enabled(None, None, false));
        assert!(colors_enabled(None, set, false));
        assert!(!colors_enabled(None, Some(OsStr::new("0")), false));
    }

    #[test]
    fn plain_paint_adds_no_escape_sequences() {
        let paint = Paint::plain();
        assert_eq!(paint.error("error:"), "error:");
        let colored = Paint { enabled: true };
        assert_eq!(colored.error("error:"), "\x1b[1;31merror:\x1b[0m");
    }

    #[test]
    fn a_dumb_terminal_is_not_a_terminal_for_bars() {
        assert!(is_dumb(Some("dumb")));
        assert!(!is_dumb(Some("xterm-256color")));
        assert!(!is_dumb(None));
    }
}
