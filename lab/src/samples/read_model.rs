//! The `samples` read table: a denormalised row per sample for the list and detail pages,
//! kept up to date by a projection that follows the event log.

use chrono::{DateTime, Utc};
use cqrs::sample::{Sample, SampleEvent, SampleStatus, SampleType, TemperatureZone, Volume};
use event_sourcing::{Envelope, Projection, ProjectionError};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Why an event could not be applied to the samples table.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("samples table: {0}")]
    Database(#[from] sqlx::Error),
    /// The event's predecessor has not been applied (it was dead-lettered, say).
    #[error("sample {sample_id} is at version {at:?}; event version {version} must follow version {}", version - 1)]
    OutOfOrder {
        sample_id: Uuid,
        version: u64,
        at: Option<i64>,
    },
}

/// What an event changes in a sample's row, besides its status, version and last change.
#[derive(Default)]
struct Change<'a> {
    /// `Some(reason)` sets the rejection reason (`Some(None)` clears it).
    rejection_reason: Option<Option<&'a str>>,
    /// `Some(Some((box, position)))` places it, `Some(None)` takes it out of storage.
    location: Option<Option<(Uuid, String)>>,
    /// `Some(Some((id, name)))` hands it to someone, `Some(None)` ends custody.
    holder: Option<Option<(Uuid, &'a str)>>,
    volume_ul: Option<String>,
    /// Box counts: `(box, +1/-1)`.
    occupancy: Vec<(Uuid, i32)>,
}

/// Applies one sample event to the `samples` table (and the boxes' occupancy counts).
/// Idempotent, and strict about order: a row only moves from version `v - 1` to `v`, so
/// an event seen twice changes nothing and an event whose predecessor is missing is
/// refused rather than half applied.
pub async fn apply_sample_event(
    conn: &mut PgConnection,
    sample_id: Uuid,
    version: u64,
    recorded_at: DateTime<Utc>,
    who: &str,
    event: &SampleEvent,
) -> Result<(), ApplyError> {
    let version_i64 = i64::try_from(version).unwrap_or(i64::MAX);
    let mut change = Change::default();
    let status = match event {
        SampleEvent::SampleRegistered { id, details } => {
            let inserted = sqlx::query(
                "INSERT INTO samples (sample_id, barcode, sample_type, status, volume_ul, \
                 temperature_zone, patient_ref, collected_at, collected_by, registered_at, \
                 registered_by, last_changed_at, last_changed_by, version) \
                 VALUES ($1, $2, $3, 'registered', $4::numeric, $5, $6, $7, $8, $9, $10, $9, $10, $11) \
                 ON CONFLICT (sample_id) DO NOTHING",
            )
            .bind(id.as_uuid())
            .bind(details.barcode.as_str())
            .bind(details.sample_type.code())
            .bind(details.volume.to_string())
            .bind(details.temperature_zone.code())
            .bind(details.patient.as_ref().map(|p| p.as_str()))
            .bind(details.collected_at)
            .bind(details.collected_by.as_ref().map(|c| c.as_str()))
            .bind(recorded_at)
            .bind(who)
            .bind(version_i64)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                count_status(conn, SampleStatus::Registered.as_str(), 1).await?;
            }
            return Ok(());
        }
        SampleEvent::AliquotCreated {
            sample_id: id,
            parent_id,
            barcode,
            sample_type,
            volume_ul,
            temperature_zone,
            patient_ref,
            ..
        } => {
            let inserted = sqlx::query(
                "INSERT INTO samples (sample_id, barcode, sample_type, status, volume_ul, \
                 temperature_zone, patient_ref, parent_id, registered_at, \
                 registered_by, last_changed_at, last_changed_by, version) \
                 VALUES ($1, $2, $3, 'validated', $4::numeric, $5, $6, $7, $8, $9, $8, $9, $10) \
                 ON CONFLICT (sample_id) DO NOTHING",
            )
            .bind(id.as_uuid())
            .bind(barcode.as_str())
            .bind(sample_type.code())
            .bind(volume_ul.to_string())
            .bind(temperature_zone.code())
            .bind(patient_ref.as_ref().map(|p| p.as_str()))
            .bind(parent_id.as_uuid())
            .bind(recorded_at)
            .bind(who)
            .bind(version_i64)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                count_status(conn, SampleStatus::Validated.as_str(), 1).await?;
            }
            return Ok(());
        }
        SampleEvent::SampleReceived { .. } => SampleStatus::Received,
        SampleEvent::SampleValidated { .. } => SampleStatus::Validated,
        SampleEvent::SampleRejected { reason, .. } => {
            change.rejection_reason = Some(Some(reason.as_str()));
            SampleStatus::Rejected
        }
        SampleEvent::SampleQcCorrected { passed, reason, .. } => {
            if *passed {
                change.rejection_reason = Some(None);
                SampleStatus::Validated
            } else {
                change.rejection_reason = Some(Some(reason.as_str()));
                SampleStatus::Rejected
            }
        }
        SampleEvent::SampleStored {
            box_id, position, ..
        } => {
            change.location = Some(Some((box_id.as_uuid(), position.to_string())));
            change.occupancy.push((box_id.as_uuid(), 1));
            SampleStatus::InStorage
        }
        SampleEvent::SampleMoved {
            from_box_id,
            box_id,
            position,
            ..
        } => {
            change.location = Some(Some((box_id.as_uuid(), position.to_string())));
            if from_box_id != box_id {
                change.occupancy.push((from_box_id.as_uuid(), -1));
                change.occupancy.push((box_id.as_uuid(), 1));
            }
            SampleStatus::InStorage
        }
        SampleEvent::SampleRemovedFromStorage { box_id, .. } => {
            change.location = Some(None);
            change.occupancy.push((box_id.as_uuid(), -1));
            SampleStatus::Validated
        }
        SampleEvent::SampleCheckedOut {
            holder_id,
            holder,
            from_box_id,
            ..
        } => {
            change.holder = Some(Some((*holder_id, holder.as_str())));
            if let Some(from) = from_box_id {
                change.location = Some(None);
                change.occupancy.push((from.as_uuid(), -1));
            }
            SampleStatus::CheckedOut
        }
        SampleEvent::SampleReturned { .. } => {
            change.holder = Some(None);
            SampleStatus::Validated
        }
        SampleEvent::SampleAliquoted {
            remaining_volume_ul,
            ..
        } => {
            change.volume_ul = Some(remaining_volume_ul.to_string());
            // Aliquoting does not change where the parent is or its status.
            return apply_update(conn, sample_id, version, recorded_at, who, None, change).await;
        }
        SampleEvent::SampleDisposed { from_box_id, .. } => {
            if let Some(from) = from_box_id {
                change.location = Some(None);
                change.occupancy.push((from.as_uuid(), -1));
            }
            SampleStatus::Disposed
        }
    };
    apply_update(
        conn,
        sample_id,
        version,
        recorded_at,
        who,
        Some(status),
        change,
    )
    .await
}

