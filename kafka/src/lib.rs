//! Events on Kafka: Avro schemas (`kafka/schemas/`), encoding in the Confluent wire format
//! through a Schema Registry, and the project's own Confluent-compatible registry.

pub mod avro;
pub mod registry;
pub mod wire;
