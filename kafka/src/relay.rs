//! The transactional outbox relay: publishes committed events to Kafka, at least once,
//! in order per aggregate.
//!
//! Each round claims a batch of unpublished outbox rows in a transaction
//! (`FOR UPDATE SKIP LOCKED`, so several relays share the work) and leaves out any row
//! whose aggregate still has an older unpublished row it does not hold, so that one
//! aggregate's events are published in order even with several relays. It encodes them (Avro, Confluent wire
//! format), sends the whole batch to an idempotent producer (`acks=all`, key = aggregate
//! id), awaits every acknowledgement, and only then marks the rows published and commits.
//! If any send fails, the transaction rolls back and the rows are claimed again later:
//! nothing is lost, and a relay that dies mid-batch simply leaves its rows to the next.
//! Failures feed a circuit breaker that stops hammering an unreachable broker.

use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::metrics::PipelineMetrics;
use crate::retry::{RetryPolicy, jitter_seed};
use crate::topics::{self, client_config};
use crate::wire::{WireCodec, WireError};
use chrono::Utc;
use cqrs::sample::SampleEvent;
use event_sourcing::{EventMetadata, StoredEvent};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use sqlx::types::Json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("encoding: {0}")]
    Encode(#[from] WireError),
    #[error("no topic for aggregate type {0}")]
    NoTopic(String),
    #[error("stored event could not be read: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the circuit breaker is open")]
    CircuitOpen,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Kafka bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    pub batch_size: i64,
    /// How long to wait when the outbox is empty.
    pub idle_poll: Duration,
    /// How long one message may take to be acknowledged before it counts as failed.
    pub message_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Back-off between failed rounds.
    pub retry: RetryPolicy,
}

impl RelayConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            batch_size: 2000,
            idle_poll: Duration::from_millis(20),
            message_timeout: Duration::from_secs(5),
            breaker: BreakerConfig::default(),
            retry: RetryPolicy {
                max_attempts: u32::MAX,
                ..RetryPolicy::AGGRESSIVE
            },
        }
    }
}

/// A claimed outbox row with its event.
#[derive(sqlx::FromRow)]
struct Claimed {
    position: i64,
    transaction_id: i64,
    aggregate_type: String,
    aggregate_id: Uuid,
    version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: String,
    metadata: Json<EventMetadata>,
    recorded_at: chrono::DateTime<Utc>,
}

/// Claims the oldest unpublished rows nobody else holds.
const CLAIM_SQL: &str = "\
    WITH claimed AS ( \
        SELECT position FROM outbox \
        WHERE published_at IS NULL \
        ORDER BY position \
        LIMIT $1 \
        FOR UPDATE SKIP LOCKED \
    ) \
    SELECT c.position, e.transaction_id, e.aggregate_type, e.aggregate_id, e.version, e.event_id, \
           e.event_type, e.schema_version, e.payload::text AS payload, e.metadata, e.recorded_at \
    FROM claimed c JOIN events e ON e.position = c.position \
    ORDER BY c.position";

/// Unpublished rows of the claimed aggregates older than the newest claimed row: any of
/// them not in the claim is held by another relay (or was skipped), and must be published
/// before the claimed rows of its aggregate.
const OLDER_SQL: &str = "\
    SELECT aggregate_id, position FROM outbox \
    WHERE published_at IS NULL AND aggregate_id = ANY($1) AND position < $2";

