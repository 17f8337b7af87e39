//! Errors that stop a run. A bad row is never one of these: it is an `Outcome` (`crate::outcome`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or combination of flags that cannot work; the message names the flag.
    #[error("{0}")]
    Usage(String),

    /// An input or output file that cannot be used.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    /// `--resume` against a log that does not match this run.
    #[error("cannot resume: {0}")]
    Resume(String),

    #[error("{0}")]
    Other(String),

    /// An output path czload will not write (not a regular file, in a folder that is not
    /// there, an input, another output, or a file czload did not write: `outpath`): exit
    /// 2, before anything is sent; the message names the flag to change.
    #[error("{0}")]
    Output(String),

    /// An input whose own bytes contradict how it would be read (`source::sniff`): exit
    /// 2, before any request; the message names the flags that would read it.
    #[error("{}: {message}", path.display())]
    Reading { path: PathBuf, message: String },
}

impl Error {
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Error {
        Error::File {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl Error {
    /// The exit code of a run this error stops (docs/architecture.md, Exit codes).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reading { .. } | Error::Output(_) => 2,
            _ => 1,
        }
    }
}

/// The exit code of a run the server's absence stopped (longer than `--max-retry-time`,
/// or never answering): sysexits.h's EX_TEMPFAIL, "try again later", so that a scheduler
/// can retry it and not exit 1 (a configuration to fix first). docs/architecture.md,
/// Exit codes.
pub const EXIT_OUTAGE: i32 = 75;

pub type Result<T, E = Error> = std::result::Result<T, E>;
