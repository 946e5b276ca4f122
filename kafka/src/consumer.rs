//! Consumers that keep read tables up to date from Kafka.
//!
//! A consumer in a consumer group decodes each message, then applies it in one database
//! transaction together with a row in `processed_events`; only after that commits does it
//! commit the message's offset. A redelivered event finds its row and changes nothing.
//! Transient failures are retried with backoff; a message that still fails, or cannot be
//! decoded, goes to `laboratory.dead-letter` and the `dead_letters` table, and the
//! consumer moves on. Dead letters can be re-processed, idempotently, once the cause is
//! fixed.

use crate::avro::EventHeader;
use crate::metrics::PipelineMetrics;
use crate::retry::{RetryPolicy, jitter_seed};
use crate::topics::{self, client_config};
use crate::wire::{WireCodec, WireError};
use chrono::{DateTime, Utc};
use cqrs::sample::SampleEvent;
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed if tried again (a lost connection, a lock timeout).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way until something is fixed.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // connection exceptions, serialization/deadlock, resources, operator intervention
                ["08", "40", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || code == "55P03"
            }),
            _ => false,
        };
        if transient {
            Self::Transient(error.to_string())
        } else {
            Self::Permanent(error.to_string())
        }
    }
}

/// Applies events to a read model inside the consumer's transaction.
pub trait EventHandler: Send + Sync + 'static {
    /// Names the consumer group and its de-duplication records.
    fn name(&self) -> &'static str;

    fn handle(
        &self,
        conn: &mut PgConnection,
        header: &EventHeader,
        event: &SampleEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

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
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub event_type: Option<String>,
    pub event_id: Option<Uuid>,
}

/// Decoding and applying, shared by the consumer and re-processing.
pub struct Applier<H> {
    pool: PgPool,
    codec: Arc<WireCodec>,
    handler: Arc<H>,
    retry: RetryPolicy,
    metrics: PipelineMetrics,
}

