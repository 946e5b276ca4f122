//! Consumers against a real broker, the registry over HTTP and PostgreSQL, fed by the
//! relay, for an aggregate that exists only in this test (`support::widget`): it goes
//! through store → relay → Kafka → registry → consumer → its own read table without a
//! change to the pipeline's code. Then the transient failures a consumer must ride out
//! without losing or dead-lettering anything: the registry stopped for 10 s, and
//! PostgreSQL itself really stopped and started mid-stream.
//!
//! Every test ends with the same check: the read table equals a fresh replay of the
//! event store, every event was applied exactly once, and no dead letter was written.

mod support;

use cqrs::Aggregate;
use cqrs::sample::Sample;
use event_sourcing::{CommandContext, EventStore, ExpectedVersion, StoreConfig};
use kafka::avro::EventCatalog;
use kafka::consumer::{Applier, ConsumerConfig, ProjectionConsumer};
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::retry::RetryPolicy;
use kafka::testkit::{BoxError, Broker, PrivatePostgres, StoppableRegistry, codec};
use kafka::wire::WireCodec;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::widget::{self, Widget, WidgetCommand, WidgetEvent, WidgetsProjection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

type TestResult = Result<(), BoxError>;

fn catalog() -> Result<Arc<EventCatalog>, BoxError> {
    Ok(Arc::new(
        EventCatalog::new()
            .with::<Sample>()?
            .with_schemas::<Widget>(widget::SCHEMAS)?,
    ))
}

async fn broker_with_widget_topic() -> Result<Broker, BoxError> {
    let broker = Broker::start().await?;
    kafka::topics::ensure_topics(&broker.address, &[kafka::avro::topic_for("Widget")], 3).await?;
    Ok(broker)
}

/// A store over `pool` with the widgets read table in place.
async fn widget_store(pool: &sqlx::PgPool) -> Result<EventStore, BoxError> {
    widget::create_table(pool).await?;
    Ok(EventStore::new(pool.clone(), StoreConfig::default()))
}

/// Makes `count` widgets and paints each twice; returns how many events were appended.
/// Commands that fail (the database is down) are simply not counted.
async fn widget_work(store: &EventStore, count: usize) -> usize {
    let mut appended = 0;
    for _ in 0..count {
        let id = Uuid::now_v7();
        let ctx = CommandContext::new("tech");
        let made = store
            .execute::<Widget>(
                id,
                WidgetCommand::Make {
                    name: format!("w-{id}"),
                },
                &ctx,
                ExpectedVersion::Exactly(0),
            )
            .await;
        if made.is_err() {
            continue;
        }
        appended += 1;
        for colour in ["red", "blue"] {
            let painted = store
                .execute::<Widget>(
                    id,
                    WidgetCommand::Paint {
                        colour: colour.into(),
                    },
                    &CommandContext::new("painter"),
                    ExpectedVersion::Any,
                )
                .await;
            if painted.is_ok() {
                appended += 1;
            }
        }
    }
    appended
}

fn spawn_relay(
    store: &EventStore,
    codec: &Arc<WireCodec>,
    brokers: &str,
    metrics: &PipelineMetrics,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, BoxError> {
    let relay = OutboxRelay::new(
        store.pool().clone(),
        Arc::clone(codec),
        metrics.clone(),
        RelayConfig::new(brokers).message_timeout(Duration::from_secs(3)),
    )?;
    Ok(tokio::spawn(relay.run(stop)))
}

fn spawn_consumer(
    store: &EventStore,
    codec: Arc<WireCodec>,
    brokers: &str,
    metrics: &PipelineMetrics,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, BoxError> {
    let applier = Arc::new(Applier::new(
        store.pool().clone(),
        codec,
        Arc::new(WidgetsProjection),
        RetryPolicy::AGGRESSIVE,
        metrics.clone(),
    ));
    let mut config = ConsumerConfig::new(brokers);
    config.session_timeout = Duration::from_secs(3);
    let consumer = ProjectionConsumer::new(applier, metrics.clone(), config)?;
    Ok(tokio::spawn(async move {
        let _ = consumer.run(stop).await;
    }))
}

async fn counts(store: &EventStore) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE aggregate_type = 'Widget'), \
                (SELECT count(*) FROM processed_events WHERE consumer = 'widgets'), \
                (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
    )
    .fetch_one(store.pool())
    .await
}

/// Waits until every widget event is published and applied.
async fn drained(store: &EventStore, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    loop {
        if let Ok((events, applied, unpublished)) = counts(store).await
            && events == applied
            && unpublished == 0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not drained: {:?}", counts(store).await).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The widgets table equals a fresh replay of the store; each event was applied once
/// (the consumer's count of first applications equals the events, though redeliveries
/// happen); no dead letter.
async fn assert_read_side_is_a_replay(store: &EventStore, metrics: &PipelineMetrics) -> TestResult {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'Widget'",
    )
    .fetch_all(store.pool())
    .await?;
    assert!(!ids.is_empty());
    for id in &ids {
        let history = store.read_stream::<WidgetEvent>(*id).await?;
        let replayed = Widget::default().fold(history.iter().map(|e| &e.payload));
        let row: (Option<String>, i32, i64) =
            sqlx::query_as("SELECT colour, coats, version FROM widgets WHERE widget_id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await?;
        assert_eq!(
            row,
            (
                replayed.colour,
                i32::try_from(replayed.coats)?,
                i64::try_from(history.len())?
            ),
            "widget {id}"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM widgets")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(rows, i64::try_from(ids.len())?);
    let (events, _, _) = counts(store).await?;
    let applied = metrics
        .consumer_events
        .with_label_values(&["widgets", "applied"])
        .get();
    assert_eq!(
        applied,
        u64::try_from(events)?,
        "every event applied exactly once"
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(dead, 0, "no dead letter for a transient failure");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_test_only_aggregate_flows_end_to_end_with_no_change_to_the_pipeline() -> TestResult {
    let broker = broker_with_widget_topic().await?;
    let (pool, _) = event_sourcing::testkit::fresh_database(20).await?;
    let store = widget_store(&pool).await?;
    let registry = StoppableRegistry::start(pool).await?;
    let codec = codec(&registry.url(), catalog()?).await?;
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let (stop_tx, stop) = watch::channel(false);
    let relay = spawn_relay(&store, &codec, &broker.address, &metrics, stop.clone())?;
    let consumer = spawn_consumer(&store, Arc::clone(&codec), &broker.address, &metrics, stop)?;
    let appended = widget_work(&store, 10).await;
    assert_eq!(appended, 30);
    drained(&store, Duration::from_secs(60)).await?;
    assert_read_side_is_a_replay(&store, &metrics).await?;
    stop_tx.send(true)?;
    relay.await?;
    consumer.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_stopped_for_10_s_stalls_the_consumer_and_loses_nothing() -> TestResult {
    let broker = broker_with_widget_topic().await?;
    let (pool, _) = event_sourcing::testkit::fresh_database(20).await?;
    let store = widget_store(&pool).await?;
    let mut registry = StoppableRegistry::start(pool).await?;
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let (stop_tx, stop) = watch::channel(false);
    // Events reach Kafka while the registry is up...
    let relay_codec = codec(&registry.url(), catalog()?).await?;
    let relay = spawn_relay(
        &store,
        &relay_codec,
        &broker.address,
        &metrics,
        stop.clone(),
    )?;
    widget_work(&store, 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(&store).await?.2 > 0 {
        assert!(Instant::now() < deadline, "the relay did not publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...then the registry goes away, and a consumer that has never seen these schemas
    // starts: it cannot decode, and must wait rather than dead-letter.
    registry.stop().await?;
    let stopped_at = Instant::now();
    let consumer_codec = Arc::new(WireCodec::new(&registry.url(), catalog()?));
    let consumer = spawn_consumer(&store, consumer_codec, &broker.address, &metrics, stop)?;
    let stalled = metrics.consumer_stalled.with_label_values(&["widgets"]);
    while stalled.get() != 1 {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "the consumer never stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while stopped_at.elapsed() < Duration::from_secs(10) {
        let (_, applied, _) = counts(&store).await?;
        assert_eq!(applied, 0, "nothing can be applied without the schemas");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(dead, 0, "nothing dead-lettered while the registry was away");
    registry.restart().await?;
    drained(&store, Duration::from_secs(60)).await?;
    assert_eq!(stalled.get(), 0, "the consumer makes progress again");
    assert!(
        metrics.retry_attempts.with_label_values(&["widgets"]).get() > 0,
        "retries are visible"
    );
    assert_read_side_is_a_replay(&store, &metrics).await?;
    stop_tx.send(true)?;
    relay.await?;
    consumer.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_mid_stream_loses_nothing_and_applies_everything_once() -> TestResult {
    let broker = broker_with_widget_topic().await?;
    let postgres = PrivatePostgres::start()?;
    let pool = postgres.database(20).await?;
    let store = widget_store(&pool).await?;
    let registry = StoppableRegistry::start(pool).await?;
    let codec = codec(&registry.url(), catalog()?).await?;
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let (stop_tx, stop) = watch::channel(false);
    let relay = spawn_relay(&store, &codec, &broker.address, &metrics, stop.clone())?;
    let consumer = spawn_consumer(&store, Arc::clone(&codec), &broker.address, &metrics, stop)?;

    // The lab keeps working throughout; commands fail while the database is down.
    let (writing_tx, writing) = watch::channel(true);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut appended = 0;
            while *writing.borrow() {
                appended += widget_work(&store, 2).await;
            }
            appended
        })
    };
    // Stop the server while the consumer is in the middle of applying: hold a lock on
    // its table until it is seen waiting for it, with events published and not applied.
    use sqlx::Connection;
    let mut locker = sqlx::PgConnection::connect(&postgres.url("tracseq")).await?;
    sqlx::query("BEGIN").execute(&mut locker).await?;
    sqlx::query("LOCK TABLE widgets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'widgets'::regclass AND NOT granted)",
        )
        .fetch_one(store.pool())
        .await?;
        let (events, applied, unpublished) = counts(&store).await?;
        if waiting && events > applied + unpublished {
            break;
        }
        assert!(Instant::now() < deadline, "the consumer never got to apply");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stalled = metrics.consumer_stalled.with_label_values(&["widgets"]);
    tokio::task::block_in_place(|| postgres.stop())?;
    let down_at = Instant::now();
    while stalled.get() != 1 && down_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stalled.get(),
        1,
        "the consumer waits for the database, visibly"
    );
    // Down for 8 s: longer than any bounded retry budget would wait.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(down_at.elapsed())).await;
    tokio::task::block_in_place(|| postgres.start_again())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    writing_tx.send(false)?;
    let appended = writer.await?;
    assert!(appended > 0);
    drained(&store, Duration::from_secs(90)).await?;
    assert_eq!(stalled.get(), 0);
    assert_read_side_is_a_replay(&store, &metrics).await?;
    stop_tx.send(true)?;
    relay.await?;
    consumer.await?;
    Ok(())
}