async fn apply_update(
    conn: &mut PgConnection,
    sample_id: Uuid,
    version: u64,
    recorded_at: DateTime<Utc>,
    who: &str,
    status: Option<SampleStatus>,
    change: Change<'_>,
) -> Result<(), ApplyError> {
    let version_i64 = i64::try_from(version).unwrap_or(i64::MAX);
    let (set_location, location) = match change.location {
        Some(location) => (true, location),
        None => (false, None),
    };
    let (set_holder, holder) = match change.holder {
        Some(holder) => (true, holder),
        None => (false, None),
    };
    let (set_reason, reason) = match change.rejection_reason {
        Some(reason) => (true, reason),
        None => (false, None),
    };
    let before: Option<String> = match status {
        Some(_) => {
            sqlx::query_scalar(
                "SELECT status FROM samples WHERE sample_id = $1 AND version = $2 - 1",
            )
            .bind(sample_id)
            .bind(version_i64)
            .fetch_optional(&mut *conn)
            .await?
        }
        None => None,
    };
    let updated = sqlx::query(
        "UPDATE samples SET status = COALESCE($2, status), \
         rejection_reason = CASE WHEN $3 THEN $4 ELSE rejection_reason END, \
         box_id = CASE WHEN $5 THEN $6 ELSE box_id END, \
         position = CASE WHEN $5 THEN $7 ELSE position END, \
         stored_at = CASE WHEN $5 THEN (CASE WHEN $6::uuid IS NULL THEN NULL ELSE $13 END) ELSE stored_at END, \
         holder_id = CASE WHEN $8 THEN $9 ELSE holder_id END, \
         holder = CASE WHEN $8 THEN $10 ELSE holder END, \
         holder_since = CASE WHEN $8 THEN (CASE WHEN $9::uuid IS NULL THEN NULL ELSE $13 END) ELSE holder_since END, \
         volume_ul = COALESCE($11::numeric, volume_ul), \
         last_changed_at = $13, last_changed_by = $14, version = $12 \
         WHERE sample_id = $1 AND version = $12 - 1",
    )
    .bind(sample_id)
    .bind(status.map(SampleStatus::as_str))
    .bind(set_reason)
    .bind(reason)
    .bind(set_location)
    .bind(location.as_ref().map(|(b, _)| *b))
    .bind(location.as_ref().map(|(_, p)| p.as_str()))
    .bind(set_holder)
    .bind(holder.map(|(id, _)| id))
    .bind(holder.map(|(_, name)| name))
    .bind(change.volume_ul)
    .bind(version_i64)
    .bind(recorded_at)
    .bind(who)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT version FROM samples WHERE sample_id = $1")
                .bind(sample_id)
                .fetch_optional(&mut *conn)
                .await?;
        if at.is_none_or(|v| v < version_i64) {
            return Err(ApplyError::OutOfOrder {
                sample_id,
                version,
                at,
            });
        }
        // Seen before: its counts were applied with it.
        return Ok(());
    }
    if let (Some(before), Some(after)) = (before, status)
        && before != after.as_str()
    {
        count_status(conn, &before, -1).await?;
        count_status(conn, after.as_str(), 1).await?;
    }
    for (box_id, delta) in change.occupancy {
        sqlx::query(
            "INSERT INTO box_occupancy (box_id, occupied) VALUES ($1, $2) \
             ON CONFLICT (box_id) DO UPDATE SET occupied = box_occupancy.occupied + EXCLUDED.occupied",
        )
        .bind(box_id)
        .bind(delta)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn count_status(
    conn: &mut PgConnection,
    status: &str,
    delta: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sample_status_counts (status, samples) VALUES ($1, $2) \
         ON CONFLICT (status) DO UPDATE SET samples = sample_status_counts.samples + EXCLUDED.samples",
    )
    .bind(status)
    .bind(delta)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Samples per status (every status, zero included), from the counts the projection keeps.
pub async fn status_counts(pool: &PgPool) -> Result<Vec<(SampleStatus, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, samples FROM sample_status_counts")
            .fetch_all(pool)
            .await?;
    Ok(SampleStatus::ALL
        .iter()
        .map(|s| {
            let n = rows
                .iter()
                .find(|(name, _)| name == s.as_str())
                .map_or(0, |(_, n)| *n);
            (*s, n)
        })
        .collect())
}

/// The samples projection, fed either by following the event log in-process or by a
/// Kafka consumer group: the same code either way.
pub struct SamplesProjection;

impl Projection for SamplesProjection {
    const NAME: &'static str = "samples";
    type Aggregate = Sample;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope<SampleEvent>,
    ) -> Result<(), ProjectionError> {
        apply_sample_event(
            conn,
            event.aggregate_id,
            event.version,
            event.recorded_at,
            &event.metadata.user,
            &event.payload,
        )
        .await
        .map_err(|e| match e {
            ApplyError::Database(db) => ProjectionError::from(db),
            other => ProjectionError::Permanent(other.to_string()),
        })
    }
}

