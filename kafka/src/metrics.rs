//! Prometheus metrics of the event pipeline, registered in one registry that `/metrics`
//! exports.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Metrics of the outbox relay and its circuit breakers.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub registry: Registry,
    pub outbox_backlog: IntGauge,
    pub events_published: IntCounterVec,
    pub publish_failures: IntCounterVec,
    pub publish_duration: Histogram,
    pub publish_lag: Histogram,
    pub circuit_breaker_state: IntGaugeVec,
    pub circuit_breaker_transitions: IntCounterVec,
    pub retry_attempts: IntCounterVec,
    pub stage_duration: HistogramVec,
    pub consumer_events: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub projection_lag: prometheus::GaugeVec,
    /// Outbox rows set aside because they cannot be encoded (now).
    pub outbox_parked: IntGauge,
    /// Outbox rows set aside, ever, by event type.
    pub outbox_parked_total: IntCounterVec,
    /// Age of the oldest transaction holding an xid: every log follower waits for it.
    pub oldest_transaction_age: prometheus::Gauge,
    /// 1 while a consumer retries a transient failure (database, registry) without progress.
    pub consumer_stalled: IntGaugeVec,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

impl PipelineMetrics {
    /// Reads the outbox backlog, the parked rows and the age of the oldest transaction
    /// holding an xid (cluster-wide: it holds every log follower back) into their gauges.
    /// The relay refreshes them as it runs; `/metrics` on every scrape, so they are there
    /// whichever process is scraped.
    pub async fn refresh_gauges(&self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        let (backlog, parked, oldest): (i64, i64, f64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL), \
                    (SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL), \
                    (SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(xact_start)), 0)::float8 \
                     FROM pg_stat_activity WHERE backend_xid IS NOT NULL)",
        )
        .fetch_one(pool)
        .await?;
        self.outbox_backlog.set(backlog);
        self.outbox_parked.set(parked);
        self.oldest_transaction_age.set(oldest);
        Ok(())
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let outbox_backlog = IntGauge::new(
            "cqrs_outbox_backlog",
            "Outbox rows not yet acknowledged by Kafka",
        )?;
        let events_published = IntCounterVec::new(
            Opts::new(
                "cqrs_events_published_total",
                "Events published to Kafka and acknowledged",
            ),
            &["topic", "event_type"],
        )?;
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "cqrs_publish_failures_total",
                "Events Kafka did not acknowledge",
            ),
            &["topic"],
        )?;
        let publish_duration = Histogram::with_opts(
            HistogramOpts::new(
                "cqrs_publish_duration_seconds",
                "From sending a relay batch to the last acknowledgement",
            )
            .buckets(latency_buckets()),
        )?;
        let publish_lag = Histogram::with_opts(
            HistogramOpts::new(
                "cqrs_publish_lag_seconds",
                "From an event's commit to Kafka's acknowledgement",
            )
            .buckets(latency_buckets()),
        )?;
        let circuit_breaker_state = IntGaugeVec::new(
            Opts::new(
                "cqrs_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ),
            &["name"],
        )?;
        let circuit_breaker_transitions = IntCounterVec::new(
            Opts::new(
                "cqrs_circuit_breaker_total",
                "Circuit breaker state transitions",
            ),
            &["name", "state"],
        )?;
        let retry_attempts = IntCounterVec::new(
            Opts::new(
                "cqrs_retry_attempts_total",
                "Retries after a transient failure",
            ),
            &["operation"],
        )?;
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "cqrs_relay_stage_duration_seconds",
                "Time spent per relay stage",
            )
            .buckets(latency_buckets()),
            &["stage"],
        )?;
        let consumer_events = IntCounterVec::new(
            Opts::new(
                "cqrs_consumer_events_total",
                "Events handled by consumers, by outcome",
            ),
            &["consumer", "outcome"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "cqrs_dead_letters_total",
                "Messages sent to the dead-letter topic",
            ),
            &["consumer", "event_type"],
        )?;
        let projection_lag = prometheus::GaugeVec::new(
            Opts::new(
                "cqrs_projection_lag_seconds",
                "Age of the newest event a projection has applied, when applied",
            ),
            &["consumer"],
        )?;
        let outbox_parked = IntGauge::new(
            "cqrs_outbox_parked",
            "Outbox rows set aside because they could not be encoded; operators re-try them",
        )?;
        let outbox_parked_total = IntCounterVec::new(
            Opts::new(
                "cqrs_outbox_parked_total",
                "Outbox rows set aside because they could not be encoded",
            ),
            &["event_type"],
        )?;
        let oldest_transaction_age = prometheus::Gauge::new(
            "cqrs_oldest_transaction_age_seconds",
            "Age of the oldest running transaction that holds a transaction id; log followers wait for it",
        )?;
        let consumer_stalled = IntGaugeVec::new(
            Opts::new(
                "cqrs_consumer_stalled",
                "1 while a consumer retries a transient failure without making progress",
            ),
            &["consumer"],
        )?;
        registry.register(Box::new(outbox_parked.clone()))?;
        registry.register(Box::new(outbox_parked_total.clone()))?;
        registry.register(Box::new(oldest_transaction_age.clone()))?;
        registry.register(Box::new(consumer_stalled.clone()))?;
        registry.register(Box::new(consumer_events.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(projection_lag.clone()))?;
        registry.register(Box::new(outbox_backlog.clone()))?;
        registry.register(Box::new(events_published.clone()))?;
        registry.register(Box::new(publish_failures.clone()))?;
        registry.register(Box::new(publish_duration.clone()))?;
        registry.register(Box::new(publish_lag.clone()))?;
        registry.register(Box::new(circuit_breaker_state.clone()))?;
        registry.register(Box::new(circuit_breaker_transitions.clone()))?;
        registry.register(Box::new(retry_attempts.clone()))?;
        registry.register(Box::new(stage_duration.clone()))?;
        Ok(Self {
            registry,
            outbox_backlog,
            events_published,
            publish_failures,
            publish_duration,
            publish_lag,
            circuit_breaker_state,
            circuit_breaker_transitions,
            retry_attempts,
            stage_duration,
            consumer_events,
            dead_letters,
            projection_lag,
            outbox_parked,
            outbox_parked_total,
            oldest_transaction_age,
            consumer_stalled,
        })
    }

    /// A breaker-transition callback that keeps `name`'s state and counts its transitions.
    pub fn breaker_observer(&self, name: &str) -> crate::breaker::OnTransition {
        let (state, transitions, name) = (
            self.circuit_breaker_state.clone(),
            self.circuit_breaker_transitions.clone(),
            name.to_owned(),
        );
        Box::new(move |s| {
            state.with_label_values(&[&name]).set(s.code());
            transitions.with_label_values(&[&name, s.as_str()]).inc();
        })
    }

    /// The text exposition of every metric in the registry.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        out
    }
}
