//! The outbox relay against a real Kafka-protocol broker, the registry over HTTP and
//! PostgreSQL: every committed event reaches Kafka at least once, in order per aggregate,
//! through a broker outage, a relay killed with a claimed batch unacknowledged, two relays
//! at once, and poison rows among good ones.

mod support;

use cqrs::sample::{Sample, SampleCommand};
use event_sourcing::{CommandContext, EventStore, ExpectedVersion};
use kafka::avro::EventCatalog;
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig, parked, retry_parked};
use kafka::testkit::{
    BoxError, Broker, codec, lab_day, read_topic, registry, sample_catalog, store,
};
use kafka::topics::SAMPLE_EVENTS;
use kafka::wire::WireCodec;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::widget::{self, Widget, WidgetCommand};
use tokio::sync::watch;
use uuid::Uuid;

type TestResult = Result<(), BoxError>;

fn relay_with(
    store: &EventStore,
    codec: &Arc<WireCodec>,
    brokers: &str,
    tune: impl FnOnce(&mut RelayConfig),
) -> Result<(OutboxRelay, PipelineMetrics), BoxError> {
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let mut config = RelayConfig::new(brokers).message_timeout(Duration::from_secs(2));
    config.breaker.open_for = Duration::from_secs(1);
    tune(&mut config);
    let relay = OutboxRelay::new(
        store.pool().clone(),
        Arc::clone(codec),
        metrics.clone(),
        config,
    )?;
    Ok((relay, metrics))
}

fn relay(
    store: &EventStore,
    codec: &Arc<WireCodec>,
    brokers: &str,
) -> Result<(OutboxRelay, PipelineMetrics), BoxError> {
    relay_with(store, codec, brokers, |_| {})
}

async fn backlog(store: &EventStore) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(store.pool())
        .await
}

