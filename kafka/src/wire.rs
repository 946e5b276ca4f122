//! The Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body),
//! produced and read through `schema_registry_converter` against any Confluent-compatible
//! registry. Several event types share a topic, so subjects follow the
//! TopicRecordNameStrategy: `<topic>-<namespace>.<EventType>`.
//!
//! Nothing here knows a concrete event type: encoding maps a stored JSON payload through
//! its schema from the [`EventCatalog`], and decoding reads the record with the writer's
//! schema (fetched by id from the registry) into JSON that the consumer's event type
//! deserialises.

use crate::avro::{self, AvroError, EventCatalog, full_name};
use cqrs::DomainEvent;
use event_sourcing::{Envelope, StoredEvent};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// Registry trouble that may pass: unreachable, any 5xx (the registry's own failure,
    /// never the message's), a timeout or rate limit (408, 429), or refused credentials
    /// (401, 403: fixed by configuration, not by the message). A message or event that
    /// cannot be mapped, or a schema id the registry does not know, will not pass.
    pub fn is_transient(&self) -> bool {
        const PASSING: [&str; 5] = [
            "status 5",
            "status 401",
            "status 403",
            "status 408",
            "status 429",
        ];
        matches!(self, Self::Registry(e)
            if e.retriable || PASSING.iter().any(|s| e.error.contains(s)))
    }
}

/// The subject an event type's schema is registered under on `topic`.
pub fn subject(topic: &str, event_type: &str) -> String {
    format!("{topic}-{}", full_name(event_type))
}

fn supplied(event_type: &str, schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(
        Some(full_name(event_type)),
        SchemaType::Avro,
        schema.to_owned(),
    )
}

/// Encodes and decodes events for Kafka; caches schema ids.
pub struct WireCodec {
    settings: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    catalog: Arc<EventCatalog>,
}

impl WireCodec {
    pub fn new(registry_url: &str, catalog: Arc<EventCatalog>) -> Self {
        let settings = SrSettings::new(registry_url.trim_end_matches('/').to_owned());
        Self::with_settings(settings, catalog)
    }

    /// A codec that sends `Authorization: Bearer <token>` on every registry request, for a
    /// registry that requires a token to register schemas (see
    /// [`crate::registry::router_with_token`]); without a token, as [`Self::new`].
    pub fn with_token(
        registry_url: &str,
        token: Option<&str>,
        catalog: Arc<EventCatalog>,
    ) -> Result<Self, WireError> {
        let url = registry_url.trim_end_matches('/').to_owned();
        let Some(token) = token else {
            return Ok(Self::new(&url, catalog));
        };
        let settings = SrSettings::new_builder(url)
            .set_token_authorization(token)
            .build()?;
        Ok(Self::with_settings(settings, catalog))
    }

    fn with_settings(settings: SrSettings, catalog: Arc<EventCatalog>) -> Self {
        Self {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings.clone()),
            settings,
            catalog,
        }
    }

    pub fn catalog(&self) -> &EventCatalog {
        &self.catalog
    }

    /// Registers every event schema of the catalogue under its aggregate's topic and
    /// returns the ids by event type; run at start-up so that a schema the registry
    /// refuses stops the start, not a publish.
    pub async fn register_all(&self) -> Result<HashMap<String, u32>, WireError> {
        let mut ids = HashMap::new();
        for schema in self.catalog.schemas() {
            let registered = post_schema(
                &self.settings,
                subject(&schema.topic, &schema.event_type),
                supplied(&schema.event_type, &schema.text),
            )
            .await?;
            ids.insert(schema.event_type.clone(), registered.id);
        }
        Ok(ids)
    }

    /// The converter caches failed look-ups. None is kept: one that may pass must be
    /// asked again, and one that will not may still be cured by an operator (a schema
    /// registered, a subject restored) before the parked row or dead letter is re-tried.
    /// Failures are rare, so asking again costs nothing on the common path.
    fn forget_failure(&self, error: WireError) -> WireError {
        if matches!(error, WireError::Registry(_)) {
            self.encoder.remove_errors_from_cache();
            self.decoder.remove_errors_from_cache();
        }
        error
    }

    /// A stored event as `(topic, Kafka message value)`.
    pub async fn encode(&self, event: &StoredEvent<Json>) -> Result<(String, Vec<u8>), WireError> {
        let schema = self.catalog.get(&event.event_type)?;
        if schema.aggregate_type != event.aggregate_type {
            return Err(AvroError::Catalog(format!(
                "{} belongs to {}, not to {}",
                event.event_type, schema.aggregate_type, event.aggregate_type
            ))
            .into());
        }
        let record = schema.to_record(event)?;
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            schema.topic.clone(),
            supplied(&schema.event_type, &schema.text),
        );
        let bytes = self
            .encoder
            .encode_value(record, &strategy)
            .await
            .map_err(|e| self.forget_failure(e.into()))?;
        Ok((schema.topic.clone(), bytes))
    }

    /// A Kafka message value as `(event type, record as JSON)`, read with its writer's schema.
    pub async fn decode_json(&self, bytes: &[u8]) -> Result<(String, Json), WireError> {
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(WireError::NotWireFormat(format!(
                "{} bytes, first {:?}",
                bytes.len(),
                bytes.first()
            )));
        }
        let decoded = self
            .decoder
            .decode_with_schema(Some(bytes))
            .await
            .map_err(|e| self.forget_failure(e.into()))?
            .ok_or_else(|| WireError::NotWireFormat("empty message".into()))?;
        let name = decoded.name.map(|n| n.name().to_owned()).ok_or_else(|| {
            WireError::NotWireFormat("the writer schema is not a named record".into())
        })?;
        let writer = &decoded.schema.parsed;
        let names = avro::names_of(writer).map_err(WireError::NotWireFormat)?;
        let json =
            avro::from_avro(decoded.value, writer, &names).map_err(|p| AvroError::Mapping {
                event_type: name.clone(),
                problem: p,
            })?;
        Ok((name, json))
    }

    /// A Kafka message value of `aggregate_type`'s topic as an event with its envelope.
    pub async fn decode<E: DomainEvent>(
        &self,
        aggregate_type: &str,
        bytes: &[u8],
    ) -> Result<Envelope<E>, WireError> {
        let (event_type, json) = self.decode_json(bytes).await?;
        Ok(avro::envelope_from_record(
            aggregate_type,
            &event_type,
            json,
        )?)
    }
}
