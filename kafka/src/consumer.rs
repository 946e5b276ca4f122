//! Consumers that keep read tables up to date from Kafka, for any [`Projection`].
//!
//! A consumer in a consumer group decodes each message with the writer's schema into the
//! projection's event type, then applies it in one database transaction together with a
//! row in `processed_events`; a redelivered event finds its row and changes nothing.
//!
//! Failures are classified, and an offset is committed only past messages that were
//! applied or durably set aside:
//!
//! - **Transient** (the database or the registry is unreachable, a deadlock): the consumer
//!   stops where it is and retries the same message with capped, jittered backoff, without
//!   limit. It shows as `cqrs_consumer_stalled{consumer}` = 1, in `cqrs_retry_attempts_total`,
//!   and, once it has lasted longer than the configured time, as not ready in
//!   `/health/ready` (see [`event_sourcing::Progress`]). Nothing is dead-lettered for it.
//! - **Permanent** (a message that cannot be decoded, an event the projection refuses):
//!   the message is written to the `dead_letters` table, where operators inspect and
//!   re-process it, and published to `laboratory.dead-letter`. Only once the table row is
//!   committed is the offset stored; if the database is down, writing the dead letter is
//!   itself retried without limit.
//!
//! A stalled consumer does not poll Kafka; librdkafka keeps the group session alive in the
//! background, and if the stall outlasts `max.poll.interval.ms` the group hands the
//! partitions to another member, which starts from the last committed offset: nothing is
//! skipped either way.

use crate::avro::topic_for;
use crate::metrics::PipelineMetrics;
use crate::retry::{RetryPolicy, jitter_seed};
use crate::topics::{self, client_config, producer_config};
use crate::wire::{WireCodec, WireError};
use chrono::{DateTime, Utc};
use cqrs::Aggregate;
use event_sourcing::{Envelope, Progress, Projection, ProjectionError};
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How long a consumer failing on receive errors stays quiet before it asks the broker
/// whether it is back.
const RECEIVE_RECOVERED_AFTER: Duration = Duration::from_secs(15);

type EventOf<P> = <<P as Projection>::Aggregate as Aggregate>::Event;

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Applied,
    /// Already applied before (a redelivery or a repeated re-processing).
    AlreadyApplied,
}

/// A message that could not be processed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    /// Transient failures are only returned when retrying was bounded or stopped.
    pub transient: bool,
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub event_type: Option<String>,
    pub event_id: Option<Uuid>,
}

/// How long to keep retrying transient failures.
pub enum Persistence<'a> {
    /// As the retry policy allows (an operator's re-processing request).
    Bounded,
    /// Until it works or `stop` turns true (the consumer).
    UntilStopped(&'a mut watch::Receiver<bool>),
}

struct Attempt {
    error: String,
    transient: bool,
}

impl From<ProjectionError> for Attempt {
    fn from(e: ProjectionError) -> Self {
        Self {
            transient: e.is_transient(),
            error: e.to_string(),
        }
    }
}

impl From<sqlx::Error> for Attempt {
    fn from(e: sqlx::Error) -> Self {
        ProjectionError::from(e).into()
    }
}

impl From<WireError> for Attempt {
    fn from(e: WireError) -> Self {
        Self {
            transient: e.is_transient(),
            error: format!("cannot decode: {e}"),
        }
    }
}

/// Decoding and applying, shared by the consumer and re-processing.
pub struct Applier<P> {
    pool: PgPool,
    codec: Arc<WireCodec>,
    projection: Arc<P>,
    retry: RetryPolicy,
    metrics: PipelineMetrics,
    progress: Progress,
}

impl<P: Projection> Applier<P> {
    pub fn new(
        pool: PgPool,
        codec: Arc<WireCodec>,
        projection: Arc<P>,
        retry: RetryPolicy,
        metrics: PipelineMetrics,
    ) -> Self {
        Self {
            pool,
            codec,
            projection,
            retry,
            metrics,
            progress: Progress::new(P::NAME),
        }
    }

    /// Reports to `progress` (for readiness) instead of a private tracker.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn consumer_name(&self) -> &'static str {
        P::NAME
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn stalled(&self, error: &str) {
        self.progress.failed(error);
        self.metrics
            .consumer_stalled
            .with_label_values(&[P::NAME])
            .set(1);
        self.metrics
            .retry_attempts
            .with_label_values(&[P::NAME])
            .inc();
    }

