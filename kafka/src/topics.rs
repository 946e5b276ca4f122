//! The topics of the platform and their creation (explicit: brokers may not auto-create).

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

pub const SAMPLE_EVENTS: &str = "laboratory.sample.events";
pub const STORAGE_EVENTS: &str = "laboratory.storage.events";
pub const PATIENT_EVENTS: &str = "laboratory.patient.events";
pub const SEQUENCING_EVENTS: &str = "laboratory.sequencing.events";
pub const SAGA_EVENTS: &str = "laboratory.saga.events";
pub const NOTIFICATION_EVENTS: &str = "laboratory.notification.events";
pub const DEAD_LETTER: &str = "laboratory.dead-letter";

pub const ALL: &[&str] = &[
    SAMPLE_EVENTS,
    STORAGE_EVENTS,
    PATIENT_EVENTS,
    SEQUENCING_EVENTS,
    SAGA_EVENTS,
    NOTIFICATION_EVENTS,
    DEAD_LETTER,
];

/// The topic an aggregate type's events are published to.
pub fn topic_for(aggregate_type: &str) -> Option<&'static str> {
    match aggregate_type {
        "Sample" => Some(SAMPLE_EVENTS),
        "Storage" => Some(STORAGE_EVENTS),
        "Patient" => Some(PATIENT_EVENTS),
        "Sequencing" => Some(SEQUENCING_EVENTS),
        "Saga" => Some(SAGA_EVENTS),
        _ => None,
    }
}

/// Client settings every client of ours shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "tracseq");
    config
}

/// Creates the topics that do not exist yet, with `partitions` each.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "topic exists")
            }
            Err((topic, code)) => {
                tracing::error!(%topic, %code, "topic could not be created");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
