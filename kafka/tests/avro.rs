//! Every event type round-trips through Avro: directly, and in the Confluent wire format
//! through the project's registry over HTTP.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use chrono::{TimeZone, Utc};
use cqrs::DomainEvent;
use cqrs::sample::Sample;
use cqrs::sample::{
    Barcode, Note, PatientRef, SampleDetails, SampleEvent, SampleId, SampleType, Signature,
    SignatureMeaning, TemperatureZone, VolumeUl,
};
use event_sourcing::{Envelope, EventMetadata, StoredEvent};
use kafka::avro::{EventCatalog, envelope_from_record, from_avro, names_of};
use kafka::registry::{RegistryServer, RegistryStore};
use kafka::wire::{WireCodec, subject};
use std::sync::Arc;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn stored(version: u64, payload: SampleEvent) -> StoredEvent<SampleEvent> {
    // Odd versions by an account, even ones as recorded before accounts existed.
    let user_id = (version % 2 == 1).then(|| Uuid::from_u128(0xa11ce));
    StoredEvent {
        position: 7,
        transaction_id: 9,
        aggregate_type: "Sample".into(),
        aggregate_id: Uuid::from_u128(42),
        version,
        event_id: Uuid::now_v7(),
        event_type: "ignored".into(),
        schema_version: 1,
        payload,
        metadata: EventMetadata {
            user: "Ana Ruiz".into(),
            user_id,
            command_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            traceparent: None,
            tracestate: None,
        },
        recorded_at: Utc
            .timestamp_micros(1_763_800_000_123_456)
            .single()
            .expect("time"),
    }
}

fn signature(meaning: SignatureMeaning) -> Signature {
    Signature::new(
        Uuid::from_u128(0xa11ce),
        "Ana Müller",
        meaning,
        Utc.timestamp_micros(1_763_800_100_654_321)
            .single()
            .expect("time"),
    )
}

fn every_event_type() -> Vec<StoredEvent<SampleEvent>> {
    let note = |s: &str| Note::parse(s).expect("note");
    let details = |volume: &str, patient: Option<&str>| SampleDetails {
        barcode: Barcode::parse("LAB-PLASMA-20261122-000042").expect("barcode"),
        sample_type: SampleType::Plasma,
        volume: VolumeUl::parse(volume).expect("volume"),
        temperature_zone: TemperatureZone::Minus80,
        patient: patient.map(|p| PatientRef::parse(p).expect("patient")),
        collected_at: patient.map(|_| {
            Utc.timestamp_micros(1_763_790_000_000_000)
                .single()
                .expect("time")
        }),
        collected_by: patient.map(|_| note("Dr. Okafor")),
    };
    let id = SampleId::from_uuid(Uuid::from_u128(42));
    vec![
        stored(
            1,
            SampleEvent::SampleRegistered {
                id,
                details: details("250.5", Some("MRN-7")),
            },
        ),
        stored(
            1,
            SampleEvent::SampleRegistered {
                id,
                details: details("0.001", None),
            },
        ),
        stored(
            1,
            SampleEvent::SampleRegistered {
                id,
                details: details("1000000", None),
            },
        ),
        stored(
            2,
            SampleEvent::SampleReceived {
                notes: Some(note("on dry ice")),
            },
        ),
        stored(2, SampleEvent::SampleReceived { notes: None }),
        stored(
            3,
            SampleEvent::SampleValidated {
                notes: Some(note("RIN 9.1")),
                signature: Some(signature(SignatureMeaning::Approved)),
            },
        ),
        stored(
            3,
            SampleEvent::SampleRejected {
                reason: note("haemolysed"),
                signature: Some(signature(SignatureMeaning::Performed)),
            },
        ),
        // QC decisions recorded before signatures existed.
        stored(
            3,
            SampleEvent::SampleValidated {
                notes: None,
                signature: None,
            },
        ),
        stored(
            3,
            SampleEvent::SampleRejected {
                reason: note("clotted"),
                signature: None,
            },
        ),
    ]
}

fn as_json(event: &StoredEvent<SampleEvent>) -> StoredEvent<serde_json::Value> {
    StoredEvent {
        position: event.position,
        transaction_id: event.transaction_id,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id,
        version: event.version,
        event_id: event.event_id,
        event_type: event.payload.event_type().to_owned(),
        schema_version: SampleEvent::SCHEMA_VERSION,
        payload: event.payload.to_payload().expect("payload"),
        metadata: event.metadata.clone(),
        recorded_at: event.recorded_at,
    }
}

fn check_envelope(decoded: &Envelope<SampleEvent>, event: &StoredEvent<SampleEvent>) {
    assert_eq!(decoded.event_id, event.event_id);
    assert_eq!(decoded.aggregate_id, event.aggregate_id);
    assert_eq!(decoded.version, event.version);
    assert_eq!(decoded.recorded_at, event.recorded_at);
    assert_eq!(decoded.metadata.user, event.metadata.user);
    assert_eq!(decoded.metadata.user_id, event.metadata.user_id);
    assert_eq!(decoded.metadata.command_id, event.metadata.command_id);
    assert_eq!(
        decoded.metadata.correlation_id,
        event.metadata.correlation_id
    );
    assert_eq!(decoded.metadata.causation_id, event.metadata.causation_id);
    assert_eq!(decoded.payload, event.payload);
}