    fn advanced(&self) {
        if self.progress.is_failing() {
            tracing::info!(consumer = P::NAME, "consumer makes progress again");
        }
        self.progress.advanced();
        self.metrics
            .consumer_stalled
            .with_label_values(&[P::NAME])
            .set(0);
    }

    /// Decodes and applies one message value. Transient failures are retried as
    /// `persistence` says; a permanent failure is returned at once.
    pub async fn apply(
        &self,
        payload: &[u8],
        mut persistence: Persistence<'_>,
    ) -> Result<Applied, Failure> {
        let first_failed_at = Utc::now();
        let mut attempts = 0u32;
        let mut identity: (Option<String>, Option<Uuid>) = (None, None);
        loop {
            attempts = attempts.saturating_add(1);
            let attempt = match self.try_apply(payload, &mut identity).await {
                Ok(applied) => {
                    self.advanced();
                    return Ok(applied);
                }
                Err(attempt) => attempt,
            };
            let failure = || Failure {
                error: attempt.error.clone(),
                transient: attempt.transient,
                attempts,
                first_failed_at,
                last_failed_at: Utc::now(),
                event_type: identity.0.clone(),
                event_id: identity.1,
            };
            if !attempt.transient {
                return Err(failure());
            }
            self.stalled(&attempt.error);
            let delay = self.retry.delay(attempts, jitter_seed());
            match &mut persistence {
                Persistence::Bounded => {
                    if !self.retry.allows(attempts) {
                        return Err(failure());
                    }
                    tokio::time::sleep(delay).await;
                }
                Persistence::UntilStopped(stop) => {
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::warn!(consumer = P::NAME, error = %attempt.error, attempts,
                            "transient failure; retrying the same message until it works");
                    }
                    let stopped = tokio::time::timeout(delay, stop.wait_for(|s| *s)).await;
                    if stopped.is_ok() {
                        return Err(failure());
                    }
                }
            }
        }
    }

    /// Applies several message values in one transaction, in order; `None` if that did
    /// not work, and the caller applies them one by one.
    pub async fn apply_batch(&self, payloads: &[&[u8]]) -> Option<Vec<Applied>> {
        let mut decoded = Vec::with_capacity(payloads.len());
        for payload in payloads {
            decoded.push(
                self.codec
                    .decode::<EventOf<P>>(<P::Aggregate as Aggregate>::TYPE, payload)
                    .await
                    .ok()?,
            );
        }
        let mut tx = self.pool.begin().await.ok()?;
        let mut results = Vec::with_capacity(decoded.len());
        for envelope in &decoded {
            results.push(self.apply_in(&mut tx, envelope).await.ok()?);
        }
        let applied: Vec<Uuid> = decoded
            .iter()
            .zip(&results)
            .filter(|(_, applied)| **applied == Applied::Applied)
            .map(|(e, _)| e.event_id)
            .collect();
        let reached: Vec<(Uuid, u64)> = decoded
            .iter()
            .map(|e| (e.aggregate_id, e.version))
            .collect();
        self.finish(&mut tx, &applied, &reached).await.ok()?;
        tx.commit().await.ok()?;
        self.advanced();
        let newest = decoded
            .iter()
            .zip(&results)
            .filter(|(_, applied)| **applied == Applied::Applied)
            .map(|(e, _)| e.recorded_at)
            .max();
        if let Some(newest) = newest {
            self.observe_lag(newest);
        }
        Some(results)
    }

    async fn try_apply(
        &self,
        payload: &[u8],
        identity: &mut (Option<String>, Option<Uuid>),
    ) -> Result<Applied, Attempt> {
        let envelope = self
            .codec
            .decode::<EventOf<P>>(<P::Aggregate as Aggregate>::TYPE, payload)
            .await?;
        *identity = (Some(envelope.event_type.clone()), Some(envelope.event_id));
        let mut tx = self.pool.begin().await?;
        let applied = self.apply_in(&mut tx, &envelope).await?;
        let ids: &[Uuid] = if applied == Applied::Applied {
            std::slice::from_ref(&envelope.event_id)
        } else {
            &[]
        };
        self.finish(&mut tx, ids, &[(envelope.aggregate_id, envelope.version)])
            .await?;
        tx.commit().await?;
        self.observe_lag(envelope.recorded_at);
        Ok(applied)
    }

    /// Last steps before commit: stamp the applied events' `processed_at` with the real
    /// instant (`now()` would be the transaction's start, before the work and the commit
    /// that projection lag must include), and notify pages waiting for `reached` (the
    /// events' aggregates and versions, applied now or before). One path for single
    /// messages and batches, so both are measured the same way.
    async fn finish(
        &self,
        conn: &mut PgConnection,
        applied: &[Uuid],
        reached: &[(Uuid, u64)],
    ) -> Result<(), sqlx::Error> {
        if !applied.is_empty() {
            sqlx::query(
                "UPDATE processed_events SET processed_at = clock_timestamp() \
                 WHERE consumer = $1 AND event_id = ANY($2)",
            )
            .bind(P::NAME)
            .bind(applied)
            .execute(&mut *conn)
            .await?;
        }
        event_sourcing::notify_progress(conn, P::NAME, reached).await
    }

    /// Records the event as processed by this consumer and applies it, inside `conn`'s
    /// transaction; an event already recorded is left alone.
    async fn apply_in(
        &self,
        conn: &mut PgConnection,
        envelope: &Envelope<EventOf<P>>,
    ) -> Result<Applied, ProjectionError> {
        let first_time = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(P::NAME)
        .bind(envelope.event_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(Applied::AlreadyApplied);
        }
        self.projection.apply(conn, envelope).await?;
        Ok(Applied::Applied)
    }

    /// How old the newest applied event was when its transaction committed.
    fn observe_lag(&self, recorded_at: DateTime<Utc>) {
        let lag = (Utc::now() - recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        self.metrics
            .projection_lag
            .with_label_values(&[P::NAME])
            .set(lag.max(0.0));
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    /// Consumer-group session timeout; joining a group can take half of it.
    pub session_timeout: Duration,
    /// Backoff between retries of a transient failure (its attempt limit applies only to
    /// operators' re-processing; the consumer itself retries without limit).
    pub retry: RetryPolicy,
}

impl ConsumerConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            session_timeout: Duration::from_secs(6),
            retry: RetryPolicy::AGGRESSIVE,
        }
    }
}

