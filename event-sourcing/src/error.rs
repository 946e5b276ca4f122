//! Failures of the store, kept apart from business rejections of a command.

use uuid::Uuid;

/// Something the event store could not do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the aggregate first.
    #[error(
        "sample was changed by someone else (expected version {expected}); reload and try again"
    )]
    Conflict { aggregate_id: Uuid, expected: u64 },
    /// The command id was already used by a command that succeeded.
    #[error("command {0} was already processed")]
    DuplicateCommand(Uuid),
    /// The command id (an `Idempotency-Key`) was first used for a different request:
    /// another command, aggregate, input or user. Nothing was appended.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused { command_id: Uuid },
    /// A value that must be unique (e.g. a barcode) already belongs to another aggregate.
    #[error("{scope} '{value}' is already in use")]
    UniqueViolation { scope: String, value: String },
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data could not be decoded: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("stored event could not be read: {0}")]
    Payload(#[from] cqrs::PayloadError),
    #[error("the event store's writers have stopped")]
    Closed,
}

impl StoreError {
    /// Whether trying the same thing again may succeed without changing the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Closed)
    }
}

/// Why a command did not produce events: a business rejection or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<R> {
    #[error(transparent)]
    Rejected(R),
    #[error(transparent)]
    Store(#[from] StoreError),
}
