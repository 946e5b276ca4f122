//! The storage hierarchy: freezer → rack → box → position, as one aggregate per unit.
//!
//! ## Who owns what
//!
//! Every **storage unit** (a freezer, a rack or a box) is an aggregate of its own. It owns
//! its name, where it sits (a numbered slot of its parent), whether it is in service, its
//! temperature readings and its excursions. It does **not** own what is inside it: a
//! **sample** owns its own position (see [`crate::sample`]), and a rack or box owns the
//! slot it sits in. A box is therefore never written to when a tube goes in or out, so
//! a busy box is not a hot spot: placements into one box are appends to different
//! sample streams.
//!
//! ## How each invariant is enforced
//!
//! Each is enforced by the event store in the commit that would break it, never by a
//! read-then-write that a concurrent command could slip between. The store's tool is the
//! *unique claim*: a `(scope, value)` pair an event claims and another event may release,
//! inserted and deleted in the same statement as the events (so a released value is free
//! in exactly the commit that frees it).
//!
//! - **A position holds at most one sample.** Storing or moving a sample claims
//!   `storage-position = <box id>/<position>`; removing, moving away, checking out and
//!   disposing release it in the same commit. Two samples racing for one position: the
//!   second claim fails on the primary key and its events are not written.
//! - **A sample is in at most one position.** The sample's own stream: every placement is
//!   decided on the sample's current state and appended only if the stream is still at
//!   that version, and a move releases the old claim in the commit that takes the new.
//! - **A slot holds at most one rack or box.** Creating or moving a rack or box claims
//!   `storage-slot = <parent id>/<slot>`, releasing the old slot on a move.
//! - **Nothing goes into a decommissioned unit, and a unit that holds anything cannot be
//!   decommissioned.** Decommissioning *seals* the unit: its event claims every position
//!   of a box, or every slot of a rack or freezer, for the unit itself. If any is held
//!   (by a sample, a box, a rack) the claim fails and nothing is written: the unit was not
//!   empty. Once sealed, every later placement into it fails on its claim. A placement
//!   and a decommission racing each other therefore serialise on the claims table, and
//!   whichever commits second fails: never a sample in a decommissioned box.
//! - **A sample only goes into a box of its own zone; a rack or box only into a parent of
//!   its zone.** A unit's zone is fixed when it is created (a rack or box takes its
//!   parent's), so a decision that reads it cannot be overtaken by a change of it.
//!
//! Capacity and fill levels are facts of the read side: a box's capacity is its grid, a
//! rack's the sum of its boxes', a freezer's the sum of its racks'; fill levels count the
//! samples whose position is in them.
//!
//! ## Temperature
//!
//! A reading is an event on the unit (`TemperatureRecorded`). A reading outside the
//! zone's tolerated range ([`tolerated`]) while no excursion is open raises one
//! (`TemperatureExcursionRaised`, in the same commit); it stays open, however the
//! following readings go, until a person resolves it with a note saying what was done
//! (`TemperatureExcursionResolved`).

mod values;

pub use values::{Celsius, Grid, Position, UnitCode, UnitId, UnitKind, UnitName, tolerated};

use crate::sample::{Note, TemperatureZone};
use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Claim scope of a box position, held by the sample in it (or by the box once sealed).
pub const POSITION_SCOPE: &str = "storage-position";
/// Claim scope of a rack's or freezer's slot, held by the unit in it (or the parent once
/// sealed).
pub const SLOT_SCOPE: &str = "storage-slot";
/// Claim scope of a unit's barcode.
pub const CODE_SCOPE: &str = "unit-code";

/// The claim of position `position` of box `box_id`.
pub fn position_claim(box_id: UnitId, position: Position) -> (&'static str, String) {
    (POSITION_SCOPE, format!("{box_id}/{position}"))
}

/// The claim of slot `slot` of unit `parent`.
pub fn slot_claim(parent: UnitId, slot: u16) -> (&'static str, String) {
    (SLOT_SCOPE, format!("{parent}/{slot}"))
}

/// The most slots a freezer or rack has.
pub const MAX_SLOTS: u16 = 200;