/// Logs the consumer group's rebalances and whether this consumer holds partitions.
#[derive(Default, Clone, Copy)]
pub struct GroupWatch;

impl rdkafka::ClientContext for GroupWatch {}

impl rdkafka::consumer::ConsumerContext for GroupWatch {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        let assigned =
            matches!(rebalance, rdkafka::consumer::Rebalance::Assign(tpl) if tpl.count() > 0);
        tracing::info!(assigned, "consumer group rebalanced");
    }
}

type GroupConsumer = StreamConsumer<GroupWatch>;

/// A projection fed from its aggregate's topic in a consumer group.
pub struct ProjectionConsumer<P> {
    applier: Arc<Applier<P>>,
    consumer: GroupConsumer,
    dead_letter_producer: FutureProducer,
    metrics: PipelineMetrics,
}

impl<P: Projection> ProjectionConsumer<P> {
    pub fn new(
        applier: Arc<Applier<P>>,
        metrics: PipelineMetrics,
        config: ConsumerConfig,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer = Self::group_consumer(P::NAME, &config)?;
        let dead_letter_producer: FutureProducer = producer_config(&config.brokers)
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self {
            applier,
            consumer,
            dead_letter_producer,
            metrics,
        })
    }

    fn group_consumer(
        name: &str,
        config: &ConsumerConfig,
    ) -> Result<GroupConsumer, rdkafka::error::KafkaError> {
        let session = config.session_timeout.as_millis();
        client_config(&config.brokers)
            .set("group.id", format!("tracseq.{name}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
            .create_with_context(GroupWatch)
    }

    /// Consumes until `stop` turns true. Whatever has arrived (up to 500 messages) is
    /// applied in one transaction when it can be; otherwise message by message. Offsets
    /// are stored only for messages applied or dead-lettered, then committed.
    /// Whether the broker answers a metadata request for `topic` (at most a few seconds,
    /// off the async workers where the runtime has several).
    fn broker_answers(&self, topic: &str) -> Result<(), rdkafka::error::KafkaError> {
        let ask = || {
            self.consumer
                .fetch_metadata(Some(topic), Duration::from_secs(3))
                .map(|_| ())
        };
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(ask),
            _ => ask(),
        }
    }

    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let topic = topic_for(<P::Aggregate as Aggregate>::TYPE);
        self.consumer.subscribe(&[&topic])?;
        let name = P::NAME;
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                message = self.consumer.recv() => message,
                // Failing only on receive errors (an apply never returns here while its
                // failure lasts), and quiet for a while: ask the broker itself. Quiet alone
                // proves nothing (librdkafka repeats an unchanged broker error only every
                // 30 s); left failing after the outage ended, an idle consumer would keep
                // the process unready.
                () = tokio::time::sleep(RECEIVE_RECOVERED_AFTER),
                    if self.applier.progress().is_failing() =>
                {
                    match self.broker_answers(&topic) {
                        Ok(()) => self.applier.advanced(),
                        Err(error) => self
                            .applier
                            .stalled(&format!("the broker does not answer: {error}")),
                    }
                    continue;
                }
            };
            let mut batch = match first {
                Ok(m) => vec![m],
                Err(error) => {
                    // The broker's trouble, not the message's: stalled, visibly, until
                    // a receive works again.
                    tracing::warn!(%error, consumer = name, "kafka receive failed");
                    self.applier
                        .stalled(&format!("receiving from Kafka: {error}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            while batch.len() < 500 {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(m),
                    _ => break,
                }
            }
            let payloads: Vec<&[u8]> = batch
                .iter()
                .map(|m| m.payload().unwrap_or_default())
                .collect();
            let together = if payloads.len() > 1 {
                self.applier.apply_batch(&payloads).await
            } else {
                None
            };
            let mut stopped = false;
            for (i, message) in batch.iter().enumerate() {
                let outcome = match &together {
                    Some(results) => Ok(results[i].clone()),
                    None => {
                        self.applier
                            .apply(payloads[i], Persistence::UntilStopped(&mut stop))
                            .await
                    }
                };
                let label = match outcome {
                    Ok(Applied::Applied) => "applied",
                    Ok(Applied::AlreadyApplied) => "duplicate",
                    Err(failure) if failure.transient => {
                        // Asked to stop while retrying: this message is not done.
                        stopped = true;
                        break;
                    }
                    Err(failure) => {
                        if !self.dead_letter(message, &failure, &mut stop).await {
                            stopped = true;
                            break;
                        }
                        "dead_lettered"
                    }
                };
                self.metrics
                    .consumer_events
                    .with_label_values(&[name, label])
                    .inc();
                if let Err(error) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(%error, consumer = name, "offset could not be stored");
                }
            }
            if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(%error, consumer = name, "offset commit failed; messages may be redelivered");
            }
            if stopped {
                return Ok(());
            }
        }
    }

    /// Sets a message aside: the `dead_letters` row first (retried until it is written,
    /// since the offset must not move past a message that is neither applied nor set
    /// aside), then the dead-letter topic. False when stopped before the row was written.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        failure: &Failure,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let name = P::NAME;
        let event_type = failure
            .event_type
            .clone()
            .unwrap_or_else(|| "unknown".into());
        tracing::error!(consumer = name, error = %failure.error, topic = message.topic(), partition = message.partition(),
            offset = message.offset(), attempts = failure.attempts, "message dead-lettered");
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let payload = message.payload().unwrap_or_default();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let stored = sqlx::query(
                "INSERT INTO dead_letters (consumer, topic, kafka_partition, kafka_offset, message_key, payload, \
                 event_type, event_id, error, attempts, first_failed_at, last_failed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (consumer, topic, kafka_partition, kafka_offset) DO UPDATE SET \
                 error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts, \
                 last_failed_at = EXCLUDED.last_failed_at, status = 'pending'",
            )
            .bind(name)
            .bind(message.topic())
            .bind(message.partition())
            .bind(message.offset())
            .bind(&key)
            .bind(payload)
            .bind(&failure.event_type)
            .bind(failure.event_id)
            .bind(&failure.error)
            .bind(i32::try_from(failure.attempts).unwrap_or(i32::MAX))
            .bind(failure.first_failed_at)
            .bind(failure.last_failed_at)
            .execute(self.applier.pool())
            .await;
            match stored {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, attempt, "dead letter could not be stored yet; retrying");
                    self.applier
                        .stalled(&format!("storing a dead letter: {error}"));
                    let delay = self.applier.retry.delay(attempt, jitter_seed());
                    if tokio::time::timeout(delay, stop.wait_for(|s| *s))
                        .await
                        .is_ok()
                    {
                        return false;
                    }
                }
            }
        }
        self.applier.advanced();
        self.metrics
            .dead_letters
            .with_label_values(&[name, &event_type])
            .inc();
        let (partition, offset, attempts) = (
            message.partition().to_string(),
            message.offset().to_string(),
            failure.attempts.to_string(),
        );
        let (first, last) = (
            failure.first_failed_at.to_rfc3339(),
            failure.last_failed_at.to_rfc3339(),
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(failure.error.as_str()),
            })
            .insert(Header {
                key: "consumer",
                value: Some(name),
            })
            .insert(Header {
                key: "original_topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "original_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "original_offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "attempts",
                value: Some(attempts.as_str()),
            })
            .insert(Header {
                key: "first_failure",
                value: Some(first.as_str()),
            })
            .insert(Header {
                key: "last_failure",
                value: Some(last.as_str()),
            })
            .insert(Header {
                key: "event_type",
                value: Some(event_type.as_str()),
            });
        let mut record = FutureRecord::to(topics::DEAD_LETTER)
            .payload(payload)
            .headers(headers);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Err((error, _)) = self
            .dead_letter_producer
            .send(record, Duration::from_secs(10))
            .await
        {
            tracing::error!(%error, "dead letter could not be published; it is in the dead_letters table");
        }
        true
    }
}
/// A dead letter as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<Uuid>,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub status: String,
    pub reprocessed_at: Option<DateTime<Utc>>,
}

