//! Event pipeline benchmark against a real Kafka-protocol broker (tansu, started here),
//! the schema registry and PostgreSQL.
//!
//! ```text
//! cargo bench -p web --bench pipeline -- [--rate 1000] [--seconds 20] [--backlog 100000]
//! ```
//!
//! 1. Steady load: commands at `--rate` per second (register, receive, validate in turn)
//!    with the relay and the samples consumer running. Reports publish lag (event commit
//!    to the broker's acknowledgement: `outbox.published_at - events.recorded_at`) and
//!    projection lag (commit to the read table's transaction: `processed_events.processed_at
//!    - events.recorded_at`), p50/p95/p99.
//! 2. Catch-up: a backlog of `--backlog` events is written with the relay stopped; then one
//!    relay publishes it all. Reports events/s.

use cqrs::DomainEvent;
use cqrs::sample::{
    Barcode, Note, Sample, SampleCommand, SampleDetails, SampleId, SampleType, TemperatureZone,
    VolumeUl,
};
use event_sourcing::{
    AppendRequest, CommandContext, EventStore, ExpectedVersion, NewEvent, StoreConfig,
};
use kafka::consumer::{Applier, ConsumerConfig, ProjectionConsumer};
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::retry::RetryPolicy;
use kafka::testkit::{Broker, registry};
use kafka::wire::WireCodec;
use lab::samples::SamplesProjection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    rate: u64,
    seconds: u64,
    backlog: usize,
}

fn args() -> Result<Args, BoxError> {
    let mut args = Args {
        rate: 1000,
        seconds: 20,
        backlog: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--rate" => args.rate = it.next().ok_or("--rate needs a value")?.parse()?,
            "--seconds" => args.seconds = it.next().ok_or("--seconds needs a value")?.parse()?,
            "--backlog" => args.backlog = it.next().ok_or("--backlog needs a value")?.parse()?,
            _ => {} // cargo's --bench and the like
        }
    }
    Ok(args)
}

fn details(i: u64) -> Result<SampleDetails, BoxError> {
    Ok(SampleDetails {
        barcode: Barcode::parse(&format!("PIPE-{}-{i:08}", Uuid::new_v4().simple()))?,
        sample_type: SampleType::Plasma,
        volume: VolumeUl::parse("250")?,
        temperature_zone: TemperatureZone::Minus80,
        patient: None,
        collected_at: None,
        collected_by: None,
    })
}

async fn quantiles(pool: &sqlx::PgPool, sql: &str) -> Result<(i64, f64, f64, f64), sqlx::Error> {
    let (n, p50, p95, p99): (i64, Option<f64>, Option<f64>, Option<f64>) =
        sqlx::query_as(sql).fetch_one(pool).await?;
    Ok((
        n,
        p50.unwrap_or(0.0),
        p95.unwrap_or(0.0),
        p99.unwrap_or(0.0),
    ))
}

async fn steady(args: &Args, broker: &Broker) -> Result<(), BoxError> {
    let (pool, name) = event_sourcing::testkit::fresh_database(40).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let catalog = Arc::new(web::pipeline::catalog()?);
    let codec = Arc::new(WireCodec::new(&registry(pool.clone()).await?, catalog));
    codec.register_all().await?;
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let (stop_tx, stop) = watch::channel(false);
    let relay = OutboxRelay::new(
        pool.clone(),
        Arc::clone(&codec),
        metrics.clone(),
        RelayConfig::new(&broker.address),
    )?;
    let relay = tokio::spawn(relay.run(stop.clone()));
    let applier = Arc::new(Applier::new(
        pool.clone(),
        codec,
        Arc::new(SamplesProjection),
        RetryPolicy::AGGRESSIVE,
        metrics.clone(),
    ));
    let mut config = ConsumerConfig::new(&broker.address);
    config.session_timeout = Duration::from_secs(3);
    let consumer = ProjectionConsumer::new(applier, metrics, config)?;
    let consumer = tokio::spawn(consumer.run(stop));
    tokio::time::sleep(Duration::from_secs(3)).await; // let the consumer join its group

    // One task per sample, started every third tick: register, then receive and validate
    // a tick apart each, so commands arrive at `rate` per second overall.
    let started = Instant::now();
    let total = args.rate * args.seconds;
    let period = Duration::from_micros(1_000_000 / args.rate.max(1));
    let mut ticker = tokio::time::interval(period * 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..total / 3 {
        ticker.tick().await;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = Uuid::now_v7();
            let ctx = || CommandContext::new("bench");
            let register = SampleCommand::Register {
                id: SampleId::from_uuid(id),
                details: details(n)?,
            };
            store
                .execute::<Sample>(id, register, &ctx(), ExpectedVersion::Exactly(0))
                .await?;
            tokio::time::sleep(period).await;
            store
                .execute::<Sample>(
                    id,
                    SampleCommand::Receive { notes: None },
                    &ctx(),
                    ExpectedVersion::Any,
                )
                .await?;
            tokio::time::sleep(period).await;
            let validate = SampleCommand::Validate {
                notes: Some(Note::parse("ok")?),
                signature: event_sourcing::testkit::samples::signature(),
            };
            store
                .execute::<Sample>(id, validate, &ctx(), ExpectedVersion::Any)
                .await?;
            Ok::<_, BoxError>(())
        }));
    }
    let mut errors = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            errors += 1;
        }
    }
    let offered_secs = started.elapsed().as_secs_f64();
    // Wait until everything is published and applied.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (unpublished, unapplied): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL), \
                    (SELECT count(*) FROM events) - (SELECT count(*) FROM processed_events)",
        )
        .fetch_one(&pool)
        .await?;
        if unpublished == 0 && unapplied <= 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pipeline did not drain: {unpublished} unpublished, {unapplied} unapplied"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let publish = quantiles(
        &pool,
        "SELECT count(*), \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), \
           percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT extract(epoch FROM o.published_at - e.recorded_at) * 1000 AS ms \
               FROM outbox o JOIN events e ON e.position = o.position) t",
    )
    .await?;
    let projection = quantiles(
        &pool,
        "SELECT count(*), \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), \
           percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT extract(epoch FROM p.processed_at - e.recorded_at) * 1000 AS ms \
               FROM processed_events p JOIN events e ON e.event_id = p.event_id) t",
    )
    .await?;
    println!(
        "steady rate={} cmds={total} offered_secs={offered_secs:.1} errors={errors} \
         publish_lag_ms events={} p50={:.2} p95={:.2} p99={:.2} \
         projection_lag_ms events={} p50={:.2} p95={:.2} p99={:.2}",
        args.rate,
        publish.0,
        publish.1,
        publish.2,
        publish.3,
        projection.0,
        projection.1,
        projection.2,
        projection.3
    );
    stop_tx.send(true)?;
    relay.await?;
    let _ = consumer.await?;
    pool.close().await;
    drop_database(&name).await;
    Ok(())
}