/// What a command needs to know about the unit something goes into. Read from that
/// unit's stream by the caller; every field is fixed at creation except
/// `decommissioned`, which the claims enforce whatever the caller read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentFacts {
    pub id: UnitId,
    pub kind: UnitKind,
    pub code: UnitCode,
    pub zone: TemperatureZone,
    /// Slots of a freezer or rack; boxes have none.
    pub slots: u16,
    pub decommissioned: bool,
}

/// What a sample placement needs to know about its box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxFacts {
    pub id: UnitId,
    pub code: UnitCode,
    pub zone: TemperatureZone,
    pub grid: Grid,
    pub decommissioned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageCommand {
    CreateFreezer {
        id: UnitId,
        code: UnitCode,
        name: UnitName,
        zone: TemperatureZone,
        slots: u16,
    },
    CreateRack {
        id: UnitId,
        code: UnitCode,
        name: UnitName,
        parent: ParentFacts,
        slot: u16,
        slots: u16,
    },
    CreateBox {
        id: UnitId,
        code: UnitCode,
        name: UnitName,
        parent: ParentFacts,
        slot: u16,
        grid: Grid,
    },
    Rename {
        name: UnitName,
    },
    /// A rack to another freezer slot, a box to another rack slot.
    Move {
        to: ParentFacts,
        slot: u16,
    },
    Decommission {
        reason: Note,
    },
    RecordTemperature {
        celsius: Celsius,
        measured_at: DateTime<Utc>,
        /// The id an excursion gets if this reading raises one.
        excursion_id: Uuid,
    },
    ResolveExcursion {
        excursion_id: Uuid,
        note: Note,
    },
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum StorageEvent {
    FreezerCreated {
        #[serde(rename = "storage_unit_id")]
        unit_id: UnitId,
        code: UnitCode,
        name: UnitName,
        temperature_zone: TemperatureZone,
        slots: u16,
    },
    RackCreated {
        #[serde(rename = "storage_unit_id")]
        unit_id: UnitId,
        code: UnitCode,
        name: UnitName,
        temperature_zone: TemperatureZone,
        parent_id: UnitId,
        slot: u16,
        slots: u16,
    },
    BoxCreated {
        #[serde(rename = "storage_unit_id")]
        unit_id: UnitId,
        code: UnitCode,
        name: UnitName,
        temperature_zone: TemperatureZone,
        parent_id: UnitId,
        slot: u16,
        rows: u8,
        columns: u8,
    },
    UnitRenamed {
        name: UnitName,
    },
    UnitMoved {
        from_parent_id: UnitId,
        from_slot: u16,
        parent_id: UnitId,
        slot: u16,
    },
    /// Seals the unit (see the module doc): `slots` for a freezer or rack, `rows` and
    /// `columns` for a box say what was sealed; the unit's own slot is freed.
    UnitDecommissioned {
        reason: Note,
        kind: UnitKind,
        parent_id: Option<UnitId>,
        slot: Option<u16>,
        slots: Option<u16>,
        rows: Option<u8>,
        columns: Option<u8>,
    },
    TemperatureRecorded {
        celsius: Celsius,
        measured_at: DateTime<Utc>,
    },
    TemperatureExcursionRaised {
        excursion_id: Uuid,
        celsius: Celsius,
        allowed_min: Celsius,
        allowed_max: Celsius,
        measured_at: DateTime<Utc>,
    },
    TemperatureExcursionResolved {
        excursion_id: Uuid,
        note: Note,
    },
}

impl DomainEvent for StorageEvent {
    const SCHEMA_VERSION: u32 = 1;
    const EVENT_TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    fn event_type(&self) -> &'static str {
        self.into()
    }
}

/// A storage command the unit's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StorageRejection {
    #[error("this storage unit already exists")]
    AlreadyExists,
    #[error("no such storage unit")]
    NotFound,
    #[error("a {child} goes into a {expected}, not into a {got}")]
    WrongParent {
        child: UnitKind,
        expected: UnitKind,
        got: UnitKind,
    },
    #[error("{parent} is {parent_zone}; a {child} in it must be {parent_zone} too, not {zone}")]
    ZoneMismatch {
        child: UnitKind,
        zone: TemperatureZone,
        parent: UnitCode,
        parent_zone: TemperatureZone,
    },
    #[error("{parent} has slots 1 to {slots}; there is no slot {slot}")]
    NoSuchSlot {
        parent: UnitCode,
        slot: u16,
        slots: u16,
    },
    #[error("a freezer or rack has 1 to {max} slots, not {slots}", max = MAX_SLOTS)]
    SlotCount { slots: u16 },
    #[error("{0} is decommissioned; nothing more goes into it")]
    ParentDecommissioned(UnitCode),
    #[error("{0} is decommissioned; it can no longer be changed")]
    Decommissioned(UnitCode),
    #[error("it is already in slot {slot} of {parent}")]
    AlreadyThere { parent: UnitCode, slot: u16 },
    #[error("a freezer stands on its own; only racks and boxes move")]
    FreezersDoNotMove,
    #[error("no open temperature excursion {0} on this unit")]
    NoSuchExcursion(Uuid),
}

