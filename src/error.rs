//! The program's error: every failure a user can cause, its message, its
//! `hint:`, and the one table that maps it to an exit code.

use crate::cluster::ClusterError;
use crate::compress::CompressError;
use crate::daemon::DaemonError;
use crate::export::ExportError;
use crate::manifest::ManifestError;
use crate::reference::ReferenceError;
use crate::registry::{RegistryError, TlsError};

/// Exit codes, documented in the README.
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    pub const FAILURE: i32 = 1;
    /// The image is not in the daemon, or the daemon cannot be reached.
    pub const NOT_FOUND: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
    pub const TERMINATED: i32 = 143;
}

/// An error and all its causes, joined by ": ", for messages and retry decisions.
pub fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("failed to read image {image}")]
    Export {
        image: String,
        #[source]
        source: ExportError,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot push {image}: {detail}")]
    Image { image: String, detail: String },
    #[error("interrupted")]
    Interrupted { signal_exit_code: i32 },
}

impl Error {
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Daemon(error) if error.is_not_found_or_unreachable() => exit_code::NOT_FOUND,
            Error::Interrupted { signal_exit_code } => *signal_exit_code,
            _ => exit_code::FAILURE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage { hint, .. } => hint.clone(),
            Error::Reference(error) => error.hint(),
            Error::Cluster(error) => error.hint(),
            Error::Daemon(error) => error.hint(),
            Error::Registry(error) => error.hint(),
            Error::Tls(error) => error.hint(),
            Error::Manifest(error) => error.hint(),
            Error::Export {
                source: ExportError::Read(_) | ExportError::Compress(CompressError::Read(_)),
                ..
            } => Some(
                "the daemon stopped sending the image; check its logs and free disk space"
                    .to_owned(),
            ),
            Error::Export { .. } | Error::Image { .. } | Error::Interrupted { .. } => None,
        }
    }

    /// The message with its causes, as printed after `error: `.
    pub fn render(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        // `transparent` variants repeat their inner message as the first source.
        let mut previous = text.clone();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if cause_text != previous && !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            previous = cause_text;
            source = cause.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(Error::usage("bad", None).exit_code(), exit_code::FAILURE);
        let not_found = Error::Daemon(DaemonError::ImageNotFound {
            image: "x".into(),
            endpoint: "unix:///s".into(),
            tried: "x:latest".into(),
        });
        assert_eq!(not_found.exit_code(), exit_code::NOT_FOUND);
        assert!(not_found.hint().unwrap().contains("docker build"));
        assert_eq!(
            Error::Interrupted {
                signal_exit_code: 130
            }
            .exit_code(),
            exit_code::INTERRUPTED
        );
        assert_eq!(
            Error::Interrupted {
                signal_exit_code: 143
            }
            .exit_code(),
            exit_code::TERMINATED
        );
    }

    #[test]
    fn render_joins_causes_once() {
        let error = Error::Export {
            image: "myapp:latest".into(),
            source: ExportError::Read(std::io::Error::other("connection reset")),
        };
        assert_eq!(
            error.render(),
            "failed to read image myapp:latest: reading the image export from the daemon failed: connection reset"
        );
    }
}
