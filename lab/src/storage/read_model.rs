//! The storage read tables: `storage_units` (one row per freezer, rack and box, with its
//! current place, last reading and open excursion) and `temperature_excursions`, kept by
//! [`StorageProjection`]. Fill levels come from `box_occupancy`, which the samples
//! projection keeps (see `samples::read_model`).

use chrono::{DateTime, Utc};
use cqrs::sample::TemperatureZone;
use cqrs::storage::{StorageEvent, StorageUnit};
use event_sourcing::{Envelope, Projection, ProjectionError};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("storage tables: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storage unit {unit_id} is at version {at:?}; event version {version} must follow version {}", version - 1)]
    OutOfOrder {
        unit_id: Uuid,
        version: u64,
        at: Option<i64>,
    },
}

/// Applies one storage event. Idempotent and strict about order, like the samples table.
pub async fn apply_storage_event(
    conn: &mut PgConnection,
    envelope: &Envelope<StorageEvent>,
) -> Result<(), ApplyError> {
    let unit_id = envelope.aggregate_id;
    let version = i64::try_from(envelope.version).unwrap_or(i64::MAX);
    let at = envelope.recorded_at;
    let who = envelope.metadata.user.as_str();
    let created = |kind: &'static str| {
        sqlx::query(
            "INSERT INTO storage_units (unit_id, kind, code, name, temperature_zone, parent_id, \
             slot, slots, grid_rows, grid_columns, capacity, created_at, created_by, \
             last_changed_at, last_changed_by, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12, $13, $14) \
             ON CONFLICT (unit_id) DO NOTHING",
        )
        .bind(unit_id)
        .bind(kind)
    };
    match &envelope.payload {
        StorageEvent::FreezerCreated {
            code,
            name,
            temperature_zone,
            slots,
            ..
        } => {
            created("freezer")
                .bind(code.as_str())
                .bind(name.as_str())
                .bind(temperature_zone.code())
                .bind(None::<Uuid>)
                .bind(None::<i32>)
                .bind(i32::from(*slots))
                .bind(None::<i32>)
                .bind(None::<i32>)
                .bind(0)
                .bind(at)
                .bind(who)
                .bind(version)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        StorageEvent::RackCreated {
            code,
            name,
            temperature_zone,
            parent_id,
            slot,
            slots,
            ..
        } => {
            created("rack")
                .bind(code.as_str())
                .bind(name.as_str())
                .bind(temperature_zone.code())
                .bind(parent_id.as_uuid())
                .bind(i32::from(*slot))
                .bind(i32::from(*slots))
                .bind(None::<i32>)
                .bind(None::<i32>)
                .bind(0)
                .bind(at)
                .bind(who)
                .bind(version)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        StorageEvent::BoxCreated {
            code,
            name,
            temperature_zone,
            parent_id,
            slot,
            rows,
            columns,
            ..
        } => {
            created("box")
                .bind(code.as_str())
                .bind(name.as_str())
                .bind(temperature_zone.code())
                .bind(parent_id.as_uuid())
                .bind(i32::from(*slot))
                .bind(None::<i32>)
                .bind(i32::from(*rows))
                .bind(i32::from(*columns))
                .bind(i32::from(*rows) * i32::from(*columns))
                .bind(at)
                .bind(who)
                .bind(version)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        _ => {}
    }
    macro_rules! update {
        ($set:literal) => {
            sqlx::query(concat!(
                "UPDATE storage_units SET ",
                $set,
                ", last_changed_at = $3, last_changed_by = $4, version = $2 \
                 WHERE unit_id = $1 AND version = $2 - 1"
            ))
        };
    }
    let query = match &envelope.payload {
        StorageEvent::UnitRenamed { name } => update!("name = $5")
            .bind(unit_id)
            .bind(version)
            .bind(at)
            .bind(who)
            .bind(name.as_str()),
        StorageEvent::UnitMoved {
            parent_id, slot, ..
        } => update!("parent_id = $5, slot = $6")
            .bind(unit_id)
            .bind(version)
            .bind(at)
            .bind(who)
            .bind(parent_id.as_uuid())
            .bind(i32::from(*slot)),
        StorageEvent::UnitDecommissioned { reason, .. } => update!(
            "decommissioned_at = $3, decommission_reason = $5, \
             parent_id = NULL, slot = NULL"
        )
        .bind(unit_id)
        .bind(version)
        .bind(at)
        .bind(who)
        .bind(reason.as_str()),
        StorageEvent::TemperatureRecorded {
            celsius,
            measured_at,
        } => update!("last_celsius = $5::numeric, last_measured_at = $6")
            .bind(unit_id)
            .bind(version)
            .bind(at)
            .bind(who)
            .bind(celsius.to_string())
            .bind(*measured_at),
        StorageEvent::TemperatureExcursionRaised {
            excursion_id,
            celsius,
            allowed_min,
            allowed_max,
            measured_at,
        } => {
            sqlx::query(
                "INSERT INTO temperature_excursions (excursion_id, unit_id, celsius, allowed_min, \
                 allowed_max, measured_at, raised_at) \
                 VALUES ($1, $2, $3::numeric, $4::numeric, $5::numeric, $6, $7) \
                 ON CONFLICT (excursion_id) DO NOTHING",
            )
            .bind(excursion_id)
            .bind(unit_id)
            .bind(celsius.to_string())
            .bind(allowed_min.to_string())
            .bind(allowed_max.to_string())
            .bind(measured_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            update!("open_excursion_id = $5")
                .bind(unit_id)
                .bind(version)
                .bind(at)
                .bind(who)
                .bind(excursion_id)
        }
        StorageEvent::TemperatureExcursionResolved { excursion_id, note } => {
            sqlx::query(
                "UPDATE temperature_excursions SET resolved_at = $2, resolved_by = $3, \
                 resolution_note = $4 WHERE excursion_id = $1 AND resolved_at IS NULL",
            )
            .bind(excursion_id)
            .bind(at)
            .bind(who)
            .bind(note.as_str())
            .execute(&mut *conn)
            .await?;
            update!("open_excursion_id = NULL")
                .bind(unit_id)
                .bind(version)
                .bind(at)
                .bind(who)
        }
        StorageEvent::FreezerCreated { .. }
        | StorageEvent::RackCreated { .. }
        | StorageEvent::BoxCreated { .. } => return Ok(()),
    };
    let updated = query.execute(&mut *conn).await?.rows_affected();
    if updated == 0 {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT version FROM storage_units WHERE unit_id = $1")
                .bind(unit_id)
                .fetch_optional(&mut *conn)
                .await?;
        if at.is_none_or(|v| v < version) {
            return Err(ApplyError::OutOfOrder {
                unit_id,
                version: envelope.version,
                at,
            });
        }
    }
    Ok(())
}

/// The storage projection, fed by the in-process follower or a Kafka consumer group.
pub struct StorageProjection;

impl Projection for StorageProjection {
    const NAME: &'static str = "storage";
    type Aggregate = StorageUnit;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope<StorageEvent>,
    ) -> Result<(), ProjectionError> {
        apply_storage_event(conn, event).await.map_err(|e| match e {
            ApplyError::Database(db) => ProjectionError::from(db),
            other => ProjectionError::Permanent(other.to_string()),
        })
    }
}

/// A storage unit as pages and the API show it, with its fill level.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UnitRow {
    pub unit_id: Uuid,
    pub kind: String,
    pub code: String,
    pub name: String,
    pub temperature_zone: String,
    pub parent_id: Option<Uuid>,
    pub slot: Option<i32>,
    pub slots: Option<i32>,
    pub grid_rows: Option<i32>,
    pub grid_columns: Option<i32>,
    /// Positions in it (a box's grid; the sum of its boxes' for a rack or freezer).
    pub capacity: i64,
    /// Samples in it.
    pub occupied: i64,
    pub decommissioned_at: Option<DateTime<Utc>>,
    pub decommission_reason: Option<String>,
    pub last_celsius: Option<String>,
    pub last_measured_at: Option<DateTime<Utc>>,
    pub open_excursion_id: Option<Uuid>,
    pub version: i64,
}

impl UnitRow {
    pub fn zone_label(&self) -> &str {
        TemperatureZone::parse(&self.temperature_zone)
            .map_or(self.temperature_zone.as_str(), |z| z.label())
    }

    /// Fill level in whole percent (0 for a unit without positions).
    pub fn fill_percent(&self) -> i64 {
        if self.capacity <= 0 {
            0
        } else {
            (self.occupied * 100 + self.capacity - 1) / self.capacity
        }
    }

    pub fn free(&self) -> i64 {
        (self.capacity - self.occupied).max(0)
    }

    pub fn in_service(&self) -> bool {
        self.decommissioned_at.is_none()
    }
}

/// Units with their capacity and fill summed over the boxes beneath them.
const UNIT_SELECT: &str = "\
    SELECT u.unit_id, u.kind, u.code, u.name, u.temperature_zone, u.parent_id, u.slot, u.slots, \
           u.grid_rows, u.grid_columns, \
           CASE u.kind WHEN 'box' THEN u.capacity::bigint \
                WHEN 'rack' THEN (SELECT COALESCE(sum(b.capacity), 0)::bigint FROM storage_units b \
                                  WHERE b.parent_id = u.unit_id AND b.decommissioned_at IS NULL) \
                ELSE (SELECT COALESCE(sum(b.capacity), 0)::bigint FROM storage_units r \
                      JOIN storage_units b ON b.parent_id = r.unit_id AND b.decommissioned_at IS NULL \
                      WHERE r.parent_id = u.unit_id AND r.decommissioned_at IS NULL) END AS capacity, \
           CASE u.kind WHEN 'box' THEN COALESCE((SELECT o.occupied FROM box_occupancy o WHERE o.box_id = u.unit_id), 0)::bigint \
                WHEN 'rack' THEN (SELECT COALESCE(sum(o.occupied), 0)::bigint FROM storage_units b \
                                  JOIN box_occupancy o ON o.box_id = b.unit_id WHERE b.parent_id = u.unit_id) \
                ELSE (SELECT COALESCE(sum(o.occupied), 0)::bigint FROM storage_units r \
                      JOIN storage_units b ON b.parent_id = r.unit_id \
                      JOIN box_occupancy o ON o.box_id = b.unit_id WHERE r.parent_id = u.unit_id) END AS occupied, \
           u.decommissioned_at, u.decommission_reason, u.last_celsius::text AS last_celsius, \
           u.last_measured_at, u.open_excursion_id, u.version \
    FROM storage_units u";

pub async fn unit(pool: &PgPool, id: Uuid) -> Result<Option<UnitRow>, sqlx::Error> {
    sqlx::query_as(&format!("{UNIT_SELECT} WHERE u.unit_id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The unit in service with this barcode (a decommissioned unit's code stays its own,
/// but scanning it finds nothing to put things into).
pub async fn unit_by_code(pool: &PgPool, code: &str) -> Result<Option<UnitRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{UNIT_SELECT} WHERE u.code = $1 ORDER BY u.decommissioned_at NULLS FIRST LIMIT 1"
    ))
    .bind(code)
    .fetch_optional(pool)
    .await
}

/// The units directly in `parent` (or the freezers, for `None`), in slot order, in service
/// first.
pub async fn children(pool: &PgPool, parent: Option<Uuid>) -> Result<Vec<UnitRow>, sqlx::Error> {
    match parent {
        Some(parent) => {
            sqlx::query_as(&format!(
                "{UNIT_SELECT} WHERE u.parent_id = $1 ORDER BY u.slot, u.code"
            ))
            .bind(parent)
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(&format!(
                "{UNIT_SELECT} WHERE u.kind = 'freezer' ORDER BY u.decommissioned_at NULLS FIRST, u.code"
            ))
            .fetch_all(pool)
            .await
        }
    }
}

/// The racks in a freezer and the boxes in them, in one query: racks in slot order,
/// each followed by its boxes in slot order.
pub async fn subtree(pool: &PgPool, freezer: Uuid) -> Result<Vec<UnitRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{UNIT_SELECT} LEFT JOIN storage_units p ON p.unit_id = u.parent_id \
         WHERE u.parent_id = $1 OR p.parent_id = $1 \
         ORDER BY CASE WHEN u.parent_id = $1 THEN u.slot ELSE p.slot END, \
                  CASE WHEN u.parent_id = $1 THEN u.code ELSE p.code END, \
                  u.parent_id <> $1, u.slot, u.code"
    ))
    .bind(freezer)
    .fetch_all(pool)
    .await
}

