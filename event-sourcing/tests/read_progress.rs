//! Read-your-writes waits against a real PostgreSQL server's LISTEN/NOTIFY: a waiting page
//! is woken by its own aggregate's progress, not by everyone else's. Seen to fail with
//! `Waiters::deliver` waking every waiter on every notification.

use event_sourcing::testkit::fresh_database;
use event_sourcing::{ReadProgress, notify_progress};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Commits one projection transaction that applied `applied`.
async fn applied(pool: &PgPool, applied: &[(Uuid, u64)]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    notify_progress(&mut tx, "samples", applied).await?;
    tx.commit().await
}

/// Polls observed state (not time) until `done`, for at most 30 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_waiter_wakes_for_its_own_aggregate_and_not_for_others() -> TestResult {
    let (pool, _name) = fresh_database(4).await?;
    // No safety net within the test: only notifications can wake the waiter.
    let progress = ReadProgress::listen_with(&pool, Duration::from_secs(3600));
    let other = Uuid::new_v4();
    // The listener is up once it has seen a notification.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress.notifications_seen() == 0 {
        if tokio::time::Instant::now() > deadline {
            return Err("the listener never received a notification".into());
        }
        applied(&pool, &[(other, 1)]).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mine = Uuid::new_v4();
    let checks = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let progress = progress.clone();
        let checks = Arc::clone(&checks);
        tokio::spawn(async move {
            progress
                .wait_for("samples", mine, 3, Duration::from_secs(60), || {
                    checks.fetch_add(1, Ordering::SeqCst);
                    async { false }
                })
                .await
        })
    };
    until("the waiter to register and look once", || {
        progress.waiting() == 1 && checks.load(Ordering::SeqCst) == 1
    })
    .await?;

    let seen = progress.notifications_seen();
    for version in 2..52 {
        applied(&pool, &[(other, version)]).await?;
    }
    until("50 notifications about another sample", || {
        progress.notifications_seen() >= seen + 50
    })
    .await?;
    assert_eq!(
        checks.load(Ordering::SeqCst),
        1,
        "another sample's progress made the waiter re-read its table"
    );
    assert!(!waiter.is_finished());

    let seen = progress.notifications_seen();
    applied(&pool, &[(other, 99), (mine, 2)]).await?;
    until("the notification of version 2", || {
        progress.notifications_seen() > seen
    })
    .await?;
    tokio::task::yield_now().await;
    assert!(
        !waiter.is_finished(),
        "version 2 is not the version waited for"
    );

    applied(&pool, &[(mine, 3)]).await?;
    let reached = tokio::time::timeout(Duration::from_secs(30), waiter).await??;
    assert!(reached, "version 3 was applied and notified");
    assert_eq!(checks.load(Ordering::SeqCst), 1, "woken without a query");
    assert_eq!(progress.waiting(), 0, "the finished waiter left no entry");
    Ok(())
}

#[tokio::test]
async fn a_waiter_that_finds_its_version_already_applied_returns_at_once() -> TestResult {
    let (pool, _name) = fresh_database(2).await?;
    let progress = ReadProgress::listen_with(&pool, Duration::from_secs(3600));
    let reached = progress
        .wait_for(
            "samples",
            Uuid::new_v4(),
            1,
            Duration::from_secs(30),
            || async { true },
        )
        .await;
    assert!(reached);
    assert_eq!(progress.waiting(), 0);
    Ok(())
}

#[tokio::test]
async fn a_waiter_gives_up_at_its_deadline() -> TestResult {
    let (pool, _name) = fresh_database(2).await?;
    let progress = ReadProgress::listen_with(&pool, Duration::from_secs(3600));
    let reached = progress
        .wait_for(
            "samples",
            Uuid::new_v4(),
            1,
            Duration::from_millis(50),
            || async { false },
        )
        .await;
    assert!(!reached);
    assert_eq!(progress.waiting(), 0);
    Ok(())
}
