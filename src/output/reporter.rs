//! The Reporter: progress and messages on stderr, in one display chosen once.
//! On a terminal, a bar per layer being uploaded; elsewhere (CI, pipes), plain
//! lines without control characters, one when a layer starts and one when it
//! ends; with `--quiet` (or `-o json` off a terminal) only warnings.
//!
//! Layers are named `layer K/N` in the order this push reaches them (a layer
//! found in the registry is reached when it is confirmed), so the line that
//! starts an upload and the one that ends it carry the same name.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::style::{self, Paint};
use super::terminal::Bars;
use super::{human_bytes, short_digest, LayerStatus, OutputFormat};

/// What goes to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Warnings only.
    Quiet,
    /// Plain lines (not a terminal, or logs interleave).
    Lines,
    /// Progress bars (stderr is a terminal).
    Bars,
}

impl Display {
    /// The display for this process: bars need a terminal, and step aside for
    /// debug logs, which write to stderr on their own.
    pub fn choose(quiet: bool, format: OutputFormat, verbose: bool, terminal: bool) -> Display {
        match (quiet, terminal, format) {
            (true, _, _) => Display::Quiet,
            (false, true, _) if verbose => Display::Lines,
            (false, true, _) => Display::Bars,
            // stdout is for a program; stderr keeps only what needs a person.
            (false, false, OutputFormat::Json) => Display::Quiet,
            (false, false, OutputFormat::Text) => Display::Lines,
        }
    }
}

enum Sink {
    Quiet,
    Lines,
    Bars(Bars),
}

pub struct Reporter {
    sink: Sink,
    paint: Paint,
    started: Instant,
    reached: AtomicUsize,
    layer_count: AtomicUsize,
    sent: AtomicU64,
}

impl Reporter {
    /// Text output: quiet, or bars/lines by whether stderr is a terminal.
    pub fn new(quiet: bool) -> Reporter {
        Reporter::for_stderr(quiet, OutputFormat::Text, false)
    }

    pub fn for_stderr(quiet: bool, format: OutputFormat, verbose: bool) -> Reporter {
        let display = Display::choose(quiet, format, verbose, style::stderr_is_terminal());
        Reporter::with_display(display, Paint::for_stderr())
    }

    pub fn with_display(display: Display, paint: Paint) -> Reporter {
        Reporter {
            sink: match display {
                Display::Quiet => Sink::Quiet,
                Display::Lines => Sink::Lines,
                Display::Bars => Sink::Bars(Bars::new(paint.enabled())),
            },
            paint,
            started: Instant::now(),
            reached: AtomicUsize::new(0),
            layer_count: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Time since the reporter was made (the start of the push).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes of layer blobs sent to the registry so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn line(&self, text: &str) {
        match &self.sink {
            Sink::Quiet => {}
            Sink::Lines => eprintln!("{text}"),
            Sink::Bars(bars) => bars.println(text),
        }
    }

    pub fn info(&self, text: &str) {
        self.line(text);
    }

    /// Warnings are shown even when quiet: they concern safety.
    pub fn warn(&self, text: &str) {
        let line = format!("{} {text}", self.paint.warning("warning:"));
        match &self.sink {
            Sink::Bars(bars) => bars.println(&line),
            Sink::Quiet | Sink::Lines => eprintln!("{line}"),
        }
    }

    /// How many layers the image has, for `layer K/N`.
    pub fn layer_count(&self, count: usize) {
        self.layer_count.store(count, Ordering::Relaxed);
    }

    fn next_label(&self) -> String {
        let reached = self.reached.fetch_add(1, Ordering::Relaxed) + 1;
        layer_label(reached, self.layer_count.load(Ordering::Relaxed))
    }

    /// An upload starts; `input_size` is what will be read for it (the
    /// uncompressed size of a layer compressed on the way).
    pub fn layer_started(self: &Arc<Self>, input_size: u64) -> LayerProgress {
        let label = self.next_label();
        let bar = match &self.sink {
            Sink::Quiet => None,
            Sink::Lines => {
                eprintln!("{}", started_line(&label));
                None
            }
            Sink::Bars(bars) => Some(bars.start(label.clone(), input_size)),
        };
        LayerProgress {
            reporter: Arc::clone(self),
            label,
            bar,
            sent: 0,
            done: false,
        }
    }

    /// A layer that needed no upload: already in the repository, or mounted.
    /// `digest` is the blob's digest (shortened on output).
    pub fn layer_done(&self, digest: &str, status: LayerStatus, size: u64) {
        let label = self.next_label();
        self.line(&self.done_line(&label, digest, status, size));
    }

    fn done_line(&self, label: &str, digest: &str, status: LayerStatus, size: u64) -> String {
        let line = done_line(label, digest, status, size);
        if !self.paint.enabled() {
            return line;
        }
        let status_text = match status {
            LayerStatus::Pushed => self.paint.success(status.as_str()),
            LayerStatus::Exists | LayerStatus::Mounted => self.paint.dim(status.as_str()),
        };
        format!(
            "{} {}: {status_text} ({})",
            self.paint.bold(label),
            short_digest(digest),
            human_bytes(size)
        )
    }

    /// The push ended well: drop what is left of the bars, then the summary.
    pub fn finish(&self, statuses: impl IntoIterator<Item = LayerStatus>) {
        let counts = LayerCounts::of(statuses);
        self.clear();
        self.line(&summary_line(&counts, self.bytes_sent(), self.elapsed()));
    }

    /// Removes the bars (before an error is printed).
    pub fn clear(&self) {
        if let Sink::Bars(bars) = &self.sink {
            bars.clear();
        }
    }
}

/// One upload's progress; dropping it unfinished (a failed or abandoned
/// upload) removes its bar without a line.
pub struct LayerProgress {
    reporter: Arc<Reporter>,
    label: String,
    bar: Option<ProgressBar>,
    sent: u64,
    done: bool,
}

impl LayerProgress {
    /// `input` more bytes of the layer were read and handed to the upload.
    pub fn read(&self, input: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(input);
        }
    }

    /// `bytes` more bytes of the blob reached the registry.
    pub fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
        self.reporter.sent.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} sent", human_bytes(self.sent)));
        }
    }

    /// The blob is stored under `digest`.
    pub fn pushed(mut self, digest: &str, size: u64) {
        self.done = true;
        if let (Some(bar), Sink::Bars(bars)) = (&self.bar, &self.reporter.sink) {
            bars.remove(bar);
        }
        let line = self
            .reporter
            .done_line(&self.label, digest, LayerStatus::Pushed, size);
        self.reporter.line(&line);
    }
}

