//! The outbox relay against a real Kafka-protocol broker, the registry over HTTP and
//! PostgreSQL: every committed event reaches Kafka once at least, in order per sample,
//! through a broker outage, a killed relay, and two relays at once.

use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::testkit::{BoxError, Broker, lab_day, read_topic, registry, store};
use kafka::topics::SAMPLE_EVENTS;
use kafka::wire::WireCodec;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

type TestResult = Result<(), BoxError>;

fn relay(
    store: &event_sourcing::EventStore,
    codec: &Arc<WireCodec>,
    brokers: &str,
) -> Result<(OutboxRelay, PipelineMetrics), BoxError> {
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let mut config = RelayConfig::new(brokers);
    config.message_timeout = Duration::from_secs(2);
    config.breaker.open_for = Duration::from_secs(1);
    let relay = OutboxRelay::new(
        store.pool().clone(),
        Arc::clone(codec),
        metrics.clone(),
        config,
    )?;
    Ok((relay, metrics))
}

async fn backlog(store: &event_sourcing::EventStore) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(store.pool())
        .await
}

async fn wait_for_empty_outbox(store: &event_sourcing::EventStore, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    while backlog(store).await? > 0 {
        if Instant::now() > deadline {
            return Err(format!("outbox still holds {} rows", backlog(store).await?).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Reads the topic back and checks: every stored event is there (duplicates allowed, as
/// delivery is at least once), keyed by its sample, and each sample's events first arrive
/// in version order, all in one partition.
async fn verify_topic(
    store: &event_sourcing::EventStore,
    codec: &WireCodec,
    brokers: &str,
) -> TestResult {
    let expected: Vec<(Uuid, Uuid, i64)> =
        sqlx::query_as("SELECT event_id, aggregate_id, version FROM events ORDER BY position")
            .fetch_all(store.pool())
            .await?;
    let messages = tokio::task::block_in_place(|| {
        read_topic(
            brokers,
            SAMPLE_EVENTS,
            expected.len(),
            Duration::from_secs(30),
        )
    })?;
    let mut seen = HashSet::new();
    let mut last_version: HashMap<Uuid, (i32, u64)> = HashMap::new();
    for message in &messages {
        let (partition, headers) = (&message.partition, &message.headers);
        let (header, _) = codec.decode(&message.value).await?;
        assert_eq!(message.key, header.sample_id.to_string(), "keyed by sample");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "event_id" && v == &header.event_id.to_string())
        );
        assert!(
            headers.iter().any(|(k, _)| k == "traceparent"),
            "trace context travels in headers"
        );
        if !seen.insert(header.event_id) {
            // A redelivery (at least once): consumers skip it by event id and version.
            continue;
        }
        if let Some((p, v)) = last_version.get(&header.sample_id) {
            assert_eq!(p, partition, "one sample, one partition");
            assert!(
                header.aggregate_version > *v,
                "a sample's new events arrive in order"
            );
        }
        last_version.insert(header.sample_id, (*partition, header.aggregate_version));
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, _, _)| !seen.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached Kafka",
        missing.len(),
        expected.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_events_reach_kafka_as_avro_in_order_per_sample() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = Arc::new(WireCodec::new(&registry(store.pool().clone()).await?)?);
    codec.register_all(SAMPLE_EVENTS).await?;
    let appended = lab_day(&store, 40, "KAFKA").await?;
    assert_eq!(backlog(&store).await?, appended as i64);

    let (relay, metrics) = relay(&store, &codec, &broker.address)?;
    let mut published = 0;
    while published < appended {
        let n = relay.publish_batch().await?;
        assert!(n > 0, "the outbox still had rows");
        published += n;
    }
    assert_eq!(relay.publish_batch().await?, 0);
    assert_eq!(backlog(&store).await?, 0);
    assert_eq!(metrics.outbox_backlog.get(), 0);
    let exported = metrics.render();
    assert!(exported.contains("cqrs_events_published_total{event_type=\"SampleRegistered\",topic=\"laboratory.sample.events\"} 40"), "{exported}");
    verify_topic(&store, &codec, &broker.address).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_opens_the_circuit_and_no_event_is_lost() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = Arc::new(WireCodec::new(&registry(store.pool().clone()).await?)?);
    let (relay, metrics) = relay(&store, &codec, &broker.address)?;
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(relay.run(stop));

    lab_day(&store, 10, "BEFORE").await?;
    wait_for_empty_outbox(&store, Duration::from_secs(20)).await?;

    // The broker stops answering for 10 s while the lab keeps working.
    broker.freeze()?;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { lab_day(&store, 30, "DURING").await })
    };
    let state = metrics
        .circuit_breaker_state
        .with_label_values(&["kafka-relay"]);
    let frozen_at = Instant::now();
    let mut opened = false;
    while frozen_at.elapsed() < Duration::from_secs(10) {
        opened |= state.get() == 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.await??;
    assert!(
        opened,
        "the relay's circuit opened while the broker was unreachable"
    );
    assert!(backlog(&store).await? > 0, "events waited in the outbox");
    broker.thaw()?;

    wait_for_empty_outbox(&store, Duration::from_secs(60)).await?;
    assert_eq!(state.get(), 0, "the circuit closed again");
    let transitions = metrics.render();
    assert!(
        transitions
            .contains("cqrs_circuit_breaker_total{name=\"kafka-relay\",state=\"half_open\"}"),
        "{transitions}"
    );
    stop_tx.send(true)?;
    running.await?;
    verify_topic(&store, &codec, &broker.address).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_mid_batch_loses_nothing_and_two_relays_share_the_work() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = Arc::new(WireCodec::new(&registry(store.pool().clone()).await?)?);
    lab_day(&store, 60, "KILL").await?;

    // Kill a relay in the middle of its work: its open transaction dies with it.
    let (first, _) = relay(&store, &codec, &broker.address)?;
    let (_never, stop) = watch::channel(false);
    let doomed = tokio::spawn(first.run(stop));
    tokio::time::sleep(Duration::from_millis(30)).await;
    doomed.abort();
    let _ = doomed.await;

    // Two relays at once take over, with the lab still writing.
    let (stop_tx, stop) = watch::channel(false);
    let (a, _) = relay(&store, &codec, &broker.address)?;
    let (b, _) = relay(&store, &codec, &broker.address)?;
    let relays = [tokio::spawn(a.run(stop.clone())), tokio::spawn(b.run(stop))];
    lab_day(&store, 30, "TWO").await?;
    wait_for_empty_outbox(&store, Duration::from_secs(60)).await?;
    stop_tx.send(true)?;
    for r in relays {
        r.await?;
    }
    verify_topic(&store, &codec, &broker.address).await
}
