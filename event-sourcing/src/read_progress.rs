//! Read-your-writes without making commands wait: a command answers from its own outcome
//! (its aggregate's new version), and only a page or query that must show that write
//! waits, until the read model has reached that version.
//!
//! The wait is woken by the projections' progress, not by polling: every projection
//! transaction (in-process runner or Kafka consumer) sends `NOTIFY` on
//! [`READ_PROGRESS_CHANNEL`], which PostgreSQL delivers at commit to every listening
//! process, so a page served by one instance wakes when a consumer in another applied the
//! event. Each waiter then re-reads its row. A notification can be missed while the
//! listening connection reconnects, so waiters also re-check every
//! [`SAFETY_NET`] — a net, not the mechanism.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The channel projections notify after applying events.
pub const READ_PROGRESS_CHANNEL: &str = "tracseq_read_progress";

/// How often a waiter re-checks even without a notification.
pub const SAFETY_NET: Duration = Duration::from_millis(250);

/// Sends the progress notification inside a projection's transaction (delivered at commit).
pub async fn notify_progress(
    conn: &mut sqlx::PgConnection,
    projection: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(READ_PROGRESS_CHANNEL)
        .bind(projection)
        .execute(conn)
        .await?;
    Ok(())
}

/// This process's view of the projections' progress: a counter that moves on every
/// notification. Cheap to clone.
#[derive(Clone)]
pub struct ReadProgress {
    changes: watch::Receiver<u64>,
}

impl ReadProgress {
    /// Listens on `pool`'s server in the background (reconnecting as needed).
    pub fn listen(pool: &PgPool) -> Self {
        let (tx, changes) = watch::channel(0u64);
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !tx.is_closed() {
                let listener = async {
                    let mut listener = PgListener::connect_with(&pool).await?;
                    listener.listen(READ_PROGRESS_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listener.await {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for read-model progress yet");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                // A reconnection may have missed notifications: wake every waiter.
                tx.send_modify(|n| *n += 1);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => tx.send_modify(|n| *n += 1),
                        // The connection was lost; `try_recv` reconnects on the next call.
                        Ok(None) => tx.send_modify(|n| *n += 1),
                        Err(error) => {
                            tracing::warn!(%error, "read-model progress listener failed");
                            break;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        });
        Self { changes }
    }

    /// Waits until `reached` says yes, re-checking after each notification (and at least
    /// every [`SAFETY_NET`]), for at most `timeout`. True if it was reached.
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, mut reached: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            if reached().await {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(SAFETY_NET);
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }
}