async fn wait_for_empty_outbox(store: &EventStore, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    while backlog(store).await? > 0 {
        if Instant::now() > deadline {
            return Err(format!("outbox still holds {} rows", backlog(store).await?).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Reads `topic` back and checks: every stored event of `aggregate_type` is there
/// (duplicates allowed, as delivery is at least once), keyed by its aggregate, and each
/// aggregate's events first arrive in version order, all in one partition.
async fn verify_topic_of(
    store: &EventStore,
    codec: &WireCodec,
    brokers: &str,
    aggregate_type: &str,
    except: &[Uuid],
) -> TestResult {
    let expected: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "SELECT event_id, aggregate_id, version FROM events \
         WHERE aggregate_type = $1 AND aggregate_id <> ALL($2) ORDER BY position",
    )
    .bind(aggregate_type)
    .bind(except)
    .fetch_all(store.pool())
    .await?;
    let topic = kafka::avro::topic_for(aggregate_type);
    let messages = tokio::task::block_in_place(|| {
        read_topic(brokers, &topic, expected.len(), Duration::from_secs(30))
    })?;
    let mut seen = HashSet::new();
    let mut last_version: HashMap<Uuid, (i32, u64)> = HashMap::new();
    for message in &messages {
        let (partition, headers) = (&message.partition, &message.headers);
        let (event_type, record) = codec.decode_json(&message.value).await?;
        let key_field = kafka::avro::key_field(aggregate_type);
        let aggregate_id: Uuid = record[key_field.as_str()]
            .as_str()
            .ok_or("no key field")?
            .parse()?;
        let event_id: Uuid = record["event_id"].as_str().ok_or("no event id")?.parse()?;
        let version = record["aggregate_version"].as_u64().ok_or("no version")?;
        assert_eq!(message.key, aggregate_id.to_string(), "keyed by aggregate");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "event_id" && v == &event_id.to_string())
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "event_type" && v == &event_type)
        );
        assert!(
            headers.iter().any(|(k, _)| k == "traceparent"),
            "trace context travels in headers"
        );
        if !seen.insert(event_id) {
            // A redelivery (at least once): consumers skip it by event id.
            continue;
        }
        if let Some((p, v)) = last_version.get(&aggregate_id) {
            assert_eq!(p, partition, "one aggregate, one partition");
            assert!(version > *v, "an aggregate's new events arrive in order");
        }
        last_version.insert(aggregate_id, (*partition, version));
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

async fn verify_topic(store: &EventStore, codec: &WireCodec, brokers: &str) -> TestResult {
    verify_topic_of(store, codec, brokers, "Sample", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_events_reach_kafka_as_avro_in_order_per_sample() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    let appended = lab_day(&store, 40, "KAFKA").await?;
    assert_eq!(backlog(&store).await?, appended as i64);

    let (relay, metrics) = relay(&store, &codec, &broker.address)?;
    let mut published = 0;
    while published < appended {
        let round = relay.publish_batch().await?;
        assert!(round.published > 0, "the outbox still had rows: {round:?}");
        published += round.published;
    }
    assert_eq!(relay.publish_batch().await?.claimed, 0);
    assert_eq!(backlog(&store).await?, 0);
    assert_eq!(metrics.outbox_backlog.get(), 0);
    let unmarked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL OR leased_until IS NOT NULL",
    )
    .fetch_one(store.pool())
    .await?;
    assert_eq!(unmarked, 0, "every row marked, no lease left behind");
    let exported = metrics.render();
    assert!(exported.contains("cqrs_events_published_total{event_type=\"SampleRegistered\",topic=\"laboratory.sample.events\"} 40"), "{exported}");
    verify_topic(&store, &codec, &broker.address).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_transaction_stays_open_while_the_relay_waits_for_kafka() -> TestResult {
    // A frozen broker: the relay's sends hang until the publish timeout. While they
    // hang, the relay must hold no transaction (an xid would hold every follower back).
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    lab_day(&store, 5, "XID").await?;
    let (relay, _) = relay(&store, &codec, &broker.address)?;
    broker.freeze()?;
    let round = tokio::spawn(async move { relay.publish_batch().await });
    // Observe the claim: leased rows, not published.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leased: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE leased_until > clock_timestamp() AND published_at IS NULL",
        )
        .fetch_one(store.pool())
        .await?;
        if leased > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
    )
    .fetch_one(store.pool())
    .await?;
    assert_eq!(
        open, 0,
        "a transaction holds an xid while the relay waits for Kafka"
    );
    broker.thaw()?;
    let _ = round.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_opens_the_circuit_and_no_event_is_lost() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
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
async fn a_relay_killed_with_a_claimed_unacknowledged_batch_loses_nothing() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    lab_day(&store, 20, "KILL").await?;

    // The doomed relay claims a batch that Kafka cannot acknowledge (frozen broker)...
    // (the shortest lease a relay accepts for its publish timeout, so the heir below does
    // not wait long for it to expire)
    let (doomed, _) = relay_with(&store, &codec, &broker.address, |c| {
        c.message_timeout = Duration::from_secs(1);
        c.lease = c.shortest_lease();
    })?;
    let doomed_id = doomed.id();
    broker.freeze()?;
    let (_never, stop) = watch::channel(false);
    let doomed = tokio::spawn(doomed.run(stop));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE leased_by = $1 AND published_at IS NULL \
             AND leased_until > clock_timestamp()",
        )
        .bind(doomed_id)
        .fetch_one(store.pool())
        .await?;
        if held > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never claimed a batch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and is killed while the batch is in flight: nothing it does afterwards counts.
    doomed.abort();
    let _ = doomed.await;
    broker.thaw()?;

    // Another relay takes the rows once the lease has expired.
    let (stop_tx, stop) = watch::channel(false);
    let (heir, _) = relay(&store, &codec, &broker.address)?;
    let heir = tokio::spawn(heir.run(stop));
    wait_for_empty_outbox(&store, Duration::from_secs(60)).await?;
    stop_tx.send(true)?;
    heir.await?;
    verify_topic(&store, &codec, &broker.address).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_share_the_work_and_both_publish() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    lab_day(&store, 60, "TWO").await?;
    let (stop_tx, stop) = watch::channel(false);
    let small = |c: &mut RelayConfig| c.batch_size = 7;
    let (a, a_metrics) = relay_with(&store, &codec, &broker.address, small)?;
    let (b, b_metrics) = relay_with(&store, &codec, &broker.address, small)?;
    let relays = [tokio::spawn(a.run(stop.clone())), tokio::spawn(b.run(stop))];
    lab_day(&store, 30, "MORE").await?;
    wait_for_empty_outbox(&store, Duration::from_secs(60)).await?;
    stop_tx.send(true)?;
    for r in relays {
        r.await?;
    }
    let published = |m: &PipelineMetrics| {
        [
            "SampleRegistered",
            "SampleReceived",
            "SampleValidated",
            "SampleRejected",
        ]
        .iter()
        .map(|t| {
            m.events_published
                .with_label_values(&[SAMPLE_EVENTS, t])
                .get()
        })
        .sum::<u64>()
    };
    let (by_a, by_b) = (published(&a_metrics), published(&b_metrics));
    assert!(
        by_a > 0 && by_b > 0,
        "both relays published: {by_a} and {by_b}"
    );
    assert!(by_a + by_b >= 270, "every event published: {by_a} + {by_b}");
    verify_topic(&store, &codec, &broker.address).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_rows_are_parked_and_everything_else_keeps_flowing_in_order() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let url = registry(store.pool().clone()).await?;
    let codec_without_widgets = codec(&url, sample_catalog()?).await?;

    // Good samples, then two kinds of poison among them:
    // - one sample whose stored payload cannot be mapped to its schema;
    // - widgets, an aggregate this relay's catalogue does not know (a deploy that forgot
    //   its schemas).
    lab_day(&store, 5, "GOOD").await?;
    let bad_sample = Uuid::now_v7();
    let ctx = || CommandContext::new("tech");
    let details = kafka::testkit::details("BAD-00001")?;
    store
        .execute::<Sample>(
            bad_sample,
            SampleCommand::Register {
                id: cqrs::sample::SampleId::from_uuid(bad_sample),
                details,
            },
            &ctx(),
            ExpectedVersion::Exactly(0),
        )
        .await?;
    store
        .execute::<Sample>(
            bad_sample,
            SampleCommand::Receive { notes: None },
            &ctx(),
            ExpectedVersion::Any,
        )
        .await?;
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{volume_ul}', '\"a lot\"') \
         WHERE aggregate_id = $1 AND version = 1",
    )
    .bind(bad_sample)
    .execute(store.pool())
    .await?;
    let widget_id = Uuid::now_v7();
    store
        .execute::<Widget>(
            widget_id,
            WidgetCommand::Make { name: "w".into() },
            &ctx(),
            ExpectedVersion::Exactly(0),
        )
        .await?;
    store
        .execute::<Widget>(
            widget_id,
            WidgetCommand::Paint {
                colour: "red".into(),
            },
            &ctx(),
            ExpectedVersion::Any,
        )
        .await?;
    lab_day(&store, 5, "AFTER").await?;

    kafka::topics::ensure_topics(&broker.address, &["laboratory.widget.events"], 3).await?;
    let (first, metrics) = relay(&store, &codec_without_widgets, &broker.address)?;
    for _ in 0..5 {
        first.publish_batch().await?;
    }
    let set_aside = parked(store.pool(), 100).await?;
    let types: Vec<&str> = set_aside.iter().map(|p| p.event_type.as_str()).collect();
    assert_eq!(types, ["SampleRegistered", "WidgetMade"], "{set_aside:?}");
    assert!(
        set_aside[0].reason.contains("volume_ul"),
        "{}",
        set_aside[0].reason
    );
    assert!(
        set_aside[1].reason.contains("WidgetMade"),
        "{}",
        set_aside[1].reason
    );
    assert_eq!(metrics.outbox_parked.get(), 2);
    // Everything else went out; the poisoned aggregates' later events wait behind them.
    let waiting: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.event_type, e.version FROM outbox o JOIN events e USING (position) \
         WHERE o.published_at IS NULL AND o.parked_at IS NULL ORDER BY o.position",
    )
    .fetch_all(store.pool())
    .await?;
    assert_eq!(
        waiting,
        [
            ("SampleReceived".to_owned(), 2),
            ("WidgetPainted".to_owned(), 2)
        ]
    );
    verify_topic_of(
        &store,
        &codec_without_widgets,
        &broker.address,
        "Sample",
        &[bad_sample],
    )
    .await?;

    // The operator fixes the causes (the payload is repaired, the widgets' schemas are
    // deployed) and re-tries: everything goes out, in order.
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{volume_ul}', '\"12.5\"') WHERE aggregate_id = $1 AND version = 1")
        .bind(bad_sample)
        .execute(store.pool())
        .await?;
    let full = Arc::new(
        EventCatalog::new()
            .with::<Sample>()?
            .with_schemas::<Widget>(widget::SCHEMAS)?,
    );
    let codec = codec(&url, full).await?;
    let (second, _) = relay(&store, &codec, &broker.address)?;
    assert_eq!(retry_parked(store.pool(), None).await?, 2);
    while second.publish_batch().await?.claimed > 0 {}
    assert_eq!(backlog(&store).await?, 0);
    verify_topic(&store, &codec, &broker.address).await?;
    verify_topic_of(&store, &codec, &broker.address, "Widget", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_aggregate_with_a_long_tail_does_not_stall_the_others() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    // One sample with a poisoned first event and 40 events behind it...
    let stuck = Uuid::now_v7();
    let ctx = || CommandContext::new("tech");
    store
        .execute::<Sample>(
            stuck,
            SampleCommand::Register {
                id: cqrs::sample::SampleId::from_uuid(stuck),
                details: kafka::testkit::details("TAIL-00001")?,
            },
            &ctx(),
            ExpectedVersion::Exactly(0),
        )
        .await?;
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{volume_ul}', '\"lots\"') WHERE aggregate_id = $1")
        .bind(stuck)
        .execute(store.pool())
        .await?;
    let tail: Vec<(Uuid, i64)> = (2..=41).map(|v| (Uuid::now_v7(), v)).collect();
    for (event_id, version) in &tail {
        // Raw appends: the decider would refuse receiving twice; the relay does not care.
        let appended = store
            .append_all(&[event_sourcing::AppendRequest {
                aggregate_type: "Sample",
                aggregate_id: stuck,
                expected_version: u64::try_from(*version - 1)?,
                events: vec![event_sourcing::NewEvent {
                    event_id: *event_id,
                    event_type: "SampleReceived",
                    schema_version: 2,
                    payload: "{\"notes\": null}".into(),
                    metadata: ctx().event_metadata(),
                }],
                ..event_sourcing::AppendRequest::default()
            }])
            .await;
        for result in appended {
            result?;
        }
    }
    // ...then ordinary lab work, published in batches smaller than the blocked tail.
    lab_day(&store, 5, "FLOW").await?;
    let (relay, _) = relay_with(&store, &codec, &broker.address, |c| c.batch_size = 10)?;
    for _ in 0..10 {
        relay.publish_batch().await?;
    }
    let (waiting_others, waiting_tail): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE aggregate_id <> $1), count(*) FILTER (WHERE aggregate_id = $1) \
         FROM outbox WHERE published_at IS NULL",
    )
    .bind(stuck)
    .fetch_one(store.pool())
    .await?;
    assert_eq!(waiting_others, 0, "every other sample's events went out");
    assert_eq!(waiting_tail, 41, "the blocked sample waits, whole");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_kafka_refuses_for_good_is_parked_not_retried_forever() -> TestResult {
    let broker = Broker::start().await?;
    let store = store().await?;
    let codec = codec(&registry(store.pool().clone()).await?, sample_catalog()?).await?;
    let id = Uuid::now_v7();
    let ctx = || CommandContext::new("tech");
    store
        .execute::<Sample>(
            id,
            SampleCommand::Register {
                id: cqrs::sample::SampleId::from_uuid(id),
                details: kafka::testkit::details("HUGE-00001")?,
            },
            &ctx(),
            ExpectedVersion::Exactly(0),
        )
        .await?;
    // Notes of 2 MB, past the producer's largest message (1 MB): Kafka will never take it.
    let huge = serde_json::json!({ "notes": "x".repeat(2_000_000) }).to_string();
    for result in store
        .append_all(&[event_sourcing::AppendRequest {
            aggregate_type: "Sample",
            aggregate_id: id,
            expected_version: 1,
            events: vec![event_sourcing::NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "SampleReceived",
                schema_version: 2,
                payload: huge,
                metadata: ctx().event_metadata(),
            }],
            ..event_sourcing::AppendRequest::default()
        }])
        .await
    {
        result?;
    }
    // An event after the refused one, claimed in the same round: it must not reach the
    // topic ahead of its predecessor.
    for result in store
        .append_all(&[event_sourcing::AppendRequest {
            aggregate_type: "Sample",
            aggregate_id: id,
            expected_version: 2,
            events: vec![event_sourcing::NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "SampleValidated",
                schema_version: 2,
                payload: serde_json::json!({ "notes": null }).to_string(),
                metadata: ctx().event_metadata(),
            }],
            ..event_sourcing::AppendRequest::default()
        }])
        .await
    {
        result?;
    }
    let (relay, metrics) = relay(&store, &codec, &broker.address)?;
    let mut rounds = 0;
    while relay.publish_batch().await?.claimed > 0 {
        rounds += 1;
        assert!(rounds < 5, "the refused message keeps coming back");
    }
    let on_topic = tokio::task::block_in_place(|| {
        read_topic(&broker.address, SAMPLE_EVENTS, 1, Duration::from_secs(30))
    })?;
    let keys: Vec<&str> = on_topic.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [id.to_string()],
        "only the registration went out; the validation waits behind the refused row"
    );
    let set_aside = parked(store.pool(), 10).await?;
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert!(
        set_aside[0].reason.contains("Kafka refuses"),
        "{}",
        set_aside[0].reason
    );
    assert_eq!(metrics.outbox_parked.get(), 1);
    assert_eq!(
        backlog(&store).await?,
        2,
        "the refused row and the one behind it wait"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_never_answers_cannot_keep_a_batch_past_its_lease() -> TestResult {
    // A registry that accepts connections and never answers: encoding hangs. The round
    // must give its rows back before its lease runs out, not send them after another
    // relay may have claimed them.
    let broker = Broker::start().await?;
    let store = store().await?;
    lab_day(&store, 3, "SLOWREG").await?;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let codec = Arc::new(WireCodec::new(&url, sample_catalog()?));
    let (relay, _) = relay(&store, &codec, &broker.address)?;
    let config = RelayConfig::new(&broker.address).message_timeout(Duration::from_secs(2));
    let (lease, budget) = (config.lease, config.encode_budget());
    let started = Instant::now();
    let round = tokio::time::timeout(lease, relay.publish_batch()).await;
    let took = started.elapsed();
    held.abort();
    let error = match round {
        Err(_) => panic!("the round still held its batch when its {lease:?} lease ran out"),
        Ok(Ok(round)) => panic!("encoding against a silent registry succeeded: {round:?}"),
        Ok(Err(error)) => error,
    };
    assert!(
        matches!(error, kafka::relay::RelayError::EncodeTimedOut(_)),
        "{error}"
    );
    // Given up once the encoding budget ran out, leaving the lease time for the
    // acknowledgement wait (a second of slack for the release).
    assert!(
        took <= budget + Duration::from_secs(1),
        "gave up after {took:?}; the budget is {budget:?} of a {lease:?} lease"
    );
    let still_leased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE leased_until IS NOT NULL OR published_at IS NOT NULL",
    )
    .fetch_one(store.pool())
    .await?;
    assert_eq!(still_leased, 0, "the rows were released unsent");
    Ok(())
}
