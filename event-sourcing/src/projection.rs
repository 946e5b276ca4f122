//! Read models kept up to date from events: one [`Projection`] trait, fed either by
//! following the event log in-process ([`ProjectionRunner`]) or by a Kafka consumer
//! group (`kafka::consumer`). A projection names the aggregate whose events it reads and
//! applies one [`Envelope`] at a time inside the caller's transaction; the caller commits
//! its progress (a log checkpoint, or a `processed_events` row before the Kafka offset) in
//! that same transaction, so an event is never applied twice or skipped.
//!
//! Failures are classified ([`ProjectionError`]): a transient one (the database is down)
//! is retried without limit; a permanent one (an event the projection refuses) is set
//! aside by the Kafka consumer as a dead letter. The in-process runner has nowhere to set
//! an event aside, so it retries and reports itself stuck ([`crate::Progress`]), which
//! turns readiness red with the reason.

use crate::error::StoreError;
use crate::follow::{LogCursor, StoredEvent};
use crate::metadata::EventMetadata;
use crate::progress::Progress;
use crate::store::EventStore;
use chrono::{DateTime, Utc};
use cqrs::{Aggregate, PayloadError};
use sqlx::PgConnection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// An event as every projection sees it, wherever it came from.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// The aggregate's version after this event.
    pub version: u64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
    pub payload: E,
}

impl<E> From<StoredEvent<E>> for Envelope<E> {
    fn from(e: StoredEvent<E>) -> Self {
        Self {
            event_id: e.event_id,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            version: e.version,
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            metadata: e.metadata,
            payload: e.payload,
        }
    }
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// May succeed if tried again unchanged (a lost connection, a deadlock, a lock timeout).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way until something is fixed (a malformed or refused event).
    #[error("{0}")]
    Permanent(String),
}

impl ProjectionError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Whether a database error may pass by itself.
///
/// Only errors about the data itself are permanent: a data exception (class 22: a value
/// out of range, malformed input) or an integrity constraint violation (class 23), which
/// fail the same way every time. Everything the server says otherwise may pass — a lost
/// connection (08), a deadlock (40), no resources (53), a shutdown (57), a read-only
/// standby after a failover (25006), an I/O error (58, XX), a table or column missing
/// while a deploy is half done (42) — and is waited out, never dead-lettered: set aside
/// wrongly, an event takes every later event of its aggregate with it.
pub fn is_transient_database_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Configuration(_)
        // The client's side of a deploy half done: a column or type the code expects is
        // not there yet (class 42 on the server's side, waited out too).
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_none_or(|code| !(code.starts_with("22") || code.starts_with("23"))),
        _ => false,
    }
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient_database_error(&error) {
            Self::Transient(error.to_string())
        } else {
            Self::Permanent(error.to_string())
        }
    }
}

impl From<StoreError> for ProjectionError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(db) => db.into(),
            other if other.is_transient() => Self::Transient(other.to_string()),
            other => Self::Permanent(other.to_string()),
        }
    }
}

impl From<PayloadError> for ProjectionError {
    fn from(error: PayloadError) -> Self {
        Self::Permanent(format!("cannot decode: {error}"))
    }
}

/// A read model kept up to date from one aggregate's events.
pub trait Projection: Send + Sync + 'static {
    /// Names the projection's checkpoint, consumer group and de-duplication records.
    const NAME: &'static str;

    /// Whose events it reads; it never sees another aggregate's.
    type Aggregate: Aggregate;

    /// Applies one event inside the caller's transaction.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope<<Self::Aggregate as Aggregate>::Event>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// Runs a projection in the background by following the log.
pub struct ProjectionRunner<P> {
    store: EventStore,
    projection: Arc<P>,
    batch_size: i64,
    poll_interval: Duration,
    progress: Progress,
}

impl<P: Projection> ProjectionRunner<P> {
    pub fn new(store: EventStore, projection: P) -> Self {
        Self {
            store,
            projection: Arc::new(projection),
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            progress: Progress::new(P::NAME),
        }
    }

    /// How often to look for events written by other processes (this process's own
    /// commits wake the runner at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Reports to `progress` (for readiness) instead of a private tracker.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub fn spawn(self) -> ProjectionHandle {
        let (progress_tx, progress) = watch::channel(LogCursor::START);
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.run(&progress_tx).await {
                    Ok(()) => return,
                    Err(error) => {
                        self.progress.failed(&error.to_string());
                        tracing::error!(projection = P::NAME, %error, transient = error.is_transient(),
                            ?backoff, "projection failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        ProjectionHandle { progress, task }
    }

    async fn run(&self, progress: &watch::Sender<LogCursor>) -> Result<(), ProjectionError> {
        let pool = self.store.pool();
        // Refuse before following from a checkpoint that new events may already sort
        // below; the spawn loop reports it (readiness) and resumes after the re-base.
        self.store.check_log_order().await?;
        let mut cursor = load_checkpoint(pool, P::NAME).await?;
        progress.send_replace(cursor);
        let mut commits = self.store.commits();
        loop {
            commits.borrow_and_update();
            let events = self.store.read_after(cursor, self.batch_size).await?;
            let Some(last) = events.last().map(StoredEvent::cursor) else {
                self.progress.advanced();
                if progress.is_closed() {
                    return Ok(());
                }
                let _ = tokio::time::timeout(self.poll_interval, commits.changed()).await;
                continue;
            };
            let mut tx = pool.begin().await?;
            let mut reached = Vec::with_capacity(events.len());
            for event in events {
                if event.aggregate_type != <P::Aggregate as Aggregate>::TYPE {
                    continue;
                }
                let envelope =
                    Envelope::from(event.decode::<<P::Aggregate as Aggregate>::Event>()?);
                self.projection.apply(&mut tx, &envelope).await?;
                reached.push((envelope.aggregate_id, envelope.version));
            }
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection, transaction_id, position) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (projection) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
                 position = EXCLUDED.position, updated_at = now()",
            )
            .bind(P::NAME)
            .bind(last.transaction_id)
            .bind(last.position)
            .execute(&mut *tx)
            .await?;
            crate::read_progress::notify_progress(&mut tx, P::NAME, &reached).await?;
            tx.commit().await?;
            cursor = last;
            self.progress.advanced();
            progress.send_replace(cursor);
        }
    }
}

async fn load_checkpoint(pool: &sqlx::PgPool, name: &str) -> Result<LogCursor, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id, position FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map_or(LogCursor::START, |(transaction_id, position)| LogCursor {
            transaction_id,
            position,
        }),
    )
}

/// A running projection: how far it has got, and a way to wait for it.
pub struct ProjectionHandle {
    progress: watch::Receiver<LogCursor>,
    task: JoinHandle<()>,
}

impl ProjectionHandle {
    /// The last log position applied.
    pub fn position(&self) -> LogCursor {
        *self.progress.borrow()
    }

    /// Waits until the projection has applied everything up to `cursor`; false on timeout.
    pub async fn wait_for(&self, cursor: LogCursor, timeout: Duration) -> bool {
        let mut progress = self.progress.clone();
        matches!(
            tokio::time::timeout(timeout, progress.wait_for(|applied| *applied >= cursor)).await,
            Ok(Ok(_))
        )
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for ProjectionHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
