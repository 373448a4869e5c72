//! The engine's error type and the one exit-code table every command shares.
//!
//! | code | meaning                                                                   |
//! |------|---------------------------------------------------------------------------|
//! | 0    | success; for `plan`: no changes                                           |
//! | 1    | runtime failure: kernel, I/O, an action or the verification failed        |
//! | 2    | `plan`: changes pending                                                   |
//! | 3    | refused by a safety limit: deletions held by `maxDeletions`               |
//! | 65   | invalid input (a manifest, the node config, a missing watched directory)  |
//!
//! When several apply, the most serious wins: 1, then 65, then 3, then 2 — `plan` and
//! `validate` exit 65 whenever any manifest is invalid, even though a node keeps running on
//! the last known good version.

use std::path::{Path, PathBuf};

use crate::dataplane::DataplaneError;

/// A process exit status from the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    Success,
    ChangesPending,
    Refused,
    InvalidInput,
    Failure,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::ChangesPending => 2,
            ExitStatus::Refused => 3,
            ExitStatus::InvalidInput => 65,
        }
    }

    /// The more serious of two statuses (the order of the variants).
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        self.max(other)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("{path}: unreadable state file: {source}")]
    StateFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: another balanced apply or run holds this state directory")]
    Locked { path: PathBuf },
    #[error("--dataplane {0:?}: expected `kernel` or `sim:PATH`")]
    DataplaneSpec(String),
    /// The node config cannot be used; the diagnostics were printed already.
    #[error("{path}: invalid node config ({errors} error(s))")]
    InvalidNodeConfig { path: PathBuf, errors: usize },
    /// The command line cannot be used as given.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

impl EngineError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        match self {
            EngineError::DataplaneSpec(_)
            | EngineError::InvalidNodeConfig { .. }
            | EngineError::Usage(_) => ExitStatus::InvalidInput,
            EngineError::Io { .. }
            | EngineError::Dataplane(_)
            | EngineError::StateFormat { .. }
            | EngineError::Locked { .. }
            | EngineError::Runtime(_) => ExitStatus::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_follows_the_documented_precedence() {
        use ExitStatus::*;
        assert_eq!(ChangesPending.worst(Refused), Refused);
        assert_eq!(Refused.worst(InvalidInput), InvalidInput);
        assert_eq!(InvalidInput.worst(Failure), Failure);
        assert_eq!(Success.worst(ChangesPending), ChangesPending);
        assert_eq!(
            [Success, ChangesPending, Refused, InvalidInput, Failure].map(ExitStatus::code),
            [0, 2, 3, 65, 1]
        );
    }
}
