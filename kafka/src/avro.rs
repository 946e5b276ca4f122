//! Events as Avro records for any aggregate, with no mapping written per event.
//!
//! Every event type has one schema, `kafka/schemas/<AggregateType>/<EventType>.avsc`, all
//! in one namespace. A record holds the event's envelope (`event_id`, `<aggregate>_id`,
//! `aggregate_version`, `recorded_at`, `user`, `user_id`, `command_id`, `correlation_id`,
//! `causation_id`) beside the event's own fields, which are the fields of its stored JSON
//! payload under the same names (see `cqrs::DomainEvent`). The mapping between JSON and
//! Avro is driven by the schema alone ([`to_avro`], [`from_avro`]): a uuid or timestamp
//! logical type reads and writes the text serde uses, a decimal its exact decimal text, an
//! enum its symbol, an optional field a `["null", T]` union (`T` may carry a logical type).
//! A payload field that the schema lacks is an error, never silently dropped.
//!
//! `user_id` (the authenticated account behind `user`) is optional: `null` for events
//! recorded before accounts existed. A schema written before it existed may lack the field
//! as long as no event it encodes names an account; an event that does is refused, rather
//! than published without the identity that issued it.
//!
//! The [`EventCatalog`] is what the relay, the codec and consumers know: which aggregates
//! exist, their events' schemas, and how to lift an old stored payload to the current
//! version (each aggregate's upcaster, registered with it). The topic and the key field
//! follow from the aggregate's type name ([`topic_for`], [`key_field`]).

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use cqrs::{Aggregate, DomainEvent, PayloadError};
use event_sourcing::{Envelope, EventMetadata, StoredEvent};
use serde_json::{Map, Number, Value as Json};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

/// The namespace of every event schema.
pub const NAMESPACE: &str = "org.tracseq.laboratory";

/// The envelope field naming the authenticated account that issued the command; optional
/// in a schema (see the module documentation), so not among [`ENVELOPE`].
const USER_ID: &str = "user_id";

