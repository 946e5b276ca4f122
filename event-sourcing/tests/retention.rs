//! Retention against a real PostgreSQL server, each test in its own fresh database.
//! Rows are aged by updating their timestamps, never by waiting. Every test here was seen
//! to fail with the guarantee it checks broken in `event_sourcing::retention`.

use cqrs::sample::{
    Barcode, Sample, SampleCommand, SampleDetails, SampleId, SampleRejection, SampleType,
    TemperatureZone, VolumeUl,
};
use event_sourcing::retention::{Retention, prune_once};
use event_sourcing::testkit::fresh_database;
use event_sourcing::{CommandContext, CommandError, EventStore, ExpectedVersion, StoreConfig};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const DAY: Duration = Duration::from_secs(86_400);

/// Only `outbox` pruned, after 7 days.
fn outbox_only() -> Retention {
    Retention {
        outbox: Some(DAY * 7),
        processed_events: None,
        commands: None,
        ..Retention::default()
    }
}

/// An outbox row at `position`: created, published and parked that many days ago
/// (`None`: not published / not parked).
async fn outbox_row(
    pool: &PgPool,
    position: i64,
    created_days_ago: i32,
    published_days_ago: Option<i32>,
    parked_days_ago: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (position, event_id, aggregate_type, aggregate_id, created_at, \
         published_at, parked_at, park_reason) \
         VALUES ($1, $2, 'Sample', $3, now() - make_interval(days => $4), \
                 now() - make_interval(days => $5), now() - make_interval(days => $6), \
                 CASE WHEN $6 IS NOT NULL THEN 'cannot be encoded' END)",
    )
    .bind(position)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(created_days_ago)
    .bind(published_days_ago)
    .bind(parked_days_ago)
    .execute(pool)
    .await?;
    Ok(())
}

async fn outbox_positions(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT position FROM outbox ORDER BY position")
        .fetch_all(pool)
        .await
}

#[tokio::test]
async fn old_published_outbox_rows_go_and_unpublished_parked_and_recent_ones_stay() -> TestResult {
    let (pool, _) = fresh_database(2).await?;
    outbox_row(&pool, 1, 10, Some(8), None).await?; // published 8 days ago: goes
    outbox_row(&pool, 2, 10, Some(6), None).await?; // published 6 days ago: stays
    outbox_row(&pool, 3, 30, None, None).await?; // never published (relay down): stays
    outbox_row(&pool, 4, 30, None, Some(29)).await?; // parked for an operator: stays
    outbox_row(&pool, 5, 0, Some(0), None).await?; // just published: stays
    // Leased long ago by a relay that died, still unpublished: stays.
    outbox_row(&pool, 6, 20, None, None).await?;
    sqlx::query("UPDATE outbox SET leased_until = now() - interval '19 days', attempts = 3 WHERE position = 6")
        .execute(&pool)
        .await?;

    let pruned = prune_once(&pool, &outbox_only()).await?;

    assert_eq!(pruned.outbox, 1, "{pruned:?}");
    assert_eq!(outbox_positions(&pool).await?, vec![2, 3, 4, 5, 6]);
    // A second run finds nothing more.
    assert_eq!(prune_once(&pool, &outbox_only()).await?.total(), 0);
    Ok(())
}

async fn processed_row(pool: &PgPool, consumer: &str, hours_ago: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) \
         VALUES ($1, $2, now() - make_interval(hours => $3))",
    )
    .bind(consumer)
    .bind(Uuid::now_v7())
    .bind(hours_ago)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::test]
async fn processed_events_older_than_their_retention_go_and_recent_ones_stay() -> TestResult {
    let (pool, _) = fresh_database(2).await?;
    for consumer in ["samples", "saga"] {
        processed_row(&pool, consumer, 31 * 24).await?; // goes
        processed_row(&pool, consumer, 30 * 24 + 1).await?; // just past 30 days: goes
        processed_row(&pool, consumer, 30 * 24 - 1).await?; // just inside: stays
        processed_row(&pool, consumer, 0).await?; // stays
    }
    let retention = Retention {
        outbox: None,
        commands: None,
        ..Retention::default() // processed_events: 30 days
    };

    // Off (0 days): kept forever.
    let off = Retention {
        processed_events: None,
        ..retention.clone()
    };
    assert_eq!(prune_once(&pool, &off).await?.total(), 0);

    let pruned = prune_once(&pool, &retention).await?;
    assert_eq!(pruned.processed_events, 4, "{pruned:?}");
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT consumer, count(*) FROM processed_events \
         WHERE processed_at > now() - interval '30 days' GROUP BY consumer ORDER BY consumer",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        left,
        vec![("saga".to_owned(), 2), ("samples".to_owned(), 2)]
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(&pool)
        .await?;
    assert_eq!(total, 4);
    Ok(())
}