pub struct OutboxRelay {
    pool: PgPool,
    /// Replaced after a failed round: an idempotent producer whose messages timed out may
    /// be left unable to send, and a fresh one costs only a reconnect.
    producer: std::sync::RwLock<Arc<FutureProducer>>,
    codec: Arc<WireCodec>,
    breaker: CircuitBreaker,
    metrics: PipelineMetrics,
    config: RelayConfig,
    backlog_checked: std::sync::Mutex<Option<Instant>>,
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        codec: Arc<WireCodec>,
        metrics: PipelineMetrics,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        let producer = std::sync::RwLock::new(Arc::new(Self::producer(&config)?));
        let breaker = CircuitBreaker::new(
            config.breaker.clone(),
            metrics.breaker_observer("kafka-relay"),
        );
        Ok(Self {
            pool,
            producer,
            codec,
            breaker,
            metrics,
            config,
            backlog_checked: std::sync::Mutex::new(None),
        })
    }

    fn producer(config: &RelayConfig) -> Result<FutureProducer, KafkaError> {
        client_config(&config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "200000")
            .create()
    }

    fn current_producer(&self) -> Option<Arc<FutureProducer>> {
        self.producer.read().ok().map(|p| Arc::clone(&p))
    }

    fn reset_producer(&self) {
        match Self::producer(&self.config) {
            Ok(fresh) => {
                if let Ok(mut producer) = self.producer.write() {
                    *producer = Arc::new(fresh);
                }
            }
            Err(error) => tracing::error!(%error, "could not create a Kafka producer"),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Publishes until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            let pause = if !self.breaker.allow() {
                Some(Duration::from_millis(200))
            } else {
                match self.publish_batch().await {
                    Ok(0) => {
                        failures = 0;
                        Some(self.config.idle_poll)
                    }
                    Ok(_) => {
                        failures = 0;
                        None
                    }
                    Err(error) => {
                        failures += 1;
                        if matches!(error, RelayError::Kafka(_)) {
                            self.reset_producer();
                        }
                        self.metrics
                            .retry_attempts
                            .with_label_values(&["relay"])
                            .inc();
                        let wait = self.config.retry.delay(failures, jitter_seed());
                        tracing::warn!(%error, failures, ?wait, "relay round failed; the batch will be retried");
                        Some(wait)
                    }
                }
            };
            if let Some(pause) = pause {
                let _ = tokio::time::timeout(pause, stop.changed()).await;
            }
        }
    }

    /// One round: claim, encode, send all, await all, mark published. Returns how many
    /// events were published (0 when the outbox was empty).
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let mut claimed: Vec<Claimed> = sqlx::query_as(CLAIM_SQL)
            .bind(self.config.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        self.keep_in_order(&mut tx, &mut claimed).await?;
        self.metrics
            .stage_duration
            .with_label_values(&["claim"])
            .observe(started.elapsed().as_secs_f64());
        if claimed.is_empty() {
            tx.rollback().await?;
            self.update_backlog(true).await;
            return Ok(0);
        }
        let result = self.send_all(&claimed).await;
        let acknowledged_at = Utc::now();
        result?;
        let positions: Vec<i64> = claimed.iter().map(|c| c.position).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE position = ANY($1)")
            .bind(&positions)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for c in &claimed {
            let lag = (acknowledged_at - c.recorded_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6;
            self.metrics.publish_lag.observe(lag.max(0.0));
        }
        self.metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        self.update_backlog(false).await;
        Ok(claimed.len())
    }

    /// Leaves out every claimed row whose aggregate has an older unpublished row that is
    /// not in the claim, so each aggregate's events go out in order even with several relays.
    async fn keep_in_order(
        &self,
        tx: &mut sqlx::PgConnection,
        claimed: &mut Vec<Claimed>,
    ) -> Result<(), RelayError> {
        let Some(newest) = claimed.iter().map(|c| c.position).max() else {
            return Ok(());
        };
        let mut aggregates: Vec<Uuid> = claimed.iter().map(|c| c.aggregate_id).collect();
        aggregates.sort_unstable();
        aggregates.dedup();
        let older: Vec<(Uuid, i64)> = sqlx::query_as(OLDER_SQL)
            .bind(&aggregates)
            .bind(newest)
            .fetch_all(&mut *tx)
            .await?;
        let mine: std::collections::HashSet<i64> = claimed.iter().map(|c| c.position).collect();
        let mut blocked_from: std::collections::HashMap<Uuid, i64> =
            std::collections::HashMap::new();
        for (aggregate, position) in older {
            if !mine.contains(&position) {
                let entry = blocked_from.entry(aggregate).or_insert(position);
                *entry = (*entry).min(position);
            }
        }
        if !blocked_from.is_empty() {
            claimed.retain(|c| {
                blocked_from
                    .get(&c.aggregate_id)
                    .is_none_or(|first| c.position < *first)
            });
        }
        Ok(())
    }

    async fn send_all(&self, claimed: &[Claimed]) -> Result<(), RelayError> {
        let encode_started = Instant::now();
        let mut messages = Vec::with_capacity(claimed.len());
        for c in claimed {
            let topic = topics::topic_for(&c.aggregate_type)
                .ok_or_else(|| RelayError::NoTopic(c.aggregate_type.clone()))?;
            let event = StoredEvent {
                position: c.position,
                transaction_id: c.transaction_id,
                aggregate_type: c.aggregate_type.clone(),
                aggregate_id: c.aggregate_id,
                version: u64::try_from(c.version).unwrap_or(0),
                event_id: c.event_id,
                event_type: c.event_type.clone(),
                schema_version: u32::try_from(c.schema_version).unwrap_or(0),
                payload: serde_json::from_str::<SampleEvent>(&c.payload)?,
                metadata: c.metadata.0.clone(),
                recorded_at: c.recorded_at,
            };
            let bytes = self.codec.encode(topic, &event).await?;
            messages.push((topic, c, bytes));
        }
        self.metrics
            .stage_duration
            .with_label_values(&["encode"])
            .observe(encode_started.elapsed().as_secs_f64());

        let send_started = Instant::now();
        let producer = self
            .current_producer()
            .ok_or(RelayError::Kafka(KafkaError::Canceled))?;
        let mut deliveries = Vec::with_capacity(messages.len());
        for (topic, c, bytes) in &messages {
            let key = c.aggregate_id.to_string();
            let event_id = c.event_id.to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_type",
                    value: Some(c.event_type.as_str()),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(event_id.as_str()),
                });
            if let Some(tp) = &c.metadata.0.traceparent {
                headers = headers.insert(Header {
                    key: "traceparent",
                    value: Some(tp.as_str()),
                });
            }
            if let Some(ts) = &c.metadata.0.tracestate {
                headers = headers.insert(Header {
                    key: "tracestate",
                    value: Some(ts.as_str()),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(bytes)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((*topic, c.event_type.as_str(), delivery)),
                Err((error, _)) => {
                    self.breaker.record(false);
                    self.metrics
                        .publish_failures
                        .with_label_values(&[topic])
                        .inc();
                    return Err(error.into());
                }
            }
        }
        let mut first_error = None;
        for (topic, event_type, delivery) in deliveries {
            let outcome = delivery.await;
            // Every message is a call the breaker judges: one batch against a dead broker
            // is many failures, not one.
            self.breaker.record(matches!(outcome, Ok(Ok(_))));
            match outcome {
                Ok(Ok(_)) => self
                    .metrics
                    .events_published
                    .with_label_values(&[topic, event_type])
                    .inc(),
                Ok(Err((error, _))) => {
                    self.metrics
                        .publish_failures
                        .with_label_values(&[topic])
                        .inc();
                    first_error.get_or_insert(RelayError::Kafka(error));
                }
                Err(_) => {
                    self.metrics
                        .publish_failures
                        .with_label_values(&[topic])
                        .inc();
                    first_error.get_or_insert(RelayError::Kafka(KafkaError::Canceled));
                }
            }
        }
        self.metrics
            .stage_duration
            .with_label_values(&["send"])
            .observe(send_started.elapsed().as_secs_f64());
        first_error.map_or(Ok(()), Err)
    }

    /// Refreshes the backlog gauge: when idle (`now`), else at most every second, since
    /// counting a large backlog on every round would slow the catch-up it measures.
    async fn update_backlog(&self, now: bool) {
        let due = self.backlog_checked.lock().is_ok_and(|mut last| {
            let due = now || last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if !due {
            return;
        }
        if let Ok(backlog) =
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await
        {
            self.metrics.outbox_backlog.set(backlog);
        }
    }
}
