//! Every event type round-trips through Avro: directly, and in the Confluent wire format
//! through the project's registry over HTTP.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use chrono::{TimeZone, Utc};
use cqrs::sample::{
    Barcode, Note, PatientRef, SampleDetails, SampleEvent, SampleId, SampleType, TemperatureZone,
    VolumeUl,
};
use event_sourcing::{EventMetadata, StoredEvent};
use kafka::avro::{EventHeader, EventSchemas, from_record, to_record};
use kafka::registry::{RegistryServer, RegistryStore};
use kafka::wire::{WireCodec, subject};
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn stored(version: u64, payload: SampleEvent) -> StoredEvent<SampleEvent> {
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
            },
        ),
        stored(
            3,
            SampleEvent::SampleRejected {
                reason: note("haemolysed"),
            },
        ),
    ]
}

#[test]
fn every_event_type_round_trips_through_its_schema() -> TestResult {
    let schemas = EventSchemas::load()?;
    for event in every_event_type() {
        let (event_type, record) = to_record(&event);
        let (_, schema) = schemas.get(event_type)?;
        let bytes = GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(record)?;
        let value = GenericDatumReader::builder(schema)
            .build()?
            .read_value(&mut bytes.as_slice())?;
        let (header, decoded) = from_record(event_type, value)?;
        assert_eq!(header, EventHeader::of(&event));
        assert_eq!(decoded, event.payload);
    }
    Ok(())
}

#[tokio::test]
async fn every_event_type_round_trips_in_the_wire_format_through_the_registry() -> TestResult {
    let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
    let server = RegistryServer::bind(RegistryStore::new(pool), ([127, 0, 0, 1], 0).into()).await?;
    let url = format!("http://{}", server.local_addr()?);
    tokio::spawn(server.serve(std::future::pending()));

    let topic = "laboratory.sample.events";
    let codec = WireCodec::new(&url)?;
    let ids = codec.register_all(topic).await?;
    assert_eq!(ids.len(), 4);

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
        let bytes = codec.encode(topic, &event).await?;
        assert_eq!(bytes[0], 0, "magic byte");
        let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let (event_type, _) = to_record(&event);
        assert_eq!(
            Some(&schema_id),
            ids.get(event_type),
            "the registered id is in the header"
        );
        let (header, decoded) = WireCodec::new(&url)?.decode(&bytes).await?;
        assert_eq!(header, EventHeader::of(&event));
        assert_eq!(decoded, event.payload);
    }
    assert!(
        codec.decode(b"{\"json\":true}").await.is_err(),
        "not the wire format"
    );
    Ok(())
}
