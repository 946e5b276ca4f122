//! How a use case fails, classified by what the caller can do about it.
//!
//! The caller decides how to show it: the web edge maps each kind to a status code, the
//! saga to retry (unavailable) or compensate (rejected).

use cqrs::sample::SampleRejection;
use event_sourcing::{CommandError, StoreError};
use serde::Serialize;

/// A field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input the caller can fix, field by field.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    /// The command is not allowed in the aggregate's current state.
    #[error("{0}")]
    Rejected(String),
    /// Someone else changed it first, or a unique value is taken.
    #[error("{0}")]
    Conflict(String),
    /// A command id (idempotency key) reused for a different request.
    #[error("{0}")]
    KeyReused(String),
    /// Not logged in, or the credentials are wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// Logged in, but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts; try again after `retry_after`.
    #[error("{message}")]
    TooManyAttempts {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Transient: the database is not reachable; nothing was changed; try again.
    #[error("service unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// A fault on our side (stored data that does not decode, say).
    #[error("internal error: {0}")]
    Internal(String),
}

/// `field: message; field: message`.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field,
            message: message.into(),
        }])
    }

    /// How metrics name this outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Rejected(_) => "rejected",
            Self::Conflict(_) => "conflict",
            Self::KeyReused(_) => "key_reused",
            Self::NotFound(_) => "not_found",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyAttempts { .. } => "throttled",
            Self::Unavailable(_) | Self::Internal(_) => "error",
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Self::Conflict(error.to_string()),
            StoreError::UniqueViolation { scope, value } => Self::Conflict(format!(
                "{scope} {value} is already registered to another sample"
            )),
            StoreError::DuplicateCommand(id) => Self::Conflict(format!(
                "command {id} was already used for a different request"
            )),
            StoreError::IdempotencyKeyReused { .. } => Self::KeyReused(
                "this Idempotency-Key was used for a different request; send a new key for a new request".into(),
            ),
            StoreError::Codec(e) => {
                Self::Internal(format!("stored data could not be decoded: {e}"))
            }
            StoreError::Payload(e) => {
                Self::Internal(format!("stored data could not be decoded: {e}"))
            }
            // Data exceptions (class 22: a NUL byte in text, a number out of range) are
            // about the input, not the database's health: a safety net behind parsing.
            StoreError::Database(sqlx::Error::Database(e))
                if e.code().is_some_and(|c| c.starts_with("22")) =>
            {
                Self::invalid(
                    "input",
                    "the input contains something that cannot be stored (such as a NUL character or a number out of range); remove it and try again",
                )
            }
            other => Self::Unavailable(other),
        }
    }
}

impl From<CommandError<SampleRejection>> for Error {
    fn from(error: CommandError<SampleRejection>) -> Self {
        match error {
            CommandError::Rejected(SampleRejection::NotRegistered) => {
                Self::NotFound("no such sample".into())
            }
            CommandError::Rejected(rejection) => Self::Rejected(rejection.to_string()),
            CommandError::Store(store) => store.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error).into()
    }
}
