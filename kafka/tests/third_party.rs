//! A third-party consumer reads what the relay publishes: Confluent's Python client
//! (`confluent-kafka`, with its Schema Registry `AvroDeserializer`) pointed at our own
//! registry decodes every event type off the topic, field by field. This proves the wire
//! format, the schemas and the registry's HTTP API against a client we did not write.
//!
//! Needs `python3` with `confluent-kafka[avro,schemaregistry]`; `./deploy-phase7.sh test`
//! installs it. The test fails, rather than skips, when it is missing.

use chrono::{DateTime, Utc};
use cqrs::DomainEvent;
use cqrs::sample::{SampleEvent, Signature};
use event_sourcing::EventMetadata;
use kafka::metrics::PipelineMetrics;
use kafka::relay::{OutboxRelay, RelayConfig};
use kafka::testkit::{BoxError, Broker, lab_day, registry, store};
use kafka::topics::SAMPLE_EVENTS;
use serde_json::{Value, json};
use sqlx::types::Json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), BoxError>;

const INSTALL_HINT: &str = "./deploy-phase7.sh test installs it \
     (python3 -m pip install 'confluent-kafka[avro,schemaregistry]')";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_events.py")
}

/// Fails early, and says how to fix it, when Python or the client is missing.
fn python_client_available() -> TestResult {
    let output = Command::new(python())
        .args([
            "-c",
            "import confluent_kafka, fastavro, confluent_kafka.schema_registry.avro",
        ])
        .output()
        .map_err(|e| format!("cannot run {} ({e}); {INSTALL_HINT}", python()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the Python package confluent-kafka (with its Avro extras) is missing: {}; {INSTALL_HINT}",
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
        )
        .into())
    }
}

/// Runs `read_events.py` and returns its JSON lines.
async fn read_with_python(
    brokers: &str,
    registry: &str,
    expect: usize,
) -> Result<Vec<Value>, BoxError> {
    read_topic_with_python(brokers, registry, SAMPLE_EVENTS, expect).await
}

/// Runs `read_events.py` on `topic` and returns its JSON lines.
async fn read_topic_with_python(
    brokers: &str,
    registry: &str,
    topic: &str,
    expect: usize,
) -> Result<Vec<Value>, BoxError> {
    let mut command = Command::new(python());
    command
        .arg(script())
        .args(["--brokers", brokers, "--registry", registry])
        .args(["--topic", topic, "--expect", &expect.to_string()]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .map_err(|e| format!("cannot run {} ({e}); {INSTALL_HINT}", python()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "read_events.py failed ({}):\n{}\n--- stdout ---\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a JSON line ({e}): {l}").into()))
        .collect()
}

#[derive(sqlx::FromRow)]
struct Stored {
    event_id: Uuid,
    aggregate_id: Uuid,
    version: i64,
    event_type: String,
    schema_version: i32,
    payload: Json<Value>,
    metadata: Json<EventMetadata>,
    recorded_at: DateTime<Utc>,
}

impl Stored {
    fn event(&self) -> SampleEvent {
        SampleEvent::from_payload(
            &self.event_type,
            u32::try_from(self.schema_version).expect("version"),
            self.payload.0.clone(),
        )
        .expect("a stored sample event")
    }
}

