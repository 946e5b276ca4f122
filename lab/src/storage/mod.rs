//! Storage use cases: create and arrange freezers, racks and boxes, decommission them,
//! record temperatures and resolve excursions; answer the storage pages from the read
//! tables ([`read_model`]).
//!
//! A command that puts something into a unit (a rack into a freezer, a box into a rack)
//! reads that unit from its own stream, not from the read table, so the facts it decides
//! on (kind, zone, slots) are the committed ones. Which of the invariants the event
//! store enforces, and how, is in `cqrs::storage`'s documentation; this module turns a
//! refused claim back into words: a taken slot, a unit that is not empty, a
//! decommissioned parent.

pub mod read_model;

pub use read_model::{ExcursionRow, Occupant, PathStep, StorageProjection, UnitRow};

use crate::error::{Error, FieldError};
use crate::idempotency::created_id;
use crate::metrics::CommandMetrics;
use chrono::{DateTime, Utc};
use cqrs::sample::{Note, TemperatureZone};
use cqrs::storage::{
    Celsius, Grid, POSITION_SCOPE, ParentFacts, SLOT_SCOPE, StorageCommand, StorageRejection,
    StorageUnit, UnitCode, UnitId, UnitKind, UnitName,
};
use event_sourcing::{
    CommandContext, CommandError, CommandOutcome, EventStore, ExpectedVersion, StoreError,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use uuid::Uuid;

/// Raw input to create a unit, as typed into the form or sent to the API.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateUnitInput {
    /// `freezer`, `rack` or `box`.
    pub kind: String,
    /// The unit's barcode label, e.g. `BOX-000123`.
    pub code: String,
    pub name: String,
    /// Freezers only: racks and boxes take their parent's zone.
    pub temperature_zone: String,
    /// Racks and boxes: the barcode of the freezer or rack they go into.
    pub parent: String,
    /// Racks and boxes: the parent's slot number.
    pub slot: String,
    /// Freezers and racks: how many slots they have.
    pub slots: String,
    /// Boxes: rows x columns, e.g. `9x9`, `10x10`, `8x12`.
    pub grid: String,
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

fn parse_number<T: std::str::FromStr>(
    raw: &str,
    name: &'static str,
    what: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let raw = raw.trim();
    if raw.is_empty() {
        errors.push(field(name, format!("{what} is required")));
        return None;
    }
    match raw.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.push(field(
                name,
                format!("{what} must be a whole number, got '{raw}'"),
            ));
            None
        }
    }
}

/// Runs storage commands and queries.
#[derive(Clone)]
pub struct StorageService {
    store: EventStore,
    metrics: CommandMetrics,
    read_progress: event_sourcing::ReadProgress,
}

impl StorageService {
    pub fn new(store: EventStore, metrics: CommandMetrics) -> Self {
        let read_progress = event_sourcing::ReadProgress::listen(store.pool());
        Self {
            store,
            metrics,
            read_progress,
        }
    }

    /// Waits (up to `timeout`) until the storage table shows unit `id` at `version` or
    /// later, woken by the projection's progress; false if it did not get there.
    pub async fn wait_for_version(
        &self,
        id: Uuid,
        version: u64,
        timeout: std::time::Duration,
    ) -> bool {
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        let pool = self.store.pool();
        self.read_progress
            .wait_for(
                <StorageProjection as event_sourcing::Projection>::NAME,
                id,
                version,
                timeout,
                || async move {
                    let at: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM storage_units WHERE unit_id = $1")
                            .bind(id)
                            .fetch_optional(pool)
                            .await
                            .ok()
                            .flatten();
                    at.is_some_and(|v| v >= wanted)
                },
            )
            .await
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }

    /// The event store (time travel folds streams from it).
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    async fn timed<T>(
        &self,
        name: &str,
        run: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = run.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .commands
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .command_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// The unit as it stands in its stream (committed facts), by id.
    pub async fn load(&self, id: Uuid) -> Result<cqrs::storage::Unit, Error> {
        let loaded = self.store.load::<StorageUnit>(id).await?;
        loaded
            .state
            .unit
            .ok_or_else(|| Error::NotFound("no such storage unit".into()))
    }

    /// The unit with this barcode, by id, from the claims (committed, not the read table).
    pub async fn id_by_code(&self, code: &str) -> Result<Option<Uuid>, Error> {
        let code = match UnitCode::parse(code) {
            Ok(code) => code,
            Err(_) => return Ok(None),
        };
        Ok(sqlx::query_scalar(
            "SELECT aggregate_id FROM unique_claims WHERE scope = 'unit-code' AND value = $1",
        )
        .bind(code.as_str())
        .fetch_optional(self.store.pool())
        .await?)
    }

    /// The unit a parent field names: a barcode, or a unit id.
    async fn parent(&self, raw: &str) -> Result<ParentFacts, Error> {
        let raw = raw.trim();
        let id = match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => self.id_by_code(raw).await?,
        };
        let not_found = || {
            Error::invalid(
                "parent",
                format!("no freezer or rack has the barcode '{raw}'"),
            )
        };
        let id = id.ok_or_else(not_found)?;
        let unit = self.load(id).await.map_err(|e| match e {
            Error::NotFound(_) => not_found(),
            other => other,
        })?;
        Ok(unit.as_parent())
    }

