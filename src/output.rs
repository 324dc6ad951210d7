//! What the user reads: progress and messages on stderr, the result on stdout.
//! Stderr lines are plain text (no control characters), one when a layer
//! starts and one when it ends, so CI logs stay readable.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Writes progress and messages to stderr unless quiet.
pub struct Reporter {
    quiet: AtomicBool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            quiet: AtomicBool::new(quiet),
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet.load(Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    pub fn info(&self, text: &str) {
        self.line(text);
    }

    /// Warnings are shown even when quiet: they concern safety.
    pub fn warn(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "warning: {text}");
    }

    pub fn layer_started(&self, label: &str) {
        self.line(&format!("{label}: pushing"));
    }

    pub fn layer_done(&self, label: &str, status: LayerStatus, size: u64) {
        self.line(&format!(
            "{label}: {} ({})",
            status.as_str(),
            human_bytes(size)
        ));
    }
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
}
