//! Retention: deleting the bookkeeping rows that would otherwise grow forever, without
//! giving up what they guarantee.
//!
//! Three tables only ever grow: every event leaves an `outbox` row, every event a
//! consumer applies leaves a `processed_events` row, and every command leaves a
//! `commands` row. The events themselves are the record and are never touched here;
//! these rows only guard delivery and de-duplication, and each guard is needed for a
//! bounded time only:
//!
//! - **`outbox`**: a row is needed until it is published. Only rows with `published_at`
//!   older than [`Retention::outbox`] are deleted, never an unpublished row (however old:
//!   the relay may have been down for a week) and never a parked one (an operator must
//!   still see and re-try it). Published rows are kept a while (default 7 days) so an
//!   operator can still see when an event went out, for audit and when reprocessing.
//!   The relay's ordering check only looks at unpublished rows, so deleting published
//!   ones cannot let a later event overtake an earlier one.
//! - **`processed_events`**: a row makes a redelivered event change nothing. A
//!   redelivery can only carry a message that is still in its topic, so a row may go once
//!   it is older than the topics' retention (`retention.ms`, the broker's default is
//!   7 days), plus the longest a consumer may lag behind. **Rule: this retention
//!   (default 30 days) must exceed the retention of every topic a consumer reads.** A
//!   consumer group whose committed offsets expired restarts at the earliest message
//!   still in the topic (`auto.offset.reset=earliest`), and must find every such message
//!   already recorded. Topics kept forever (`retention.ms=-1`, or compacted) need
//!   retention off (0) for this table.
//! - **`commands`** (idempotency records): a row makes a repeated `Idempotency-Key`
//!   answer with the first outcome. Rows older than the idempotency window (default
//!   7 days; Stripe keeps keys 24 hours) are deleted, and **a key repeated after the
//!   window is treated as a new command**: clients must not retry a key for longer than
//!   that.
//!
//! **Small batches, no long transaction.** Each delete removes at most
//! [`Retention::batch_size`] rows (oldest first, found through an index on the
//! timestamp, added by the `..._retention.sql` migration) in one statement that commits
//! on its own, repeated until fewer rows than a batch are left. A single big `DELETE`
//! would hold its locks and its transaction id for as long as it runs, and every
//! gap-free log follower (see [`crate::follow`]) waits for the oldest running
//! transaction. Rows another session has locked are skipped (`SKIP LOCKED`), so several
//! instances pruning at once never wait for each other, and the next run gets what was
//! skipped. The cut-off is computed by PostgreSQL (`now()`), the same clock that wrote
//! the timestamps.

use crate::error::StoreError;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How long each kind of row is kept, and how the job runs. `None` keeps rows forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows, by `published_at`.
    pub outbox: Option<Duration>,
    /// Consumer de-duplication rows, by `processed_at`; must exceed the Kafka topics'
    /// retention (see the module documentation).
    pub processed_events: Option<Duration>,
    /// Idempotency records, by `recorded_at`: the idempotency window.
    pub commands: Option<Duration>,
    /// Most rows one statement deletes.
    pub batch_size: u32,
    /// Time between runs of [`spawn`]'s job.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            outbox: Some(DAY * 7),
            processed_events: Some(DAY * 30),
            commands: Some(DAY * 7),
            batch_size: 1000,
            every: Duration::from_secs(10 * 60),
        }
    }
}

impl Retention {
    /// A retention in whole days, as configured; 0 means keep forever.
    pub fn days(days: u32) -> Option<Duration> {
        (days > 0).then(|| DAY * days)
    }

    /// True when nothing is ever deleted, so no job needs to run.
    pub fn keeps_everything(&self) -> bool {
        self.outbox.is_none() && self.processed_events.is_none() && self.commands.is_none()
    }
}

/// What one [`prune_once`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub processed_events: u64,
    pub commands: u64,
    /// `DELETE` statements run (each its own short transaction).
    pub statements: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.outbox + self.processed_events + self.commands
    }
}

// Each statement deletes by primary key the oldest `$2` rows older than `$1` seconds.
// `FOR UPDATE SKIP LOCKED` locks the rows chosen (re-checking the condition on the row
// as it is now) and passes over rows another session holds.

