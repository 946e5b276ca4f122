//! PostgreSQL event store: appends with optimistic concurrency and group commit,
//! idempotent commands, a transactional outbox, snapshots, and a gap-free way to follow
//! the whole log in order, and retention of the bookkeeping tables.

mod append;
mod cache;
mod error;
mod follow;
mod log_epoch;
mod metadata;
mod progress;
mod projection;
mod read_progress;
mod repository;
pub mod retention;
mod store;
pub mod testkit;

pub use append::{AppendRequest, Appended, NewEvent, SnapshotWrite, UniqueClaim};
pub use error::{CommandError, StoreError};
pub use follow::{LogCursor, StoredEvent};
pub use log_epoch::{Rebased, check_log_order, rebase_log_xid};
pub use metadata::{CommandContext, EventMetadata, new_traceparent};
pub use progress::{Progress, ProgressBoard, Stuck};
pub use projection::{
    Envelope, Projection, ProjectionError, ProjectionHandle, ProjectionRunner,
    is_transient_database_error,
};
pub use read_progress::{READ_PROGRESS_CHANNEL, ReadProgress, notify_progress};
pub use repository::{CommandOutcome, ExpectedVersion};
pub use retention::{Pruned, Retention};
pub use store::{EventStore, Loaded, RecordedCommand, RecordedOutcome, StoreConfig};

/// The project's migrations (event store and read tables), applied at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
