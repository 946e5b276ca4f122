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
//!
//! # Moving the database to another cluster
//!
//! That argument needs the transaction-id counter to only ever go up. Physical copies
//! (base backup, streaming replica, `pg_upgrade`) keep it; a logical dump/restore or a
//! logical-replication move does not: the new cluster counts again from near zero, so
//! new events would sort before every saved checkpoint (`projection_checkpoints`) and
//! every follower's cursor, and never be read.
//!
//! So a log id is the cluster's transaction id plus an offset (`log_epoch.xid_offset`,
//! `tracseq_log_xid()`, the column default), and the horizon is `xmin` plus the same
//! offset. Adding a constant keeps the order among live transactions, so the argument
//! above holds unchanged between re-bases. The database itself
//! (`migrations/20261123000020_log_epoch.sql`) refuses with SQLSTATE `TQ001`, which the
//! store reports as [`StoreError::LogOrderBroken`], whenever
//!
//! * the counter is not above the log: the newest stored event or checkpoint id is at
//!   or above the snapshot's `xmax` plus offset (one past the newest finished
//!   transaction). Everything stored was committed before the snapshot and so has a
//!   lower id in an intact cluster; this never fires falsely. It reads `xmax` rather than taking an id, so checking costs no
//!   transaction id. Checked by every read of [`read_after`] (also when nothing lies
//!   after the cursor, which is what a follower sees after a restart), by the projection
//!   runner before it follows, by `EventStore::new` (logged: it cannot fail) and by a
//!   statement-level trigger on every insert into `events`, whoever writes it;
//! * an inserting transaction's own id is at or below a saved checkpoint. In an intact
//!   cluster it never is: a follower only passes ids below the oldest running
//!   transaction. It catches a transaction that began while a restarted counter was
//!   below the log and inserts after the counter has climbed past it.
//!
//! Refusing appends matters most: an event appended after a restart but before the
//! re-base would sort below saved checkpoints and be lost to followers for good, while a
//! refused command can be retried once the log is repaired.
//!
//! The re-base (`tracseq_rebase_log_xid()`, [`crate::rebase_log_xid`]) takes
//! `LOCK TABLE events IN EXCLUSIVE MODE`, which waits for every transaction that has
//! written to `events` and keeps new writers out until it commits, then sets the offset
//! to `newest stored id − oldest running transaction id + 1` (or leaves it, if larger:
//! it only ever goes up, enforced by a trigger). Measuring from the oldest running
//! transaction rather than from `xmax` matters: a transaction that already holds an id
//! but has not written yet will write after the re-base, and its id must land above the
//! stored log too. The gap-free argument survives the change of offset: a row written
//! under the old offset was committed before the re-base committed (the lock), so any
//! read that sees the new offset sees it; any row written later uses an offset at least
//! as large as the one any earlier read used, and a transaction id at least that read's
//! `xmin`, so it sorts at or above that read's horizon. A writer that waited for the
//! lock takes its statement snapshot after the lock is granted (READ COMMITTED), so it
//! sees the new offset. The re-base refuses to run under REPEATABLE READ or
//! SERIALIZABLE, whose snapshot could predate the lock; writers under those levels that
//! overlap a re-base are the one case not covered, and the store never writes so.

use crate::error::StoreError;
use crate::log_epoch;
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

/// Reads up to `limit` events after `cursor`, in log order, from finished transactions
/// only; refuses with [`StoreError::LogOrderBroken`] while the log needs a re-base.
pub(crate) async fn read_after(
    pool: &PgPool,
    cursor: LogCursor,
    limit: i64,
) -> Result<Vec<StoredEvent<Value>>, StoreError> {
    // The horizon comes first and outside the scan so that the order check runs on every
    // read, also when nothing lies after the cursor: that is exactly what a follower sees
    // after a restart (new events sort below it). No event yields one all-NULL row.
    let sql = format!(
        "SELECT {EVENT_COLUMNS} \
         FROM (SELECT tracseq_check_log_order() AS horizon) h \
         LEFT JOIN LATERAL ( \
             SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1, $2) AND transaction_id < h.horizon \
             ORDER BY transaction_id, position \
             LIMIT $3 \
         ) e ON true \
         ORDER BY transaction_id, position"
    );
    let rows = sqlx::query(&sql)
        .bind(cursor.transaction_id)
        .bind(cursor.position)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(log_epoch::store_error)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<i64>, _>("position")?.is_some() {
            events.push(decode_row(row)?);
        }
    }
    Ok(events)
}
