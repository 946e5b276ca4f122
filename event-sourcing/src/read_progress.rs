//! Read-your-writes without making commands wait: a command answers from its own outcome
//! (its aggregate's new version), and only a page or query that must show that write
//! waits, until the read model has reached that version.
//!
//! The wait is woken by the projections' progress, not by polling: every projection
//! transaction (in-process runner or Kafka consumer) sends `NOTIFY` on
//! [`READ_PROGRESS_CHANNEL`] naming itself and each aggregate version it applied, which
//! PostgreSQL delivers at commit to every listening process, so a page served by one
//! instance wakes when a consumer in another applied the event.
//!
//! Waiters are indexed by projection and aggregate: a notification wakes only the waiters
//! of the aggregates it names, and only once their version is reached, so a busy read
//! side does not turn every waiting page into a query per event. A waiter registers before
//! its first look at the read table, so a notification sent between the two is not lost.
//! A notification can be missed while the listening connection reconnects: then every
//! waiter re-checks its read table, and all of them also re-check every
//! [`SAFETY_NET`] — a net, not the mechanism.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The channel projections notify after applying events.
pub const READ_PROGRESS_CHANNEL: &str = "tracseq_read_progress";

/// How often a waiter re-checks even without a notification.
pub const SAFETY_NET: Duration = Duration::from_millis(250);

/// PostgreSQL refuses payloads of 8,000 bytes or more; stay well below.
const MAX_PAYLOAD: usize = 7_000;

/// Sends the progress notification inside a projection's transaction (delivered at
/// commit): the projection's name, then one `aggregate_id version` line per event applied
/// (split over several notifications when long). Nothing is sent for nothing applied.
pub async fn notify_progress(
    conn: &mut sqlx::PgConnection,
    projection: &str,
    applied: &[(Uuid, u64)],
) -> Result<(), sqlx::Error> {
    if applied.is_empty() {
        return Ok(());
    }
    for payload in payloads(projection, applied) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(READ_PROGRESS_CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn payloads(projection: &str, applied: &[(Uuid, u64)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = projection.to_owned();
    for (aggregate, version) in applied {
        let line = format!("\n{aggregate} {version}");
        if current.len() + line.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut current, projection.to_owned()));
        }
        current.push_str(&line);
    }
    out.push(current);
    out
}

/// A notification read back: the projection and what it applied.
fn parse(payload: &str) -> Option<(&str, Vec<(Uuid, u64)>)> {
    let mut lines = payload.lines();
    let projection = lines.next()?;
    let applied = lines
        .filter_map(|line| {
            let (id, version) = line.split_once(' ')?;
            Some((Uuid::parse_str(id).ok()?, version.parse().ok()?))
        })
        .collect();
    Some((projection, applied))
}

type Key = (String, Uuid);

#[derive(Default)]
struct Waiters {
    /// Per projection and aggregate being waited for, the highest version seen applied.
    by_aggregate: Mutex<HashMap<Key, watch::Sender<u64>>>,
    /// Notifications received, for operators and tests.
    seen: AtomicU64,
}

impl Waiters {
    fn deliver(&self, payload: &str) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let Some((projection, applied)) = parse(payload) else {
            return;
        };
        let waiting = self
            .by_aggregate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if waiting.is_empty() {
            return;
        }
        let mut key = (projection.to_owned(), Uuid::nil());
        for (aggregate, version) in applied {
            key.1 = aggregate;
            if let Some(reached) = waiting.get(&key) {
                reached.send_if_modified(|v| {
                    let moved = version > *v;
                    *v = (*v).max(version);
                    moved
                });
            }
        }
    }
}

/// One waiter's interest in an aggregate; the entry goes when its last waiter does.
struct Interest<'a> {
    waiters: &'a Waiters,
    key: Key,
    reached: Option<watch::Receiver<u64>>,
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        drop(self.reached.take());
        let mut waiting = self
            .waiters
            .by_aggregate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if waiting
            .get(&self.key)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            waiting.remove(&self.key);
        }
    }
}

/// This process's view of the projections' progress. Cheap to clone.
#[derive(Clone)]
pub struct ReadProgress {
    waiters: Arc<Waiters>,
    /// Moves when notifications may have been missed (the listener (re)connected).
    resync: watch::Receiver<u64>,
    safety_net: Duration,
}