/// The chain from the freezer down to `id` (inclusive).
pub async fn path(pool: &PgPool, id: Uuid) -> Result<Vec<PathStep>, sqlx::Error> {
    sqlx::query_as(
        "WITH RECURSIVE up(unit_id, kind, code, name, parent_id, slot, depth) AS ( \
           SELECT unit_id, kind, code, name, parent_id, slot, 0 FROM storage_units WHERE unit_id = $1 \
           UNION ALL \
           SELECT s.unit_id, s.kind, s.code, s.name, s.parent_id, s.slot, up.depth + 1 \
           FROM storage_units s JOIN up ON s.unit_id = up.parent_id WHERE up.depth < 5) \
         SELECT unit_id, kind, code, name, slot FROM up ORDER BY depth DESC",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// One step of a location path: freezer › rack › box.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PathStep {
    pub unit_id: Uuid,
    pub kind: String,
    pub code: String,
    pub name: String,
    pub slot: Option<i32>,
}

/// A sample in a box position, as the grid shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Occupant {
    pub position: String,
    pub sample_id: Uuid,
    pub barcode: String,
    pub sample_type: String,
    pub status: String,
}

pub async fn occupants(pool: &PgPool, box_id: Uuid) -> Result<Vec<Occupant>, sqlx::Error> {
    sqlx::query_as(
        "SELECT position, sample_id, barcode, sample_type, status FROM samples \
         WHERE box_id = $1 ORDER BY position",
    )
    .bind(box_id)
    .fetch_all(pool)
    .await
}

