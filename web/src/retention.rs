//! Runs the retention job (see [`event_sourcing::retention`]) inside `tracseq serve`.
//!
//! Every instance runs it: the deletes skip rows another instance holds, so several at
//! once only share the work. It stops with the application that started it (when the
//! server shuts down on Ctrl-C or SIGTERM, or the application is dropped); stopping mid-run
//! abandons at most one batch statement, which commits or rolls back on its own.

use crate::config::Settings;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts pruning old outbox, `processed_events` and `commands` rows as `settings` say,
/// until `stop` turns true or its sender is dropped.
pub fn spawn(pool: PgPool, settings: &Settings, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let retention = settings.retention();
    tracing::info!(
        outbox_days = settings.retain_outbox_days,
        processed_days = settings.retain_processed_days,
        commands_days = settings.retain_commands_days,
        "retention job started (0 days = kept forever)"
    );
    event_sourcing::retention::spawn(pool, retention, stop)
}