/// The unit's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUnit {
    pub unit: Option<Unit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub id: UnitId,
    pub kind: UnitKind,
    pub code: UnitCode,
    pub name: UnitName,
    pub zone: TemperatureZone,
    /// Where it sits: `(parent, slot)`; a freezer sits nowhere.
    pub location: Option<(UnitId, u16)>,
    pub slots: u16,
    pub grid: Option<Grid>,
    pub decommissioned: bool,
    pub open_excursion: Option<Uuid>,
    pub last_reading: Option<(Celsius, DateTime<Utc>)>,
}

impl Unit {
    /// This unit as the parent of something going into it.
    pub fn as_parent(&self) -> ParentFacts {
        ParentFacts {
            id: self.id,
            kind: self.kind,
            code: self.code.clone(),
            zone: self.zone,
            slots: self.slots,
            decommissioned: self.decommissioned,
        }
    }

    /// This unit as a box a sample goes into; `None` unless it is a box.
    pub fn as_box(&self) -> Option<BoxFacts> {
        Some(BoxFacts {
            id: self.id,
            code: self.code.clone(),
            zone: self.zone,
            grid: self.grid?,
            decommissioned: self.decommissioned,
        })
    }
}

fn check_parent(
    child: UnitKind,
    zone: Option<TemperatureZone>,
    parent: &ParentFacts,
    slot: u16,
) -> Result<(), StorageRejection> {
    let expected = child.parent().ok_or(StorageRejection::FreezersDoNotMove)?;
    if parent.kind != expected {
        return Err(StorageRejection::WrongParent {
            child,
            expected,
            got: parent.kind,
        });
    }
    if parent.decommissioned {
        return Err(StorageRejection::ParentDecommissioned(parent.code.clone()));
    }
    if let Some(zone) = zone
        && zone != parent.zone
    {
        return Err(StorageRejection::ZoneMismatch {
            child,
            zone,
            parent: parent.code.clone(),
            parent_zone: parent.zone,
        });
    }
    if slot == 0 || slot > parent.slots {
        return Err(StorageRejection::NoSuchSlot {
            parent: parent.code.clone(),
            slot,
            slots: parent.slots,
        });
    }
    Ok(())
}

fn check_slot_count(slots: u16) -> Result<(), StorageRejection> {
    if slots == 0 || slots > MAX_SLOTS {
        return Err(StorageRejection::SlotCount { slots });
    }
    Ok(())
}

impl StorageUnit {
    fn require(&self) -> Result<&Unit, StorageRejection> {
        self.unit.as_ref().ok_or(StorageRejection::NotFound)
    }

    fn require_in_service(&self) -> Result<&Unit, StorageRejection> {
        let unit = self.require()?;
        if unit.decommissioned {
            return Err(StorageRejection::Decommissioned(unit.code.clone()));
        }
        Ok(unit)
    }

    fn require_new(&self) -> Result<(), StorageRejection> {
        match self.unit {
            Some(_) => Err(StorageRejection::AlreadyExists),
            None => Ok(()),
        }
    }
}

impl Aggregate for StorageUnit {
    const TYPE: &'static str = "StorageUnit";
    const SNAPSHOT_VERSION: u32 = 1;

    type Command = StorageCommand;
    type Event = StorageEvent;
    type Rejection = StorageRejection;