/// Only published, unparked rows: an unpublished row is still to be sent, a parked one
/// still to be seen by an operator. The predicate matches the `outbox_published_at` index.
const PRUNE_OUTBOX: &str = "\
    DELETE FROM outbox WHERE position IN ( \
        SELECT position FROM outbox \
        WHERE published_at IS NOT NULL AND parked_at IS NULL \
          AND published_at < now() - make_interval(secs => $1) \
        ORDER BY published_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED)";

const PRUNE_PROCESSED: &str = "\
    DELETE FROM processed_events WHERE (consumer, event_id) IN ( \
        SELECT consumer, event_id FROM processed_events \
        WHERE processed_at < now() - make_interval(secs => $1) \
        ORDER BY processed_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED)";

const PRUNE_COMMANDS: &str = "\
    DELETE FROM commands WHERE command_id IN ( \
        SELECT command_id FROM commands \
        WHERE recorded_at < now() - make_interval(secs => $1) \
        ORDER BY recorded_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED)";

/// Deletes every row past its retention, in batches; returns how many went from each
/// table. Stops at the first database error (what was deleted before it stays deleted).
#[tracing::instrument(name = "retention.prune", skip_all)]
pub async fn prune_once(pool: &PgPool, retention: &Retention) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let batch = retention.batch_size.max(1);
    if let Some(keep) = retention.outbox {
        pruned.outbox =
            prune_table(pool, PRUNE_OUTBOX, keep, batch, &mut pruned.statements).await?;
    }
    if let Some(keep) = retention.processed_events {
        pruned.processed_events =
            prune_table(pool, PRUNE_PROCESSED, keep, batch, &mut pruned.statements).await?;
    }
    if let Some(keep) = retention.commands {
        pruned.commands =
            prune_table(pool, PRUNE_COMMANDS, keep, batch, &mut pruned.statements).await?;
    }
    Ok(pruned)
}

async fn prune_table(
    pool: &PgPool,
    sql: &'static str,
    keep: Duration,
    batch: u32,
    statements: &mut u64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        // Each statement is its own transaction: no xid is held between batches.
        let done = sqlx::query(sql)
            .bind(keep.as_secs_f64())
            .bind(i64::from(batch))
            .execute(pool)
            .await?
            .rows_affected();
        *statements += 1;
        deleted += done;
        // A short batch means nothing more is old enough (or the rest is locked by
        // another pruner, which deletes it).
        if done < u64::from(batch) {
            return Ok(deleted);
        }
        // Let the rest of the process (and its connections) in between batches.
        tokio::task::yield_now().await;
    }
}

/// Runs [`prune_once`] now and then every [`Retention::every`] until `stop` turns true
/// (or its sender is dropped). A failed run is logged and tried again at the next period.
/// Stopping mid-run abandons at most the statement in flight, which commits or rolls
/// back on its own.
pub fn spawn(
    pool: PgPool,
    retention: Retention,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if retention.keeps_everything() {
            tracing::info!("retention is off for every table: nothing is pruned");
            return;
        }
        let mut ticks = tokio::time::interval(retention.every.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped(&mut stop) => return,
            }
            tokio::select! {
                result = prune_once(&pool, &retention) => match result {
                    Ok(pruned) if pruned.total() > 0 => tracing::info!(
                        outbox = pruned.outbox,
                        processed_events = pruned.processed_events,
                        commands = pruned.commands,
                        statements = pruned.statements,
                        "retention pruned old rows"
                    ),
                    Ok(_) => tracing::debug!("retention found nothing to prune"),
                    Err(error) => {
                        tracing::warn!(%error, "retention run failed; trying again next period");
                    }
                },
                _ = stopped(&mut stop) => return,
            }
        }
    })
}

/// Resolves once `stop` is true or can no longer change.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // wait_for errs only when the sender is gone: nobody can ask for more runs either.
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_forever() {
        assert_eq!(Retention::days(0), None);
        assert_eq!(Retention::days(2), Some(Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn defaults_keep_deduplication_longer_than_kafka_keeps_messages() {
        let r = Retention::default();
        // The broker's default retention.ms is 7 days.
        assert!(r.processed_events > Some(DAY * 7));
        assert!(!r.keeps_everything());
        let off = Retention {
            outbox: None,
            processed_events: None,
            commands: None,
            ..r
        };
        assert!(off.keeps_everything());
    }
}