/// What the Python client must have decoded for `event`, field by field.
fn expected_value(event: &Stored) -> BTreeMap<&'static str, Value> {
    let meta = &event.metadata.0;
    let mut fields = BTreeMap::from([
        ("event_id", json!(event.event_id.to_string())),
        ("sample_id", json!(event.aggregate_id.to_string())),
        ("aggregate_version", json!(event.version)),
        ("user", json!(meta.user)),
        (
            "user_id",
            meta.user_id.map_or(Value::Null, |id| json!(id.to_string())),
        ),
        ("command_id", json!(meta.command_id.to_string())),
        ("correlation_id", json!(meta.correlation_id.to_string())),
        ("causation_id", json!(meta.causation_id.to_string())),
    ]);
    let text = |t: Option<String>| t.map_or(Value::Null, Value::String);
    match &event.event() {
        SampleEvent::SampleRegistered { details, .. } => {
            let nl = details.volume.nanolitres();
            fields.extend([
                ("barcode", json!(details.barcode.to_string())),
                ("sample_type", json!(details.sample_type.code())),
                ("temperature_zone", json!(details.temperature_zone.code())),
                // decimal(10,3): Python's Decimal keeps the scale, "10.250".
                (
                    "volume_ul",
                    json!(format!("{}.{:03}", nl / 1000, nl % 1000)),
                ),
                (
                    "patient_ref",
                    text(details.patient.as_ref().map(|p| p.to_string())),
                ),
                (
                    "collected_by",
                    text(details.collected_by.as_ref().map(|c| c.to_string())),
                ),
            ]);
        }
        SampleEvent::SampleReceived { notes } => {
            fields.insert("notes", text(notes.as_ref().map(|n| n.to_string())));
        }
        SampleEvent::SampleValidated { notes, signature } => {
            fields.insert("notes", text(notes.as_ref().map(|n| n.to_string())));
            fields.extend(signature_fields(signature.as_ref()));
        }
        SampleEvent::SampleRejected { reason, signature } => {
            fields.insert("reason", json!(reason.to_string()));
            fields.extend(signature_fields(signature.as_ref()));
        }
        // The lab day has only registration and QC; the storage and lifecycle events are
        // checked field by field against their payloads in the test below.
        _ => {}
    }
    fields
}

/// A QC decision's signature fields but `signed_at` (a timestamp, compared as an instant).
fn signature_fields(signature: Option<&Signature>) -> [(&'static str, Value); 3] {
    [
        (
            "signed_by_id",
            signature.map_or(Value::Null, |s| json!(s.signer_id.to_string())),
        ),
        (
            "signed_by",
            signature.map_or(Value::Null, |s| json!(s.signer_name)),
        ),
        (
            "signature_meaning",
            signature.map_or(Value::Null, |s| json!(s.meaning.as_str())),
        ),
    ]
}

fn timestamp(value: &Value, what: &str) -> Result<DateTime<Utc>, BoxError> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{what} is not a string: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{what} {text:?} is not ISO 8601: {e}"))?
        .with_timezone(&Utc))
}

