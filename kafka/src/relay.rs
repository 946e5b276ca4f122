//! The transactional outbox relay: publishes committed events to Kafka, at least once,
//! in order per aggregate, for every aggregate in the [`EventCatalog`].
//!
//! A round has three steps, none of which holds a transaction open across network I/O
//! (an open transaction holds an xid, and every gap-free log follower in the cluster
//! waits for the oldest one):
//!
//! 1. **Claim** (one short statement): take a lease on the oldest unpublished, unparked,
//!    unleased rows (`leased_until`, `leased_by`), skipping rows another claim is locking
//!    right now, and leaving out any row whose aggregate still has an older unpublished
//!    row outside this claim (leased by another relay, or parked): each aggregate's events
//!    go out in order even with several relays.
//! 2. **Publish**: encode each row through its schema (topic and schema follow from the
//!    row's aggregate and event type); a row that cannot be encoded for good is *parked*
//!    with the reason, counted and visible to operators, and the later rows of its
//!    aggregate wait behind it while every other aggregate keeps flowing. Then send to an
//!    idempotent producer (`acks=all`, key = aggregate id) and await every acknowledgement.
//! 3. **Mark**: rows acknowledged are marked published (`clock_timestamp()`, the instant
//!    after the acknowledgement); the lease on the rest is released so the next round
//!    sends them again. A row after a failed row of the same aggregate is never marked,
//!    so nothing is skipped.
//!
//! A relay that dies mid-round leaves leases that expire (`lease`, longer than the publish
//! timeout), after which any relay takes the rows again: nothing is lost, and the price
//! is a duplicate that consumers drop by event id. Failures feed a circuit breaker that
//! stops hammering an unreachable broker; a round that judged nothing releases its probe.

use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::metrics::PipelineMetrics;
use crate::retry::{RetryPolicy, jitter_seed};
use crate::topics::producer_config;
use crate::wire::{WireCodec, WireError};
use chrono::{DateTime, Utc};
use event_sourcing::{EventMetadata, Progress, StoredEvent};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::Value as Json;
use sqlx::PgPool;
use sqlx::types::Json as SqlJson;
use std::collections::{HashMap, HashSet};
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
    #[error("the circuit breaker is open")]
    CircuitOpen,
    /// Encoding (the registry) took longer than the lease leaves for it; the round's rows
    /// were released unsent rather than sent after another relay may have claimed them.
    #[error(
        "encoding took longer than {0:?} (is the schema registry slow?); the batch was released unsent"
    )]
    EncodeTimedOut(Duration),
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
    /// How long a claim stays this relay's. A round encodes within
    /// `lease - message_timeout - 5 s` and then waits at most `message_timeout` for
    /// acknowledgements, so it ends while its lease still holds; keep it at least
    /// `2 × message_timeout + 5 s` (as [`RelayConfig::message_timeout`] does).
    pub lease: Duration,
    pub breaker: BreakerConfig,
    /// Back-off between failed rounds.
    pub retry: RetryPolicy,
}

impl RelayConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        let message_timeout = Duration::from_secs(5);
        Self {
            brokers: brokers.into(),
            batch_size: 2000,
            idle_poll: Duration::from_millis(20),
            message_timeout,
            lease: message_timeout * 2 + Duration::from_secs(5),
            breaker: BreakerConfig::default(),
            retry: RetryPolicy {
                max_attempts: u32::MAX,
                ..RetryPolicy::AGGRESSIVE
            },
        }
    }

    /// Sets the publish timeout and a lease that outlasts it.
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self.lease = self.lease.max(self.shortest_lease());
        self
    }

    /// The shortest lease that leaves a round time to encode and then wait out every
    /// acknowledgement: `2 × message_timeout + 5 s`.
    pub fn shortest_lease(&self) -> Duration {
        self.message_timeout * 2 + Duration::from_secs(5)
    }

    /// How long a round may spend encoding its batch: what the lease leaves after the
    /// acknowledgement wait (`message_timeout`) and a margin of 5 s.
    pub fn encode_budget(&self) -> Duration {
        self.lease
            .saturating_sub(self.message_timeout + Duration::from_secs(5))
            .max(Duration::from_secs(1))
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
    payload: SqlJson<Json>,
    metadata: SqlJson<EventMetadata>,
    recorded_at: DateTime<Utc>,
}