/// A row of the samples read table, as pages and the API show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SampleRow {
    pub sample_id: Uuid,
    pub barcode: String,
    pub sample_type: String,
    pub status: String,
    pub volume_ul: String,
    pub temperature_zone: String,
    pub patient_ref: Option<String>,
    pub collected_at: Option<DateTime<Utc>>,
    pub collected_by: Option<String>,
    pub rejection_reason: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub registered_by: String,
    pub last_changed_at: DateTime<Utc>,
    pub last_changed_by: String,
    pub version: i64,
    /// The box it is in, while stored.
    pub box_id: Option<Uuid>,
    pub position: Option<String>,
    pub stored_at: Option<DateTime<Utc>>,
    /// Who holds it, while checked out, and since when.
    pub holder_id: Option<Uuid>,
    pub holder: Option<String>,
    pub holder_since: Option<DateTime<Utc>>,
    /// The sample it was aliquoted from.
    pub parent_id: Option<Uuid>,
}

impl SampleRow {
    pub fn type_label(&self) -> &str {
        SampleType::parse(&self.sample_type).map_or(self.sample_type.as_str(), |t| t.label())
    }

    pub fn zone_label(&self) -> &str {
        TemperatureZone::parse(&self.temperature_zone)
            .map_or(self.temperature_zone.as_str(), |z| z.label())
    }

    /// Microlitres without trailing zeros.
    pub fn volume(&self) -> String {
        Volume::parse(&self.volume_ul).map_or_else(|_| self.volume_ul.clone(), |v| v.to_string())
    }

    pub fn status(&self) -> Option<SampleStatus> {
        SampleStatus::parse(&self.status).ok()
    }

    fn normalise(mut self) -> Self {
        self.volume_ul = self.volume();
        self
    }
}

const COLUMNS: &str = "sample_id, barcode, sample_type, status, volume_ul::text AS volume_ul, \
    temperature_zone, patient_ref, collected_at, collected_by, rejection_reason, registered_at, \
    registered_by, last_changed_at, last_changed_by, version, box_id, position, stored_at, \
    holder_id, holder, holder_since, parent_id";