    /// Creates a freezer, rack or box. Its id is derived from the command id, so a
    /// repeated command finds the unit it created.
    pub async fn create(
        &self,
        input: &CreateUnitInput,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("CreateStorageUnit", async {
            let mut errors = Vec::new();
            let kind = UnitKind::parse(&input.kind)
                .map_err(|e| errors.push(field("kind", e.message)))
                .ok();
            let code = if input.code.trim().is_empty() {
                errors.push(field("code", "the unit's barcode is required"));
                None
            } else {
                UnitCode::parse(&input.code)
                    .map_err(|e| errors.push(field("code", e.message)))
                    .ok()
            };
            let name = if input.name.trim().is_empty() {
                code.as_ref().and_then(|c| UnitName::parse(c.as_str()).ok())
            } else {
                UnitName::parse(&input.name)
                    .map_err(|e| errors.push(field("name", e.message)))
                    .ok()
            };
            let id = UnitId::from_uuid(created_id(context.command_id));
            let command = match kind {
                Some(UnitKind::Freezer) => {
                    let zone = if input.temperature_zone.trim().is_empty() {
                        errors.push(field(
                            "temperature_zone",
                            "a freezer's temperature zone is required",
                        ));
                        None
                    } else {
                        TemperatureZone::parse(&input.temperature_zone)
                            .map_err(|e| errors.push(field("temperature_zone", e.message)))
                            .ok()
                    };
                    let slots = parse_number::<u16>(
                        &input.slots,
                        "slots",
                        "the number of rack slots",
                        &mut errors,
                    );
                    match (code, name, zone, slots) {
                        (Some(code), Some(name), Some(zone), Some(slots)) if errors.is_empty() => {
                            StorageCommand::CreateFreezer {
                                id,
                                code,
                                name,
                                zone,
                                slots,
                            }
                        }
                        _ => return Err(Error::Invalid(errors)),
                    }
                }
                Some(kind @ (UnitKind::Rack | UnitKind::Box)) => {
                    let slot =
                        parse_number::<u16>(&input.slot, "slot", "the slot number", &mut errors);
                    let slots = (kind == UnitKind::Rack)
                        .then(|| {
                            parse_number::<u16>(
                                &input.slots,
                                "slots",
                                "the number of box slots",
                                &mut errors,
                            )
                        })
                        .flatten();
                    let grid = (kind == UnitKind::Box)
                        .then(|| {
                            Grid::parse(if input.grid.trim().is_empty() {
                                "9x9"
                            } else {
                                &input.grid
                            })
                            .map_err(|e| errors.push(field("grid", e.message)))
                            .ok()
                        })
                        .flatten();
                    if input.parent.trim().is_empty() {
                        errors.push(field(
                            "parent",
                            format!(
                                "say which {} the {kind} goes into (its barcode)",
                                kind.parent().map_or("unit", UnitKind::as_str)
                            ),
                        ));
                    }
                    if !errors.is_empty() {
                        return Err(Error::Invalid(errors));
                    }
                    let parent = self.parent(&input.parent).await?;
                    match (kind, code, name, slot, slots, grid) {
                        (UnitKind::Rack, Some(code), Some(name), Some(slot), Some(slots), _) => {
                            StorageCommand::CreateRack {
                                id,
                                code,
                                name,
                                parent,
                                slot,
                                slots,
                            }
                        }
                        (UnitKind::Box, Some(code), Some(name), Some(slot), _, Some(grid)) => {
                            StorageCommand::CreateBox {
                                id,
                                code,
                                name,
                                parent,
                                slot,
                                grid,
                            }
                        }
                        _ => return Err(Error::Invalid(errors)),
                    }
                }
                None => return Err(Error::Invalid(errors)),
            };
            let parent = match &command {
                StorageCommand::CreateRack { parent, slot, .. }
                | StorageCommand::CreateBox { parent, slot, .. } => Some((parent.clone(), *slot)),
                _ => None,
            };
            let result = self
                .store
                .execute::<StorageUnit>(id.as_uuid(), command, context, ExpectedVersion::Exactly(0))
                .await;
            self.explain(result, parent.as_ref()).await
        })
        .await
    }