impl Drop for LayerProgress {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let (Some(bar), Sink::Bars(bars)) = (&self.bar, &self.reporter.sink) {
            bars.remove(bar);
        }
    }
}

/// `layer 2/5`, or `layer 7` past the count (an image listing a layer twice
/// is uploaded once, so K stays within N; a wrong N must not print 7/5).
fn layer_label(reached: usize, count: usize) -> String {
    if reached <= count {
        format!("layer {reached}/{count}")
    } else {
        format!("layer {reached}")
    }
}

fn started_line(label: &str) -> String {
    format!("{label}: pushing")
}

/// `layer 2/5 sha256:0123456789ab: pushed (4.1 MB)`.
fn done_line(label: &str, digest: &str, status: LayerStatus, size: u64) -> String {
    format!(
        "{label} {}: {} ({})",
        short_digest(digest),
        status.as_str(),
        human_bytes(size)
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
struct LayerCounts {
    pushed: usize,
    exists: usize,
    mounted: usize,
}

impl LayerCounts {
    fn of(statuses: impl IntoIterator<Item = LayerStatus>) -> LayerCounts {
        let mut counts = LayerCounts::default();
        for status in statuses {
            match status {
                LayerStatus::Pushed => counts.pushed += 1,
                LayerStatus::Exists => counts.exists += 1,
                LayerStatus::Mounted => counts.mounted += 1,
            }
        }
        counts
    }
}

/// `Done in 4.2s: 2 layers pushed, 1 skipped (already there), 0 mounted; 12.2 MB sent`.
fn summary_line(counts: &LayerCounts, sent: u64, elapsed: Duration) -> String {
    let layers = if counts.pushed == 1 {
        "layer"
    } else {
        "layers"
    };
    format!(
        "Done in {}: {} {layers} pushed, {} skipped (already there), {} mounted; {} sent",
        human_duration(elapsed),
        counts.pushed,
        counts.exists,
        counts.mounted,
        human_bytes(sent)
    )
}

/// `0.4s`, `12.3s`, `2m05s`.
fn human_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn start_and_end_lines_share_the_layer_label() {
        assert_eq!(started_line(&layer_label(2, 5)), "layer 2/5: pushing");
        assert_eq!(
            done_line(&layer_label(2, 5), DIGEST, LayerStatus::Pushed, 4_100_000),
            "layer 2/5 sha256:0123456789ab: pushed (4.1 MB)"
        );
        assert_eq!(
            done_line(&layer_label(1, 1), DIGEST, LayerStatus::Exists, 12),
            "layer 1/1 sha256:0123456789ab: exists (12 B)"
        );
        assert_eq!(layer_label(6, 5), "layer 6");
        assert_eq!(layer_label(1, 0), "layer 1");
    }

    #[test]
    fn the_summary_counts_every_status_without_matching_layer_line_patterns() {
        let counts = LayerCounts::of([
            LayerStatus::Pushed,
            LayerStatus::Exists,
            LayerStatus::Mounted,
            LayerStatus::Pushed,
        ]);
        let line = summary_line(&counts, 12_200_000, Duration::from_millis(4230));
        assert_eq!(
            line,
            "Done in 4.2s: 2 layers pushed, 1 skipped (already there), 1 mounted; 12.2 MB sent"
        );
        // Tests and scripts count `: pushed` / `: exists` per layer.
        for pattern in [": pushed", ": exists", ": mounted"] {
            assert!(!line.contains(pattern), "{line}");
        }
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn bars_only_on_a_terminal_and_never_when_quiet() {
        use OutputFormat::{Json, Text};
        assert_eq!(Display::choose(false, Text, false, true), Display::Bars);
        assert_eq!(Display::choose(false, Text, false, false), Display::Lines);
        assert_eq!(Display::choose(true, Text, false, true), Display::Quiet);
        assert_eq!(Display::choose(false, Text, true, true), Display::Lines);
        assert_eq!(Display::choose(false, Json, false, false), Display::Quiet);
        assert_eq!(Display::choose(false, Json, false, true), Display::Bars);
    }

    #[test]
    fn progress_counts_bytes_sent_once_per_layer() {
        let reporter = Arc::new(Reporter::with_display(Display::Quiet, Paint::plain()));
        reporter.layer_count(2);
        let mut first = reporter.layer_started(10);
        first.read(10);
        first.sent(4);
        first.pushed(DIGEST, 4);
        let mut abandoned = reporter.layer_started(10);
        abandoned.sent(3);
        drop(abandoned);
        assert_eq!(reporter.bytes_sent(), 7);
        assert_eq!(reporter.next_label(), "layer 3");
    }
}
