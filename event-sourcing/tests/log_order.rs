//! The log's order after a logical move to a new cluster (see `src/follow.rs`): the store
//! refuses while new events would sort below what is stored, and the re-base repairs it
//! without a follower losing or repeating an event.
//!
//! A move is simulated by lifting every stored transaction id far above this cluster's
//! counter, which is what a restore into a younger cluster looks like from inside it,
//! and saving a projection checkpoint at the newest of them.

use cqrs::sample::{Sample, SampleEvent};
use event_sourcing::testkit::fresh_database;
use event_sourcing::testkit::samples::note_event;
use event_sourcing::{
    AppendRequest, Envelope, EventStore, LogCursor, Progress, Projection, ProjectionError,
    ProjectionRunner, StoreConfig, StoreError,
};
use sqlx::PgConnection;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How far above this cluster's counter the "restored" ids sit.
const MOVED: i64 = 1_000_000_000;

fn request(events: usize) -> AppendRequest {
    AppendRequest {
        aggregate_type: "Sample",
        aggregate_id: Uuid::now_v7(),
        expected_version: 0,
        events: (0..events).map(|i| note_event(&format!("e{i}"))).collect(),
        ..AppendRequest::default()
    }
}

/// Inserts one event the way a writer outside the store would (the column default gives
/// its log id), returning that id.
async fn insert_direct(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let event = note_event("direct");
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
         schema_version, payload, metadata) \
         VALUES ('Sample', $1, 1, $2, 'SampleReceived', $5, $3::jsonb, $4::jsonb) \
         RETURNING transaction_id",
    )
    .bind(Uuid::now_v7())
    .bind(event.event_id)
    .bind(&event.payload)
    .bind(serde_json::to_string(&event.metadata).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .bind(i32::try_from(event.schema_version).unwrap_or(i32::MAX))
    .fetch_one(conn)
    .await
}

fn sqlstate(result: &Result<i64, sqlx::Error>) -> Option<String> {
    let db = result.as_ref().err()?.as_database_error()?;
    db.code().map(|c| c.into_owned())
}

/// Records every event it is given, so a test can count deliveries.
struct Recorder;

impl Projection for Recorder {
    const NAME: &'static str = "log_order_recorder";
    type Aggregate = Sample;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope<SampleEvent>,
    ) -> Result<(), ProjectionError> {
        sqlx::query("INSERT INTO recorded (event_id) VALUES ($1)")
            .bind(event.event_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A store whose log holds `events` events, then "moved": stored ids far above the
/// counter, and the recorder's checkpoint at the newest event, as if it had applied all.
async fn moved_store(
    events: usize,
) -> Result<(EventStore, LogCursor), Box<dyn std::error::Error + Send + Sync>> {
    let (pool, _) = fresh_database(20).await?;
    // No delivery key: a repeat shows up as a second row.
    sqlx::query("CREATE TABLE recorded (n bigserial PRIMARY KEY, event_id uuid NOT NULL)")
        .execute(&pool)
        .await?;
    let store = EventStore::new(pool, StoreConfig::default());
    for _ in 0..events {
        store.append(request(2)).await?;
    }
    sqlx::query("UPDATE events SET transaction_id = transaction_id + $1")
        .bind(MOVED)
        .execute(store.pool())
        .await?;
    let (transaction_id, position): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id, position FROM events \
         ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_one(store.pool())
    .await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, transaction_id, position) \
         VALUES ($1, $2, $3)",
    )
    .bind(Recorder::NAME)
    .bind(transaction_id)
    .bind(position)
    .execute(store.pool())
    .await?;
    Ok((
        store,
        LogCursor {
            transaction_id,
            position,
        },
    ))
}

