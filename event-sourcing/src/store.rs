//! The PostgreSQL event store.

use crate::append::{self, AppendRequest, Appended, BatchLimits, Pending};
use crate::cache::StateCache;
use crate::error::StoreError;
use crate::follow::{self, EVENT_COLUMNS, LogCursor, StoredEvent};
use crate::log_epoch::{self, Rebased};
use crate::metadata::CommandContext;
use cqrs::{Aggregate, DomainEvent};
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// How the store behaves; the defaults suit a lab's load on a small server.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Take a snapshot whenever an aggregate's version crosses a multiple of this (0: never).
    pub snapshot_every: u64,
    /// Concurrent batch writers (each commits one batch at a time).
    pub writers: usize,
    /// Most requests grouped into one commit.
    pub max_batch_requests: usize,
    /// Most events grouped into one commit.
    pub max_batch_events: usize,
    /// Aggregate states kept after a command so the next one skips the read (0: none).
    pub state_cache_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 50,
            writers: 2,
            max_batch_requests: 64,
            max_batch_events: 1024,
            state_cache_capacity: 10_000,
        }
    }
}

/// Handle to the event store; cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    config: StoreConfig,
    queue: mpsc::Sender<Pending>,
    committed: watch::Receiver<u64>,
    committed_tx: watch::Sender<u64>,
    pub(crate) cache: Arc<StateCache>,
}

/// An aggregate rebuilt from its snapshot and later events.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    pub version: u64,
}

