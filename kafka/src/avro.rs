//! Events as Avro records: one schema per event type (`kafka/schemas/*.avsc`, one
//! namespace), the event's metadata in the record beside its data.

use apache_avro::Schema;
use apache_avro::types::Value;
use chrono::{DateTime, TimeZone, Utc};
use cqrs::sample::{
    Barcode, Note, PatientRef, SampleDetails, SampleEvent, SampleId, SampleType, TemperatureZone,
    VolumeUl,
};
use event_sourcing::StoredEvent;
use std::collections::HashMap;
use uuid::Uuid;

/// The namespace of every event schema.
pub const NAMESPACE: &str = "org.tracseq.laboratory";

/// `(event type, schema text)` for every event published.
pub const SCHEMAS: &[(&str, &str)] = &[
    (
        "SampleRegistered",
        include_str!("../schemas/SampleRegistered.avsc"),
    ),
    (
        "SampleReceived",
        include_str!("../schemas/SampleReceived.avsc"),
    ),
    (
        "SampleValidated",
        include_str!("../schemas/SampleValidated.avsc"),
    ),
    (
        "SampleRejected",
        include_str!("../schemas/SampleRejected.avsc"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("no Avro schema for event type {0}")]
    UnknownEventType(String),
    #[error("invalid Avro schema for {name}: {source}")]
    Schema {
        name: String,
        source: Box<apache_avro::Error>,
    },
    #[error("field {field} of {record}: {problem}")]
    Field {
        record: String,
        field: String,
        problem: String,
    },
}

fn field_error(record: &str, field: &str, problem: impl Into<String>) -> AvroError {
    AvroError::Field {
        record: record.to_owned(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// The parsed schemas, by event type.
#[derive(Debug, Clone)]
pub struct EventSchemas {
    by_type: HashMap<&'static str, (&'static str, Schema)>,
}

impl EventSchemas {
    pub fn load() -> Result<Self, AvroError> {
        let mut by_type = HashMap::new();
        for (name, text) in SCHEMAS {
            let schema = Schema::parse_str(text).map_err(|e| AvroError::Schema {
                name: (*name).to_owned(),
                source: Box::new(e),
            })?;
            by_type.insert(*name, (*text, schema));
        }
        Ok(Self { by_type })
    }

    /// The schema text and parsed schema of an event type.
    pub fn get(&self, event_type: &str) -> Result<(&'static str, &Schema), AvroError> {
        self.by_type
            .get(event_type)
            .map(|(text, schema)| (*text, schema))
            .ok_or_else(|| AvroError::UnknownEventType(event_type.to_owned()))
    }

    /// Fully qualified record name of an event type, as subjects name it.
    pub fn full_name(event_type: &str) -> String {
        format!("{NAMESPACE}.{event_type}")
    }
}

/// The metadata every event record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    pub event_id: Uuid,
    pub sample_id: Uuid,
    pub aggregate_version: u64,
    pub recorded_at: DateTime<Utc>,
    pub user: String,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
}

impl EventHeader {
    pub fn of(event: &StoredEvent<SampleEvent>) -> Self {
        Self {
            event_id: event.event_id,
            sample_id: event.aggregate_id,
            aggregate_version: event.version,
            recorded_at: event.recorded_at,
            user: event.metadata.user.clone(),
            command_id: event.metadata.command_id,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        }
    }
}

fn micros(at: DateTime<Utc>) -> Value {
    Value::TimestampMicros(at.timestamp_micros())
}

fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn enum_value<T: Copy + PartialEq>(all: &[T], value: T, code: fn(T) -> &'static str) -> Value {
    let index = all.iter().position(|v| *v == value).unwrap_or(0);
    Value::Enum(u32::try_from(index).unwrap_or(0), code(value).to_owned())
}

/// Volume as an Avro `decimal(10,3)`: the unscaled value (nanolitres), big-endian.
fn decimal(volume: VolumeUl) -> Value {
    let unscaled = i64::try_from(volume.nanolitres()).unwrap_or(i64::MAX);
    let bytes = unscaled.to_be_bytes();
    // Minimal two's-complement form: drop leading zero bytes while the sign stays positive.
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let start = if bytes[start] & 0x80 != 0 {
        start.saturating_sub(1)
    } else {
        start
    };
    Value::Decimal(apache_avro::Decimal::from(bytes[start..].to_vec()))
}

/// The Avro record for an event: `(event type, record)`.
pub fn to_record(event: &StoredEvent<SampleEvent>) -> (&'static str, Value) {
    let header = EventHeader::of(event);
    let mut fields: Vec<(String, Value)> = vec![
        ("event_id".into(), Value::Uuid(header.event_id)),
        ("sample_id".into(), Value::Uuid(header.sample_id)),
        (
            "aggregate_version".into(),
            Value::Long(i64::try_from(header.aggregate_version).unwrap_or(i64::MAX)),
        ),
        ("recorded_at".into(), micros(header.recorded_at)),
        ("user".into(), Value::String(header.user)),
        ("command_id".into(), Value::Uuid(header.command_id)),
        ("correlation_id".into(), Value::Uuid(header.correlation_id)),
        ("causation_id".into(), Value::Uuid(header.causation_id)),
    ];
    let notes = |n: &Option<Note>| optional(n.as_ref().map(|n| Value::String(n.to_string())));
    let name = match &event.payload {
        SampleEvent::SampleRegistered { details, .. } => {
            fields.extend([
                ("barcode".into(), Value::String(details.barcode.to_string())),
                (
                    "sample_type".into(),
                    enum_value(SampleType::ALL, details.sample_type, SampleType::code),
                ),
                ("volume_ul".into(), decimal(details.volume)),
                (
                    "temperature_zone".into(),
                    enum_value(
                        TemperatureZone::ALL,
                        details.temperature_zone,
                        TemperatureZone::code,
                    ),
                ),
                (
                    "patient_ref".into(),
                    optional(
                        details
                            .patient
                            .as_ref()
                            .map(|p| Value::String(p.to_string())),
                    ),
                ),
                (
                    "collected_at".into(),
                    optional(details.collected_at.map(micros)),
                ),
                (
                    "collected_by".into(),
                    optional(
                        details
                            .collected_by
                            .as_ref()
                            .map(|c| Value::String(c.to_string())),
                    ),
                ),
            ]);
            "SampleRegistered"
        }
        SampleEvent::SampleReceived { notes: n } => {
            fields.push(("notes".into(), notes(n)));
            "SampleReceived"
        }
        SampleEvent::SampleValidated { notes: n } => {
            fields.push(("notes".into(), notes(n)));
            "SampleValidated"
        }
        SampleEvent::SampleRejected { reason } => {
            fields.push(("reason".into(), Value::String(reason.to_string())));
            "SampleRejected"
        }
    };
    (name, Value::Record(fields))
}

/// Reads fields of a decoded record by name.
struct Fields<'a> {
    record: &'a str,
    values: HashMap<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(record: &'a str, value: Value) -> Result<Self, AvroError> {
        match value {
            Value::Record(fields) => Ok(Self {
                record,
                values: fields.into_iter().collect(),
            }),
            other => Err(field_error(
                record,
                "",
                format!("expected a record, got {other:?}"),
            )),
        }
    }

    fn take(&mut self, field: &str) -> Result<Value, AvroError> {
        let value = self
            .values
            .remove(field)
            .ok_or_else(|| field_error(self.record, field, "missing"))?;
        Ok(match value {
            Value::Union(_, inner) => *inner,
            other => other,
        })
    }

    fn fail(&self, field: &str, problem: impl Into<String>) -> AvroError {
        field_error(self.record, field, problem)
    }

    fn string(&mut self, field: &str) -> Result<String, AvroError> {
        match self.take(field)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s),
            Value::Uuid(u) => Ok(u.to_string()),
            other => Err(self.fail(field, format!("expected a string, got {other:?}"))),
        }
    }

    fn optional_string(&mut self, field: &str) -> Result<Option<String>, AvroError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.fail(field, format!("expected a string or null, got {other:?}"))),
        }
    }

    fn uuid(&mut self, field: &str) -> Result<Uuid, AvroError> {
        match self.take(field)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => Uuid::parse_str(&s).map_err(|e| self.fail(field, e.to_string())),
            other => Err(self.fail(field, format!("expected a uuid, got {other:?}"))),
        }
    }

    fn timestamp(&mut self, field: &str) -> Result<Option<DateTime<Utc>>, AvroError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::TimestampMicros(us) | Value::Long(us) => Utc
                .timestamp_micros(us)
                .single()
                .map(Some)
                .ok_or_else(|| self.fail(field, "timestamp out of range")),
            other => Err(self.fail(field, format!("expected a timestamp, got {other:?}"))),
        }
    }

    fn long(&mut self, field: &str) -> Result<i64, AvroError> {
        match self.take(field)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(self.fail(field, format!("expected a long, got {other:?}"))),
        }
    }

    fn note(&mut self, field: &str) -> Result<Option<Note>, AvroError> {
        self.optional_string(field)?
            .map(|s| Note::parse(&s).map_err(|e| self.fail(field, e.message)))
            .transpose()
    }
}

