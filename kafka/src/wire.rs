//! The Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body),
//! produced and read through `schema_registry_converter` against any Confluent-compatible
//! registry. Several event types share a topic, so subjects follow the
//! TopicRecordNameStrategy: `<topic>-<namespace>.<EventType>`.

use crate::avro::{self, AvroError, EventHeader, EventSchemas};
use cqrs::sample::SampleEvent;
use event_sourcing::StoredEvent;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Avro(#[from] AvroError),
    #[error("schema registry: {0}")]
    Registry(#[from] SRCError),
    #[error("message is not in the Confluent wire format: {0}")]
    NotWireFormat(String),
}

impl WireError {
    /// Registry trouble may pass; a message that cannot be decoded will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry(e) if e.retriable)
    }
}

/// The subject an event type's schema is registered under on `topic`.
pub fn subject(topic: &str, event_type: &str) -> String {
    format!("{topic}-{}", EventSchemas::full_name(event_type))
}

fn supplied(event_type: &str, schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(
        Some(EventSchemas::full_name(event_type)),
        SchemaType::Avro,
        schema.to_owned(),
    )
}

/// Encodes and decodes events for Kafka; caches schema ids.
pub struct WireCodec {
    settings: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    schemas: EventSchemas,
}

impl WireCodec {
    pub fn new(registry_url: &str) -> Result<Self, WireError> {
        let settings = SrSettings::new(registry_url.trim_end_matches('/').to_owned());
        Ok(Self {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings.clone()),
            settings,
            schemas: EventSchemas::load()?,
        })
    }

    /// Registers every event schema for `topic` and returns the ids by event type; run at
    /// start-up so that a schema the registry refuses stops the start, not a publish.
    pub async fn register_all(&self, topic: &str) -> Result<HashMap<&'static str, u32>, WireError> {
        let mut ids = HashMap::new();
        for (event_type, schema) in avro::SCHEMAS {
            let registered = post_schema(
                &self.settings,
                subject(topic, event_type),
                supplied(event_type, schema),
            )
            .await?;
            ids.insert(*event_type, registered.id);
        }
        Ok(ids)
    }

    /// The event as a Kafka message value.
    pub async fn encode(
        &self,
        topic: &str,
        event: &StoredEvent<SampleEvent>,
    ) -> Result<Vec<u8>, WireError> {
        let (event_type, record) = avro::to_record(event);
        let (schema, _) = self.schemas.get(event_type)?;
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            supplied(event_type, schema),
        );
        Ok(self.encoder.encode_value(record, &strategy).await?)
    }

    /// A Kafka message value back as an event.
    pub async fn decode(&self, bytes: &[u8]) -> Result<(EventHeader, SampleEvent), WireError> {
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(WireError::NotWireFormat(format!(
                "{} bytes, first {:?}",
                bytes.len(),
                bytes.first()
            )));
        }
        let decoded = self.decoder.decode(Some(bytes)).await?;
        let name = decoded.name.map(|n| n.name().to_owned()).ok_or_else(|| {
            WireError::NotWireFormat("the writer schema is not a named record".into())
        })?;
        Ok(avro::from_record(&name, decoded.value)?)
    }
}