/// Checks one decoded message against the stored event it carries.
fn check(event: &Stored, message: &Value) -> TestResult {
    let id = event.event_id;
    assert_eq!(
        message["record_name"],
        json!(kafka::avro::full_name(&event.event_type)),
        "record name of {id}"
    );
    assert_eq!(
        message["key"],
        json!(event.aggregate_id.to_string()),
        "key of {id}"
    );
    assert_eq!(
        message["headers"]["event_type"],
        json!(event.event_type),
        "header of {id}"
    );
    assert_eq!(
        message["headers"]["event_id"],
        json!(id.to_string()),
        "header of {id}"
    );
    let value = &message["value"];
    for (field, expected) in expected_value(event) {
        assert_eq!(
            value[field], expected,
            "{field} of {} {id}",
            event.event_type
        );
    }
    assert_eq!(
        timestamp(&value["recorded_at"], "recorded_at")?,
        event.recorded_at,
        "recorded_at of {id} (timestamp-micros)"
    );
    match &event.event() {
        SampleEvent::SampleRegistered { details, .. } => {
            let collected_at = &value["collected_at"];
            match details.collected_at {
                None => assert!(
                    collected_at.is_null(),
                    "collected_at of {id}: {collected_at}"
                ),
                Some(at) => assert_eq!(timestamp(collected_at, "collected_at")?, at),
            }
        }
        SampleEvent::SampleValidated { signature, .. }
        | SampleEvent::SampleRejected { signature, .. } => {
            let signed_at = &value["signed_at"];
            let signature = signature
                .as_ref()
                .ok_or_else(|| format!("{id}: a QC decision of the lab day is signed"))?;
            assert_eq!(
                timestamp(signed_at, "signed_at")?,
                signature.signed_at,
                "signed_at of {id} (nullable timestamp-micros)"
            );
        }
        _ => {}
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confluents_python_client_decodes_every_event_type_through_our_registry() -> TestResult {
    python_client_available()?;
    let broker = Broker::start().await?;
    let store = store().await?;
    let registry_url = registry(store.pool().clone()).await?;
    let codec = kafka::testkit::codec(&registry_url, kafka::testkit::sample_catalog()?).await?;
    let appended = lab_day(&store, 9, "PY").await?;
    assert_eq!(appended, 27);

    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let relay = OutboxRelay::new(
        store.pool().clone(),
        codec,
        metrics,
        RelayConfig::new(&broker.address),
    )?;
    let mut published = 0;
    while published < appended {
        let round = tokio::time::timeout(Duration::from_secs(30), relay.publish_batch()).await??;
        assert!(round.published > 0, "the outbox still had rows");
        published += round.published;
    }
    assert_eq!(
        relay.publish_batch().await?.claimed,
        0,
        "the outbox is empty"
    );

    let events: Vec<Stored> = sqlx::query_as(
        "SELECT event_id, aggregate_id, version, event_type, schema_version, payload, metadata, recorded_at \
         FROM events ORDER BY position",
    )
    .fetch_all(store.pool())
    .await?;
    assert_eq!(events.len(), appended);

    let messages = read_with_python(&broker.address, &registry_url, events.len()).await?;
    let mut decoded: HashMap<String, Vec<&Value>> = HashMap::new();
    for message in &messages {
        let event_id = message["value"]["event_id"]
            .as_str()
            .ok_or_else(|| format!("a message without an event_id: {message}"))?;
        decoded
            .entry(event_id.to_owned())
            .or_default()
            .push(message);
    }
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        let copies = decoded.get(&event.event_id.to_string()).ok_or_else(|| {
            format!(
                "{} {} was not decoded by the Python client",
                event.event_type, event.event_id
            )
        })?;
        // Delivery is at least once: every copy must decode alike.
        for message in copies {
            check(event, message)?;
        }
        *by_type.entry(event.event_type.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_type,
        BTreeMap::from([
            ("SampleReceived", 9),
            ("SampleRegistered", 9),
            ("SampleRejected", 3),
            ("SampleValidated", 6),
        ]),
        "every event type was published and decoded"
    );
    Ok(())
}

fn registry_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry_client.py")
}

/// Confluent's Python `SchemaRegistryClient` goes through register, lookup, latest and
/// numbered versions, compatibility tests and levels, and soft and permanent deletes of a
/// version and a subject against our registry (`tests/python/registry_client.py`); every
/// step must have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_python_client_manages_schemas_in_our_registry() -> TestResult {
    python_client_available()?;
    let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
    python_walk(&registry(pool).await?, None).await
}

/// The same walk against a registry that requires a token for changes: the client sends
/// it as a static bearer token (`bearer.auth.credentials.source: STATIC_TOKEN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_python_client_manages_schemas_with_the_registry_token() -> TestResult {
    python_client_available()?;
    let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
    let token = "python-client-registry-token";
    let url = kafka::testkit::registry_with_token(pool, token).await?;
    python_walk(&url, Some(token)).await
}

