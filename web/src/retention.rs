//! Runs the retention job (see [`event_sourcing::retention`]) inside `tracseq serve`.
//!
//! Every instance runs it: the deletes skip rows another instance holds, so several at
//! once only share the work. It stops on Ctrl-C or SIGTERM, like the server; stopping
//! mid-run abandons at most one batch statement, which commits or rolls back on its own.

use crate::config::Settings;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts pruning old outbox, `processed_events` and `commands` rows as `settings` say.
pub fn spawn(pool: PgPool, settings: &Settings) -> JoinHandle<()> {
    let retention = settings.retention();
    tracing::info!(
        outbox_days = settings.retain_outbox_days,
        processed_days = settings.retain_processed_days,
        commands_days = settings.retain_commands_days,
        "retention job started (0 days = kept forever)"
    );
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_requested().await;
        let _ = stop_tx.send(true);
    });
    event_sourcing::retention::spawn(pool, retention, stop)
}

async fn shutdown_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // Without a SIGTERM handler, Ctrl-C alone; if even that fails, the job runs until
    // the process ends.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