/// Which samples to list.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    /// Barcode prefix (upper-cased like barcodes are).
    pub barcode_prefix: Option<String>,
    pub status: Option<SampleStatus>,
    pub sample_type: Option<SampleType>,
    pub zone: Option<TemperatureZone>,
    /// In this storage unit: a box, or any box of a rack or freezer.
    pub location: Option<Uuid>,
    pub patient: Option<String>,
    /// Registered at or after / before.
    pub registered_from: Option<DateTime<Utc>>,
    pub registered_to: Option<DateTime<Utc>>,
    /// 1-based page number.
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SamplePage {
    pub items: Vec<SampleRow>,
    pub page: u32,
    pub per_page: u32,
    /// Matching samples, counted up to [`COUNT_LIMIT`]; `total_capped` says when more
    /// matched (counting a million rows on every page view would be the slowest part of
    /// the page).
    pub total: i64,
    pub total_capped: bool,
}

/// How far a list counts its matches.
pub const COUNT_LIMIT: i64 = 10_000;

impl SamplePage {
    pub fn pages(&self) -> u32 {
        let per_page = i64::from(self.per_page.max(1));
        u32::try_from((self.total + per_page - 1) / per_page)
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// Whether there is a page after this one.
    pub fn has_next(&self) -> bool {
        self.page < self.pages() || (self.total_capped && self.items.len() as u32 == self.per_page)
    }
}

/// The filter's conditions, only those it sets, so that the planner sees each as it is
/// (a generic `$1 IS NULL OR …` for every filter hides the indexes from it).
fn push_conditions<'a>(
    qb: &mut sqlx::QueryBuilder<'a, sqlx::Postgres>,
    filter: &'a SampleFilter,
    prefix: Option<String>,
    boxes: Option<Vec<Uuid>>,
) {
    qb.push(" WHERE true");
    if let Some(prefix) = prefix {
        qb.push(" AND barcode LIKE ").push_bind(prefix);
    }
    if let Some(status) = filter.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(sample_type) = filter.sample_type {
        qb.push(" AND sample_type = ").push_bind(sample_type.code());
    }
    if let Some(zone) = filter.zone {
        qb.push(" AND temperature_zone = ").push_bind(zone.code());
    }
    if let Some(boxes) = boxes {
        qb.push(" AND box_id = ANY(").push_bind(boxes).push(")");
    }
    if let Some(patient) = &filter.patient {
        qb.push(" AND patient_ref = ").push_bind(patient.as_str());
    }
    if let Some(from) = filter.registered_from {
        qb.push(" AND registered_at >= ").push_bind(from);
    }
    if let Some(to) = filter.registered_to {
        qb.push(" AND registered_at < ").push_bind(to);
    }
}

/// Most recently changed first.
pub async fn list(pool: &PgPool, filter: &SampleFilter) -> Result<SamplePage, sqlx::Error> {
    let per_page = filter.per_page.clamp(1, 200);
    let page = filter.page.clamp(1, 100_000);
    let prefix = filter.barcode_prefix.as_deref().map(|p| {
        let escaped = p
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    // A location is a box, or the boxes of a rack or freezer (at most a few hundred).
    let boxes: Option<Vec<Uuid>> = match filter.location {
        Some(unit) => Some(
            sqlx::query_scalar(
                "SELECT unit_id FROM storage_units WHERE kind = 'box' AND (unit_id = $1 OR parent_id = $1 \
                 OR parent_id IN (SELECT unit_id FROM storage_units WHERE parent_id = $1))",
            )
            .bind(unit)
            .fetch_all(pool)
            .await?,
        ),
        None => None,
    };
    let mut items = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM samples"));
    push_conditions(&mut items, filter, prefix.clone(), boxes.clone());
    items
        .push(" ORDER BY last_changed_at DESC, sample_id LIMIT ")
        .push_bind(i64::from(per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(page - 1) * i64::from(per_page));
    let items: Vec<SampleRow> = items.build_query_as().fetch_all(pool).await?;
    let mut count = sqlx::QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM samples");
    push_conditions(&mut count, filter, prefix, boxes);
    count
        .push(" LIMIT ")
        .push_bind(COUNT_LIMIT + 1)
        .push(") AS m");
    let counted: i64 = count.build_query_scalar().fetch_one(pool).await?;
    Ok(SamplePage {
        items: items.into_iter().map(SampleRow::normalise).collect(),
        page,
        per_page,
        total: counted.min(COUNT_LIMIT),
        total_capped: counted > COUNT_LIMIT,
    })
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<SampleRow>, sqlx::Error> {
    let row: Option<SampleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM samples WHERE sample_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(SampleRow::normalise))
}

pub async fn find_by_barcode(pool: &PgPool, barcode: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT sample_id FROM samples WHERE barcode = $1")
        .bind(barcode)
        .fetch_optional(pool)
        .await
}
