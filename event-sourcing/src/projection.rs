//! Read-model projections fed by following the log, with a checkpoint committed in the
//! same transaction as the rows they write: a restart resumes exactly where it stopped and
//! an event is never applied twice or skipped.

use crate::error::StoreError;
use crate::follow::{LogCursor, StoredEvent};
use crate::store::EventStore;
use serde_json::Value;
use sqlx::PgConnection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The projection refused the event (e.g. it arrived before its predecessor).
    #[error("{0}")]
    Rejected(String),
}

/// A read model kept up to date from the log.
pub trait Projection: Send + Sync + 'static {
    /// Names the projection's checkpoint; change it to rebuild from scratch.
    const NAME: &'static str;

    /// Applies one event inside the projection's transaction.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent<Value>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// Runs a projection in the background.
pub struct ProjectionRunner<P> {
    store: EventStore,
    projection: Arc<P>,
    batch_size: i64,
    poll_interval: Duration,
}

impl<P: Projection> ProjectionRunner<P> {
    pub fn new(store: EventStore, projection: P) -> Self {
        Self {
            store,
            projection: Arc::new(projection),
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
        }
    }

    /// How often to look for events written by other processes (this process's own
    /// commits wake the runner at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
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
                        tracing::error!(projection = P::NAME, %error, ?backoff, "projection failed; retrying");
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
        let mut cursor = load_checkpoint(pool, P::NAME).await?;
        progress.send_replace(cursor);
        let mut commits = self.store.commits();
        loop {
            commits.borrow_and_update();
            let events = self
                .store
                .read_after::<Value>(cursor, self.batch_size)
                .await?;
            let Some(last) = events.last().map(StoredEvent::cursor) else {
                if progress.is_closed() {
                    return Ok(());
                }
                let _ = tokio::time::timeout(self.poll_interval, commits.changed()).await;
                continue;
            };
            let mut tx = pool.begin().await?;
            for event in &events {
                self.projection.apply(&mut tx, event).await?;
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
            tx.commit().await?;
            cursor = last;
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
    /// Commands use it to give the pages they lead to read-your-writes.
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