impl EventStore {
    /// Starts the store's writers on `pool`. Must be called inside a Tokio runtime.
    pub fn new(pool: PgPool, config: StoreConfig) -> Self {
        let (committed_tx, committed) = watch::channel(0);
        let queue = append::spawn_writers(
            pool.clone(),
            config.writers,
            BatchLimits {
                max_requests: config.max_batch_requests.max(1),
                max_events: config.max_batch_events.max(1),
            },
            committed_tx.clone(),
        );
        let cache = Arc::new(StateCache::new(config.state_cache_capacity));
        // `new` cannot fail, so a broken log order is shouted here at start-up; appends
        // and reads refuse on their own either way.
        let checked = pool.clone();
        tokio::spawn(async move {
            match log_epoch::check_log_order(&checked).await {
                Err(error @ StoreError::LogOrderBroken { .. }) => {
                    tracing::error!(%error, "event store refuses to append or follow");
                }
                Err(error) => tracing::warn!(%error, "could not check the event log's order"),
                Ok(()) => {}
            }
        });
        Self {
            pool,
            config,
            queue,
            committed,
            committed_tx,
            cache,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Changes every time this process commits events; followers wait on it.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Appends events to one aggregate if it is still at `expected_version`; concurrent
    /// appends to other aggregates may share the commit.
    #[tracing::instrument(name = "event_store.append", skip_all, fields(
        aggregate_type = request.aggregate_type,
        aggregate_id = %request.aggregate_id,
        expected_version = request.expected_version,
        events = request.events.len(),
    ))]
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends many requests in one commit, bypassing the queue (bulk import, seeding).
    pub async fn append_all(
        &self,
        requests: &[AppendRequest],
    ) -> Vec<Result<Appended, StoreError>> {
        let refs: Vec<&AppendRequest> = requests.iter().collect();
        append::commit_batch(&self.pool, &refs).await
    }

    /// Appends to several aggregates all or nothing, in one transaction: either every
    /// request's events (and claims, releases, command record) are committed or none
    /// are. The first refusal (a version conflict, a taken claim) is the answer. For one
    /// command whose decision creates other aggregates (see `Aggregate::belongs_to`).
    pub async fn append_together(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Appended>, StoreError> {
        let refs: Vec<&AppendRequest> = requests.iter().collect();
        let appended = append::commit_together(&self.pool, &refs).await?;
        self.committed_tx.send_modify(|n| *n += 1);
        Ok(appended)
    }

    /// Loads an aggregate: its latest snapshot (if any is usable) plus the events after it.
    #[tracing::instrument(name = "event_store.load", skip(self), fields(aggregate_type = A::TYPE))]
    pub async fn load<A: Aggregate>(&self, aggregate_id: Uuid) -> Result<Loaded<A>, StoreError> {
        let rows = sqlx::query(include_str!("sql/load_aggregate.sql"))
            .bind(aggregate_id)
            .fetch_all(&self.pool)
            .await?;
        let mut state = A::default();
        let mut version = 0u64;
        let mut rows = rows.iter().peekable();
        if let Some(first) = rows.peek()
            && first.try_get::<bool, _>("is_snapshot")?
        {
            let row = rows.next().ok_or(StoreError::Closed)?;
            let state_version: i32 = row.try_get("schema_version")?;
            let usable = u32::try_from(state_version) == Ok(A::SNAPSHOT_VERSION);
            let decoded = row.try_get::<Json<A>, _>("payload").ok().filter(|_| usable);
            match decoded {
                Some(Json(snapshot)) => {
                    state = snapshot;
                    version = u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or(0);
                }
                // A snapshot of an older state shape: rebuild from all events instead.
                None => return self.load_from_events(aggregate_id).await,
            }
        }
        for row in rows {
            let event_type: String = row.try_get("event_type")?;
            let schema_version: i32 = row.try_get("schema_version")?;
            let Json(payload): Json<Value> = row.try_get("payload")?;
            let event = A::Event::from_payload(
                &event_type,
                u32::try_from(schema_version).unwrap_or_default(),
                payload,
            )?;
            state.apply(&event);
            version = u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or(version);
        }
        Ok(Loaded { state, version })
    }

    async fn load_from_events<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
    ) -> Result<Loaded<A>, StoreError> {
        let events = self.read_stream::<A::Event>(aggregate_id).await?;
        let version = events.last().map_or(0, |e| e.version);
        let state = A::default().fold(events.iter().map(|e| &e.payload));
        Ok(Loaded { state, version })
    }

    /// All events of one aggregate, in version order, with their metadata.
    pub async fn read_stream<E: DomainEvent>(
        &self,
        aggregate_id: Uuid,
    ) -> Result<Vec<StoredEvent<E>>, StoreError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = $1 ORDER BY version");
        let rows = sqlx::query(&sql)
            .bind(aggregate_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(follow::decode_row::<Value>(row)?.decode::<E>()?))
            .collect()
    }

    /// The events of several aggregates recorded at or before `until`, each stream in
    /// version order (streams one after another). For rebuilding states as of an instant.
    pub async fn read_streams_until<E: DomainEvent>(
        &self,
        aggregate_ids: &[Uuid],
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<StoredEvent<E>>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ANY($1) AND recorded_at <= $2 \
             ORDER BY aggregate_id, version"
        );
        let rows = sqlx::query(&sql)
            .bind(aggregate_ids)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(follow::decode_row::<Value>(row)?.decode::<E>()?))
            .collect()
    }

    /// Reads up to `limit` events after `cursor` in log order; see [`crate::follow`] for
    /// why this never skips an event.
    pub async fn read_after(
        &self,
        cursor: LogCursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent<Value>>, StoreError> {
        follow::read_after(&self.pool, cursor, limit).await
    }

    /// Refuses with [`StoreError::LogOrderBroken`] if the database's transaction-id
    /// counter is not above the stored log (after a logical move to a new cluster); see
    /// [`crate::follow`].
    pub async fn check_log_order(&self) -> Result<(), StoreError> {
        log_epoch::check_log_order(&self.pool).await
    }

    /// Re-bases the log after a logical move so that new events sort after every stored
    /// event and checkpoint; see [`crate::rebase_log_xid`].
    pub async fn rebase_log_xid(&self) -> Result<Rebased, StoreError> {
        log_epoch::rebase_log_xid(&self.pool).await
    }

    /// Streams every event in position order (for replay); one query, rows arrive as the
    /// server sends them.
    pub fn stream_all(&self) -> impl Stream<Item = Result<StoredEvent<Value>, StoreError>> + '_ {
        sqlx::query(concat!(
            "SELECT position, transaction_id, aggregate_type, aggregate_id, version, event_id, ",
            "event_type, schema_version, payload, metadata, recorded_at FROM events ORDER BY position"
        ))
        .fetch(&self.pool)
        .map_err(StoreError::from)
        .map(|row| row.and_then(|row| follow::decode_row(&row)))
    }

    /// The recorded first outcome of a command, if any: what it asked for and how it
    /// ended (succeeded with versions, or rejected).
    pub async fn command_outcome(
        &self,
        command_id: Uuid,
    ) -> Result<Option<RecordedCommand>, StoreError> {
        type Row = (
            String,
            Uuid,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            Option<serde_json::Value>,
            bool,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, first_version, last_version, command_name, \
             fingerprint, principal, outcome, rejection, request_known \
             FROM commands WHERE command_id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((
            aggregate_type,
            aggregate_id,
            first,
            last,
            name,
            fingerprint,
            principal,
            outcome,
            rejection,
            request_known,
        )) = row
        else {
            return Ok(None);
        };
        let version = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        let outcome = match (outcome.as_str(), rejection) {
            ("rejected", Some(rejection)) => RecordedOutcome::Rejected(rejection),
            _ => RecordedOutcome::Succeeded {
                first_version: version(first),
                last_version: version(last),
            },
        };
        Ok(Some(RecordedCommand {
            command_id,
            aggregate_type,
            aggregate_id,
            command_name: name,
            fingerprint,
            principal,
            request_known,
            outcome,
        }))
    }

    /// Records that `command_id` was rejected, unless the id is already recorded (a
    /// concurrent repeat got there first); true when this call recorded it.
    pub(crate) async fn record_rejection(
        &self,
        context: &CommandContext,
        aggregate_type: &str,
        aggregate_id: Uuid,
        rejection: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO commands (command_id, aggregate_type, aggregate_id, command_name, \
             fingerprint, principal, outcome, rejection, request_known) \
             VALUES ($1, $2, $3, $4, $5, $6, 'rejected', $7, true) \
             ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(context.command_id)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(context.command_name.as_deref())
        .bind(context.fingerprint.as_deref())
        .bind(context.principal())
        .bind(rejection)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A command id's first outcome, with what the command asked for, as recorded for
/// idempotency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCommand {
    pub command_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub command_name: Option<String>,
    pub fingerprint: Option<String>,
    pub principal: Option<String>,
    /// False for commands recorded before names, fingerprints and principals were: only
    /// their aggregate can be compared with a repeat.
    pub request_known: bool,
    pub outcome: RecordedOutcome,
}

/// How a recorded command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedOutcome {
    /// It appended these versions.
    Succeeded {
        first_version: u64,
        last_version: u64,
    },
    /// The aggregate refused it (the rejection, serialised); it appended nothing.
    Rejected(serde_json::Value),
}
