//! The event pipeline of a running platform: the outbox relay publishing to Kafka and the
//! consumer group feeding the samples read table, with its dead letters.

use crate::config::Settings;
use crate::read_model::SamplesProjection;
use kafka::consumer::{Applier, ConsumerConfig, DeadLetters, ProjectionConsumer};
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::topics;
use kafka::wire::WireCodec;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("event pipeline: {0}")]
pub struct PipelineError(String);

/// Creates the topics and registers the event schemas (both idempotent), retrying for a
/// while when the broker or the registry is not up yet.
pub async fn prepare(brokers: &str, settings: &Settings) -> Result<WireCodec, PipelineError> {
    let codec =
        WireCodec::new(&settings.schema_registry_url).map_err(|e| PipelineError(e.to_string()))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ready = async {
            topics::ensure_topics(brokers, topics::ALL, 3)
                .await
                .map_err(|e| format!("topics on {brokers}: {e}"))?;
            codec
                .register_all(topics::SAMPLE_EVENTS)
                .await
                .map_err(|e| format!("schemas at {}: {e}", settings.schema_registry_url))
        };
        match ready.await {
            Ok(ids) => {
                tracing::info!(?ids, "event schemas registered");
                return Ok(codec);
            }
            Err(error) if attempt < 10 => {
                tracing::warn!(%error, attempt, "event pipeline not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(PipelineError(error)),
        }
    }
}

fn relay_config(brokers: &str, settings: &Settings) -> RelayConfig {
    let mut config = RelayConfig::new(brokers);
    config.message_timeout = Duration::from_millis(settings.publish_timeout_ms.max(1));
    config
}

/// A relay on its own, for `tracseq relay`: publishes until `stop` turns true.
pub async fn run_relay(
    pool: PgPool,
    brokers: &str,
    settings: &Settings,
    metrics: PipelineMetrics,
    stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let codec = Arc::new(prepare(brokers, settings).await?);
    let relay = OutboxRelay::new(pool, codec, metrics, relay_config(brokers, settings))
        .map_err(|e| PipelineError(e.to_string()))?;
    relay.run(stop).await;
    Ok(())
}

pub struct Pipeline {
    relay: Option<JoinHandle<()>>,
    consumer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    pub dead_letters: DeadLetters<SamplesProjection>,
}

impl Pipeline {
    /// Prepares topics and schemas, then starts the relay (unless it runs in processes of
    /// its own, `TRACSEQ_RELAY=off`) and the consumer.
    pub async fn start(
        pool: PgPool,
        brokers: &str,
        settings: &Settings,
        metrics: PipelineMetrics,
    ) -> Result<Self, PipelineError> {
        let codec = Arc::new(prepare(brokers, settings).await?);
        let (stop, stopped) = watch::channel(false);
        let relay = if settings.relay_in_process {
            let relay = OutboxRelay::new(
                pool.clone(),
                Arc::clone(&codec),
                metrics.clone(),
                relay_config(brokers, settings),
            )
            .map_err(|e| PipelineError(e.to_string()))?;
            Some(tokio::spawn(relay.run(stopped.clone())))
        } else {
            tracing::info!(
                "TRACSEQ_RELAY=off: events are published by separate 'tracseq relay' processes"
            );
            None
        };
        let applier = Arc::new(Applier::new(
            pool,
            codec,
            Arc::new(SamplesProjection),
            settings.retry,
            metrics.clone(),
        ));
        let mut config = ConsumerConfig::new(brokers);
        config.session_timeout = Duration::from_millis(settings.consumer_session_timeout_ms);
        let consumer = ProjectionConsumer::new(Arc::clone(&applier), metrics, config)
            .map_err(|e| PipelineError(e.to_string()))?;
        let consumer = tokio::spawn(async move {
            if let Err(error) = consumer.run(stopped).await {
                tracing::error!(%error, "samples consumer stopped");
            }
        });
        Ok(Self {
            relay,
            consumer,
            stop,
            dead_letters: DeadLetters::new(applier),
        })
    }

    pub fn is_running(&self) -> bool {
        self.relay.as_ref().is_none_or(|r| !r.is_finished()) && !self.consumer.is_finished()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
