//! Time travel: a sample, or a box, as it stood at an instant, rebuilt from the events.
//!
//! Nothing here reads a history table: the state at `at` is the fold of the events
//! recorded at or before `at`, by the same `apply` the aggregates use, so "as of" can never
//! disagree with the log. An event's instant is its `recorded_at`, the start of the
//! transaction that appended it (an append is one statement, so that is within
//! milliseconds of its commit); "as of" an instant includes every event recorded then.
//!
//! A box as of `at` is its own stream folded up to `at` (name, place, grid, in service)
//! plus its occupants: the samples whose events name the box (stored or moved into it,
//! moved out of it, removed, checked out or disposed from it; two expression indexes on
//! the events find them), each folded up to `at` and kept when its position then was in
//! this box.

use crate::error::Error;
use chrono::{DateTime, Utc};
use cqrs::Aggregate;
use cqrs::sample::{RegisteredSample, Sample, SampleEvent};
use cqrs::storage::{StorageEvent, StorageUnit, Unit};
use event_sourcing::{EventStore, StoredEvent};
use serde::Serialize;
use uuid::Uuid;

/// A sample as it stood at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct SampleAsOf {
    pub at: DateTime<Utc>,
    /// Its version then (0: not yet registered).
    pub version: u64,
    pub sample: Option<RegisteredSample>,
}

/// One occupied position of a box at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct OccupantAsOf {
    pub position: String,
    pub sample_id: Uuid,
    pub barcode: String,
    pub sample_type: String,
    pub status: String,
}

/// A box (or any unit) as it stood at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct UnitAsOf {
    pub at: DateTime<Utc>,
    pub version: u64,
    pub unit: Option<Unit>,
    /// For a box: who was in it then, by position.
    pub occupants: Vec<OccupantAsOf>,
}

fn fold_until<A: Aggregate>(events: &[StoredEvent<A::Event>], at: DateTime<Utc>) -> (A, u64) {
    let mut state = A::default();
    let mut version = 0;
    for event in events.iter().filter(|e| e.recorded_at <= at) {
        state.apply(&event.payload);
        version = event.version;
    }
    (state, version)
}

/// Sample `id` as it stood at `at`.
pub async fn sample_as_of(
    store: &EventStore,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<SampleAsOf, Error> {
    let events = store.read_stream::<SampleEvent>(id).await?;
    let (state, version) = fold_until::<Sample>(&events, at);
    Ok(SampleAsOf {
        at,
        version,
        sample: state.registered,
    })
}

/// Unit `id` as it stood at `at`, with a box's occupants then.
pub async fn unit_as_of(
    store: &EventStore,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<UnitAsOf, Error> {
    let events = store.read_stream::<StorageEvent>(id).await?;
    let (state, version) = fold_until::<StorageUnit>(&events, at);
    let is_box = state.unit.as_ref().is_some_and(|u| u.grid.is_some());
    let occupants = if is_box {
        occupants_as_of(store, id, at).await?
    } else {
        Vec::new()
    };
    Ok(UnitAsOf {
        at,
        version,
        unit: state.unit,
        occupants,
    })
}

async fn occupants_as_of(
    store: &EventStore,
    box_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<OccupantAsOf>, Error> {
    let key = box_id.to_string();
    let candidates: Vec<Uuid> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'Sample' \
           AND payload->>'box_id' = $1 AND recorded_at <= $2 \
         UNION \
         SELECT aggregate_id FROM events WHERE aggregate_type = 'Sample' \
           AND payload->>'from_box_id' = $1 AND recorded_at <= $2",
    )
    .bind(&key)
    .bind(at)
    .fetch_all(store.pool())
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let events = store
        .read_streams_until::<SampleEvent>(&candidates, at)
        .await?;
    let mut occupants = Vec::new();
    for stream in events.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
        let (state, _) = fold_until::<Sample>(stream, at);
        if let Some(sample) = state.registered
            && let Some((in_box, position)) = sample.location
            && in_box.as_uuid() == box_id
        {
            occupants.push(OccupantAsOf {
                position: position.to_string(),
                sample_id: sample.id.as_uuid(),
                barcode: sample.details.barcode.to_string(),
                sample_type: sample.details.sample_type.code().to_owned(),
                status: sample.status.as_str().to_owned(),
            });
        }
    }
    occupants.sort_by(|a, b| {
        let key = |p: &str| cqrs::storage::Position::parse(p).ok();
        key(&a.position).cmp(&key(&b.position))
    });
    Ok(occupants)
}
