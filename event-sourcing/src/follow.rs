//! Following the whole log in order without ever skipping an event.
//!
//! A `bigint` identity position is handed out when a row is inserted, not when its
//! transaction commits: transaction A can take position 10, B position 11, and B commit
//! first. A follower that read "everything after 9" at that moment would see 11, move
//! its cursor past 10, and never see A's event.
//!
//! The store therefore records each event's writing transaction id (`xid8`, stored as a
//! bigint) and followers read in `(transaction_id, position)` order, but only events
//! whose transaction id is below the oldest transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below that horizon has
//! finished, so nothing can later appear before the cursor: a transaction that commits
//! afterwards has an id at or above the horizon and therefore sorts after everything
//! already read. The cost is that a long-running writing transaction anywhere in the
//! cluster holds followers back until it ends; they never skip, they only wait.

use crate::error::StoreError;
use crate::metadata::EventMetadata;
use chrono::{DateTime, Utc};
use cqrs::{DomainEvent, PayloadError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// A point in the log, in the order followers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogCursor {
    pub transaction_id: i64,
    pub position: i64,
}

impl LogCursor {
    /// Before the first event.
    pub const START: Self = Self {
        transaction_id: 0,
        position: 0,
    };
}

/// An event as stored, with its payload decoded as `P`.
#[derive(Debug, Clone)]
pub struct StoredEvent<P> {
    pub position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: P,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl<P> StoredEvent<P> {
    pub fn cursor(&self) -> LogCursor {
        LogCursor {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

impl StoredEvent<Value> {
    /// The event with its payload read as `E`, through `E`'s upcasters.
    pub fn decode<E: DomainEvent>(self) -> Result<StoredEvent<E>, PayloadError> {
        let payload = E::from_payload(&self.event_type, self.schema_version, self.payload)?;
        Ok(StoredEvent {
            position: self.position,
            transaction_id: self.transaction_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        })
    }
}

pub(crate) const EVENT_COLUMNS: &str = "position, transaction_id, aggregate_type, aggregate_id, \
     version, event_id, event_type, schema_version, payload, metadata, recorded_at";

pub(crate) fn decode_row<P: DeserializeOwned>(row: &PgRow) -> Result<StoredEvent<P>, StoreError> {
    let Json(payload): Json<P> = row.try_get("payload")?;
    let Json(metadata): Json<EventMetadata> = row.try_get("metadata")?;
    let version: i64 = row.try_get("version")?;
    let schema_version: i32 = row.try_get("schema_version")?;
    Ok(StoredEvent {
        position: row.try_get("position")?,
        transaction_id: row.try_get("transaction_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        version: u64::try_from(version).unwrap_or_default(),
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: u32::try_from(schema_version).unwrap_or_default(),
        payload,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Reads up to `limit` events after `cursor`, in log order, from finished transactions only.
pub(crate) async fn read_after(
    pool: &PgPool,
    cursor: LogCursor,
    limit: i64,
) -> Result<Vec<StoredEvent<Value>>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         ORDER BY transaction_id, position \
         LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(cursor.transaction_id)
        .bind(cursor.position)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_row).collect()
}