#[test]
fn every_event_type_round_trips_through_its_schema() -> TestResult {
    let catalog = EventCatalog::new().with::<Sample>()?;
    for event in every_event_type() {
        let json = as_json(&event);
        let schema = catalog.get(&json.event_type)?;
        let record = schema.to_record(&json)?;
        let bytes = GenericDatumWriter::builder(&schema.schema)
            .build()?
            .write_value_to_vec(record)?;
        let value = GenericDatumReader::builder(&schema.schema)
            .build()?
            .read_value(&mut bytes.as_slice())?;
        let names = names_of(&schema.schema)?;
        let back = from_avro(value, &schema.schema, &names)?;
        let decoded: Envelope<SampleEvent> =
            envelope_from_record("Sample", &json.event_type, back)?;
        check_envelope(&decoded, &event);
    }
    Ok(())
}

#[test]
fn a_version_1_payload_in_the_outbox_is_lifted_before_encoding() -> TestResult {
    let catalog = EventCatalog::new().with::<Sample>()?;
    let event = every_event_type().remove(0);
    let mut json = as_json(&event);
    // What the store held before payload version 2: serde's tagged form, old names.
    json.schema_version = 1;
    json.payload = serde_json::json!({"SampleRegistered": {
        "id": event.aggregate_id.to_string(),
        "details": {
            "barcode": "LAB-PLASMA-20261122-000042", "sample_type": "PLASMA",
            "volume": "250.5", "temperature_zone": "MINUS_80", "patient": "MRN-7",
            "collected_at": "2025-11-22T05:40:00Z", "collected_by": "Dr. Okafor"
        }
    }});
    let record = catalog.get("SampleRegistered")?.to_record(&json)?;
    let fields = match record {
        apache_avro::types::Value::Record(fields) => fields,
        other => return Err(format!("not a record: {other:?}").into()),
    };
    assert!(fields.iter().any(|(name, _)| name == "patient_ref"));
    Ok(())
}

#[test]
fn a_payload_field_the_schema_lacks_is_an_error_not_dropped() -> TestResult {
    let catalog = EventCatalog::new().with::<Sample>()?;
    let mut json = as_json(&every_event_type()[3]);
    json.payload["temperature_logger"] = serde_json::json!("TL-9");
    let error = catalog
        .get(&json.event_type)?
        .to_record(&json)
        .expect_err("unknown field");
    assert!(error.to_string().contains("temperature_logger"), "{error}");
    Ok(())
}

#[test]
fn every_event_type_needs_a_schema() {
    let only_some = EventCatalog::new()
        .with_schemas::<Sample>(&[include_str!("../schemas/Sample/SampleRegistered.avsc")]);
    let error = only_some.expect_err("schemas are missing");
    assert!(error.to_string().contains("SampleReceived"), "{error}");
}

#[tokio::test]
async fn every_event_type_round_trips_in_the_wire_format_through_the_registry() -> TestResult {
    let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
    let server = RegistryServer::bind(RegistryStore::new(pool), ([127, 0, 0, 1], 0).into()).await?;
    let url = format!("http://{}", server.local_addr()?);
    tokio::spawn(server.serve(std::future::pending()));

    let topic = "laboratory.sample.events";
    let catalog = Arc::new(EventCatalog::new().with::<Sample>()?);
    let codec = WireCodec::new(&url, Arc::clone(&catalog));
    let ids = codec.register_all().await?;
    assert_eq!(
        ids.len(),
        <SampleEvent as cqrs::DomainEvent>::EVENT_TYPES.len(),
        "one schema per sample event type"
    );

    let subjects: Vec<String> = reqwest::get(format!("{url}/subjects"))
        .await?
        .json()
        .await?;
    assert!(
        subjects.contains(&subject(topic, "SampleRejected")),
        "{subjects:?}"
    );
    assert_eq!(
        subject(topic, "SampleRejected"),
        "laboratory.sample.events-org.tracseq.laboratory.SampleRejected"
    );

    for event in every_event_type() {
        let json = as_json(&event);
        let (to, bytes) = codec.encode(&json).await?;
        assert_eq!(to, topic);
        assert_eq!(bytes[0], 0, "magic byte");
        let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        assert_eq!(
            Some(&schema_id),
            ids.get(&json.event_type),
            "the registered id is in the header"
        );
        let fresh = WireCodec::new(&url, Arc::clone(&catalog));
        let decoded: Envelope<SampleEvent> = fresh.decode("Sample", &bytes).await?;
        check_envelope(&decoded, &event);
    }
    assert!(
        codec
            .decode::<SampleEvent>("Sample", b"{\"json\":true}")
            .await
            .is_err(),
        "not the wire format"
    );
    Ok(())
}
