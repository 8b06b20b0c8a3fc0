//! Engine errors to gRPC status codes (DESIGN.md rule 9).

use limiquantix_storage::{ErrorClass, StorageError};
use tonic::{Code, Status};

pub fn to_status(err: StorageError) -> Status {
    let code = code(err.class());
    if code == Code::Internal {
        tracing::error!(error = %err, "internal error");
    }
    Status::new(code, err.to_string())
}

/// The gRPC code each class of engine error answers with.
pub fn code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        // Retryable as it is once the running operation ends (gRPC: "retry at a higher level").
        ErrorClass::Busy => Code::Aborted,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Unimplemented => Code::Unimplemented,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::Cancelled => Code::Cancelled,
        ErrorClass::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorClass::Internal => Code::Internal,
    }
}
