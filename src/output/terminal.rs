//! Progress bars on a terminal: one live bar per layer being uploaded, drawn
//! below the lines already printed; a finished layer becomes a permanent line.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Redraws per second: enough to look live, cheap over slow SSH sessions.
const REFRESH_HZ: u8 = 10;

/// Columns of a bar line besides the bar itself (fields are padded to fixed
/// widths, the message is at most `12.3 MB sent`).
const FIXED_COLUMNS: u16 = 68;

/// Columns left free at the right edge. A line filling the last column leaves
/// the cursor waiting to wrap, so the `^C` a terminal echoes on an interruption
/// would start a new line and the next redraw would leave a stale bar behind.
const MARGIN: u16 = 2;

pub struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl Bars {
    pub fn new(colors: bool) -> Bars {
        let columns = console::Term::stderr().size().1;
        let bar = bar_width(columns);
        // Bytes are the layer's input (uncompressed for layers compressed on
        // the way), so the ETA holds; the message counts what was sent.
        let template = if colors {
            format!("{{prefix:<11.bold}} [{{bar:{bar}.cyan/blue}}] {{decimal_bytes:>9}}/{{decimal_total_bytes:<9}} {{decimal_bytes_per_sec:>11}} ETA {{eta:<3}} {{msg:.dim}}")
        } else {
            format!("{{prefix:<11}} [{{bar:{bar}}}] {{decimal_bytes:>9}}/{{decimal_total_bytes:<9}} {{decimal_bytes_per_sec:>11}} ETA {{eta:<3}} {{msg}}")
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(REFRESH_HZ)),
            style,
        }
    }

    /// A permanent line above the bars.
    pub fn println(&self, line: &str) {
        if self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    pub fn start(&self, prefix: String, total: u64) -> ProgressBar {
        let bar = ProgressBar::new(total)
            .with_style(self.style.clone())
            .with_prefix(prefix);
        let bar = self.multi.add(bar);
        // Keeps rate and ETA moving while a large chunk is in flight.
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }

    /// Removes a bar (its layer is done, or given up).
    pub fn remove(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
    }

    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

/// The bar's width for a terminal `columns` wide: the rest of the line, less
/// the margin, within 5..=40.
fn bar_width(columns: u16) -> u16 {
    columns.saturating_sub(FIXED_COLUMNS + MARGIN).clamp(5, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_lines_stay_short_of_the_last_column() {
        assert_eq!(bar_width(100), 30);
        assert_eq!(bar_width(80), 10);
        assert_eq!(bar_width(200), 40);
        assert_eq!(bar_width(0), 5);
    }
}
