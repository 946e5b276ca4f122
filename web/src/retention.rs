//! Runs the retention job (see [`event_sourcing::retention`]) inside `tracseq serve`.
//!
//! Every instance runs it: the deletes skip rows another instance holds, so several at
//! once only share the work. It stops with the application that started it (when the
//! server shuts down on Ctrl-C or SIGTERM, or the application is dropped); stopping mid-run
//! abandons at most one batch statement, which commits or rolls back on its own.

use crate::config::Settings;
use lab::accounts::Accounts;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts pruning old outbox, `processed_events` and `commands` rows as `settings` say,
/// and expired sessions and old login failures, until `stop` turns true or its sender is
/// dropped.
pub fn spawn(pool: PgPool, settings: &Settings, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let retention = settings.retention();
    spawn_accounts(
        Accounts::new(pool.clone(), settings.account_policy()),
        retention.every,
        stop.clone(),
    );
    tracing::info!(
        outbox_days = settings.retain_outbox_days,
        processed_days = settings.retain_processed_days,
        commands_days = settings.retain_commands_days,
        "retention job started (0 days = kept forever)"
    );
    event_sourcing::retention::spawn(pool, retention, stop)
}

/// Every `every`, deletes expired sessions and failed logins past the throttling window
/// (they are already ignored; this only keeps the tables small). A failed run is logged
/// and tried again at the next period.
fn spawn_accounts(
    accounts: Accounts,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            match accounts.prune().await {
                Ok((sessions, failures)) if sessions + failures > 0 => {
                    tracing::info!(
                        sessions,
                        failures,
                        "expired sessions and old login failures pruned"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "account pruning failed; trying again next period")
                }
            }
        }
    })
}
