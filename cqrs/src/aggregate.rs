//! The decider contract every event-sourced aggregate implements, and how its events are
//! stored.
//!
//! An event is stored as its payload alone (the fields of its enum variant, as JSON),
//! beside its type name and the version of its payload schema; the type name is the
//! variant's name, defined once by the enum itself. Loading goes through
//! [`DomainEvent::from_payload`], which first lifts older payload versions to the current
//! one ([`DomainEvent::upcast`]), so that renaming a field in Rust never makes history
//! unreadable: the rename bumps `SCHEMA_VERSION` and adds an upcaster step.
//!
//! The payload's field names are also the Avro field names of the event's record on
//! Kafka, so the Kafka side maps any event without knowing its Rust type.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why a stored or received payload could not become an event.
#[derive(Debug, thiserror::Error)]
#[error("{event_type} (payload version {schema_version}): {problem}")]
pub struct PayloadError {
    pub event_type: String,
    pub schema_version: u32,
    pub problem: String,
}

impl PayloadError {
    pub fn new(event_type: &str, schema_version: u32, problem: impl Into<String>) -> Self {
        Self {
            event_type: event_type.to_owned(),
            schema_version,
            problem: problem.into(),
        }
    }
}

/// An event of a domain aggregate. Events are enums of struct variants (serde's default,
/// externally tagged representation); the variant's name is the event type.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Version of the payload shape written now; bump it (and extend [`Self::upcast`])
    /// whenever a variant's serialised fields change.
    const SCHEMA_VERSION: u32;

    /// Every event type of this enum (derive `strum::VariantNames` and use `VARIANTS`), so
    /// that each can be checked to have a schema.
    const EVENT_TYPES: &'static [&'static str];

    /// Stable type name, e.g. `SampleRegistered` (derive `strum::IntoStaticStr` and
    /// return `self.into()`, so the name is the variant's and is written nowhere else).
    fn event_type(&self) -> &'static str;

    /// Lifts a payload written at `from_version` to the current version. The default
    /// knows only the current version.
    fn upcast(event_type: &str, from_version: u32, payload: Value) -> Result<Value, PayloadError> {
        if from_version == Self::SCHEMA_VERSION {
            Ok(payload)
        } else {
            Err(PayloadError::new(
                event_type,
                from_version,
                format!(
                    "no upcaster from this version (current is {})",
                    Self::SCHEMA_VERSION
                ),
            ))
        }
    }

    /// The payload as stored: the variant's fields, without the enum tag.
    fn to_payload(&self) -> Result<Value, PayloadError> {
        let event_type = self.event_type();
        let fail = |problem: String| PayloadError::new(event_type, Self::SCHEMA_VERSION, problem);
        match serde_json::to_value(self).map_err(|e| fail(e.to_string()))? {
            Value::Object(mut tagged) if tagged.len() == 1 => tagged
                .remove(event_type)
                .ok_or_else(|| fail("serialised under another name than its event type".into())),
            Value::String(_) => Ok(Value::Null),
            other => Err(fail(format!(
                "not an externally tagged enum variant: {other}"
            ))),
        }
    }

    /// An event from a stored payload of `event_type` written at `schema_version`; fields
    /// that the variant does not have are ignored.
    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: Value,
    ) -> Result<Self, PayloadError> {
        let current = Self::upcast(event_type, schema_version, payload)?;
        let mut tagged = Map::with_capacity(1);
        tagged.insert(event_type.to_owned(), current);
        serde_json::from_value(Value::Object(tagged))
            .map_err(|e| PayloadError::new(event_type, schema_version, e.to_string()))
    }
}

/// Removes serde's external tag from a payload written in the tagged form (the form of
/// payload version 1 of the first aggregates); for upcasters.
pub fn untag(event_type: &str, schema_version: u32, payload: Value) -> Result<Value, PayloadError> {
    match payload {
        Value::Object(mut tagged) if tagged.len() == 1 && tagged.contains_key(event_type) => {
            Ok(tagged.remove(event_type).unwrap_or(Value::Null))
        }
        Value::String(name) if name == event_type => Ok(Value::Null),
        other => Err(PayloadError::new(
            event_type,
            schema_version,
            format!("expected a payload tagged '{event_type}', got {other}"),
        )),
    }
}

/// An aggregate as a pure decider: `handle` decides which events a command produces given
/// the current state, `apply` folds an event into the state. Neither performs I/O, so both
/// are unit-tested without a database.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Aggregate type name stored beside every event, e.g. `Sample`. It also names the
    /// aggregate's Kafka topic and the key field of its Avro records (see `kafka::catalog`).
    const TYPE: &'static str;
    /// Version of the serialized state; snapshots of another version are ignored.
    const SNAPSHOT_VERSION: u32;

    type Command: Send;
    type Event: DomainEvent;
    /// A business rejection: the command was understood and refused. Serialisable
    /// because it is recorded with the command id, so that a repeat of the command is
    /// answered with the same rejection.
    type Rejection: std::error::Error + Serialize + DeserializeOwned + Send + Sync + 'static;

    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    fn apply(&mut self, event: &Self::Event);

    /// Values an event claims that no other aggregate may hold, as `(scope, value)` pairs
    /// (a sample's barcode, say). The store claims them atomically with the event.
    fn unique_values(_event: &Self::Event) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// [`Self::unique_values`] of an event of aggregate `aggregate_id`, for events whose
    /// claims name the aggregate itself (a storage unit sealing its own positions).
    fn unique_values_of(
        aggregate_id: uuid::Uuid,
        event: &Self::Event,
    ) -> Vec<(&'static str, String)> {
        let _ = aggregate_id;
        Self::unique_values(event)
    }

    /// Values an event gives up, as `(scope, value)` pairs (a freed storage position, a
    /// disposed tube's barcode): the store releases them atomically with the event, and
    /// another aggregate may then claim them. Only values this aggregate holds are
    /// released.
    fn released_values(_event: &Self::Event) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The other aggregate of this type an event of a decision belongs to, if the
    /// decision creates one (an aliquot taken from a sample): the repository appends such
    /// events to that new stream instead of the deciding one, in the same commit, all or
    /// nothing with the decision. `None` (the default): the deciding aggregate's own.
    fn belongs_to(event: &Self::Event) -> Option<uuid::Uuid> {
        let _ = event;
        None
    }

    /// Folds events into a state.
    fn fold<'a>(mut self, events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        for event in events {
            self.apply(event);
        }
        self
    }
}