impl Claimed {
    fn stored(&self) -> StoredEvent<Json> {
        StoredEvent {
            position: self.position,
            transaction_id: self.transaction_id,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id,
            version: u64::try_from(self.version).unwrap_or(0),
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            schema_version: u32::try_from(self.schema_version).unwrap_or(0),
            payload: self.payload.0.clone(),
            metadata: self.metadata.0.clone(),
            recorded_at: self.recorded_at,
        }
    }
}

const CLAIM_SQL: &str = include_str!("sql/claim_outbox.sql");

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub published: usize,
    pub parked: usize,
    /// Sent but not acknowledged (or held back behind such a row): claimed again later.
    pub released: usize,
}

pub struct OutboxRelay {
    pool: PgPool,
    id: Uuid,
    /// Replaced after a failed round: an idempotent producer whose messages timed out may
    /// be left unable to send, and a fresh one costs only a reconnect.
    producer: std::sync::RwLock<Arc<FutureProducer>>,
    codec: Arc<WireCodec>,
    breaker: CircuitBreaker,
    metrics: PipelineMetrics,
    config: RelayConfig,
    gauges_checked: std::sync::Mutex<Option<Instant>>,
    progress: Progress,
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        codec: Arc<WireCodec>,
        metrics: PipelineMetrics,
        mut config: RelayConfig,
    ) -> Result<Self, RelayError> {
        if config.lease < config.shortest_lease() {
            tracing::warn!(lease = ?config.lease, raised_to = ?config.shortest_lease(),
                "the relay's lease is too short to encode and publish within it; raised");
            config.lease = config.shortest_lease();
        }
        let producer = std::sync::RwLock::new(Arc::new(Self::producer(&config)?));
        let breaker = CircuitBreaker::new(
            config.breaker.clone(),
            metrics.breaker_observer("kafka-relay"),
        );
        Ok(Self {
            pool,
            id: Uuid::now_v7(),
            producer,
            codec,
            breaker,
            metrics,
            config,
            gauges_checked: std::sync::Mutex::new(None),
            progress: Progress::new("outbox-relay"),
        })
    }

    /// Reports to `progress` (for readiness) instead of a private tracker.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// This relay's id, as `outbox.leased_by` shows it.
    pub fn id(&self) -> Uuid {
        self.id
    }

    fn producer(config: &RelayConfig) -> Result<FutureProducer, KafkaError> {
        producer_config(&config.brokers)
            .set("enable.idempotence", "true")
            // A message that fails for good must not let a later one of its partition
            // through (an aggregate's v2 before its v1): librdkafka raises a fatal
            // error instead, and the relay replaces its producer.
            .set("enable.gapless.guarantee", "true")
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
                let round = self.publish_batch().await;
                // Whatever the round did, a half-open breaker must not wait for an
                // outcome it will never get.
                self.breaker.release_probe();
                match &round {
                    Ok(round) if round.released == 0 => self.progress.advanced(),
                    Ok(round) => self.progress.failed(&format!(
                        "{} of {} events were not acknowledged by Kafka",
                        round.released, round.claimed
                    )),
                    Err(error) => self.progress.failed(&error.to_string()),
                }
                match round {
                    Ok(round) if round.released == 0 => {
                        failures = 0;
                        (round.claimed == 0).then_some(self.config.idle_poll)
                    }
                    Ok(_) => {
                        failures += 1;
                        self.reset_producer();
                        self.metrics
                            .retry_attempts
                            .with_label_values(&["relay"])
                            .inc();
                        Some(self.config.retry.delay(failures, jitter_seed()))
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
                        tracing::warn!(%error, failures, ?wait, "relay round failed; its rows will be sent again");
                        Some(wait)
                    }
                }
            };
            if let Some(pause) = pause {
                let _ = tokio::time::timeout(pause, stop.changed()).await;
            }
        }
    }

    /// One round: claim, encode, send all, await all, mark. Rows not acknowledged are
    /// released for the next round (counted in [`Round::released`]).
    pub async fn publish_batch(&self) -> Result<Round, RelayError> {
        let started = Instant::now();
        let claimed: Vec<Claimed> = sqlx::query_as(CLAIM_SQL)
            .bind(self.config.batch_size)
            .bind(self.config.lease.as_secs_f64())
            .bind(self.id)
            .fetch_all(&self.pool)
            .await?;
        self.metrics
            .stage_duration
            .with_label_values(&["claim"])
            .observe(started.elapsed().as_secs_f64());
        let mut round = Round {
            claimed: claimed.len(),
            ..Round::default()
        };
        if claimed.is_empty() {
            self.update_gauges().await;
            return Ok(round);
        }
        let outcome = self.send_all(&claimed).await;
        let (acknowledged, parked) = match outcome {
            Ok(sent) => sent,
            Err(error) => {
                self.release(&claimed.iter().map(|c| c.position).collect::<Vec<_>>())
                    .await?;
                return Err(error);
            }
        };
        round.parked = parked;
        // Rows of an aggregate after one of its rows that was not acknowledged (or was
        // parked) are not marked, even if acknowledged: the round is repeated from there.
        let mut stopped: HashSet<Uuid> = HashSet::new();
        let (mut publish, mut release) = (Vec::new(), Vec::new());
        for c in &claimed {
            match acknowledged.get(&c.position) {
                Some(true) if !stopped.contains(&c.aggregate_id) => publish.push(c.position),
                Some(_) => {
                    stopped.insert(c.aggregate_id);
                    release.push(c.position);
                }
                None => {
                    // parked, or held back behind a parked row
                    stopped.insert(c.aggregate_id);
                }
            }
        }
        if !publish.is_empty() {
            let marked_at: Vec<DateTime<Utc>> = sqlx::query_scalar(
                "UPDATE outbox SET published_at = clock_timestamp(), leased_until = NULL \
                 WHERE position = ANY($1) AND published_at IS NULL RETURNING published_at",
            )
            .bind(&publish)
            .fetch_all(&self.pool)
            .await?;
            let at = marked_at.first().copied().unwrap_or_else(Utc::now);
            let published: HashSet<i64> = publish.iter().copied().collect();
            for c in claimed.iter().filter(|c| published.contains(&c.position)) {
                let lag = (at - c.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                self.metrics.publish_lag.observe(lag.max(0.0));
            }
        }
        round.published = publish.len();
        round.released = release.len();
        // Rows held back behind a parked row keep no lease either: they wait for the
        // operator to re-try the parked row.
        release.extend(
            claimed
                .iter()
                .filter(|c| !acknowledged.contains_key(&c.position))
                .map(|c| c.position),
        );
        self.release(&release).await?;
        self.metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges().await;
        Ok(round)
    }

    async fn release(&self, positions: &[i64]) -> Result<(), sqlx::Error> {
        if positions.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE outbox SET leased_until = NULL \
             WHERE position = ANY($1) AND leased_by = $2 AND published_at IS NULL",
        )
        .bind(positions)
        .bind(self.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn park(&self, c: &Claimed, reason: &str) -> Result<(), sqlx::Error> {
        tracing::error!(position = c.position, event_type = %c.event_type, aggregate = %c.aggregate_id,
            %reason, "outbox row parked: it cannot be encoded; its aggregate's later events wait behind it");
        sqlx::query(
            "UPDATE outbox SET parked_at = clock_timestamp(), park_reason = $2, leased_until = NULL \
             WHERE position = $1 AND leased_by = $3 AND published_at IS NULL",
        )
        .bind(c.position)
        .bind(reason)
        .bind(self.id)
        .execute(&self.pool)
        .await?;
        self.metrics
            .outbox_parked_total
            .with_label_values(&[&c.event_type])
            .inc();
        Ok(())
    }

    /// Encodes and sends; returns which positions were acknowledged (true) or failed
    /// (false), and how many were parked. Positions absent were parked or held back.
    async fn send_all(
        &self,
        claimed: &[Claimed],
    ) -> Result<(HashMap<i64, bool>, usize), RelayError> {
        let encode_started = Instant::now();
        // The lease must still hold when the last acknowledgement can arrive: past that,
        // another relay may have claimed and sent these rows, and sending them again
        // would put an aggregate's older events after its newer ones on the topic.
        let budget = self.config.encode_budget();
        let mut messages = Vec::with_capacity(claimed.len());
        let mut parked = 0;
        let encoded = tokio::time::timeout(budget, async {
            let mut parked_aggregates: HashSet<Uuid> = HashSet::new();
            for c in claimed {
                if parked_aggregates.contains(&c.aggregate_id) {
                    continue;
                }
                match self.codec.encode(&c.stored()).await {
                    Ok((topic, bytes)) => messages.push((topic, c, bytes)),
                    Err(error) if error.is_transient() => return Err(error.into()),
                    Err(error) => {
                        self.park(c, &error.to_string()).await?;
                        parked += 1;
                        parked_aggregates.insert(c.aggregate_id);
                    }
                }
            }
            Ok::<_, RelayError>(())
        })
        .await;
        match encoded {
            Ok(result) => result?,
            Err(_) => return Err(RelayError::EncodeTimedOut(budget)),
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
        let mut outcomes = HashMap::with_capacity(messages.len());
        // Once one of an aggregate's rows is parked or fails to queue, its later rows are
        // not handed to the producer this round: sent, they would reach the topic before
        // the earlier row does.
        let mut blocked: HashSet<Uuid> = HashSet::new();
        for (topic, c, bytes) in &messages {
            if blocked.contains(&c.aggregate_id) {
                outcomes.insert(c.position, false);
                continue;
            }
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
                Ok(delivery) => deliveries.push((topic.as_str(), *c, delivery)),
                Err((error, _)) if refused_for_good(&error) => {
                    self.park(c, &format!("Kafka refuses this message: {error}"))
                        .await?;
                    parked += 1;
                    blocked.insert(c.aggregate_id);
                }
                Err((error, _)) => {
                    blocked.insert(c.aggregate_id);
                    self.breaker.record(false);
                    self.metrics
                        .publish_failures
                        .with_label_values(&[topic])
                        .inc();
                    tracing::warn!(%error, "message could not be queued for sending");
                    outcomes.insert(c.position, false);
                }
            }
        }
        for (topic, c, delivery) in deliveries {
            let outcome = delivery.await;
            if let Ok(Err((error, _))) = &outcome
                && refused_for_good(error)
            {
                self.park(c, &format!("Kafka refuses this message: {error}"))
                    .await?;
                parked += 1;
                continue;
            }
            let ok = matches!(outcome, Ok(Ok(_)));
            // Every message is a call the breaker judges: one batch against a dead broker
            // is many failures, not one.
            self.breaker.record(ok);
            if ok {
                self.metrics
                    .events_published
                    .with_label_values(&[topic, c.event_type.as_str()])
                    .inc();
            } else {
                self.metrics
                    .publish_failures
                    .with_label_values(&[topic])
                    .inc();
            }
            outcomes.insert(c.position, ok);
        }
        self.metrics
            .stage_duration
            .with_label_values(&["send"])
            .observe(send_started.elapsed().as_secs_f64());
        Ok((outcomes, parked))
    }

    /// Refreshes the backlog, parked and oldest-transaction gauges at most once a second:
    /// counting a large backlog on every round would slow the catch-up it measures, and
    /// idle rounds come every few milliseconds.
    async fn update_gauges(&self) {
        let due = self.gauges_checked.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if !due {
            return;
        }
        let _ = self.metrics.refresh_gauges(&self.pool).await;
    }
}

/// Kafka errors that sending again will not cure (the message itself is refused), as
/// opposed to an unreachable or overloaded cluster: such a row is parked, not retried.
fn refused_for_good(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::TopicAuthorizationFailed
                | Code::InvalidTopic
        )
    )
}

/// An outbox row set aside, as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ParkedEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub parked_at: DateTime<Utc>,
    pub reason: String,
    pub attempts: i32,
}

/// Outbox rows that could not be encoded, oldest first.
pub async fn parked(pool: &PgPool, limit: i64) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.position, o.event_id, o.aggregate_type, o.aggregate_id, e.event_type, \
         o.parked_at, COALESCE(o.park_reason, '') AS reason, o.attempts \
         FROM outbox o JOIN events e ON e.position = o.position \
         WHERE o.published_at IS NULL AND o.parked_at IS NOT NULL ORDER BY o.position LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Puts parked rows back in the queue (all when `position` is `None`), once their cause
/// is fixed; returns how many.
pub async fn retry_parked(pool: &PgPool, position: Option<i64>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE outbox SET parked_at = NULL, park_reason = NULL \
         WHERE published_at IS NULL AND parked_at IS NOT NULL AND ($1::bigint IS NULL OR position = $1)",
    )
    .bind(position)
    .execute(pool)
    .await?
    .rows_affected())
}
