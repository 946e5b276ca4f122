//! Metrics of commands and queries, whichever edge issues them.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets from 1 ms to 30 s, in seconds.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

/// Metrics of commands and queries.
#[derive(Clone)]
pub struct CommandMetrics {
    pub commands: IntCounterVec,
    pub command_duration: HistogramVec,
    pub queries: IntCounterVec,
    pub query_duration: HistogramVec,
    pub idempotency_checks: IntCounterVec,
}

impl CommandMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let commands = IntCounterVec::new(
            Opts::new(
                "cqrs_commands_total",
                "Commands handled, by command and outcome",
            ),
            &["command", "outcome"],
        )?;
        let command_duration = HistogramVec::new(
            HistogramOpts::new(
                "cqrs_command_duration_seconds",
                "Time to handle a command, read-your-writes wait included",
            )
            .buckets(latency_buckets()),
            &["command"],
        )?;
        let queries = IntCounterVec::new(
            Opts::new(
                "cqrs_queries_total",
                "Queries answered, by query and outcome",
            ),
            &["query", "outcome"],
        )?;
        let query_duration = HistogramVec::new(
            HistogramOpts::new("cqrs_query_duration_seconds", "Time to answer a query")
                .buckets(latency_buckets()),
            &["query"],
        )?;
        let idempotency_checks = IntCounterVec::new(
            Opts::new(
                "cqrs_idempotency_checks_total",
                "Commands that carried an idempotency key or command id, by whether they repeated an earlier one",
            ),
            &["result"],
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(command_duration.clone()))?;
        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(query_duration.clone()))?;
        registry.register(Box::new(idempotency_checks.clone()))?;
        Ok(Self {
            commands,
            command_duration,
            queries,
            query_duration,
            idempotency_checks,
        })
    }
}