    pub async fn rename(
        &self,
        id: Uuid,
        name: &str,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("RenameStorageUnit", async {
            let name = UnitName::parse(name).map_err(|e| Error::invalid("name", e.message))?;
            let result = self
                .store
                .execute::<StorageUnit>(
                    id,
                    StorageCommand::Rename { name },
                    context,
                    ExpectedVersion::Any,
                )
                .await;
            self.explain(result, None).await
        })
        .await
    }

    /// Moves a rack to another freezer slot, or a box to another rack slot.
    pub async fn relocate(
        &self,
        id: Uuid,
        parent: &str,
        slot: &str,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("MoveStorageUnit", async {
            let mut errors = Vec::new();
            let slot = parse_number::<u16>(slot, "slot", "the slot number", &mut errors);
            if parent.trim().is_empty() {
                errors.push(field(
                    "parent",
                    "say where it goes (the barcode of a freezer or rack)",
                ));
            }
            let Some(slot) = slot.filter(|_| errors.is_empty()) else {
                return Err(Error::Invalid(errors));
            };
            let to = self.parent(parent).await?;
            let target = (to.clone(), slot);
            let result = self
                .store
                .execute::<StorageUnit>(
                    id,
                    StorageCommand::Move { to, slot },
                    context,
                    ExpectedVersion::Any,
                )
                .await;
            self.explain(result, Some(&target)).await
        })
        .await
    }

    /// Decommissions a unit; refused while anything is in it.
    pub async fn decommission(
        &self,
        id: Uuid,
        reason: &str,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("DecommissionStorageUnit", async {
            if reason.trim().is_empty() {
                return Err(Error::invalid(
                    "reason",
                    "say why the unit is taken out of service",
                ));
            }
            let reason = Note::parse(reason).map_err(|e| Error::invalid("reason", e.message))?;
            let result = self
                .store
                .execute::<StorageUnit>(
                    id,
                    StorageCommand::Decommission { reason },
                    context,
                    ExpectedVersion::Any,
                )
                .await;
            match result {
                Err(CommandError::Store(StoreError::UniqueViolation { scope, .. }))
                    if scope.contains(POSITION_SCOPE) || scope.contains(SLOT_SCOPE) =>
                {
                    let what = if scope.contains(POSITION_SCOPE) {
                        "samples"
                    } else {
                        "racks or boxes"
                    };
                    Err(Error::Conflict(format!(
                        "it still holds {what}; move or remove them first, then decommission it"
                    )))
                }
                other => self.explain(other, None).await,
            }
        })
        .await
    }

    /// Records a temperature reading; one outside the unit's zone raises an excursion.
    pub async fn record_temperature(
        &self,
        id: Uuid,
        celsius: &str,
        measured_at: Option<DateTime<Utc>>,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("RecordTemperature", async {
            if celsius.trim().is_empty() {
                return Err(Error::invalid("celsius", "the temperature is required"));
            }
            let celsius =
                Celsius::parse(celsius).map_err(|e| Error::invalid("celsius", e.message))?;
            let now = Utc::now();
            // Kept to the microsecond: the precision of the Avro record and of PostgreSQL.
            let measured_at = chrono::SubsecRound::trunc_subsecs(measured_at.unwrap_or(now), 6);
            if measured_at > now + chrono::Duration::minutes(5) {
                return Err(Error::invalid(
                    "measured_at",
                    "the reading is dated in the future",
                ));
            }
            let command = StorageCommand::RecordTemperature {
                celsius,
                measured_at,
                excursion_id: created_id(context.command_id),
            };
            let result = self
                .store
                .execute::<StorageUnit>(id, command, context, ExpectedVersion::Any)
                .await;
            self.explain(result, None).await
        })
        .await
    }