/// Open temperature excursions, newest first, with their unit.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ExcursionRow {
    pub excursion_id: Uuid,
    pub unit_id: Uuid,
    pub unit_code: String,
    pub unit_name: String,
    pub celsius: String,
    pub allowed_min: String,
    pub allowed_max: String,
    pub measured_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

const EXCURSION_SELECT: &str = "SELECT e.excursion_id, e.unit_id, u.code AS unit_code, \
    u.name AS unit_name, e.celsius::text AS celsius, e.allowed_min::text AS allowed_min, \
    e.allowed_max::text AS allowed_max, e.measured_at, e.raised_at, e.resolved_at, \
    e.resolved_by, e.resolution_note \
    FROM temperature_excursions e JOIN storage_units u ON u.unit_id = e.unit_id";

pub async fn open_excursions(pool: &PgPool, limit: i64) -> Result<Vec<ExcursionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{EXCURSION_SELECT} WHERE e.resolved_at IS NULL ORDER BY e.raised_at DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn excursions_of(pool: &PgPool, unit: Uuid) -> Result<Vec<ExcursionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{EXCURSION_SELECT} WHERE e.unit_id = $1 ORDER BY e.raised_at DESC LIMIT 50"
    ))
    .bind(unit)
    .fetch_all(pool)
    .await
}

