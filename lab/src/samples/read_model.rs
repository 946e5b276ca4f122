//! The `samples` read table: a denormalised row per sample for the list and detail pages,
//! kept up to date by a projection that follows the event log.

use chrono::{DateTime, Utc};
use cqrs::sample::{Sample, SampleEvent, SampleStatus, SampleType, TemperatureZone, VolumeUl};
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

/// Applies one sample event to the `samples` table. Idempotent, and strict about order: a
/// row only moves from version `v - 1` to `v`, so an event seen twice changes nothing and
/// an event whose predecessor is missing is refused rather than half applied.
pub async fn apply_sample_event(
    conn: &mut PgConnection,
    sample_id: Uuid,
    version: u64,
    recorded_at: DateTime<Utc>,
    who: &str,
    event: &SampleEvent,
) -> Result<(), ApplyError> {
    let version_i64 = i64::try_from(version).unwrap_or(i64::MAX);
    let (status, reason) = match event {
        SampleEvent::SampleRegistered { id, details } => {
            sqlx::query(
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
            .await?;
            return Ok(());
        }
        SampleEvent::SampleReceived { .. } => (SampleStatus::Received, None),
        SampleEvent::SampleValidated { .. } => (SampleStatus::Validated, None),
        SampleEvent::SampleRejected { reason, .. } => {
            (SampleStatus::Rejected, Some(reason.as_str()))
        }
    };
    let updated = sqlx::query(
        "UPDATE samples SET status = $2, rejection_reason = COALESCE($3, rejection_reason), \
         last_changed_at = $4, last_changed_by = $5, version = $6 \
         WHERE sample_id = $1 AND version = $6 - 1",
    )
    .bind(sample_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(recorded_at)
    .bind(who)
    .bind(version_i64)
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
    }
    Ok(())
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
        VolumeUl::parse(&self.volume_ul).map_or_else(|_| self.volume_ul.clone(), |v| v.to_string())
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
    registered_by, last_changed_at, last_changed_by, version";

/// Which samples to list.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    /// Barcode prefix (upper-cased like barcodes are).
    pub barcode_prefix: Option<String>,
    pub status: Option<SampleStatus>,
    /// 1-based page number.
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SamplePage {
    pub items: Vec<SampleRow>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

impl SamplePage {
    pub fn pages(&self) -> u32 {
        let per_page = i64::from(self.per_page.max(1));
        u32::try_from((self.total + per_page - 1) / per_page)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// Most recently changed first.
pub async fn list(pool: &PgPool, filter: &SampleFilter) -> Result<SamplePage, sqlx::Error> {
    let per_page = filter.per_page.clamp(1, 200);
    let page = filter.page.max(1);
    let prefix = filter.barcode_prefix.as_deref().map(|p| {
        let escaped = p
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    let status = filter.status.map(SampleStatus::as_str);
    let condition = "($1::text IS NULL OR barcode LIKE $1) AND ($2::text IS NULL OR status = $2)";
    let items: Vec<SampleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM samples WHERE {condition} \
         ORDER BY last_changed_at DESC, sample_id LIMIT $3 OFFSET $4"
    ))
    .bind(&prefix)
    .bind(status)
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM samples WHERE {condition}"))
        .bind(&prefix)
        .bind(status)
        .fetch_one(pool)
        .await?;
    Ok(SamplePage {
        items: items.into_iter().map(SampleRow::normalise).collect(),
        page,
        per_page,
        total,
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