impl ReadProgress {
    /// Listens on `pool`'s server in the background (reconnecting as needed).
    pub fn listen(pool: &PgPool) -> Self {
        Self::listen_with(pool, SAFETY_NET)
    }

    /// As [`ReadProgress::listen`], re-checking every `safety_net` without a notification.
    pub fn listen_with(pool: &PgPool, safety_net: Duration) -> Self {
        let (resync_tx, resync) = watch::channel(0u64);
        let waiters = Arc::new(Waiters::default());
        let pool = pool.clone();
        let delivered = Arc::downgrade(&waiters);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !resync_tx.is_closed() {
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
                // A (re)connection may have missed notifications: every waiter re-checks.
                resync_tx.send_modify(|n| *n += 1);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            let Some(waiters) = delivered.upgrade() else {
                                return;
                            };
                            waiters.deliver(notification.payload());
                        }
                        // The connection was lost; `try_recv` reconnects on the next call.
                        Ok(None) => resync_tx.send_modify(|n| *n += 1),
                        Err(error) => {
                            tracing::warn!(%error, "read-model progress listener failed");
                            break;
                        }
                    }
                    if resync_tx.is_closed() {
                        return;
                    }
                }
            }
        });
        Self {
            waiters,
            resync,
            safety_net,
        }
    }

    /// How many aggregates pages are waiting for right now.
    pub fn waiting(&self) -> usize {
        self.waiters
            .by_aggregate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Notifications this process has received.
    pub fn notifications_seen(&self) -> u64 {
        self.waiters.seen.load(Ordering::Relaxed)
    }

    /// Waits until `projection` has applied version `version` of `aggregate`, for at most
    /// `timeout`. `reached` looks at the read table itself: it is asked once at the start,
    /// after a reconnection and every safety-net interval, never once per notification.
    /// True if the version was reached.
    pub async fn wait_for<F, Fut>(
        &self,
        projection: &str,
        aggregate: Uuid,
        version: u64,
        timeout: Duration,
        mut reached: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let key = (projection.to_owned(), aggregate);
        let receiver = self
            .waiters
            .by_aggregate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        let mut interest = Interest {
            waiters: &self.waiters,
            key,
            reached: Some(receiver),
        };
        let mut resync = self.resync.clone();
        resync.borrow_and_update();
        if reached().await {
            return true;
        }
        let Some(applied) = interest.reached.as_mut() else {
            return false;
        };
        loop {
            if *applied.borrow_and_update() >= version {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(self.safety_net);
            tokio::select! {
                changed = applied.changed() => {
                    if changed.is_err() {
                        return reached().await;
                    }
                    continue;
                }
                _ = resync.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
            if reached().await {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let applied: Vec<(Uuid, u64)> = (0..500).map(|i| (Uuid::new_v4(), i)).collect();
        let sent = payloads("samples", &applied);
        assert!(sent.len() > 1, "500 lines do not fit one notification");
        let mut back = Vec::new();
        for payload in &sent {
            assert!(payload.len() < 8_000);
            let (projection, lines) = parse(payload).expect("parses");
            assert_eq!(projection, "samples");
            back.extend(lines);
        }
        assert_eq!(back, applied);
    }

    #[test]
    fn a_notification_without_events_names_only_the_projection() {
        assert_eq!(payloads("samples", &[]), ["samples"]);
        assert_eq!(parse("samples"), Some(("samples", vec![])));
    }

    #[test]
    fn only_waiters_of_a_named_aggregate_are_woken_and_only_forward() {
        let waiters = Waiters::default();
        let a = Uuid::new_v4();
        let (tx, mut rx) = watch::channel(0);
        waiters
            .by_aggregate
            .lock()
            .expect("lock")
            .insert(("samples".into(), a), tx);
        rx.borrow_and_update();
        waiters.deliver(&format!("samples\n{} 7", Uuid::new_v4()));
        waiters.deliver(&format!("storage\n{a} 7"));
        assert!(
            !rx.has_changed().expect("open"),
            "other aggregates wake no one"
        );
        waiters.deliver(&format!("samples\n{a} 3"));
        assert_eq!(*rx.borrow_and_update(), 3);
        waiters.deliver(&format!("samples\n{a} 2"));
        assert!(
            !rx.has_changed().expect("open"),
            "an older version moves nothing"
        );
    }
}
