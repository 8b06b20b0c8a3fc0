//! Typed errors of the storage engine. Each variant says which class of failure
//! it is (callers map the class to a gRPC code); the message says what was wrong
//! and what to do about it.

use std::time::Duration;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request itself is wrong (bad name, size, path, format...).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the current state forbids it (busy volume,
    /// dependent clones, snapshots on a raw volume...).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// Another operation runs on the volume right now; retry once it ended
    /// (it ends by itself, unlike a failed precondition).
    #[error("{0}")]
    Busy(String),
    /// The storage cannot be reached right now (timeout, server down); retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("operation cancelled")]
    Cancelled,
    /// Waited for something (a guest, a server) that did not happen in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

/// The class of a [`StorageError`], for mapping to protocol status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Busy,
    Unavailable,
    Unimplemented,
    PermissionDenied,
    Cancelled,
    DeadlineExceeded,
    Internal,
}

impl StorageError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidArgument(_) => ErrorClass::InvalidArgument,
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::AlreadyExists(_) => ErrorClass::AlreadyExists,
            Self::FailedPrecondition(_) => ErrorClass::FailedPrecondition,
            Self::ResourceExhausted(_) => ErrorClass::ResourceExhausted,
            Self::Busy(_) => ErrorClass::Busy,
            Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::Unimplemented(_) => ErrorClass::Unimplemented,
            Self::PermissionDenied(_) => ErrorClass::PermissionDenied,
            Self::Cancelled => ErrorClass::Cancelled,
            Self::DeadlineExceeded(_) => ErrorClass::DeadlineExceeded,
            Self::Tool(ToolError::Timeout { .. }) => ErrorClass::DeadlineExceeded,
            Self::Tool(_) | Self::Io { .. } | Self::Internal(_) => ErrorClass::Internal,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn precondition(msg: impl Into<String>) -> Self {
        Self::FailedPrecondition(msg.into())
    }
}

/// A failure of an external tool run by [`crate::tools::exec`].
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("could not start {program}: {source} (is it installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {after:?} and was killed")]
    Timeout { program: String, after: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        /// Redacted standard error of the tool.
        stderr: String,
    },
    #[error("{program} printed output that could not be understood: {detail}")]
    BadOutput { program: String, detail: String },
    #[error("{program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl ToolError {
    /// Standard error of a failed run, empty for other failures.
    pub fn stderr(&self) -> &str {
        match self {
            Self::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}
