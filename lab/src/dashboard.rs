//! The dashboard's figures: samples per status, recent activity, open temperature
//! alerts, boxes nearly full and dead letters waiting. Each is one indexed query (status
//! counts are kept by the samples projection), so the home page stays fast at a million
//! samples.

use crate::error::Error;
use crate::samples::read_model::status_counts;
use crate::storage::read_model::{nearly_full_boxes, open_excursions};
use crate::storage::{ExcursionRow, UnitRow};
use chrono::{DateTime, Utc};
use cqrs::sample::SampleStatus;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// One line of recent activity: what happened to which tube or unit, who, when.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Activity {
    pub recorded_at: DateTime<Utc>,
    pub user: Option<String>,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// The tube's barcode or the unit's code, when the read side has it.
    pub subject: Option<String>,
}

impl Activity {
    /// `SampleStored` → `Sample stored`.
    pub fn what(&self) -> String {
        let mut out = String::with_capacity(self.event_type.len() + 4);
        for (i, c) in self.event_type.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push(' ');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out.replace("Sample qc", "Sample QC")
    }

    pub fn link(&self) -> String {
        match self.aggregate_type.as_str() {
            "StorageUnit" => format!("/storage/{}", self.aggregate_id),
            _ => format!("/samples/{}", self.aggregate_id),
        }
    }
}

/// Everything on the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub by_status: Vec<(SampleStatus, i64)>,
    pub total: i64,
    pub activity: Vec<Activity>,
    pub alerts: Vec<ExcursionRow>,
    pub nearly_full: Vec<UnitRow>,
    /// Dead letters waiting to be re-processed, over every consumer.
    pub dead_letters: i64,
}

/// How full a box must be to show as nearly full.
pub const NEARLY_FULL_PERCENT: i64 = 90;

pub async fn dashboard(pool: &PgPool) -> Result<Dashboard, Error> {
    let by_status = status_counts(pool).await?;
    let total = by_status.iter().map(|(_, n)| n).sum();
    let activity: Vec<Activity> = sqlx::query_as(
        "SELECT e.recorded_at, e.metadata->>'user' AS user, e.event_type, e.aggregate_type, \
                e.aggregate_id, COALESCE(s.barcode, u.code) AS subject \
         FROM (SELECT * FROM events WHERE event_type <> 'TemperatureRecorded' \
               ORDER BY position DESC LIMIT 15) e \
         LEFT JOIN samples s ON e.aggregate_type = 'Sample' AND s.sample_id = e.aggregate_id \
         LEFT JOIN storage_units u ON e.aggregate_type = 'StorageUnit' AND u.unit_id = e.aggregate_id \
         ORDER BY e.position DESC",
    )
    .fetch_all(pool)
    .await?;
    let dead_letters: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE status = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok(Dashboard {
        by_status,
        total,
        activity,
        alerts: open_excursions(pool, 10).await?,
        nearly_full: nearly_full_boxes(pool, NEARLY_FULL_PERCENT, 10).await?,
        dead_letters,
    })
}