    fn handle(&self, command: StorageCommand) -> Result<Vec<StorageEvent>, StorageRejection> {
        match command {
            StorageCommand::CreateFreezer {
                id,
                code,
                name,
                zone,
                slots,
            } => {
                self.require_new()?;
                check_slot_count(slots)?;
                Ok(vec![StorageEvent::FreezerCreated {
                    unit_id: id,
                    code,
                    name,
                    temperature_zone: zone,
                    slots,
                }])
            }
            StorageCommand::CreateRack {
                id,
                code,
                name,
                parent,
                slot,
                slots,
            } => {
                self.require_new()?;
                check_slot_count(slots)?;
                check_parent(UnitKind::Rack, None, &parent, slot)?;
                Ok(vec![StorageEvent::RackCreated {
                    unit_id: id,
                    code,
                    name,
                    temperature_zone: parent.zone,
                    parent_id: parent.id,
                    slot,
                    slots,
                }])
            }
            StorageCommand::CreateBox {
                id,
                code,
                name,
                parent,
                slot,
                grid,
            } => {
                self.require_new()?;
                check_parent(UnitKind::Box, None, &parent, slot)?;
                Ok(vec![StorageEvent::BoxCreated {
                    unit_id: id,
                    code,
                    name,
                    temperature_zone: parent.zone,
                    parent_id: parent.id,
                    slot,
                    rows: grid.rows,
                    columns: grid.columns,
                }])
            }
            StorageCommand::Rename { name } => {
                let unit = self.require_in_service()?;
                if unit.name == name {
                    return Ok(Vec::new());
                }
                Ok(vec![StorageEvent::UnitRenamed { name }])
            }
            StorageCommand::Move { to, slot } => {
                let unit = self.require_in_service()?;
                let Some((from_parent, from_slot)) = unit.location else {
                    return Err(StorageRejection::FreezersDoNotMove);
                };
                check_parent(unit.kind, Some(unit.zone), &to, slot)?;
                if from_parent == to.id && from_slot == slot {
                    return Err(StorageRejection::AlreadyThere {
                        parent: to.code,
                        slot,
                    });
                }
                Ok(vec![StorageEvent::UnitMoved {
                    from_parent_id: from_parent,
                    from_slot,
                    parent_id: to.id,
                    slot,
                }])
            }
            StorageCommand::Decommission { reason } => {
                let unit = self.require_in_service()?;
                Ok(vec![StorageEvent::UnitDecommissioned {
                    reason,
                    kind: unit.kind,
                    parent_id: unit.location.map(|(p, _)| p),
                    slot: unit.location.map(|(_, s)| s),
                    slots: (unit.kind != UnitKind::Box).then_some(unit.slots),
                    rows: unit.grid.map(|g| g.rows),
                    columns: unit.grid.map(|g| g.columns),
                }])
            }
            StorageCommand::RecordTemperature {
                celsius,
                measured_at,
                excursion_id,
            } => {
                let unit = self.require_in_service()?;
                let mut events = vec![StorageEvent::TemperatureRecorded {
                    celsius,
                    measured_at,
                }];
                let (low, high) = tolerated(unit.zone);
                if (celsius < low || celsius > high) && unit.open_excursion.is_none() {
                    events.push(StorageEvent::TemperatureExcursionRaised {
                        excursion_id,
                        celsius,
                        allowed_min: low,
                        allowed_max: high,
                        measured_at,
                    });
                }
                Ok(events)
            }
            StorageCommand::ResolveExcursion { excursion_id, note } => {
                let unit = self.require()?;
                if unit.open_excursion != Some(excursion_id) {
                    return Err(StorageRejection::NoSuchExcursion(excursion_id));
                }
                Ok(vec![StorageEvent::TemperatureExcursionResolved {
                    excursion_id,
                    note,
                }])
            }
        }
    }

    fn unique_values(event: &StorageEvent) -> Vec<(&'static str, String)> {
        match event {
            StorageEvent::FreezerCreated { code, .. } => vec![(CODE_SCOPE, code.to_string())],
            StorageEvent::RackCreated {
                code,
                parent_id,
                slot,
                ..
            }
            | StorageEvent::BoxCreated {
                code,
                parent_id,
                slot,
                ..
            } => vec![
                (CODE_SCOPE, code.to_string()),
                slot_claim(*parent_id, *slot),
            ],
            StorageEvent::UnitMoved {
                parent_id, slot, ..
            } => vec![slot_claim(*parent_id, *slot)],
            // Sealing needs the unit's own id: see `unique_values_of`.
            _ => Vec::new(),
        }
    }