impl<H: EventHandler> Applier<H> {
    pub fn new(
        pool: PgPool,
        codec: Arc<WireCodec>,
        handler: Arc<H>,
        retry: RetryPolicy,
        metrics: PipelineMetrics,
    ) -> Self {
        Self {
            pool,
            codec,
            handler,
            retry,
            metrics,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn consumer_name(&self) -> &'static str {
        self.handler.name()
    }

    /// Decodes and applies one message value, retrying transient failures.
    pub async fn apply(&self, payload: &[u8]) -> Result<Applied, Failure> {
        let first_failed_at = Utc::now();
        let mut attempts = 0;
        let mut identity: (Option<String>, Option<Uuid>) = (None, None);
        loop {
            attempts += 1;
            let (error, transient) = match self.try_apply(payload, &mut identity).await {
                Ok(applied) => return Ok(applied),
                Err(e) => e,
            };
            if !transient || !self.retry.allows(attempts) {
                return Err(Failure {
                    error,
                    attempts,
                    first_failed_at,
                    last_failed_at: Utc::now(),
                    event_type: identity.0,
                    event_id: identity.1,
                });
            }
            self.metrics
                .retry_attempts
                .with_label_values(&[self.handler.name()])
                .inc();
            tokio::time::sleep(self.retry.delay(attempts, jitter_seed())).await;
        }
    }

    /// Applies several message values in one transaction, in order. If any of them fails,
    /// the transaction is abandoned and each is applied on its own (with retries), so one
    /// bad message never holds back or fails the others.
    pub async fn apply_batch(&self, payloads: &[&[u8]]) -> Vec<Result<Applied, Failure>> {
        if payloads.len() > 1
            && let Ok(results) = self.try_apply_batch(payloads).await
        {
            return results.into_iter().map(Ok).collect();
        }
        let mut results = Vec::with_capacity(payloads.len());
        for payload in payloads {
            results.push(self.apply(payload).await);
        }
        results
    }

    async fn try_apply_batch(&self, payloads: &[&[u8]]) -> Result<Vec<Applied>, String> {
        let mut decoded = Vec::with_capacity(payloads.len());
        for payload in payloads {
            decoded.push(
                self.codec
                    .decode(payload)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let mut results = Vec::with_capacity(decoded.len());
        for (header, event) in &decoded {
            results.push(
                self.apply_in(&mut tx, header, event)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        let newest = decoded
            .iter()
            .zip(&results)
            .filter(|(_, applied)| **applied == Applied::Applied)
            .map(|((header, _), _)| header.recorded_at)
            .max();
        if let Some(newest) = newest {
            self.observe_lag(newest);
        }
        Ok(results)
    }

    async fn try_apply(
        &self,
        payload: &[u8],
        identity: &mut (Option<String>, Option<Uuid>),
    ) -> Result<Applied, (String, bool)> {
        let (header, event) = self.codec.decode(payload).await.map_err(|e: WireError| {
            let transient = e.is_transient();
            (format!("cannot decode: {e}"), transient)
        })?;
        *identity = (
            Some(cqrs::DomainEvent::event_type(&event).to_owned()),
            Some(header.event_id),
        );
        let fail = |e: HandlerError| match e {
            HandlerError::Transient(m) => (m, true),
            HandlerError::Permanent(m) => (m, false),
        };
        let mut tx = self.pool.begin().await.map_err(|e| fail(e.into()))?;
        let applied = self
            .apply_in(&mut tx, &header, &event)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(|e| fail(e.into()))?;
        self.observe_lag(header.recorded_at);
        Ok(applied)
    }

    /// Records the event as processed by this consumer and applies it, inside `conn`'s
    /// transaction; an event already recorded is left alone.
    async fn apply_in(
        &self,
        conn: &mut PgConnection,
        header: &EventHeader,
        event: &SampleEvent,
    ) -> Result<Applied, HandlerError> {
        let first_time = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(self.handler.name())
        .bind(header.event_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(Applied::AlreadyApplied);
        }
        self.handler.handle(conn, header, event).await?;
        Ok(Applied::Applied)
    }

    /// How old the newest applied event was when its transaction committed.
    fn observe_lag(&self, recorded_at: DateTime<Utc>) {
        let lag = (Utc::now() - recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        self.metrics
            .projection_lag
            .with_label_values(&[self.handler.name()])
            .set(lag.max(0.0));
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub topic: String,
    /// Consumer-group session timeout; joining a group can take half of it.
    pub session_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ConsumerConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topics::SAMPLE_EVENTS.to_owned(),
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

/// A projection fed from Kafka in a consumer group.
pub struct ProjectionConsumer<H> {
    applier: Arc<Applier<H>>,
    consumer: GroupConsumer,
    dead_letter_producer: FutureProducer,
    config: ConsumerConfig,
    metrics: PipelineMetrics,
}

impl<H: EventHandler> ProjectionConsumer<H> {
    pub fn new(
        applier: Arc<Applier<H>>,
        metrics: PipelineMetrics,
        config: ConsumerConfig,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer = Self::group_consumer(applier.consumer_name(), &config)?;
        let dead_letter_producer: FutureProducer = client_config(&config.brokers)
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self {
            applier,
            consumer,
            dead_letter_producer,
            config,
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
            // Read-your-writes waits on this consumer: do not let the broker sit on a
            // fetch for long when little is waiting.
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
            .create_with_context(GroupWatch)
    }

    /// Consumes until `stop` turns true. Whatever has arrived (up to 500 messages) is
    /// applied in one transaction; offsets are committed after it.
    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.consumer.subscribe(&[&self.config.topic])?;
        let name = self.applier.consumer_name();
        loop {
            let first = tokio::select! {
                _ = stop.changed() => return Ok(()),
                message = self.consumer.recv() => message,
            };
            let mut batch = match first {
                Ok(m) => vec![m],
                Err(error) => {
                    tracing::warn!(%error, consumer = name, "kafka receive failed");
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
            let results = self.applier.apply_batch(&payloads).await;
            for (message, result) in batch.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        let label = if outcome == Applied::Applied {
                            "applied"
                        } else {
                            "duplicate"
                        };
                        self.metrics
                            .consumer_events
                            .with_label_values(&[name, label])
                            .inc();
                    }
                    Err(failure) => {
                        self.metrics
                            .consumer_events
                            .with_label_values(&[name, "failed"])
                            .inc();
                        self.dead_letter(message, &failure).await;
                    }
                }
                if let Err(error) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(%error, consumer = name, "offset could not be stored");
                }
            }
            if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(%error, consumer = name, "offset commit failed; messages may be redelivered");
            }
        }
    }

    async fn dead_letter(&self, message: &BorrowedMessage<'_>, failure: &Failure) {
        let name = self.applier.consumer_name();
        let event_type = failure
            .event_type
            .clone()
            .unwrap_or_else(|| "unknown".into());
        tracing::error!(consumer = name, error = %failure.error, topic = message.topic(), partition = message.partition(),
            offset = message.offset(), attempts = failure.attempts, "message dead-lettered");
        self.metrics
            .dead_letters
            .with_label_values(&[name, &event_type])
            .inc();
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let payload = message.payload().unwrap_or_default();
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
        if let Err(error) = stored {
            tracing::error!(%error, "dead letter could not be stored");
        }
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
    }
}

/// A dead letter as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Reprocessed {
    pub id: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// Listing and re-processing dead letters.
pub struct DeadLetters<H> {
    applier: Arc<Applier<H>>,
}

impl<H: EventHandler> DeadLetters<H> {
    pub fn new(applier: Arc<Applier<H>>) -> Self {
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
             WHERE ($1::text IS NULL OR event_type = $1) AND ($2::text IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(event_type)
        .bind(status)
        .bind(limit)
        .fetch_all(self.applier.pool())
        .await
    }

    /// Applies a dead letter again (at most once, however often it is re-processed).
    pub async fn reprocess(&self, id: i64) -> Result<Option<Reprocessed>, sqlx::Error> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT payload FROM dead_letters WHERE id = $1")
                .bind(id)
                .fetch_optional(self.applier.pool())
                .await?;
        let Some((payload,)) = row else {
            return Ok(None);
        };
        let result = match self.applier.apply(&payload).await {
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