/// The envelope fields every event record starts with, after its key field.
const ENVELOPE: &[&str] = &[
    "event_id",
    "aggregate_version",
    "recorded_at",
    "user",
    "command_id",
    "correlation_id",
    "causation_id",
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
    #[error("{event_type}: {problem}")]
    Mapping { event_type: String, problem: String },
    #[error("event catalogue: {0}")]
    Catalog(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

fn mapping(event_type: &str, problem: impl Into<String>) -> AvroError {
    AvroError::Mapping {
        event_type: event_type.to_owned(),
        problem: problem.into(),
    }
}

/// `Sample` → `sample`, `StorageUnit` → `storage_unit`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The topic an aggregate type's events are published to: `laboratory.<type>.events`,
/// except storage units, whose topic SPEC.md names `laboratory.storage.events`.
pub fn topic_for(aggregate_type: &str) -> String {
    match aggregate_type {
        "StorageUnit" => "laboratory.storage.events".to_owned(),
        other => format!("laboratory.{}.events", snake_case(other)),
    }
}

/// The record field holding the aggregate's id (also the Kafka key): `<type>_id`.
pub fn key_field(aggregate_type: &str) -> String {
    format!("{}_id", snake_case(aggregate_type))
}

/// Fully qualified record name of an event type, as subjects name it.
pub fn full_name(event_type: &str) -> String {
    format!("{NAMESPACE}.{event_type}")
}

type Upcast = fn(&str, u32, Json) -> Result<Json, PayloadError>;

/// One event type's schema and what it takes to encode its stored payloads.
#[derive(Debug)]
pub struct EventSchema {
    pub aggregate_type: String,
    pub event_type: String,
    pub topic: String,
    pub text: String,
    pub schema: Schema,
    key_field: String,
    names: HashMap<Name, Schema>,
    upcast: Upcast,
}

/// Every aggregate whose events go to Kafka, and their event schemas.
#[derive(Debug, Default)]
pub struct EventCatalog {
    by_type: BTreeMap<String, EventSchema>,
}

impl EventCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds aggregate `A` with its schemas from `kafka/schemas/<A::TYPE>/`.
    pub fn with<A: Aggregate>(self) -> Result<Self, AvroError> {
        let texts: Vec<&str> = SCHEMA_FILES
            .iter()
            .filter(|(aggregate, _)| *aggregate == A::TYPE)
            .map(|(_, text)| *text)
            .collect();
        self.with_schemas::<A>(&texts)
    }

    /// Adds aggregate `A` with the given schema texts, one per event type; every event
    /// type of `A` must have one, and each must carry the envelope fields.
    pub fn with_schemas<A: Aggregate>(mut self, texts: &[&str]) -> Result<Self, AvroError> {
        let key = key_field(A::TYPE);
        for text in texts {
            let schema = Schema::parse_str(text).map_err(|e| AvroError::Schema {
                name: A::TYPE.to_owned(),
                source: Box::new(e),
            })?;
            let Schema::Record(record) = &schema else {
                return Err(AvroError::Catalog(format!(
                    "a schema of {} is not a record",
                    A::TYPE
                )));
            };
            let event_type = record.name.name().to_owned();
            if record.name.namespace() != Some(NAMESPACE) {
                return Err(AvroError::Catalog(format!(
                    "{event_type}: namespace must be {NAMESPACE}"
                )));
            }
            if !<A::Event as DomainEvent>::EVENT_TYPES.contains(&event_type.as_str()) {
                return Err(AvroError::Catalog(format!(
                    "{event_type} is not an event of {}",
                    A::TYPE
                )));
            }
            for field in std::iter::once(key.as_str()).chain(ENVELOPE.iter().copied()) {
                if !record.lookup.contains_key(field) {
                    return Err(AvroError::Catalog(format!(
                        "{event_type}: the envelope field {field} is missing"
                    )));
                }
            }
            if self.by_type.contains_key(&event_type) {
                return Err(AvroError::Catalog(format!("{event_type} has two schemas")));
            }
            let names = named_types(&schema, &event_type)?;
            self.by_type.insert(
                event_type.clone(),
                EventSchema {
                    aggregate_type: A::TYPE.to_owned(),
                    event_type,
                    topic: topic_for(A::TYPE),
                    text: (*text).to_owned(),
                    key_field: key.clone(),
                    names,
                    upcast: <A::Event as DomainEvent>::upcast,
                    schema,
                },
            );
        }
        for event_type in <A::Event as DomainEvent>::EVENT_TYPES {
            if !self.by_type.contains_key(*event_type) {
                return Err(AvroError::Catalog(format!(
                    "no Avro schema for {event_type} (expected kafka/schemas/{}/{event_type}.avsc)",
                    A::TYPE
                )));
            }
        }
        Ok(self)
    }

    pub fn get(&self, event_type: &str) -> Result<&EventSchema, AvroError> {
        self.by_type
            .get(event_type)
            .ok_or_else(|| AvroError::UnknownEventType(event_type.to_owned()))
    }

    pub fn schemas(&self) -> impl Iterator<Item = &EventSchema> {
        self.by_type.values()
    }

    /// The topics of every aggregate in the catalogue.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.by_type.values().map(|s| s.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

fn named_types(schema: &Schema, event_type: &str) -> Result<HashMap<Name, Schema>, AvroError> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| AvroError::Schema {
        name: event_type.to_owned(),
        source: Box::new(e),
    })?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(name, schema)| (name.clone(), (*schema).clone()))
        .collect())
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl EventSchema {
    /// The Avro record of a stored event: its envelope and its payload, lifted to the
    /// current payload version first.
    pub fn to_record(&self, event: &StoredEvent<Json>) -> Result<Value, AvroError> {
        let payload = (self.upcast)(
            &event.event_type,
            event.schema_version,
            event.payload.clone(),
        )?;
        let mut fields = match payload {
            Json::Object(fields) => fields,
            Json::Null => Map::new(),
            other => {
                return Err(mapping(
                    &self.event_type,
                    format!("payload is not an object: {other}"),
                ));
            }
        };
        let Schema::Record(record) = &self.schema else {
            return Err(mapping(&self.event_type, "schema is not a record"));
        };
        let user_id = match (event.metadata.user_id, record.lookup.contains_key(USER_ID)) {
            (Some(id), true) => Some(Json::String(id.to_string())),
            (None, true) => Some(Json::Null),
            (None, false) => None,
            (Some(_), false) => {
                return Err(mapping(
                    &self.event_type,
                    format!(
                        "the event names the account that issued it but the Avro schema has no \
                         {USER_ID} field; add it to {}.avsc after user \
                         (type [\"null\", {{\"type\": \"string\", \"logicalType\": \"uuid\"}}], default null)",
                        self.event_type
                    ),
                ));
            }
        };
        let envelope = [
            (
                self.key_field.as_str(),
                Json::String(event.aggregate_id.to_string()),
            ),
            ("event_id", Json::String(event.event_id.to_string())),
            (
                "aggregate_version",
                Json::Number(Number::from(event.version)),
            ),
            ("recorded_at", Json::String(rfc3339(event.recorded_at))),
            ("user", Json::String(event.metadata.user.clone())),
            (
                "command_id",
                Json::String(event.metadata.command_id.to_string()),
            ),
            (
                "correlation_id",
                Json::String(event.metadata.correlation_id.to_string()),
            ),
            (
                "causation_id",
                Json::String(event.metadata.causation_id.to_string()),
            ),
        ];
        let envelope = envelope
            .into_iter()
            .chain(user_id.map(|value| (USER_ID, value)));
        for (name, value) in envelope {
            match fields.get(name) {
                Some(existing) if *existing != value => {
                    return Err(mapping(
                        &self.event_type,
                        format!(
                            "payload field {name} = {existing} disagrees with the envelope's {value}"
                        ),
                    ));
                }
                _ => {
                    fields.insert(name.to_owned(), value);
                }
            }
        }
        if let Some(unknown) = fields.keys().find(|k| !record.lookup.contains_key(*k)) {
            return Err(mapping(
                &self.event_type,
                format!(
                    "field {unknown} is not in the Avro schema; add it to {}.avsc (with a default)",
                    self.event_type
                ),
            ));
        }
        to_avro(&Json::Object(fields), &self.schema, &self.names)
            .map_err(|problem| mapping(&self.event_type, problem))
    }
}

