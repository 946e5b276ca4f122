//! Fresh, migrated PostgreSQL databases for tests and benchmarks.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

/// The server tests run against: `DATABASE_URL`'s server, or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a database with a unique name, applies the migrations, and returns a pool of
/// `max_connections` to it.
pub async fn fresh_database(max_connections: u32) -> Result<(PgPool, String), sqlx::Error> {
    let base = PgConnectOptions::from_str(&server_url())?;
    let name = format!("tracseq_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&base.clone().database("postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let options = base.database(&name).disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await?;
    crate::MIGRATOR.run(&pool).await?;
    Ok((pool, name))
}

/// Samples and raw events for the store's tests and benchmarks.
pub mod samples {
    use crate::{AppendRequest, CommandContext, NewEvent};
    use cqrs::DomainEvent;
    use cqrs::sample::{
        Barcode, Note, SampleCommand, SampleDetails, SampleEvent, SampleId, SampleType, Signature,
        SignatureMeaning, TemperatureZone, VolumeUl,
    };
    use uuid::Uuid;

    /// A 500 µL blood tube kept at 4 °C.
    ///
    /// # Panics
    /// When `barcode` is not a valid barcode (test input only).
    pub fn details(barcode: &str) -> SampleDetails {
        SampleDetails {
            barcode: Barcode::parse(barcode).expect("a valid test barcode"),
            sample_type: SampleType::Blood,
            volume: VolumeUl::parse("500").expect("a valid volume"),
            temperature_zone: TemperatureZone::Plus4,
            patient: None,
            collected_at: None,
            collected_by: None,
        }
    }

    /// A QC decision's electronic signature by a test account, approving, signed now.
    pub fn signature() -> Signature {
        Signature::new(
            Uuid::from_u128(0x5167_0001),
            "Test Signer",
            SignatureMeaning::Approved,
            chrono::Utc::now(),
        )
    }

    pub fn register(id: Uuid, barcode: &str) -> SampleCommand {
        SampleCommand::Register {
            id: SampleId::from_uuid(id),
            details: details(barcode),
        }
    }

    /// A `SampleReceived` event with `text` as its notes, stored at the current payload
    /// version.
    ///
    /// # Panics
    /// When `text` is not a valid note (test input only).
    pub fn note_event(text: &str) -> NewEvent {
        let event = SampleEvent::SampleReceived {
            notes: Some(Note::parse(text).expect("a valid test note")),
        };
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type(),
            schema_version: SampleEvent::SCHEMA_VERSION,
            payload: event
                .to_payload()
                .expect("a sample event serialises")
                .to_string(),
            metadata: CommandContext::new("test").event_metadata(),
        }
    }

    /// `events` note events for `aggregate_id`, appended only at `expected_version`.
    pub fn raw_request(aggregate_id: Uuid, expected_version: u64, events: usize) -> AppendRequest {
        AppendRequest {
            aggregate_type: "Sample",
            aggregate_id,
            expected_version,
            events: (0..events)
                .map(|i| note_event(&format!("event {i}")))
                .collect(),
            ..AppendRequest::default()
        }
    }
}