fn volume_from(value: Value, fields: &Fields<'_>) -> Result<VolumeUl, AvroError> {
    let Value::Decimal(decimal) = value else {
        return Err(fields.fail("volume_ul", "expected a decimal"));
    };
    let bytes: Vec<u8> =
        Vec::<u8>::try_from(&decimal).map_err(|e| fields.fail("volume_ul", e.to_string()))?;
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(fields.fail("volume_ul", "decimal out of range"));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 8];
    full[8 - bytes.len()..].copy_from_slice(&bytes);
    let nanolitres = i64::from_be_bytes(full);
    let text = format!("{}.{:03}", nanolitres / 1000, (nanolitres % 1000).abs());
    VolumeUl::parse(&text).map_err(|e| fields.fail("volume_ul", e.message))
}

/// An event read back from its Avro record.
pub fn from_record(
    event_type: &str,
    value: Value,
) -> Result<(EventHeader, SampleEvent), AvroError> {
    let mut f = Fields::new(event_type, value)?;
    let header = EventHeader {
        event_id: f.uuid("event_id")?,
        sample_id: f.uuid("sample_id")?,
        aggregate_version: u64::try_from(f.long("aggregate_version")?).unwrap_or(0),
        recorded_at: f
            .timestamp("recorded_at")?
            .ok_or_else(|| f.fail("recorded_at", "missing"))?,
        user: f.string("user")?,
        command_id: f.uuid("command_id")?,
        correlation_id: f.uuid("correlation_id")?,
        causation_id: f.uuid("causation_id")?,
    };
    let event = match event_type {
        "SampleRegistered" => {
            let barcode = f.string("barcode")?;
            let sample_type = f.string("sample_type")?;
            let zone = f.string("temperature_zone")?;
            let volume = f.take("volume_ul")?;
            let volume = volume_from(volume, &f)?;
            let patient = f.optional_string("patient_ref")?;
            let collected_at = f.timestamp("collected_at")?;
            let collected_by = f.note("collected_by")?;
            SampleEvent::SampleRegistered {
                id: SampleId::from_uuid(header.sample_id),
                details: SampleDetails {
                    barcode: Barcode::parse(&barcode).map_err(|e| f.fail("barcode", e.message))?,
                    sample_type: SampleType::parse(&sample_type)
                        .map_err(|e| f.fail("sample_type", e.message))?,
                    volume,
                    temperature_zone: TemperatureZone::parse(&zone)
                        .map_err(|e| f.fail("temperature_zone", e.message))?,
                    patient: patient
                        .map(|p| {
                            PatientRef::parse(&p).map_err(|e| f.fail("patient_ref", e.message))
                        })
                        .transpose()?,
                    collected_at,
                    collected_by,
                },
            }
        }
        "SampleReceived" => SampleEvent::SampleReceived {
            notes: f.note("notes")?,
        },
        "SampleValidated" => SampleEvent::SampleValidated {
            notes: f.note("notes")?,
        },
        "SampleRejected" => {
            let reason = f.string("reason")?;
            SampleEvent::SampleRejected {
                reason: Note::parse(&reason).map_err(|e| f.fail("reason", e.message))?,
            }
        }
        other => return Err(AvroError::UnknownEventType(other.to_owned())),
    };
    Ok((header, event))
}