/// Follows the log from `from` until `want` events have come (or a while has passed):
/// the horizon is cluster-wide, so other tests' open transactions may hold it back.
async fn follow(store: &EventStore, from: LogCursor, want: usize) -> Result<Vec<Uuid>, StoreError> {
    let mut cursor = from;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < want && tokio::time::Instant::now() < deadline {
        let batch = store.read_after(cursor, 7).await?;
        match batch.last() {
            Some(last) => cursor = last.cursor(),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        seen.extend(batch.iter().map(|e| e.event_id));
    }
    // Anything past what was wanted would be a repeat or a stray: read once more.
    seen.extend(
        store
            .read_after(cursor, 7)
            .await?
            .iter()
            .map(|e| e.event_id),
    );
    Ok(seen)
}

async fn count(store: &EventStore, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
}

fn assert_broken<T: std::fmt::Debug>(result: Result<T, StoreError>, newest: i64, what: &str) {
    match result {
        Err(StoreError::LogOrderBroken {
            newest_stored,
            current,
        }) => {
            assert_eq!(newest_stored, newest, "{what}: newest stored id");
            assert!(current < newest, "{what}: current {current} is not below");
        }
        other => panic!("{what}: expected LogOrderBroken, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_move_appends_reads_and_projections_refuse_until_rebased() -> TestResult {
    let (store, checkpoint) = moved_store(3).await?;
    let newest = checkpoint.transaction_id;
    let stored = count(&store, "events").await?;

    assert_broken(store.check_log_order().await, newest, "start-up check");
    assert_broken(
        store.read_after(LogCursor::START, 10).await,
        newest,
        "read_after from start",
    );
    assert_broken(
        store.read_after(checkpoint, 10).await,
        newest,
        "read_after from checkpoint",
    );
    assert_broken(store.append(request(1)).await, newest, "append");
    let batch = store.append_all(&[request(1), request(2)]).await;
    assert_eq!(batch.len(), 2);
    for result in batch {
        assert_broken(result, newest, "append_all");
    }

    // Writers outside the store are held to it as well.
    let direct = insert_direct(&mut *store.pool().acquire().await?).await;
    assert_eq!(sqlstate(&direct).as_deref(), Some("TQ001"), "{direct:?}");
    assert_eq!(
        count(&store, "events").await?,
        stored,
        "something was appended"
    );
    assert_eq!(
        count(&store, "outbox").await?,
        stored,
        "an outbox row was written"
    );

    let progress = Progress::new(Recorder::NAME);
    let handle = ProjectionRunner::new(store.clone(), Recorder)
        .progress(progress.clone())
        .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !progress.is_failing() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stuck = progress
        .stuck(Duration::ZERO)
        .expect("the projection runner refused to start");
    assert!(
        stuck.last_error.contains("tracseq_rebase_log_xid"),
        "the refusal names the fix: {}",
        stuck.last_error
    );
    assert!(
        handle.is_running(),
        "it keeps retrying, to resume after the re-base"
    );
    assert_eq!(count(&store, "recorded").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_rebase_a_follower_from_its_checkpoint_sees_every_new_event_once_in_order()
-> TestResult {
    let (store, checkpoint) = moved_store(3).await?;
    let newest = checkpoint.transaction_id;

    // Started before the re-base: it refuses, then resumes by itself.
    let progress = Progress::new(Recorder::NAME);
    let runner = ProjectionRunner::new(store.clone(), Recorder)
        .progress(progress.clone())
        .poll_interval(Duration::from_millis(20))
        .spawn();

    let rebased = store.rebase_log_xid().await?;
    assert_eq!(rebased.old_offset, 0);
    assert_eq!(rebased.newest_stored, newest);
    assert!(rebased.next_log_id > newest, "{rebased:?}");
    let again = store.rebase_log_xid().await?;
    assert_eq!(
        again.new_offset, rebased.new_offset,
        "a second re-base moves nothing"
    );
    store.check_log_order().await?;

    // Eight concurrent writers, half of them holding their transaction open across
    // other commits, as in the store's own follower test.
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 15;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    if w % 2 == 0 && i % 3 == 0 {
                        // Takes its id now, commits after others have committed later ones.
                        let mut tx = store.pool().begin().await?;
                        insert_direct(&mut tx).await?;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        tx.commit().await?;
                    } else {
                        store.append(request(1 + i % 3)).await?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }

    let new: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT event_id, transaction_id, position FROM events WHERE transaction_id > $1 \
         ORDER BY transaction_id, position",
    )
    .bind(newest)
    .fetch_all(store.pool())
    .await?;
    let appended = count(&store, "events").await? - 6;
    assert_eq!(
        new.len() as i64,
        appended,
        "every new event sorts after every stored one"
    );

    // A follower from the saved checkpoint.
    let seen = follow(&store, checkpoint, new.len()).await?;
    let expected: Vec<Uuid> = new.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        seen, expected,
        "the follower missed, repeated or reordered events"
    );

    // The runner that refused before the re-base catches up: each new event once.
    let last = new.last().map(|&(_, transaction_id, position)| LogCursor {
        transaction_id,
        position,
    });
    let last = last.ok_or("no new events")?;
    assert!(
        runner.wait_for(last, Duration::from_secs(30)).await,
        "the runner did not resume after the re-base: {:?}",
        progress.stuck(Duration::ZERO)
    );
    let recorded: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM recorded ORDER BY n")
        .fetch_all(store.pool())
        .await?;
    assert_eq!(
        recorded.iter().collect::<HashSet<_>>().len(),
        recorded.len(),
        "applied twice"
    );
    assert_eq!(recorded, expected, "the runner missed or reordered events");
    Ok(())
}

/// A transaction that took its id before the re-base still writes above the stored log:
/// the offset is measured from the oldest running transaction, not from the next id.
#[tokio::test]
async fn a_transaction_older_than_the_rebase_still_writes_after_the_stored_log() -> TestResult {
    let (store, checkpoint) = moved_store(2).await?;
    let mut old = store.pool().begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *old)
        .await?;
    // Younger transactions finish meanwhile, so the old one is below the snapshot's xmax.
    for _ in 0..3 {
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(store.pool())
            .await?;
    }

    store.rebase_log_xid().await?;
    let transaction_id = insert_direct(&mut old).await?;
    old.commit().await?;
    assert!(transaction_id > checkpoint.transaction_id);
    let after = follow(&store, checkpoint, 1).await?;
    assert_eq!(after.len(), 1, "{after:?}");
    Ok(())
}

/// The check an append makes on its own id: a transaction that started while the
/// restarted counter was still below the stored log may run until the counter has
/// climbed past it; its events would sort below the checkpoint although the counter
/// looks fine by then.
#[tokio::test]
async fn an_append_below_a_saved_checkpoint_is_refused_even_when_the_counter_is_past_it()
-> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool, StoreConfig::default());
    let mut old = store.pool().begin().await?;
    let (own,): (i64,) = sqlx::query_as("SELECT tracseq_log_xid()")
        .fetch_one(&mut *old)
        .await?;
    // Committed by a later transaction: the counter (next id) is now above it.
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, transaction_id, position) \
         VALUES ('elsewhere', $1, 1)",
    )
    .bind(own + 1)
    .execute(store.pool())
    .await?;
    store.check_log_order().await?;

    let refused = insert_direct(&mut old).await;
    assert_eq!(sqlstate(&refused).as_deref(), Some("TQ001"), "{refused:?}");
    Ok(())
}

/// The re-base waits for appends in flight, so none is written under the old offset
/// after it, and holds new ones back until it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebase_waits_for_an_append_in_flight() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool, StoreConfig::default());
    let mut in_flight = store.pool().begin().await?;
    insert_direct(&mut in_flight).await?;
    let rebase = tokio::spawn({
        let store = store.clone();
        async move { store.rebase_log_xid().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rebase.is_finished(), "the re-base did not wait");
    in_flight.commit().await?;
    let rebased = tokio::time::timeout(Duration::from_secs(10), rebase).await???;
    assert_eq!(rebased.new_offset, 0, "an intact log needs no move");
    Ok(())
}