/// The result of re-processing one dead letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reprocessed {
    pub id: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// Listing and re-processing dead letters.
pub struct DeadLetters<P> {
    applier: Arc<Applier<P>>,
}

impl<P: Projection> DeadLetters<P> {
    pub fn new(applier: Arc<Applier<P>>) -> Self {
        Self { applier }
    }

    /// Newest first, optionally only one event type and/or status.
    pub async fn list(
        &self,
        event_type: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, consumer, topic, kafka_partition, kafka_offset, message_key, event_type, event_id, error, \
             attempts, first_failed_at, last_failed_at, status, reprocessed_at FROM dead_letters \
             WHERE consumer = $4 AND ($1::text IS NULL OR event_type = $1) \
             AND ($2::text IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(event_type)
        .bind(status)
        .bind(limit)
        .bind(P::NAME)
        .fetch_all(self.applier.pool())
        .await
    }

    /// Applies a pending dead letter again. One already re-processed is not applied a
    /// second time, whenever it is asked (the consumer's de-duplication records expire
    /// with retention; the dead letter's own status does not).
    pub async fn reprocess(&self, id: i64) -> Result<Option<Reprocessed>, sqlx::Error> {
        let row: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT payload, status FROM dead_letters WHERE id = $1 AND consumer = $2",
        )
        .bind(id)
        .bind(P::NAME)
        .fetch_optional(self.applier.pool())
        .await?;
        let Some((payload, status)) = row else {
            return Ok(None);
        };
        if status != "pending" {
            return Ok(Some(Reprocessed {
                id,
                outcome: "already_reprocessed".into(),
                error: None,
            }));
        }
        let result = match self.applier.apply(&payload, Persistence::Bounded).await {
            Ok(applied) => {
                sqlx::query("UPDATE dead_letters SET status = 'reprocessed', reprocessed_at = now() WHERE id = $1")
                    .bind(id)
                    .execute(self.applier.pool())
                    .await?;
                let outcome = if applied == Applied::Applied {
                    "applied"
                } else {
                    "already_applied"
                };
                Reprocessed {
                    id,
                    outcome: outcome.into(),
                    error: None,
                }
            }
            Err(failure) => {
                sqlx::query(
                    "UPDATE dead_letters SET error = $2, attempts = attempts + $3, last_failed_at = now() WHERE id = $1",
                )
                .bind(id)
                .bind(&failure.error)
                .bind(i32::try_from(failure.attempts).unwrap_or(i32::MAX))
                .execute(self.applier.pool())
                .await?;
                Reprocessed {
                    id,
                    outcome: "failed".into(),
                    error: Some(failure.error),
                }
            }
        };
        Ok(Some(result))
    }

    /// Re-processes every pending dead letter, oldest first (so a sample's events go in
    /// their order).
    pub async fn reprocess_all(&self) -> Result<Vec<Reprocessed>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM dead_letters WHERE status = 'pending' AND consumer = $1 \
             ORDER BY topic, kafka_partition, kafka_offset",
        )
        .bind(self.applier.consumer_name())
        .fetch_all(self.applier.pool())
        .await?;
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.reprocess(id).await? {
                results.push(r);
            }
        }
        Ok(results)
    }
}