fn register(id: Uuid) -> SampleCommand {
    SampleCommand::Register {
        id: SampleId::from_uuid(id),
        details: SampleDetails {
            barcode: Barcode::parse(&format!("RET-{}", id.simple())).expect("barcode"),
            sample_type: SampleType::Blood,
            volume: VolumeUl::parse("500").expect("volume"),
            temperature_zone: TemperatureZone::Plus4,
            patient: None,
            collected_at: None,
            collected_by: None,
        },
    }
}

#[tokio::test]
async fn idempotency_records_past_the_window_go_and_a_later_repeat_counts_as_new() -> TestResult {
    let (pool, _) = fresh_database(4).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let retention = Retention {
        outbox: None,
        processed_events: None,
        ..Retention::default() // commands: 7 days
    };
    let (old_sample, recent_sample) = (Uuid::now_v7(), Uuid::now_v7());
    let old_key = CommandContext::new("tech").named("register");
    let recent_key = CommandContext::new("tech").named("register");
    for (sample, key) in [(old_sample, &old_key), (recent_sample, &recent_key)] {
        store
            .execute::<Sample>(sample, register(sample), key, ExpectedVersion::Exactly(0))
            .await?;
    }
    let receive = CommandContext::new("tech").named("receive");
    store
        .execute::<Sample>(
            old_sample,
            SampleCommand::Receive { notes: None },
            &receive,
            ExpectedVersion::Any,
        )
        .await?;
    // Within the window a repeat gets the first outcome.
    let repeat = store
        .execute::<Sample>(
            old_sample,
            SampleCommand::Receive { notes: None },
            &receive,
            ExpectedVersion::Any,
        )
        .await?;
    assert!(repeat.duplicate);

    sqlx::query(
        "UPDATE commands SET recorded_at = now() - interval '8 days' WHERE command_id = ANY($1)",
    )
    .bind(vec![old_key.command_id, receive.command_id])
    .execute(&pool)
    .await?;
    sqlx::query(
        "UPDATE commands SET recorded_at = now() - interval '6 days' WHERE command_id = $1",
    )
    .bind(recent_key.command_id)
    .execute(&pool)
    .await?;

    let pruned = prune_once(&pool, &retention).await?;
    assert_eq!(pruned.commands, 2, "{pruned:?}");
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT command_id FROM commands")
        .fetch_all(&pool)
        .await?;
    assert_eq!(left, vec![recent_key.command_id]);
    // The recent key still replays its first outcome...
    let repeat = store
        .execute::<Sample>(
            recent_sample,
            register(recent_sample),
            &recent_key,
            ExpectedVersion::Exactly(0),
        )
        .await?;
    assert!(repeat.duplicate);
    // ...while the forgotten one is decided again as a new command: the sample is
    // already received, so this time it is refused.
    let again = store
        .execute::<Sample>(
            old_sample,
            SampleCommand::Receive { notes: None },
            &receive,
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(
            again,
            Err(CommandError::Rejected(SampleRejection::CannotReceive(_)))
        ),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn more_rows_than_a_batch_all_go_in_several_short_statements() -> TestResult {
    let (pool, _) = fresh_database(2).await?;
    sqlx::query(
        "INSERT INTO outbox (position, event_id, aggregate_type, aggregate_id, created_at, published_at) \
         SELECT p, gen_random_uuid(), 'Sample', gen_random_uuid(), \
                now() - interval '9 days', now() - interval '8 days' \
         FROM generate_series(1, 2500) p",
    )
    .execute(&pool)
    .await?;
    outbox_row(&pool, 3000, 1, Some(1), None).await?; // recent: stays
    let retention = Retention {
        batch_size: 1000,
        ..outbox_only()
    };

    let pruned = prune_once(&pool, &retention).await?;

    assert_eq!(pruned.outbox, 2500, "{pruned:?}");
    // 1000 + 1000 + 500: no statement deleted more than a batch, and the loop went on
    // until a short batch said nothing was left.
    assert_eq!(pruned.statements, 3, "{pruned:?}");
    assert_eq!(outbox_positions(&pool).await?, vec![3000]);
    Ok(())
}

#[tokio::test]
async fn the_job_stops_when_told() -> TestResult {
    let (pool, _) = fresh_database(2).await?;
    outbox_row(&pool, 1, 10, Some(8), None).await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let job = event_sourcing::retention::spawn(pool.clone(), outbox_only(), stop);
    // The first run happens at once; wait for its effect, not for a fixed time.
    for _ in 0..200 {
        if outbox_positions(&pool).await?.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(outbox_positions(&pool).await?.is_empty());
    stop_tx.send(true)?;
    tokio::time::timeout(Duration::from_secs(5), job).await??;
    Ok(())
}
