//! The control plane's error: a gRPC code and a message that says what was
//! wrong and what to do. Serializable, so a saga can persist why it failed.

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ApiError {
    code: i32,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code: code as i32, message: message.into() }
    }
    pub fn code(&self) -> Code {
        Code::from_i32(self.code)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }
    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, m)
    }
    pub fn precondition(m: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, m)
    }
    pub fn exhausted(m: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Code::Internal, m)
    }
    pub fn cancelled(m: impl Into<String>) -> Self {
        Self::new(Code::Cancelled, m)
    }
    /// A lost compare-and-swap race: the caller re-reads and tries again.
    pub fn conflict() -> Self {
        Self::new(Code::Aborted, "the state changed concurrently")
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Code::Aborted
    }

    /// Worth retrying as it is: something was unreachable for a while, or
    /// busy with an operation that ends by itself (a node's ABORTED).
    pub fn is_transient(&self) -> bool {
        matches!(self.code(), Code::Unavailable | Code::Aborted)
    }

    pub fn status(&self) -> Status {
        Status::new(self.code(), self.message.clone())
    }

    /// The same error with what it concerns put in front.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        Self { code: self.code, message: format!("{what}: {}", self.message) }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Self::conflict(),
            StoreError::Unavailable(m) => Self::unavailable(m),
            StoreError::Internal(m) => Self::internal(m),
        }
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        Self::new(s.code(), s.message().to_owned())
    }
}

impl From<limiquantix_storage::StorageError> for ApiError {
    fn from(e: limiquantix_storage::StorageError) -> Self {
        let code = limiquantix_node::status::code(e.class());
        Self::new(code, e.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        e.status()
    }
}