/// An event decoded from its Avro record as `E`, with its envelope.
pub fn envelope_from_record<E: DomainEvent>(
    aggregate_type: &str,
    event_type: &str,
    record: Json,
) -> Result<Envelope<E>, AvroError> {
    let Json::Object(fields) = &record else {
        return Err(mapping(event_type, "not a record"));
    };
    let text = |name: &str| -> Result<&str, AvroError> {
        fields
            .get(name)
            .and_then(Json::as_str)
            .ok_or_else(|| mapping(event_type, format!("field {name} is missing or not text")))
    };
    let uuid = |name: &str| -> Result<Uuid, AvroError> {
        Uuid::parse_str(text(name)?).map_err(|e| mapping(event_type, format!("field {name}: {e}")))
    };
    let recorded_at = DateTime::parse_from_rfc3339(text("recorded_at")?)
        .map_err(|e| mapping(event_type, format!("field recorded_at: {e}")))?
        .with_timezone(&Utc);
    let version = fields
        .get("aggregate_version")
        .and_then(Json::as_u64)
        .ok_or_else(|| mapping(event_type, "field aggregate_version is missing"))?;
    let user_id = match fields.get(USER_ID) {
        None | Some(Json::Null) => None,
        Some(Json::String(id)) => Some(
            Uuid::parse_str(id)
                .map_err(|e| mapping(event_type, format!("field {USER_ID}: {e}")))?,
        ),
        Some(other) => {
            return Err(mapping(
                event_type,
                format!("field {USER_ID} is {}, not a uuid", kind(other)),
            ));
        }
    };
    let metadata = EventMetadata {
        user: text("user")?.to_owned(),
        user_id,
        command_id: uuid("command_id")?,
        correlation_id: uuid("correlation_id")?,
        causation_id: uuid("causation_id")?,
        traceparent: None,
        tracestate: None,
    };
    let aggregate_id = uuid(&key_field(aggregate_type))?;
    let event_id = uuid("event_id")?;
    let payload = E::from_payload(event_type, E::SCHEMA_VERSION, record)?;
    Ok(Envelope {
        event_id,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id,
        version,
        event_type: event_type.to_owned(),
        recorded_at,
        metadata,
        payload,
    })
}

fn resolve<'a>(schema: &'a Schema, names: &'a HashMap<Name, Schema>) -> Result<&'a Schema, String> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .ok_or_else(|| format!("unknown named type {name:?}")),
        other => Ok(other),
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// JSON (as serde writes it) to an Avro value of `schema`.
pub fn to_avro(
    json: &Json,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
) -> Result<Value, String> {
    let schema = resolve(schema, names)?;
    let wrong = || format!("expected {schema} but got {}", kind(json));
    Ok(match (schema, json) {
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Schema::Int, Json::Number(n)) => Value::Int(
            n.as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| format!("{n} is not an int"))?,
        ),
        (Schema::Long, Json::Number(n)) => {
            Value::Long(n.as_i64().ok_or_else(|| format!("{n} is not a long"))?)
        }
        (Schema::Float, Json::Number(n)) => {
            Value::Float(n.as_f64().ok_or_else(|| format!("{n} is not a float"))? as f32)
        }
        (Schema::Double, Json::Number(n)) => {
            Value::Double(n.as_f64().ok_or_else(|| format!("{n} is not a double"))?)
        }
        (Schema::String, Json::String(s)) => Value::String(s.clone()),
        (Schema::Bytes, Json::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        (Schema::Uuid(_), Json::String(s)) => {
            Value::Uuid(Uuid::parse_str(s).map_err(|e| format!("'{s}': {e}"))?)
        }
        (Schema::Enum(e), Json::String(s)) => {
            let index = e.symbols.iter().position(|sym| sym == s).ok_or_else(|| {
                format!("'{s}' is not one of the symbols {}", e.symbols.join(", "))
            })?;
            Value::Enum(u32::try_from(index).map_err(|e| e.to_string())?, s.clone())
        }
        (Schema::Decimal(d), Json::String(_) | Json::Number(_)) => {
            let text = match json {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            Value::Decimal(apache_avro::Decimal::from(decimal_bytes(
                &text,
                d.precision,
                d.scale,
            )?))
        }
        (Schema::Date, Json::String(s)) => {
            let date =
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("'{s}': {e}"))?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("no epoch")?;
            Value::Date(i32::try_from((date - epoch).num_days()).map_err(|e| e.to_string())?)
        }
        (
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos,
            Json::String(s),
        ) => {
            let at = DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("'{s}': {e}"))?
                .with_timezone(&Utc);
            match schema {
                Schema::TimestampMillis => Value::TimestampMillis(at.timestamp_millis()),
                Schema::TimestampMicros => Value::TimestampMicros(at.timestamp_micros()),
                _ => Value::TimestampNanos(at.timestamp_nanos_opt().ok_or("out of range")?),
            }
        }
        (Schema::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| to_avro(i, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(m), Json::Object(entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_avro(v, &m.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Schema::Union(u), _) => {
            let mut problems = Vec::new();
            for (index, branch) in u.variants().iter().enumerate() {
                match to_avro(json, branch, names) {
                    Ok(v) => {
                        return Ok(Value::Union(
                            u32::try_from(index).map_err(|e| e.to_string())?,
                            Box::new(v),
                        ));
                    }
                    Err(p) => problems.push(p),
                }
            }
            return Err(format!(
                "no branch of the union fits: {}",
                problems.join("; ")
            ));
        }
        (Schema::Record(r), Json::Object(fields)) => {
            let mut out = Vec::with_capacity(r.fields.len());
            for field in &r.fields {
                let value = match (fields.get(&field.name), &field.default) {
                    (Some(v), _) => v,
                    (None, Some(default)) => default,
                    (None, None) => return Err(format!("field {} is missing", field.name)),
                };
                let avro = to_avro(value, &field.schema, names)
                    .map_err(|p| format!("field {}: {p}", field.name))?;
                out.push((field.name.clone(), avro));
            }
            Value::Record(out)
        }
        _ => return Err(wrong()),
    })
}

/// Exact decimal text as the big-endian two's-complement unscaled value of `scale`.
fn decimal_bytes(text: &str, precision: usize, scale: usize) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = fraction.trim_end_matches('0');
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(format!("'{text}' is not a decimal number"));
    }
    if fraction.len() > scale {
        return Err(format!("'{text}' has more than {scale} decimals"));
    }
    let unscaled_digits = format!("{whole}{fraction:0<scale$}");
    let significant = unscaled_digits.trim_start_matches('0');
    if significant.len() > precision {
        return Err(format!("'{text}' has more than {precision} digits"));
    }
    let mut unscaled: i128 = if significant.is_empty() {
        0
    } else {
        significant
            .parse()
            .map_err(|_| format!("'{text}' is out of range"))?
    };
    if negative {
        unscaled = -unscaled;
    }
    let bytes = unscaled.to_be_bytes();
    // Minimal two's-complement form: drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    Ok(bytes[start..].to_vec())
}

