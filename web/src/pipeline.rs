//! The event pipeline of a running platform: the outbox relay publishing to Kafka and the
//! consumer group feeding the samples read table, with its dead letters.

use crate::config::Settings;
use crate::read_model::SamplesProjection;
use kafka::consumer::{Applier, ConsumerConfig, DeadLetters, ProjectionConsumer};
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::retry::RetryPolicy;
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

pub struct Pipeline {
    relay: JoinHandle<()>,
    consumer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    pub dead_letters: DeadLetters<SamplesProjection>,
}

impl Pipeline {
    /// Creates the topics and registers the schemas (both idempotent), then starts the
    /// relay and the consumer.
    pub async fn start(
        pool: PgPool,
        brokers: &str,
        settings: &Settings,
        metrics: PipelineMetrics,
    ) -> Result<Self, PipelineError> {
        let codec = Arc::new(
            WireCodec::new(&settings.schema_registry_url)
                .map_err(|e| PipelineError(e.to_string()))?,
        );
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
                    break;
                }
                Err(error) if attempt < 10 => {
                    tracing::warn!(%error, attempt, "event pipeline not ready; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(PipelineError(error)),
            }
        }
        let (stop, stopped) = watch::channel(false);
        let relay = OutboxRelay::new(
            pool.clone(),
            Arc::clone(&codec),
            metrics.clone(),
            RelayConfig::new(brokers),
        )
        .map_err(|e| PipelineError(e.to_string()))?;
        let relay = tokio::spawn(relay.run(stopped.clone()));
        let applier = Arc::new(Applier::new(
            pool,
            codec,
            Arc::new(SamplesProjection),
            RetryPolicy::AGGRESSIVE,
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
        !self.relay.is_finished() && !self.consumer.is_finished()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
