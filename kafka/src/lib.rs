//! Events on Kafka: Avro schemas (`kafka/schemas/`), encoding in the Confluent wire format
//! through a Schema Registry, the project's own Confluent-compatible registry, and the
//! outbox relay that publishes committed events.

pub mod avro;
pub mod breaker;
pub mod consumer;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod retry;
pub mod testkit;
pub mod topics;
pub mod wire;