fn decimal_text(bytes: &[u8], scale: usize) -> Result<String, String> {
    if bytes.is_empty() || bytes.len() > 16 {
        return Err("decimal out of range".into());
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(full);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return Ok(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    Ok(format!("{sign}{whole}.{fraction}"))
}

fn number(n: impl Into<Number>) -> Json {
    Json::Number(n.into())
}

fn micros_text(us: i64) -> Result<Json, String> {
    Utc.timestamp_micros(us)
        .single()
        .map(|t| Json::String(rfc3339(t)))
        .ok_or_else(|| "timestamp out of range".to_owned())
}

/// An Avro value of `schema` (the writer's) as the JSON serde reads.
pub fn from_avro(
    value: Value,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
) -> Result<Json, String> {
    let schema = resolve(schema, names)?;
    Ok(match (value, schema) {
        (Value::Null, _) => Json::Null,
        (Value::Boolean(b), _) => Json::Bool(b),
        (Value::Int(v), _) => number(v),
        (Value::Long(v), _) => number(v),
        (Value::Float(v), _) => Number::from_f64(f64::from(v)).map_or(Json::Null, Json::Number),
        (Value::Double(v), _) => Number::from_f64(v).map_or(Json::Null, Json::Number),
        (Value::String(s), _) | (Value::Enum(_, s), _) => Json::String(s),
        (Value::Bytes(b), _) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        (Value::Uuid(u), _) => Json::String(u.to_string()),
        (Value::Decimal(d), Schema::Decimal(ds)) => {
            let bytes: Vec<u8> = Vec::<u8>::try_from(&d).map_err(|e| e.to_string())?;
            Json::String(decimal_text(&bytes, ds.scale)?)
        }
        (Value::Date(days), _) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("no epoch")?;
            let date = chrono::Duration::try_days(i64::from(days))
                .and_then(|d| epoch.checked_add_signed(d))
                .ok_or_else(|| format!("date {days} days from 1970-01-01 is out of range"))?;
            Json::String(date.to_string())
        }
        (Value::TimestampMicros(us), _) => micros_text(us)?,
        (Value::TimestampMillis(ms), _) => micros_text(ms.saturating_mul(1000))?,
        (Value::TimestampNanos(ns), _) => Json::String(rfc3339(Utc.timestamp_nanos(ns))),
        (Value::Union(index, inner), Schema::Union(u)) => {
            let branch = u
                .variants()
                .get(index as usize)
                .ok_or_else(|| format!("union branch {index} does not exist"))?;
            from_avro(*inner, branch, names)?
        }
        (Value::Array(items), Schema::Array(a)) => Json::Array(
            items
                .into_iter()
                .map(|i| from_avro(i, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Schema::Map(m)) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, from_avro(v, &m.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Value::Record(fields), Schema::Record(r)) => {
            let mut out = Map::with_capacity(fields.len());
            for (name, value) in fields {
                let field_schema = r
                    .lookup
                    .get(&name)
                    .and_then(|i| r.fields.get(*i))
                    .map(|f| &f.schema)
                    .ok_or_else(|| format!("field {name} is not in the writer's schema"))?;
                out.insert(name, from_avro(value, field_schema, names)?);
            }
            Json::Object(out)
        }
        (value, schema) => return Err(format!("cannot read {value:?} as {schema}")),
    })
}

/// Named types of a writer's schema, for [`from_avro`].
pub fn names_of(schema: &Schema) -> Result<HashMap<Name, Schema>, String> {
    named_types(schema, "writer schema").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_out_of_range_is_an_error_not_a_panic() {
        let names = HashMap::new();
        assert!(from_avro(Value::Date(i32::MAX), &Schema::Date, &names).is_err());
        assert!(from_avro(Value::Date(i32::MIN), &Schema::Date, &names).is_err());
        assert_eq!(
            from_avro(Value::Date(1), &Schema::Date, &names),
            Ok(Json::String("1970-01-02".into()))
        );
    }

    #[test]
    fn decimals_round_trip_exactly() {
        for (text, scale, expected) in [
            ("250", 3, "250.000"),
            ("0.001", 3, "0.001"),
            ("-1.5", 3, "-1.500"),
            ("999999.999", 3, "999999.999"),
            ("128", 0, "128"),
        ] {
            let bytes = decimal_bytes(text, 10, scale).expect("encodes");
            assert_eq!(decimal_text(&bytes, scale).expect("decodes"), expected);
        }
        assert!(decimal_bytes("1.0001", 10, 3).is_err(), "too many decimals");
        assert!(
            decimal_bytes("12345678901", 10, 0).is_err(),
            "too many digits"
        );
        assert!(decimal_bytes("1e3", 10, 0).is_err());
        assert_eq!(decimal_bytes("128", 10, 0).expect("ok"), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes("-1", 10, 0).expect("ok"), vec![0xff]);
    }

    /// The schemas in use before the latest change (see the folder's README).
    const PREVIOUS: &[(&str, &str)] = &[
        (
            "SampleReceived",
            include_str!("../tests/support/previous_schemas/Sample/SampleReceived.avsc"),
        ),
        (
            "SampleRegistered",
            include_str!("../tests/support/previous_schemas/Sample/SampleRegistered.avsc"),
        ),
        (
            "SampleRejected",
            include_str!("../tests/support/previous_schemas/Sample/SampleRejected.avsc"),
        ),
        (
            "SampleValidated",
            include_str!("../tests/support/previous_schemas/Sample/SampleValidated.avsc"),
        ),
        (
            "WidgetMade",
            include_str!("../tests/support/previous_schemas/WidgetMade.avsc"),
        ),
        (
            "WidgetPainted",
            include_str!("../tests/support/previous_schemas/WidgetPainted.avsc"),
        ),
    ];

    /// Schemas first published in this release: no previous version to be compatible
    /// with. Once published, a change to one adds its old text to `PREVIOUS`.
    const FIRST_VERSIONS: &[&str] = &[
        "AliquotCreated",
        "SampleAliquoted",
        "SampleCheckedOut",
        "SampleDisposed",
        "SampleMoved",
        "SampleQcCorrected",
        "SampleRemovedFromStorage",
        "SampleReturned",
        "SampleStored",
        "BoxCreated",
        "FreezerCreated",
        "RackCreated",
        "TemperatureExcursionRaised",
        "TemperatureExcursionResolved",
        "TemperatureRecorded",
        "UnitDecommissioned",
        "UnitMoved",
        "UnitRenamed",
    ];

    const WIDGET: &[&str] = &[
        include_str!("../tests/support/schemas/WidgetMade.avsc"),
        include_str!("../tests/support/schemas/WidgetPainted.avsc"),
    ];

    fn record_name(schema: &Schema) -> String {
        match schema {
            Schema::Record(r) => r.name.name().to_owned(),
            other => panic!("not a record: {other}"),
        }
    }

    /// The registry checks every schema against the version it holds when the relay
    /// starts (BACKWARD by default): the new one must read what the old one wrote. The
    /// fields added since are optional with a default, so old readers also read new
    /// records (FULL).
    #[test]
    fn current_schemas_are_compatible_with_the_previous_ones() {
        use crate::registry::{Compatibility, check_compatibility};
        let current: Vec<&str> = SCHEMA_FILES
            .iter()
            .map(|(_, text)| *text)
            .chain(WIDGET.iter().copied())
            .collect();
        assert_eq!(
            current.len(),
            PREVIOUS.len() + FIRST_VERSIONS.len(),
            "a previous version per schema, or the schema is new (FIRST_VERSIONS)"
        );
        for text in current {
            let new = Schema::parse_str(text).expect("current schema parses");
            let name = record_name(&new);
            match PREVIOUS.iter().find(|(n, _)| *n == name) {
                Some((_, old)) => {
                    let old = Schema::parse_str(old).expect("previous schema parses");
                    for level in [Compatibility::Backward, Compatibility::Full] {
                        let problems = check_compatibility(level, &new, &[(1, old.clone())]);
                        assert!(problems.is_empty(), "{name} at {level}: {problems:?}");
                    }
                }
                None => assert!(
                    FIRST_VERSIONS.contains(&name.as_str()),
                    "no previous version of {name}, and it is not listed as new"
                ),
            }
            let Schema::Record(record) = &new else {
                unreachable!()
            };
            let user = record.lookup.get("user").copied();
            let user_id = record.lookup.get(USER_ID).copied();
            assert_eq!(user_id, user.map(|i| i + 1), "{name}: user_id follows user");
        }
    }

    fn received(user_id: Option<Uuid>) -> StoredEvent<Json> {
        let id = Uuid::from_u128(7);
        StoredEvent {
            position: 1,
            transaction_id: 1,
            aggregate_type: "Sample".into(),
            aggregate_id: id,
            version: 2,
            event_id: Uuid::from_u128(8),
            event_type: "SampleReceived".into(),
            schema_version: 2,
            payload: serde_json::json!({"notes": null}),
            metadata: EventMetadata {
                user: "Ana Müller".into(),
                user_id,
                command_id: id,
                correlation_id: id,
                causation_id: id,
                traceparent: None,
                tracestate: None,
            },
            recorded_at: Utc
                .timestamp_micros(1_763_800_000_000_000)
                .single()
                .expect("time"),
        }
    }

    fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
        match record {
            Value::Record(fields) => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {name}")),
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn the_account_is_written_into_the_envelope_and_read_back() {
        let catalog = EventCatalog::new()
            .with::<cqrs::sample::Sample>()
            .expect("catalogue");
        let schema = catalog.get("SampleReceived").expect("schema");
        let account = Uuid::from_u128(99);
        let record = schema.to_record(&received(Some(account))).expect("encodes");
        assert_eq!(
            field(&record, USER_ID),
            &Value::Union(1, Box::new(Value::Uuid(account)))
        );
        let json = from_avro(record, &schema.schema, &schema.names).expect("decodes");
        let envelope: Envelope<cqrs::sample::SampleEvent> =
            envelope_from_record("Sample", "SampleReceived", json).expect("envelope");
        assert_eq!(envelope.metadata.user_id, Some(account));
        assert_eq!(envelope.metadata.user, "Ana Müller");

        let record = schema.to_record(&received(None)).expect("encodes");
        assert_eq!(
            field(&record, USER_ID),
            &Value::Union(0, Box::new(Value::Null))
        );
        let json = from_avro(record, &schema.schema, &schema.names).expect("decodes");
        let envelope: Envelope<cqrs::sample::SampleEvent> =
            envelope_from_record("Sample", "SampleReceived", json).expect("envelope");
        assert_eq!(envelope.metadata.user_id, None);
    }

    #[test]
    fn an_account_is_never_dropped_for_a_schema_without_the_field() {
        // The old QC-era schemas, plus the current ones of events that came later.
        let previous: Vec<&str> = PREVIOUS
            .iter()
            .filter(|(name, _)| name.starts_with("Sample"))
            .map(|(_, text)| *text)
            .chain(
                SCHEMA_FILES
                    .iter()
                    .filter(|(aggregate, text)| {
                        *aggregate == "Sample"
                            && FIRST_VERSIONS
                                .iter()
                                .any(|n| text.contains(&format!("\"name\": \"{n}\"")))
                    })
                    .map(|(_, text)| *text),
            )
            .collect();
        let catalog = EventCatalog::new()
            .with_schemas::<cqrs::sample::Sample>(&previous)
            .expect("an old schema without user_id is still accepted");
        let schema = catalog.get("SampleReceived").expect("schema");
        assert!(
            schema.to_record(&received(None)).is_ok(),
            "an event without an account fits the old schema"
        );
        let error = schema
            .to_record(&received(Some(Uuid::from_u128(99))))
            .expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("user_id") && message.contains("SampleReceived.avsc"),
            "{message}"
        );
        // A record written with the old schema (no user_id) reads as no account.
        let record = schema.to_record(&received(None)).expect("encodes");
        let json = from_avro(record, &schema.schema, &schema.names).expect("decodes");
        assert!(json.get(USER_ID).is_none());
        let envelope: Envelope<cqrs::sample::SampleEvent> =
            envelope_from_record("Sample", "SampleReceived", json).expect("envelope");
        assert_eq!(envelope.metadata.user_id, None);
    }

    /// A `["null", T]` union whose `T` has a logical type (a signature's `signed_at`, an
    /// account's id) takes serde's text for `T` and null for none, and reads back the same.
    #[test]
    fn nullable_logical_types_map_both_ways() {
        let names = HashMap::new();
        let union =
            |t: &str| Schema::parse_str(&format!(r#"["null", {t}]"#)).expect("union schema parses");
        let micros = union(r#"{"type": "long", "logicalType": "timestamp-micros"}"#);
        let at = "2026-11-23T10:00:00.123456Z";
        let value = to_avro(&Json::String(at.into()), &micros, &names).expect("encodes");
        assert_eq!(
            value,
            Value::Union(1, Box::new(Value::TimestampMicros(1_795_428_000_123_456)))
        );
        assert_eq!(
            from_avro(value, &micros, &names),
            Ok(Json::String(at.into()))
        );
        let none = to_avro(&Json::Null, &micros, &names).expect("encodes null");
        assert_eq!(none, Value::Union(0, Box::new(Value::Null)));
        assert_eq!(from_avro(none, &micros, &names), Ok(Json::Null));
        assert!(to_avro(&Json::String("yesterday".into()), &micros, &names).is_err());

        let uuid = union(r#"{"type": "string", "logicalType": "uuid"}"#);
        let id = Uuid::from_u128(0xa11ce);
        let value = to_avro(&Json::String(id.to_string()), &uuid, &names).expect("encodes");
        assert_eq!(value, Value::Union(1, Box::new(Value::Uuid(id))));
        assert_eq!(
            from_avro(value, &uuid, &names),
            Ok(Json::String(id.to_string()))
        );
        assert!(to_avro(&Json::String("not-a-uuid".into()), &uuid, &names).is_err());
    }

    /// A signed QC decision goes through its Avro record and back with its signature;
    /// one recorded before signatures existed has null signature fields.
    #[test]
    fn a_signature_round_trips_through_the_avro_record() {
        use apache_avro::reader::datum::GenericDatumReader;
        use apache_avro::writer::datum::GenericDatumWriter;
        use cqrs::sample::{Note, SampleEvent, Signature, SignatureMeaning};
        let catalog = EventCatalog::new()
            .with::<cqrs::sample::Sample>()
            .expect("catalogue");
        let signature = Signature::new(
            Uuid::from_u128(0xa11ce),
            "Ana Müller",
            SignatureMeaning::Approved,
            Utc.timestamp_micros(1_795_428_000_123_456)
                .single()
                .expect("time"),
        );
        let reason = Note::parse("haemolysed").expect("note");
        for event in [
            SampleEvent::SampleRejected {
                reason: reason.clone(),
                signature: Some(signature.clone()),
            },
            SampleEvent::SampleRejected {
                reason,
                signature: None,
            },
            SampleEvent::SampleValidated {
                notes: None,
                signature: Some(signature.clone()),
            },
        ] {
            let event_type = event.event_type();
            let mut stored = received(Some(Uuid::from_u128(0xa11ce)));
            stored.event_type = event_type.to_owned();
            stored.payload = event.to_payload().expect("payload");
            let schema = catalog.get(event_type).expect("schema");
            let record = schema.to_record(&stored).expect("encodes");
            match &event {
                SampleEvent::SampleRejected {
                    signature: None, ..
                } => assert_eq!(
                    field(&record, "signed_at"),
                    &Value::Union(0, Box::new(Value::Null))
                ),
                _ => {
                    assert_eq!(
                        field(&record, "signed_at"),
                        &Value::Union(1, Box::new(Value::TimestampMicros(1_795_428_000_123_456)))
                    );
                    assert_eq!(
                        field(&record, "signature_meaning"),
                        &Value::Union(1, Box::new(Value::Enum(2, "approved".into())))
                    );
                }
            }
            let bytes = GenericDatumWriter::builder(&schema.schema)
                .build()
                .expect("writer")
                .write_value_to_vec(record)
                .expect("writes");
            let value = GenericDatumReader::builder(&schema.schema)
                .build()
                .expect("reader")
                .read_value(&mut bytes.as_slice())
                .expect("reads");
            let json = from_avro(value, &schema.schema, &schema.names).expect("decodes");
            let envelope: Envelope<SampleEvent> =
                envelope_from_record("Sample", event_type, json).expect("envelope");
            assert_eq!(envelope.payload, event);
        }
    }

    /// Goes through the Avro record, the binary encoding and back.
    fn round_trip<E: DomainEvent + PartialEq + std::fmt::Debug>(
        catalog: &EventCatalog,
        aggregate_type: &str,
        event: &E,
    ) -> E {
        use apache_avro::reader::datum::GenericDatumReader;
        use apache_avro::writer::datum::GenericDatumWriter;
        let event_type = event.event_type();
        let mut stored = received(Some(Uuid::from_u128(0xa11ce)));
        stored.aggregate_type = aggregate_type.to_owned();
        stored.event_type = event_type.to_owned();
        stored.schema_version = E::SCHEMA_VERSION;
        stored.payload = event.to_payload().expect("payload");
        let schema = catalog.get(event_type).expect("schema");
        let record = schema
            .to_record(&stored)
            .unwrap_or_else(|e| panic!("{event_type} encodes: {e}"));
        let bytes = GenericDatumWriter::builder(&schema.schema)
            .build()
            .expect("writer")
            .write_value_to_vec(record)
            .expect("writes");
        let value = GenericDatumReader::builder(&schema.schema)
            .build()
            .expect("reader")
            .read_value(&mut bytes.as_slice())
            .expect("reads");
        let json = from_avro(value, &schema.schema, &schema.names).expect("decodes");
        envelope_from_record::<E>(aggregate_type, event_type, json)
            .unwrap_or_else(|e| panic!("{event_type} decodes: {e}"))
            .payload
    }

    /// Every storage and lifecycle event encodes to its Avro record and decodes back to
    /// the same event: decimals (volumes, temperatures), arrays of records (aliquots),
    /// booleans, nullable positions and signatures.
    #[test]
    fn every_storage_and_lifecycle_event_round_trips() {
        use cqrs::sample::{
            Barcode, NewAliquot, Note, PatientRef, SampleEvent, SampleId, SampleType, Signature,
            SignatureMeaning, TemperatureZone, Volume, VolumeUl,
        };
        use cqrs::storage::{
            Celsius, Position, StorageEvent, UnitCode, UnitId, UnitKind, UnitName,
        };
        let catalog = EventCatalog::new()
            .with::<cqrs::sample::Sample>()
            .and_then(|c| c.with::<cqrs::storage::StorageUnit>())
            .expect("catalogue");
        let at = Utc
            .timestamp_micros(1_795_428_000_123_456)
            .single()
            .expect("time");
        let signature = Signature::new(
            Uuid::from_u128(0xa11ce),
            "Ana Müller",
            SignatureMeaning::Performed,
            at,
        );
        let unit = |n| UnitId::from_uuid(Uuid::from_u128(n));
        let code = |c: &str| UnitCode::parse(c).expect("code");
        let pos = |p: &str| Position::parse(p).expect("position");
        let note = |t: &str| Note::parse(t).expect("note");
        let volume = |v: &str| VolumeUl::parse(v).expect("volume");
        let aliquots = vec![
            NewAliquot {
                sample_id: SampleId::from_uuid(Uuid::from_u128(21)),
                barcode: Barcode::parse("ALQ-1").expect("barcode"),
                volume_ul: volume("100"),
            },
            NewAliquot {
                sample_id: SampleId::from_uuid(Uuid::from_u128(22)),
                barcode: Barcode::parse("ALQ-2").expect("barcode"),
                volume_ul: volume("0.125"),
            },
        ];
        let samples = vec![
            SampleEvent::SampleQcCorrected {
                passed: false,
                reason: note("misread"),
                signature: Some(signature.clone()),
            },
            SampleEvent::SampleStored {
                box_id: unit(3),
                box_code: code("BOX-3"),
                position: pos("J10"),
            },
            SampleEvent::SampleMoved {
                from_box_id: unit(3),
                from_position: pos("J10"),
                box_id: unit(4),
                box_code: code("BOX-4"),
                position: pos("A1"),
            },
            SampleEvent::SampleRemovedFromStorage {
                box_id: unit(4),
                position: pos("A1"),
                notes: Some(note("to the bench")),
            },
            SampleEvent::SampleCheckedOut {
                holder_id: Uuid::from_u128(5),
                holder: note("Ben"),
                notes: None,
                from_box_id: Some(unit(4)),
                from_position: Some(pos("A1")),
            },
            SampleEvent::SampleCheckedOut {
                holder_id: Uuid::from_u128(5),
                holder: note("Ben"),
                notes: None,
                from_box_id: None,
                from_position: None,
            },
            SampleEvent::SampleReturned {
                holder_id: Uuid::from_u128(5),
                holder: note("Ben"),
                notes: None,
            },
            SampleEvent::SampleAliquoted {
                aliquots: aliquots.clone(),
                remaining_volume_ul: Volume::parse("149.875").expect("v"),
            },
            SampleEvent::SampleAliquoted {
                aliquots,
                remaining_volume_ul: Volume::default(),
            },
            SampleEvent::AliquotCreated {
                sample_id: SampleId::from_uuid(Uuid::from_u128(7)),
                parent_id: SampleId::from_uuid(Uuid::from_u128(20)),
                parent_barcode: Barcode::parse("LAB-1").expect("barcode"),
                barcode: Barcode::parse("ALQ-1").expect("barcode"),
                sample_type: SampleType::Plasma,
                volume_ul: volume("100"),
                temperature_zone: TemperatureZone::Minus80,
                patient_ref: Some(PatientRef::parse("MRN-1").expect("patient")),
            },
            SampleEvent::SampleDisposed {
                reason: note("thawed"),
                from_box_id: None,
                from_position: None,
                signature: Some(signature),
            },
        ];
        for event in &samples {
            assert_eq!(&round_trip(&catalog, "Sample", event), event);
        }
        let units = vec![
            StorageEvent::FreezerCreated {
                unit_id: unit(7),
                code: code("FRZ-1"),
                name: UnitName::parse("Freezer 1").expect("name"),
                temperature_zone: TemperatureZone::Minus80,
                slots: 200,
            },
            StorageEvent::RackCreated {
                unit_id: unit(7),
                code: code("RCK-1"),
                name: UnitName::parse("Rack").expect("name"),
                temperature_zone: TemperatureZone::Minus20,
                parent_id: unit(1),
                slot: 3,
                slots: 10,
            },
            StorageEvent::BoxCreated {
                unit_id: unit(7),
                code: code("BOX-1"),
                name: UnitName::parse("Box").expect("name"),
                temperature_zone: TemperatureZone::Plus4,
                parent_id: unit(2),
                slot: 1,
                rows: 8,
                columns: 12,
            },
            StorageEvent::UnitRenamed {
                name: UnitName::parse("Freezer A, room 2.14").expect("name"),
            },
            StorageEvent::UnitMoved {
                from_parent_id: unit(1),
                from_slot: 1,
                parent_id: unit(2),
                slot: 9,
            },
            StorageEvent::UnitDecommissioned {
                reason: note("retired"),
                kind: UnitKind::Box,
                parent_id: Some(unit(2)),
                slot: Some(9),
                slots: None,
                rows: Some(9),
                columns: Some(9),
            },
            StorageEvent::TemperatureRecorded {
                celsius: Celsius::parse("-80.5").expect("c"),
                measured_at: at,
            },
            StorageEvent::TemperatureExcursionRaised {
                excursion_id: Uuid::from_u128(9),
                celsius: Celsius::parse("-52").expect("c"),
                allowed_min: Celsius::from_tenths(-900),
                allowed_max: Celsius::from_tenths(-600),
                measured_at: at,
            },
            StorageEvent::TemperatureExcursionResolved {
                excursion_id: Uuid::from_u128(9),
                note: note("door closed"),
            },
        ];
        for event in &units {
            assert_eq!(&round_trip(&catalog, "StorageUnit", event), event);
        }
    }

    #[test]
    fn names_follow_the_aggregate_type() {
        assert_eq!(topic_for("Sample"), "laboratory.sample.events");
        assert_eq!(key_field("StorageUnit"), "storage_unit_id");
    }
}
