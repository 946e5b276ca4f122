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

/// Client settings every client of ours shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "tracseq");
    config
}

/// Settings of every producer: Java's partitioner (murmur2 of the key), so that our
/// producers, Java producers and ksqlDB put a key in the same partition.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config.set("partitioner", "murmur2_random");
    config
}

/// How topics are created: one broker locally; a real cluster wants replication 3 and
/// `min.insync.replicas` 2 so that `acks=all` survives the loss of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    pub partitions: i32,
    pub replication_factor: i32,
    /// `None`: the broker's default.
    pub min_insync_replicas: Option<u32>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

/// Creates the topics that do not exist yet, with `partitions` each and one replica.
pub async fn ensure_topics<S: AsRef<str>>(
    brokers: &str,
    topics: &[S],
    partitions: i32,
) -> Result<(), KafkaError> {
    let settings = TopicSettings {
        partitions,
        ..TopicSettings::default()
    };
    ensure_topics_with(brokers, topics, settings).await
}

/// Creates the topics that do not exist yet, as `settings` say.
pub async fn ensure_topics_with<S: AsRef<str>>(
    brokers: &str,
    topics: &[S],
    settings: TopicSettings,
) -> Result<(), KafkaError> {
    let partitions = settings.partitions;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let min_insync = settings.min_insync_replicas.map(|n| n.to_string());
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(
                t.as_ref(),
                partitions,
                TopicReplication::Fixed(settings.replication_factor),
            );
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
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