/// Boxes in service at least `percent` full, fullest first.
pub async fn nearly_full_boxes(
    pool: &PgPool,
    percent: i64,
    limit: i64,
) -> Result<Vec<UnitRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{UNIT_SELECT} JOIN box_occupancy o2 ON o2.box_id = u.unit_id \
         WHERE u.kind = 'box' AND u.decommissioned_at IS NULL AND u.capacity > 0 \
           AND o2.occupied * 100 >= $1 * u.capacity \
         ORDER BY o2.occupied::float8 / u.capacity DESC, u.code LIMIT $2"
    ))
    .bind(percent)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The first free position, row by row, in the boxes in service of `zone`, preferring
/// the fullest box that still has room (fill boxes before starting new ones).
pub async fn first_free_position(
    pool: &PgPool,
    zone: TemperatureZone,
) -> Result<Option<(UnitRow, String)>, sqlx::Error> {
    let candidates: Vec<UnitRow> = sqlx::query_as(&format!(
        "{UNIT_SELECT} LEFT JOIN box_occupancy o2 ON o2.box_id = u.unit_id \
         WHERE u.kind = 'box' AND u.decommissioned_at IS NULL AND u.temperature_zone = $1 \
           AND COALESCE(o2.occupied, 0) < u.capacity \
         ORDER BY COALESCE(o2.occupied, 0) DESC, u.code LIMIT 5"
    ))
    .bind(zone.code())
    .fetch_all(pool)
    .await?;
    for candidate in candidates {
        let (Some(rows), Some(columns)) = (candidate.grid_rows, candidate.grid_columns) else {
            continue;
        };
        let taken: Vec<String> = sqlx::query_scalar(
            "SELECT position FROM samples WHERE box_id = $1 AND position IS NOT NULL",
        )
        .bind(candidate.unit_id)
        .fetch_all(pool)
        .await?;
        let free = (0..rows).find_map(|r| {
            (1..=columns).find_map(|c| {
                let name = format!("{}{c}", char::from(b'A' + u8::try_from(r).unwrap_or(0)));
                (!taken.contains(&name)).then_some(name)
            })
        });
        if let Some(position) = free {
            return Ok(Some((candidate, position)));
        }
    }
    Ok(None)
}