async fn python_walk(registry_url: &str, token: Option<&str>) -> TestResult {
    let mut command = Command::new(python());
    command
        .arg(registry_script())
        .args(["--registry", registry_url]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .map_err(|e| format!("cannot run {} ({e}); {INSTALL_HINT}", python()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "registry_client.py failed ({}):\n{}\n--- stdout ---\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let steps: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        steps,
        [
            "register",
            "lookup_schema",
            "get_version",
            "test_compatibility",
            "set_compatibility",
            "delete_version",
            "delete_subject",
        ]
        .map(|step| json!({ "step": step })),
        "every step of the client's walk through the registry passed"
    );
    Ok(())
}

/// `decoded` (what the Python client made of an Avro field) is `stored` (the field of the
/// stored JSON payload): decimals compare by value ("10.250" is "10.25"), timestamps as
/// instants, records and arrays field by field.
fn same_value(stored: &Value, decoded: &Value) -> bool {
    match (stored, decoded) {
        (Value::Object(s), Value::Object(d)) => s
            .iter()
            .all(|(k, v)| d.get(k).is_some_and(|dv| same_value(v, dv))),
        (Value::Array(s), Value::Array(d)) => {
            s.len() == d.len() && s.iter().zip(d).all(|(a, b)| same_value(a, b))
        }
        (Value::String(s), Value::String(d)) if s != d => {
            let instant = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.to_utc());
            let number = |t: &str| {
                let t = t.trim_start_matches('+');
                if !t
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
                    || !t.contains(|c: char| c.is_ascii_digit())
                {
                    return None;
                }
                Some(if t.contains('.') {
                    t.trim_end_matches('0').trim_end_matches('.').to_owned()
                } else {
                    t.to_owned()
                })
            };
            match (instant(s), instant(d)) {
                (Some(a), Some(b)) => a == b,
                _ => number(s).is_some() && number(s) == number(d),
            }
        }
        (Value::Number(s), Value::Number(d)) => s == d,
        _ => stored == decoded,
    }
}

/// Storage units and a tube's storage, custody, aliquots and disposal, published by the
/// relay and decoded by Confluent's Python client: every field of every payload comes
/// back as stored, on `laboratory.storage.events` and `laboratory.sample.events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confluents_python_client_decodes_storage_and_lifecycle_events() -> TestResult {
    use cqrs::sample::{
        Barcode, NewAliquot, Note, Sample, SampleCommand, SampleDetails, SampleId, SampleType,
        SignatureMeaning, TemperatureZone, VolumeUl,
    };
    use cqrs::storage::{
        Celsius, Grid, Position, StorageCommand, StorageUnit, UnitCode, UnitId, UnitName,
    };
    use event_sourcing::{CommandContext, ExpectedVersion};
    python_client_available()?;
    let broker = Broker::start().await?;
    let store = store().await?;
    let registry_url = registry(store.pool().clone()).await?;
    let codec = kafka::testkit::codec(&registry_url, kafka::testkit::sample_catalog()?).await?;
    let ctx = || CommandContext::for_user(kafka::testkit::QC_ACCOUNT, "Ana Müller");
    let unit = |command: StorageCommand, id: UnitId| {
        let store = store.clone();
        async move {
            store
                .execute::<StorageUnit>(id.as_uuid(), command, &ctx(), ExpectedVersion::Any)
                .await
                .map_err(|e| format!("{e}"))
        }
    };
    let (freezer, rack, boxed) = (UnitId::new(), UnitId::new(), UnitId::new());
    let zone = TemperatureZone::Minus80;
    unit(
        StorageCommand::CreateFreezer {
            id: freezer,
            code: UnitCode::parse("PY-FRZ")?,
            name: UnitName::parse("Freezer 1")?,
            zone,
            slots: 2,
        },
        freezer,
    )
    .await?;
    let facts = |id: UnitId| {
        let store = store.clone();
        async move {
            store
                .load::<StorageUnit>(id.as_uuid())
                .await
                .map(|l| l.state.unit)
        }
    };
    let f = facts(freezer).await?.ok_or("freezer")?;
    unit(
        StorageCommand::CreateRack {
            id: rack,
            code: UnitCode::parse("PY-RCK")?,
            name: UnitName::parse("Rack")?,
            parent: f.as_parent(),
            slot: 1,
            slots: 4,
        },
        rack,
    )
    .await?;
    let r = facts(rack).await?.ok_or("rack")?;
    unit(
        StorageCommand::CreateBox {
            id: boxed,
            code: UnitCode::parse("PY-BOX")?,
            name: UnitName::parse("Box")?,
            parent: r.as_parent(),
            slot: 2,
            grid: Grid::parse("8x12")?,
        },
        boxed,
    )
    .await?;
    unit(
        StorageCommand::RecordTemperature {
            celsius: Celsius::parse("-55.5")?,
            measured_at: chrono::Utc::now().trunc_subsecs_micros(),
            excursion_id: Uuid::now_v7(),
        },
        freezer,
    )
    .await?;
    unit(
        StorageCommand::Rename {
            name: UnitName::parse("Freezer 1, room 2.14")?,
        },
        freezer,
    )
    .await?;

    let sample = Uuid::now_v7();
    let run = |command: SampleCommand| {
        let store = store.clone();
        async move {
            store
                .execute::<Sample>(sample, command, &ctx(), ExpectedVersion::Any)
                .await
                .map_err(|e| format!("{e}"))
        }
    };
    let signature = || {
        cqrs::sample::Signature::new(
            kafka::testkit::QC_ACCOUNT,
            "Ana Müller",
            SignatureMeaning::Performed,
            chrono::Utc::now(),
        )
    };
    run(SampleCommand::Register {
        id: SampleId::from_uuid(sample),
        details: SampleDetails {
            barcode: Barcode::parse("PY-TUBE")?,
            sample_type: SampleType::Plasma,
            volume: VolumeUl::parse("500")?,
            temperature_zone: zone,
            patient: None,
            collected_at: None,
            collected_by: None,
        },
    })
    .await?;
    run(SampleCommand::Receive { notes: None }).await?;
    run(SampleCommand::Validate {
        notes: None,
        signature: signature(),
    })
    .await?;
    let b = facts(boxed).await?.and_then(|u| u.as_box()).ok_or("box")?;
    run(SampleCommand::Store {
        target: b.clone(),
        position: Position::parse("H12")?,
    })
    .await?;
    run(SampleCommand::Move {
        target: b,
        position: Position::parse("A1")?,
    })
    .await?;
    run(SampleCommand::CheckOut {
        holder_id: kafka::testkit::QC_ACCOUNT,
        holder: Note::parse("Ana Müller")?,
        notes: None,
    })
    .await?;
    run(SampleCommand::Return {
        notes: Some(Note::parse("back")?),
    })
    .await?;
    run(SampleCommand::Aliquot {
        aliquots: vec![NewAliquot {
            sample_id: SampleId::new(),
            barcode: Barcode::parse("PY-TUBE-1")?,
            volume_ul: VolumeUl::parse("120.5")?,
        }],
    })
    .await?;
    run(SampleCommand::CorrectQc {
        passed: false,
        reason: Note::parse("misread")?,
        signature: signature(),
    })
    .await?;
    run(SampleCommand::Dispose {
        reason: Note::parse("failed QC")?,
        signature: signature(),
    })
    .await?;

    let events: Vec<Stored> = sqlx::query_as(
        "SELECT event_id, aggregate_id, version, event_type, schema_version, payload, metadata, recorded_at \
         FROM events ORDER BY position",
    )
    .fetch_all(store.pool())
    .await?;
    let relay = OutboxRelay::new(
        store.pool().clone(),
        codec,
        PipelineMetrics::new(prometheus::Registry::new())?,
        RelayConfig::new(&broker.address),
    )?;
    let mut published = 0;
    while published < events.len() {
        let round = tokio::time::timeout(Duration::from_secs(30), relay.publish_batch()).await??;
        assert!(round.published > 0, "the outbox still had rows");
        published += round.published;
    }
    let on_storage = events
        .iter()
        .filter(|e| {
            e.event_type.contains("Temperature")
                || e.event_type.contains("Created") && !e.event_type.starts_with("Aliquot")
                || e.event_type.starts_with("Unit")
        })
        .count();
    let mut messages = read_topic_with_python(
        &broker.address,
        &registry_url,
        kafka::topics::STORAGE_EVENTS,
        on_storage,
    )
    .await?;
    messages
        .extend(read_with_python(&broker.address, &registry_url, events.len() - on_storage).await?);
    let mut types = std::collections::BTreeSet::new();
    for event in &events {
        let message = messages
            .iter()
            .find(|m| m["value"]["event_id"] == json!(event.event_id.to_string()))
            .ok_or_else(|| format!("{} was not decoded by the Python client", event.event_type))?;
        assert_eq!(
            message["record_name"],
            json!(kafka::avro::full_name(&event.event_type))
        );
        assert_eq!(message["key"], json!(event.aggregate_id.to_string()));
        let Value::Object(payload) = &event.payload.0 else {
            return Err(format!("{}: payload is not an object", event.event_type).into());
        };
        for (field, stored) in payload {
            let decoded = &message["value"][field.as_str()];
            assert!(
                same_value(stored, decoded),
                "{}.{field}: stored {stored}, decoded {decoded}",
                event.event_type
            );
        }
        types.insert(event.event_type.clone());
    }
    for expected in [
        "FreezerCreated",
        "RackCreated",
        "BoxCreated",
        "TemperatureRecorded",
        "TemperatureExcursionRaised",
        "UnitRenamed",
        "SampleStored",
        "SampleMoved",
        "SampleCheckedOut",
        "SampleReturned",
        "SampleAliquoted",
        "AliquotCreated",
        "SampleQcCorrected",
        "SampleDisposed",
    ] {
        assert!(
            types.contains(expected),
            "{expected} was published and decoded"
        );
    }
    Ok(())
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}
