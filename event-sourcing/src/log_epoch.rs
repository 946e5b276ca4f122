//! Detecting that the log's transaction-id order broke (a logical move to a new
//! cluster), and the re-base that repairs it; the reasoning is in [`crate::follow`].
//!
//! The checks and the re-base live in SQL (`migrations/20261123000020_log_epoch.sql`) so
//! that every writer is held to them, not only this crate, and so that an operator can
//! run the re-base with nothing but `psql`. This module maps their refusal, SQLSTATE
//! `TQ001`, to [`StoreError::LogOrderBroken`].

use crate::error::StoreError;
use sqlx::PgPool;
use sqlx::postgres::PgDatabaseError;

/// The SQLSTATE with which the database refuses while the order is broken.
pub(crate) const LOG_ORDER_BROKEN: &str = "TQ001";

/// What a re-base did, in log ids (cluster transaction id plus offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebased {
    pub old_offset: i64,
    /// Equal to `old_offset` when nothing needed moving.
    pub new_offset: i64,
    /// The newest id among stored events and projection checkpoints.
    pub newest_stored: i64,
    /// The next id the log hands out; above `newest_stored`.
    pub next_log_id: i64,
}

/// Refuses with [`StoreError::LogOrderBroken`] if new events would sort before stored
/// ones or before a projection's checkpoint.
pub async fn check_log_order(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT tracseq_check_log_order()")
        .execute(pool)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The operator's repair after a logical move: raises the log's xid offset so that every
/// new event sorts after every stored event and checkpoint. Waits for in-flight appends
/// and holds new ones back until it commits (a moment); reads go on. Safe to run at any
/// time and more than once; the offset never goes down. The same as running
/// `SELECT * FROM tracseq_rebase_log_xid();` in `psql`.
pub async fn rebase_log_xid(pool: &PgPool) -> Result<Rebased, StoreError> {
    let (old_offset, new_offset, newest_stored, next_log_id): (i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT old_offset, new_offset, newest_stored, next_log_id \
             FROM tracseq_rebase_log_xid()",
        )
        .fetch_one(pool)
        .await?;
    let rebased = Rebased {
        old_offset,
        new_offset,
        newest_stored,
        next_log_id,
    };
    tracing::warn!(?rebased, "event log re-based");
    Ok(rebased)
}

/// The database error as the store reports it: a broken log order gets its own variant.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    log_order_broken(&error).unwrap_or(StoreError::Database(error))
}

/// `LogOrderBroken` if the database refused for that reason. The ids come from the
/// refusal's DETAIL (`newest_stored=N current=M`); a DETAIL in another shape still
/// yields the variant, with zeros, since the refusal itself is what matters.
pub(crate) fn log_order_broken(error: &sqlx::Error) -> Option<StoreError> {
    let db = error.as_database_error()?;
    if db.code().as_deref() != Some(LOG_ORDER_BROKEN) {
        return None;
    }
    let detail = db
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::detail)
        .unwrap_or_default();
    let field = |name: &str| {
        detail
            .split_whitespace()
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Some(StoreError::LogOrderBroken {
        newest_stored: field("newest_stored"),
        current: field("current"),
    })
}