    pub async fn resolve_excursion(
        &self,
        id: Uuid,
        excursion_id: Uuid,
        note: &str,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.timed("ResolveExcursion", async {
            if note.trim().is_empty() {
                return Err(Error::invalid(
                    "note",
                    "say what was done about the excursion",
                ));
            }
            let note = Note::parse(note).map_err(|e| Error::invalid("note", e.message))?;
            let result = self
                .store
                .execute::<StorageUnit>(
                    id,
                    StorageCommand::ResolveExcursion { excursion_id, note },
                    context,
                    ExpectedVersion::Any,
                )
                .await;
            self.explain(result, None).await
        })
        .await
    }

    /// A command's outcome in lab words: a taken slot or barcode, a sealed parent.
    async fn explain(
        &self,
        result: Result<CommandOutcome, CommandError<StorageRejection>>,
        target: Option<&(ParentFacts, u16)>,
    ) -> Result<CommandOutcome, Error> {
        match result {
            Ok(outcome) => Ok(outcome),
            Err(CommandError::Rejected(StorageRejection::NotFound)) => {
                Err(Error::NotFound("no such storage unit".into()))
            }
            Err(CommandError::Rejected(rejection)) => Err(Error::Rejected(rejection.to_string())),
            Err(CommandError::Store(StoreError::UniqueViolation { scope, value })) => {
                if scope == "unit-code" {
                    return Err(Error::Conflict(format!(
                        "the barcode {value} is already on another storage unit"
                    )));
                }
                if let Some((parent, slot)) = target {
                    let holder: Option<Uuid> = sqlx::query_scalar(
                        "SELECT aggregate_id FROM unique_claims WHERE scope = $1 AND value = $2",
                    )
                    .bind(SLOT_SCOPE)
                    .bind(format!("{}/{slot}", parent.id))
                    .fetch_optional(self.store.pool())
                    .await?;
                    if holder == Some(parent.id.as_uuid()) {
                        return Err(Error::Conflict(format!(
                            "{} was decommissioned; nothing more goes into it",
                            parent.code
                        )));
                    }
                    let code: Option<String> = match holder {
                        Some(h) => sqlx::query_scalar(
                            "SELECT value FROM unique_claims WHERE scope = 'unit-code' AND aggregate_id = $1",
                        )
                        .bind(h)
                        .fetch_optional(self.store.pool())
                        .await?,
                        None => None,
                    };
                    return Err(Error::Conflict(match code {
                        Some(code) => format!("slot {slot} of {} is taken by {code}", parent.code),
                        None => format!("slot {slot} of {} is taken", parent.code),
                    }));
                }
                Err(Error::Conflict(format!("{scope} {value} is taken")))
            }
            Err(CommandError::Store(store)) => Err(store.into()),
        }
    }

    // ---- queries ----

    pub async fn unit(&self, id: Uuid) -> Result<Option<UnitRow>, Error> {
        Ok(read_model::unit(self.pool(), id).await?)
    }

    pub async fn unit_by_code(&self, code: &str) -> Result<Option<UnitRow>, Error> {
        let code = code.trim().to_ascii_uppercase();
        Ok(read_model::unit_by_code(self.pool(), &code).await?)
    }

    pub async fn children(&self, parent: Option<Uuid>) -> Result<Vec<UnitRow>, Error> {
        Ok(read_model::children(self.pool(), parent).await?)
    }

    /// A freezer's racks, each followed by its boxes.
    pub async fn subtree(&self, freezer: Uuid) -> Result<Vec<UnitRow>, Error> {
        Ok(read_model::subtree(self.pool(), freezer).await?)
    }

    pub async fn path(&self, id: Uuid) -> Result<Vec<PathStep>, Error> {
        Ok(read_model::path(self.pool(), id).await?)
    }

    pub async fn occupants(&self, box_id: Uuid) -> Result<Vec<Occupant>, Error> {
        Ok(read_model::occupants(self.pool(), box_id).await?)
    }

    pub async fn open_excursions(&self, limit: i64) -> Result<Vec<ExcursionRow>, Error> {
        Ok(read_model::open_excursions(self.pool(), limit).await?)
    }

    pub async fn excursions_of(&self, unit: Uuid) -> Result<Vec<ExcursionRow>, Error> {
        Ok(read_model::excursions_of(self.pool(), unit).await?)
    }

    pub async fn nearly_full_boxes(&self, percent: i64, limit: i64) -> Result<Vec<UnitRow>, Error> {
        Ok(read_model::nearly_full_boxes(self.pool(), percent, limit).await?)
    }

    pub async fn first_free_position(
        &self,
        zone: TemperatureZone,
    ) -> Result<Option<(UnitRow, String)>, Error> {
        Ok(read_model::first_free_position(self.pool(), zone).await?)
    }
}
