//! The event pipeline of a running platform: the outbox relay publishing every
//! aggregate's events to Kafka, and the consumer groups feeding the read tables, with
//! their dead letters. Adding an aggregate adds a line to [`catalog`] and a
//! [`Pipeline::consume`] call for its projection; nothing in the relay, codec or consumer
//! changes.

use crate::config::Settings;
use cqrs::sample::Sample;
use event_sourcing::{ProgressBoard, Projection};
use kafka::avro::{AvroError, EventCatalog};
use kafka::consumer::{Applier, ConsumerConfig, DeadLetters, ProjectionConsumer};
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::topics::{self, TopicSettings};
use kafka::wire::WireCodec;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("event pipeline: {0}")]
pub struct PipelineError(String);

impl From<String> for PipelineError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// Every aggregate whose events the platform publishes, with its Avro schemas.
pub fn catalog() -> Result<EventCatalog, AvroError> {
    EventCatalog::new()
        .with::<Sample>()?
        .with::<cqrs::storage::StorageUnit>()
}

/// The platform's topics: the catalogue's, and the rest of SPEC.md's.
pub fn topic_names(catalog: &EventCatalog) -> Vec<String> {
    let mut names: Vec<String> = topics::ALL.iter().map(|t| (*t).to_owned()).collect();
    names.extend(catalog.topics());
    names.sort();
    names.dedup();
    names
}

pub fn topic_settings(settings: &Settings) -> TopicSettings {
    TopicSettings {
        replication_factor: settings.topic_replication,
        min_insync_replicas: settings.topic_min_insync,
        ..TopicSettings::default()
    }
}

/// Creates the topics and registers the event schemas (both idempotent), waiting without
/// limit (backing off to 30 s between tries) while the broker or the registry is not up;
/// a schema the registry refuses ends start-up at once.
pub async fn prepare(
    brokers: &str,
    settings: &Settings,
    catalog: Arc<EventCatalog>,
) -> Result<WireCodec, PipelineError> {
    let topics = topic_names(&catalog);
    let token = settings.schema_registry_token.as_ref().map(|t| t.expose());
    let codec = WireCodec::with_token(&settings.schema_registry_url, token, catalog)
        .map_err(|e| PipelineError(format!("schema registry client: {e}")))?;
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let ready = async {
            topics::ensure_topics_with(brokers, &topics, topic_settings(settings))
                .await
                .map_err(|e| (true, format!("topics on {brokers}: {e}")))?;
            codec.register_all().await.map_err(|e| {
                let message = format!("schemas at {}: {e}", settings.schema_registry_url);
                (e.is_transient(), message)
            })
        };
        match ready.await {
            Ok(ids) => {
                tracing::info!(?ids, "event schemas registered");
                return Ok(codec);
            }
            // A broker or registry not up (yet): wait for it, however long, saying so.
            Err((true, error)) => {
                let wait = Duration::from_secs(u64::from(attempt.min(30)));
                tracing::warn!(%error, attempt, ?wait, "event pipeline not ready; waiting for it");
                tokio::time::sleep(wait).await;
            }
            // The registry refuses a schema (incompatible, invalid): waiting cures nothing.
            Err((false, error)) => return Err(PipelineError(error)),
        }
    }
}

fn relay_config(brokers: &str, settings: &Settings) -> RelayConfig {
    RelayConfig::new(brokers)
        .message_timeout(Duration::from_millis(settings.publish_timeout_ms.max(1)))
}

/// A relay on its own, for `tracseq relay`: publishes until `stop` turns true.
pub async fn run_relay(
    pool: PgPool,
    brokers: &str,
    settings: &Settings,
    metrics: PipelineMetrics,
    stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let catalog = Arc::new(catalog().map_err(|e| PipelineError(e.to_string()))?);
    let codec = Arc::new(prepare(brokers, settings, catalog).await?);
    let relay = OutboxRelay::new(pool, codec, metrics, relay_config(brokers, settings))
        .map_err(|e| PipelineError(e.to_string()))?;
    relay.run(stop).await;
    Ok(())
}

pub struct Pipeline {
    pool: PgPool,
    brokers: String,
    settings: Settings,
    metrics: PipelineMetrics,
    codec: Arc<WireCodec>,
    board: ProgressBoard,
    relay: Option<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Pipeline {
    /// Prepares topics and schemas, then starts the relay (unless it runs in processes of
    /// its own, `TRACSEQ_RELAY=off`). Consumers are added with [`Pipeline::consume`].
    pub async fn start(
        pool: PgPool,
        brokers: &str,
        settings: &Settings,
        metrics: PipelineMetrics,
        catalog: Arc<EventCatalog>,
        board: ProgressBoard,
    ) -> Result<Self, PipelineError> {
        let codec = Arc::new(prepare(brokers, settings, catalog).await?);
        let (stop, stopped) = watch::channel(false);
        let relay = if settings.relay_in_process {
            let relay = OutboxRelay::new(
                pool.clone(),
                Arc::clone(&codec),
                metrics.clone(),
                relay_config(brokers, settings),
            )
            .map_err(|e| PipelineError(e.to_string()))?
            .with_progress(board.register_informational("outbox-relay"));
            Some(tokio::spawn(relay.run(stopped)))
        } else {
            tracing::info!(
                "TRACSEQ_RELAY=off: events are published by separate 'tracseq relay' processes"
            );
            None
        };
        Ok(Self {
            pool,
            brokers: brokers.to_owned(),
            settings: settings.clone(),
            metrics,
            codec,
            board,
            relay,
            consumers: Vec::new(),
            stop,
        })
    }

    /// Starts a consumer group feeding `projection` from its aggregate's topic; returns
    /// its dead letters.
    pub fn consume<P: Projection>(
        &mut self,
        projection: P,
    ) -> Result<DeadLetters<P>, PipelineError> {
        let applier = Arc::new(
            Applier::new(
                self.pool.clone(),
                Arc::clone(&self.codec),
                Arc::new(projection),
                self.settings.retry,
                self.metrics.clone(),
            )
            .with_progress(self.board.register(P::NAME)),
        );
        let mut config = ConsumerConfig::new(self.brokers.clone());
        config.session_timeout = Duration::from_millis(self.settings.consumer_session_timeout_ms);
        config.retry = self.settings.retry;
        let consumer = ProjectionConsumer::new(Arc::clone(&applier), self.metrics.clone(), config)
            .map_err(|e| PipelineError(e.to_string()))?;
        let stopped = self.stop.subscribe();
        self.consumers.push(tokio::spawn(async move {
            if let Err(error) = consumer.run(stopped).await {
                tracing::error!(%error, consumer = P::NAME, "consumer stopped");
            }
        }));
        Ok(DeadLetters::new(applier))
    }

    pub fn is_running(&self) -> bool {
        self.relay.as_ref().is_none_or(|r| !r.is_finished())
            && self.consumers.iter().all(|c| !c.is_finished())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
