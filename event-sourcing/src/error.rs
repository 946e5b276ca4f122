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
    /// The database's transaction-id counter is not above the log ids already stored, as
    /// after a logical dump/restore or replication to a new cluster: new events would sort
    /// before followers' checkpoints and never be read. Nothing is appended or read until
    /// an operator runs the re-base; retrying does not help.
    #[error(
        "event log order broken: the transaction-id counter (log id {current}) is not above \
         stored log ids (newest {newest_stored}), as after a logical dump/restore or \
         replication to a new cluster; nothing is appended or followed until the log is \
         re-based: run `SELECT * FROM tracseq_rebase_log_xid();` on the database \
         (or EventStore::rebase_log_xid) once"
    )]
    LogOrderBroken { newest_stored: i64, current: i64 },
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