    fn unique_values_of(id: Uuid, event: &StorageEvent) -> Vec<(&'static str, String)> {
        match event {
            StorageEvent::UnitDecommissioned {
                kind,
                slots,
                rows,
                columns,
                ..
            } => seal_claims(UnitId::from_uuid(id), *kind, *slots, *rows, *columns),
            other => Self::unique_values(other),
        }
    }

    fn released_values(event: &StorageEvent) -> Vec<(&'static str, String)> {
        match event {
            StorageEvent::UnitMoved {
                from_parent_id,
                from_slot,
                ..
            } => vec![slot_claim(*from_parent_id, *from_slot)],
            StorageEvent::UnitDecommissioned {
                parent_id: Some(parent),
                slot: Some(slot),
                ..
            } => vec![slot_claim(*parent, *slot)],
            _ => Vec::new(),
        }
    }

    fn apply(&mut self, event: &StorageEvent) {
        match event {
            StorageEvent::FreezerCreated {
                unit_id,
                code,
                name,
                temperature_zone,
                slots,
            } => {
                self.unit = Some(Unit {
                    id: *unit_id,
                    kind: UnitKind::Freezer,
                    code: code.clone(),
                    name: name.clone(),
                    zone: *temperature_zone,
                    location: None,
                    slots: *slots,
                    grid: None,
                    decommissioned: false,
                    open_excursion: None,
                    last_reading: None,
                });
            }
            StorageEvent::RackCreated {
                unit_id,
                code,
                name,
                temperature_zone,
                parent_id,
                slot,
                slots,
            } => {
                self.unit = Some(Unit {
                    id: *unit_id,
                    kind: UnitKind::Rack,
                    code: code.clone(),
                    name: name.clone(),
                    zone: *temperature_zone,
                    location: Some((*parent_id, *slot)),
                    slots: *slots,
                    grid: None,
                    decommissioned: false,
                    open_excursion: None,
                    last_reading: None,
                });
            }
            StorageEvent::BoxCreated {
                unit_id,
                code,
                name,
                temperature_zone,
                parent_id,
                slot,
                rows,
                columns,
            } => {
                self.unit = Some(Unit {
                    id: *unit_id,
                    kind: UnitKind::Box,
                    code: code.clone(),
                    name: name.clone(),
                    zone: *temperature_zone,
                    location: Some((*parent_id, *slot)),
                    slots: 0,
                    grid: Some(Grid {
                        rows: *rows,
                        columns: *columns,
                    }),
                    decommissioned: false,
                    open_excursion: None,
                    last_reading: None,
                });
            }
            StorageEvent::UnitRenamed { name } => {
                if let Some(unit) = &mut self.unit {
                    unit.name = name.clone();
                }
            }
            StorageEvent::UnitMoved {
                parent_id, slot, ..
            } => {
                if let Some(unit) = &mut self.unit {
                    unit.location = Some((*parent_id, *slot));
                }
            }
            StorageEvent::UnitDecommissioned { .. } => {
                if let Some(unit) = &mut self.unit {
                    unit.decommissioned = true;
                    unit.location = None;
                }
            }
            StorageEvent::TemperatureRecorded {
                celsius,
                measured_at,
            } => {
                if let Some(unit) = &mut self.unit {
                    unit.last_reading = Some((*celsius, *measured_at));
                }
            }
            StorageEvent::TemperatureExcursionRaised { excursion_id, .. } => {
                if let Some(unit) = &mut self.unit {
                    unit.open_excursion = Some(*excursion_id);
                }
            }
            StorageEvent::TemperatureExcursionResolved { .. } => {
                if let Some(unit) = &mut self.unit {
                    unit.open_excursion = None;
                }
            }
        }
    }
}

/// The claims that seal a unit: every position of a box, every slot of a rack or freezer.
pub fn seal_claims(
    id: UnitId,
    kind: UnitKind,
    slots: Option<u16>,
    rows: Option<u8>,
    columns: Option<u8>,
) -> Vec<(&'static str, String)> {
    match kind {
        UnitKind::Box => match (rows, columns) {
            (Some(rows), Some(columns)) => Grid { rows, columns }
                .positions()
                .map(|p| position_claim(id, p))
                .collect(),
            _ => Vec::new(),
        },
        UnitKind::Freezer | UnitKind::Rack => (1..=slots.unwrap_or(0))
            .map(|s| slot_claim(id, s))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