async fn catch_up(args: &Args, broker: &Broker, events_per_sample: usize) -> Result<(), BoxError> {
    let (pool, name) = event_sourcing::testkit::fresh_database(10).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let catalog = Arc::new(web::pipeline::catalog()?);
    let codec = Arc::new(WireCodec::new(&registry(pool.clone()).await?, catalog));
    codec.register_all().await?;
    // The backlog, written straight into the store: `events_per_sample` events per sample
    // (registered; then received and validated), up to 2,000 samples per commit.
    let lifecycle = |id: Uuid, n: u64| -> Result<Vec<cqrs::sample::SampleEvent>, BoxError> {
        use cqrs::sample::SampleEvent::*;
        Ok(vec![
            SampleRegistered {
                id: SampleId::from_uuid(id),
                details: details(n)?,
            },
            SampleReceived { notes: None },
            SampleValidated {
                notes: Some(Note::parse("ok")?),
                signature: Some(event_sourcing::testkit::samples::signature()),
            },
        ])
    };
    let mut written = 0;
    while written < args.backlog {
        let samples = (2000 * events_per_sample).min(args.backlog - written) / events_per_sample;
        let batch: Vec<AppendRequest> = (0..samples.max(1))
            .map(|i| -> Result<AppendRequest, BoxError> {
                let id = Uuid::now_v7();
                let events = lifecycle(id, (written + i) as u64)?
                    .into_iter()
                    .take(events_per_sample)
                    .map(|event| -> Result<NewEvent, BoxError> {
                        Ok(NewEvent {
                            event_id: Uuid::now_v7(),
                            event_type: event.event_type(),
                            schema_version: cqrs::sample::SampleEvent::SCHEMA_VERSION,
                            payload: event.to_payload()?.to_string(),
                            metadata: CommandContext::new("bench").event_metadata(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(AppendRequest {
                    aggregate_type: "Sample",
                    aggregate_id: id,
                    expected_version: 0,
                    events,
                    ..AppendRequest::default()
                })
            })
            .collect::<Result<_, _>>()?;
        written += batch.iter().map(|r| r.events.len()).sum::<usize>();
        for result in store.append_all(&batch).await {
            result?;
        }
    }
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let relay = OutboxRelay::new(
        pool.clone(),
        codec,
        metrics.clone(),
        RelayConfig::new(&broker.address),
    )?;
    let started = Instant::now();
    let mut published = 0;
    loop {
        let round = relay.publish_batch().await?;
        if round.claimed == 0 {
            break;
        }
        published += round.published;
    }
    let secs = started.elapsed().as_secs_f64();
    let stage = |name: &str| {
        metrics
            .stage_duration
            .with_label_values(&[name])
            .get_sample_sum()
    };
    println!(
        "catch_up events_per_sample={events_per_sample} backlog={published} secs={secs:.2} events_per_s={:.0} claim_s={:.2} encode_s={:.2} send_s={:.2}",
        published as f64 / secs,
        stage("claim"),
        stage("encode"),
        stage("send")
    );
    pool.close().await;
    drop_database(&name).await;
    Ok(())
}

async fn drop_database(name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(&event_sourcing::testkit::server_url()).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let broker = Broker::start().await?;
    steady(&args, &broker).await?;
    catch_up(&args, &broker, 1).await?;
    catch_up(&args, &broker, 3).await?;
    Ok(())
}
