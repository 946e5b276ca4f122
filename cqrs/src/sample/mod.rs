//! The Sample aggregate: a tube's lifecycle from registration through QC.
//!
//! `registered → received → validated (QC passed)`, or `rejected` (QC failed, with a
//! reason) from registered or received. Rejected is final.
//!
//! **QC decisions are electronically signed** (21 CFR Part 11 §11.50, §11.200). Validating
//! and rejecting take a required [`Signature`]: who signed (account id and printed name),
//! when, and what the signature means (performed, reviewed, approved). The decider copies
//! it into the `SampleValidated` / `SampleRejected` event, so the signature is bound into
//! the record itself rather than kept beside it. The edge verifies the signer's password
//! before it issues the command; the domain cannot check a password, but because the
//! commands cannot be built without a signature, no code path can record an unsigned QC
//! decision. Only events recorded before signatures existed have none.

mod signature;
mod values;

pub use signature::{Signature, SignatureMeaning};
pub(crate) use values::bounded_text;
pub use values::{
    Barcode, Note, ParseError, PatientRef, SampleId, SampleType, TemperatureZone, Volume, VolumeUl,
};

use crate::storage::{BoxFacts, Grid, Position, UnitCode, UnitId, position_claim};
use crate::{Aggregate, DomainEvent, PayloadError, untag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// Everything known about a tube when it is registered. Serialised names are those of
/// the `SampleRegistered` Avro record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleDetails {
    pub barcode: Barcode,
    pub sample_type: SampleType,
    #[serde(rename = "volume_ul")]
    pub volume: VolumeUl,
    pub temperature_zone: TemperatureZone,
    #[serde(rename = "patient_ref", default)]
    pub patient: Option<PatientRef>,
    #[serde(default)]
    pub collected_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub collected_by: Option<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleCommand {
    Register {
        id: SampleId,
        details: SampleDetails,
    },
    Receive {
        notes: Option<Note>,
    },
    /// QC passed; signed by whoever takes responsibility for it.
    Validate {
        notes: Option<Note>,
        signature: Signature,
    },
    /// QC failed (or the tube was refused at reception); signed.
    Reject {
        reason: Note,
        signature: Signature,
    },
    /// Corrects a mistaken QC decision, as a new event (never an edit): `passed` is the
    /// decision it should have been. Signed, with the reason.
    CorrectQc {
        passed: bool,
        reason: Note,
        signature: Signature,
    },
    /// Into a free position of a box of the sample's zone.
    Store {
        target: BoxFacts,
        position: Position,
    },
    /// From its position to another; the old one is freed in the same commit.
    Move {
        target: BoxFacts,
        position: Position,
    },
    RemoveFromStorage {
        notes: Option<Note>,
    },
    /// Hands the tube to a person (chain of custody); frees its position if stored.
    CheckOut {
        holder_id: Uuid,
        holder: Note,
        notes: Option<Note>,
    },
    /// The holder gives it back; it is then in the lab, out of storage.
    Return {
        notes: Option<Note>,
    },
    /// Takes child samples from this one; their volumes come out of its volume.
    Aliquot {
        aliquots: Vec<NewAliquot>,
    },
    /// Destroyed; frees its position. Signed, with the reason.
    Dispose {
        reason: Note,
        signature: Signature,
    },
}

/// One child sample to take in an aliquot command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAliquot {
    pub sample_id: SampleId,
    pub barcode: Barcode,
    pub volume_ul: VolumeUl,
}

/// The most aliquots one command takes (a 96-well plate).
pub const MAX_ALIQUOTS: usize = 96;

/// Payload versions: 1 was serde's tagged form with `details` nested and named `volume`
/// and `patient`; 2 (now) is the variant's fields alone, flat, named as in the Avro
/// records. See [`SampleEvent::upcast`].
///
/// The signature of a QC decision is four flat fields (`signed_by_id`, `signed_by`,
/// `signature_meaning`, `signed_at`), as in the Avro records. It was added within version
/// 2: a payload written before has none of them and reads as `signature: None`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum SampleEvent {
    SampleRegistered {
        #[serde(rename = "sample_id")]
        id: SampleId,
        #[serde(flatten)]
        details: SampleDetails,
    },
    SampleReceived {
        notes: Option<Note>,
    },
    SampleValidated {
        notes: Option<Note>,
        /// `None` only for events recorded before signatures existed.
        #[serde(flatten, with = "signature::flat")]
        signature: Option<Signature>,
    },
    SampleRejected {
        reason: Note,
        /// `None` only for events recorded before signatures existed.
        #[serde(flatten, with = "signature::flat")]
        signature: Option<Signature>,
    },
    /// A QC decision corrected: `passed` is what it should have been.
    SampleQcCorrected {
        passed: bool,
        reason: Note,
        #[serde(flatten, with = "signature::flat")]
        signature: Option<Signature>,
    },
    SampleStored {
        box_id: UnitId,
        box_code: UnitCode,
        position: Position,
    },
    SampleMoved {
        from_box_id: UnitId,
        from_position: Position,
        box_id: UnitId,
        box_code: UnitCode,
        position: Position,
    },
    SampleRemovedFromStorage {
        box_id: UnitId,
        position: Position,
        notes: Option<Note>,
    },
    SampleCheckedOut {
        holder_id: Uuid,
        holder: Note,
        notes: Option<Note>,
        /// The position it left, if it was stored.
        from_box_id: Option<UnitId>,
        from_position: Option<Position>,
    },
    SampleReturned {
        holder_id: Uuid,
        holder: Note,
        notes: Option<Note>,
    },
    /// On the parent: what was taken and what is left.
    SampleAliquoted {
        aliquots: Vec<NewAliquot>,
        remaining_volume_ul: Volume,
    },
    /// The first event of a child sample, in the same commit as its parent's
    /// `SampleAliquoted`.
    AliquotCreated {
        sample_id: SampleId,
        parent_id: SampleId,
        parent_barcode: Barcode,
        barcode: Barcode,
        sample_type: SampleType,
        volume_ul: VolumeUl,
        temperature_zone: TemperatureZone,
        patient_ref: Option<PatientRef>,
    },
    SampleDisposed {
        reason: Note,
        /// The position it left, if it was stored.
        from_box_id: Option<UnitId>,
        from_position: Option<Position>,
        #[serde(flatten, with = "signature::flat")]
        signature: Option<Signature>,
    },
}

impl DomainEvent for SampleEvent {
    const SCHEMA_VERSION: u32 = 2;
    const EVENT_TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    fn event_type(&self) -> &'static str {
        self.into()
    }

    fn upcast(event_type: &str, from_version: u32, payload: Value) -> Result<Value, PayloadError> {
        match from_version {
            2 => Ok(payload),
            1 => {
                let mut fields = match untag(event_type, 1, payload)? {
                    Value::Object(fields) => fields,
                    other => {
                        return Err(PayloadError::new(
                            event_type,
                            1,
                            format!("expected an object, got {other}"),
                        ));
                    }
                };
                if event_type == "SampleRegistered" {
                    if let Some(id) = fields.remove("id") {
                        fields.insert("sample_id".into(), id);
                    }
                    if let Some(Value::Object(details)) = fields.remove("details") {
                        for (name, value) in details {
                            let name = match name.as_str() {
                                "volume" => "volume_ul".to_owned(),
                                "patient" => "patient_ref".to_owned(),
                                _ => name,
                            };
                            fields.insert(name, value);
                        }
                    }
                }
                Ok(Value::Object(fields))
            }
            other => Err(PayloadError::new(
                event_type,
                other,
                "unknown payload version of a sample event",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleStatus {
    Registered,
    Received,
    Validated,
    Rejected,
    InStorage,
    CheckedOut,
    Disposed,
}

impl SampleStatus {
    pub const ALL: &'static [Self] = &[
        Self::Registered,
        Self::Received,
        Self::Validated,
        Self::Rejected,
        Self::InStorage,
        Self::CheckedOut,
        Self::Disposed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Received => "received",
            Self::Validated => "validated",
            Self::Rejected => "rejected",
            Self::InStorage => "in_storage",
            Self::CheckedOut => "checked_out",
            Self::Disposed => "disposed",
        }
    }

    /// What a person reads.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Received => "received",
            Self::Validated => "QC passed",
            Self::Rejected => "QC failed",
            Self::InStorage => "in storage",
            Self::CheckedOut => "checked out",
            Self::Disposed => "disposed",
        }
    }

    /// What a sample in this status is, as a sentence says it: "the sample is …".
    pub const fn phrase(self) -> &'static str {
        match self {
            Self::Registered => "registered (not yet received)",
            Self::Received => "received (QC pending)",
            Self::Validated => "validated (QC passed)",
            Self::Rejected => "rejected (QC failed)",
            Self::InStorage => "in storage",
            Self::CheckedOut => "checked out",
            Self::Disposed => "disposed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let wanted = raw.trim().replace([' ', '-'], "_");
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| ParseError {
                message: format!(
                    "unknown status '{}'; expected one of registered, received, validated, rejected, in_storage, checked_out, disposed",
                    raw.trim()
                ),
            })
    }
}

impl fmt::Display for SampleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command the sample's lifecycle does not allow. The messages are what the person who
/// asked reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SampleRejection {
    #[error("sample {0} is already registered")]
    AlreadyRegistered(SampleId),
    #[error("no such sample: it has not been registered")]
    NotRegistered,
    #[error("the sample is {}; only a registered sample can be received", .0.phrase())]
    CannotReceive(SampleStatus),
    #[error("the sample is {}; only a received sample can be validated", .0.phrase())]
    CannotValidate(SampleStatus),
    #[error("the sample is {}; only a registered or received sample can be rejected", .0.phrase())]
    CannotReject(SampleStatus),
    #[error("the sample is {}; only a QC decision on a sample out of storage (QC passed or failed) can be corrected", .0.phrase())]
    CannotCorrect(SampleStatus),
    #[error("the sample already has this QC decision; a correction must change it")]
    CorrectionChangesNothing,
    #[error("the sample was never received; its QC cannot be corrected to passed")]
    NeverReceived,
    #[error("the sample is {}; only a sample that passed QC and is not in storage can be stored", .0.phrase())]
    CannotStore(SampleStatus),
    #[error("the sample is {}; only a stored sample can be moved or removed from storage", .0.phrase())]
    NotInStorage(SampleStatus),
    #[error("the sample must be kept at {sample_zone}; box {box_code} is {box_zone}")]
    WrongZone {
        sample_zone: TemperatureZone,
        box_code: UnitCode,
        box_zone: TemperatureZone,
    },
    #[error("box {box_code} is {grid}; it has no position {position}")]
    NoSuchPosition {
        box_code: UnitCode,
        grid: Grid,
        position: Position,
    },
    #[error("box {0} is decommissioned; nothing more goes into it")]
    BoxDecommissioned(UnitCode),
    #[error("the sample is already at {box_code} {position}")]
    AlreadyThere {
        box_code: UnitCode,
        position: Position,
    },
    #[error("the sample is {}; only a sample that passed QC (stored or not) can be checked out", .0.phrase())]
    CannotCheckOut(SampleStatus),
    #[error("the sample is {}; only a checked-out sample can be returned", .0.phrase())]
    NotCheckedOut(SampleStatus),
    #[error("the sample is {}; only a sample that passed QC (stored or not) can be aliquoted", .0.phrase())]
    CannotAliquot(SampleStatus),
    #[error("an aliquot command takes 1 to {max} aliquots, not {0}", max = MAX_ALIQUOTS)]
    AliquotCount(usize),
    #[error("the aliquots need {wanted} µL but the sample has only {available} µL left")]
    NotEnoughVolume { wanted: Volume, available: Volume },
    #[error("barcode {0} is given twice (or is the parent's own)")]
    DuplicateAliquotBarcode(Barcode),
    #[error("the sample is already disposed")]
    AlreadyDisposed,
    #[error("the sample is checked out to {0}; it must be returned before it is disposed")]
    DisposeCheckedOut(String),
}

/// The Sample aggregate's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub registered: Option<RegisteredSample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredSample {
    pub id: SampleId,
    pub details: SampleDetails,
    pub status: SampleStatus,
    pub rejection_reason: Option<Note>,
    /// What is left in the tube: the registered volume less every aliquot taken.
    pub volume_left: Volume,
    /// Whether it was ever received (a QC correction to passed needs it).
    pub received: bool,
    /// Its position while it is in storage.
    pub location: Option<(UnitId, Position)>,
    /// Who holds it while it is checked out.
    pub holder: Option<(Uuid, Note)>,
    pub parent: Option<SampleId>,
}

impl Sample {
    pub fn status(&self) -> Option<SampleStatus> {
        self.registered.as_ref().map(|s| s.status)
    }

    fn require(&self) -> Result<&RegisteredSample, SampleRejection> {
        self.registered
            .as_ref()
            .ok_or(SampleRejection::NotRegistered)
    }

    fn require_status(&self) -> Result<SampleStatus, SampleRejection> {
        self.status().ok_or(SampleRejection::NotRegistered)
    }
}

/// Whether `position` of `target` can take this sample, as far as the facts read show.
/// The store enforces what a concurrent command could change (a free position, a box in
/// service) with claims; this gives the person a clear reason first.
fn check_target(
    sample: &RegisteredSample,
    target: &BoxFacts,
    position: Position,
) -> Result<(), SampleRejection> {
    if target.decommissioned {
        return Err(SampleRejection::BoxDecommissioned(target.code.clone()));
    }
    if target.zone != sample.details.temperature_zone {
        return Err(SampleRejection::WrongZone {
            sample_zone: sample.details.temperature_zone,
            box_code: target.code.clone(),
            box_zone: target.zone,
        });
    }
    if !target.grid.contains(position) {
        return Err(SampleRejection::NoSuchPosition {
            box_code: target.code.clone(),
            grid: target.grid,
            position,
        });
    }
    Ok(())
}

impl Aggregate for Sample {
    const TYPE: &'static str = "Sample";
    /// 2: `SampleDetails` took the Avro field names. 3: storage, custody, volume left.
    const SNAPSHOT_VERSION: u32 = 3;

    type Command = SampleCommand;
    type Event = SampleEvent;
    type Rejection = SampleRejection;

    fn handle(&self, command: SampleCommand) -> Result<Vec<SampleEvent>, SampleRejection> {
        use SampleStatus::*;
        match command {
            SampleCommand::Register { id, details } => match &self.registered {
                Some(existing) => Err(SampleRejection::AlreadyRegistered(existing.id)),
                None => Ok(vec![SampleEvent::SampleRegistered { id, details }]),
            },
            SampleCommand::Receive { notes } => match self.require_status()? {
                Registered => Ok(vec![SampleEvent::SampleReceived { notes }]),
                other => Err(SampleRejection::CannotReceive(other)),
            },
            SampleCommand::Validate { notes, signature } => match self.require_status()? {
                Received => Ok(vec![SampleEvent::SampleValidated {
                    notes,
                    signature: Some(signature),
                }]),
                other => Err(SampleRejection::CannotValidate(other)),
            },
            SampleCommand::Reject { reason, signature } => match self.require_status()? {
                Registered | Received => Ok(vec![SampleEvent::SampleRejected {
                    reason,
                    signature: Some(signature),
                }]),
                other => Err(SampleRejection::CannotReject(other)),
            },
            SampleCommand::CorrectQc {
                passed,
                reason,
                signature,
            } => {
                let sample = self.require()?;
                match (sample.status, passed) {
                    (Validated, true) | (Rejected, false) => {
                        Err(SampleRejection::CorrectionChangesNothing)
                    }
                    (Rejected, true) if !sample.received => Err(SampleRejection::NeverReceived),
                    (Validated, false) | (Rejected, true) => {
                        Ok(vec![SampleEvent::SampleQcCorrected {
                            passed,
                            reason,
                            signature: Some(signature),
                        }])
                    }
                    (other, _) => Err(SampleRejection::CannotCorrect(other)),
                }
            }
            SampleCommand::Store { target, position } => {
                let sample = self.require()?;
                if sample.status != Validated {
                    return Err(SampleRejection::CannotStore(sample.status));
                }
                check_target(sample, &target, position)?;
                Ok(vec![SampleEvent::SampleStored {
                    box_id: target.id,
                    box_code: target.code,
                    position,
                }])
            }
            SampleCommand::Move { target, position } => {
                let sample = self.require()?;
                let Some((from_box, from_position)) = sample.location else {
                    return Err(SampleRejection::NotInStorage(sample.status));
                };
                check_target(sample, &target, position)?;
                if from_box == target.id && from_position == position {
                    return Err(SampleRejection::AlreadyThere {
                        box_code: target.code,
                        position,
                    });
                }
                Ok(vec![SampleEvent::SampleMoved {
                    from_box_id: from_box,
                    from_position,
                    box_id: target.id,
                    box_code: target.code,
                    position,
                }])
            }
            SampleCommand::RemoveFromStorage { notes } => {
                let sample = self.require()?;
                let Some((box_id, position)) = sample.location else {
                    return Err(SampleRejection::NotInStorage(sample.status));
                };
                Ok(vec![SampleEvent::SampleRemovedFromStorage {
                    box_id,
                    position,
                    notes,
                }])
            }
            SampleCommand::CheckOut {
                holder_id,
                holder,
                notes,
            } => {
                let sample = self.require()?;
                if !matches!(sample.status, Validated | InStorage) {
                    return Err(SampleRejection::CannotCheckOut(sample.status));
                }
                Ok(vec![SampleEvent::SampleCheckedOut {
                    holder_id,
                    holder,
                    notes,
                    from_box_id: sample.location.map(|(b, _)| b),
                    from_position: sample.location.map(|(_, p)| p),
                }])
            }
            SampleCommand::Return { notes } => {
                let sample = self.require()?;
                match &sample.holder {
                    Some((holder_id, holder)) => Ok(vec![SampleEvent::SampleReturned {
                        holder_id: *holder_id,
                        holder: holder.clone(),
                        notes,
                    }]),
                    None => Err(SampleRejection::NotCheckedOut(sample.status)),
                }
            }
            SampleCommand::Aliquot { aliquots } => {
                let sample = self.require()?;
                if !matches!(sample.status, Validated | InStorage) {
                    return Err(SampleRejection::CannotAliquot(sample.status));
                }
                if aliquots.is_empty() || aliquots.len() > MAX_ALIQUOTS {
                    return Err(SampleRejection::AliquotCount(aliquots.len()));
                }
                let mut seen = std::collections::HashSet::new();
                seen.insert(sample.details.barcode.clone());
                for aliquot in &aliquots {
                    if !seen.insert(aliquot.barcode.clone()) {
                        return Err(SampleRejection::DuplicateAliquotBarcode(
                            aliquot.barcode.clone(),
                        ));
                    }
                }
                let wanted: u64 = aliquots.iter().map(|a| a.volume_ul.nanolitres()).sum();
                let available = sample.volume_left.nanolitres();
                if wanted > available {
                    return Err(SampleRejection::NotEnoughVolume {
                        wanted: Volume::from_nanolitres(wanted),
                        available: sample.volume_left,
                    });
                }
                let mut events = vec![SampleEvent::SampleAliquoted {
                    aliquots: aliquots.clone(),
                    remaining_volume_ul: Volume::from_nanolitres(available - wanted),
                }];
                // The children's first events; the repository appends them to their own
                // streams in the same commit (see `belongs_to`).
                events.extend(aliquots.into_iter().map(|a| SampleEvent::AliquotCreated {
                    sample_id: a.sample_id,
                    parent_id: sample.id,
                    parent_barcode: sample.details.barcode.clone(),
                    barcode: a.barcode,
                    sample_type: sample.details.sample_type,
                    volume_ul: a.volume_ul,
                    temperature_zone: sample.details.temperature_zone,
                    patient_ref: sample.details.patient.clone(),
                }));
                Ok(events)
            }
            SampleCommand::Dispose { reason, signature } => {
                let sample = self.require()?;
                match (sample.status, &sample.holder) {
                    (Disposed, _) => Err(SampleRejection::AlreadyDisposed),
                    (_, Some((_, holder))) => {
                        Err(SampleRejection::DisposeCheckedOut(holder.to_string()))
                    }
                    _ => Ok(vec![SampleEvent::SampleDisposed {
                        reason,
                        from_box_id: sample.location.map(|(b, _)| b),
                        from_position: sample.location.map(|(_, p)| p),
                        signature: Some(signature),
                    }]),
                }
            }
        }
    }

    fn unique_values(event: &SampleEvent) -> Vec<(&'static str, String)> {
        match event {
            SampleEvent::SampleRegistered { details, .. } => {
                vec![("barcode", details.barcode.to_string())]
            }
            SampleEvent::AliquotCreated { barcode, .. } => vec![("barcode", barcode.to_string())],
            SampleEvent::SampleStored {
                box_id, position, ..
            }
            | SampleEvent::SampleMoved {
                box_id, position, ..
            } => vec![position_claim(*box_id, *position)],
            _ => Vec::new(),
        }
    }

    fn released_values(event: &SampleEvent) -> Vec<(&'static str, String)> {
        match event {
            SampleEvent::SampleMoved {
                from_box_id,
                from_position,
                ..
            }
            | SampleEvent::SampleRemovedFromStorage {
                box_id: from_box_id,
                position: from_position,
                ..
            }
            | SampleEvent::SampleCheckedOut {
                from_box_id: Some(from_box_id),
                from_position: Some(from_position),
                ..
            }
            | SampleEvent::SampleDisposed {
                from_box_id: Some(from_box_id),
                from_position: Some(from_position),
                ..
            } => vec![position_claim(*from_box_id, *from_position)],
            _ => Vec::new(),
        }
    }

    fn belongs_to(event: &SampleEvent) -> Option<Uuid> {
        match event {
            SampleEvent::AliquotCreated { sample_id, .. } => Some(sample_id.as_uuid()),
            _ => None,
        }
    }

    fn apply(&mut self, event: &SampleEvent) {
        match event {
            SampleEvent::SampleRegistered { id, details } => {
                self.registered = Some(RegisteredSample {
                    id: *id,
                    details: details.clone(),
                    status: SampleStatus::Registered,
                    rejection_reason: None,
                    volume_left: details.volume.into(),
                    received: false,
                    location: None,
                    holder: None,
                    parent: None,
                });
            }
            SampleEvent::AliquotCreated {
                sample_id,
                parent_id,
                barcode,
                sample_type,
                volume_ul,
                temperature_zone,
                patient_ref,
                ..
            } => {
                // A child's first event; it never lands on the parent's stream.
                if self.registered.is_none() {
                    self.registered = Some(RegisteredSample {
                        id: *sample_id,
                        details: SampleDetails {
                            barcode: barcode.clone(),
                            sample_type: *sample_type,
                            volume: *volume_ul,
                            temperature_zone: *temperature_zone,
                            patient: patient_ref.clone(),
                            collected_at: None,
                            collected_by: None,
                        },
                        status: SampleStatus::Validated,
                        rejection_reason: None,
                        volume_left: (*volume_ul).into(),
                        received: true,
                        location: None,
                        holder: None,
                        parent: Some(*parent_id),
                    });
                }
            }
            SampleEvent::SampleReceived { .. } => self.update(|s| {
                s.status = SampleStatus::Received;
                s.received = true;
            }),
            SampleEvent::SampleValidated { .. } => {
                self.update(|s| s.status = SampleStatus::Validated)
            }
            SampleEvent::SampleRejected { reason, .. } => self.update(|s| {
                s.status = SampleStatus::Rejected;
                s.rejection_reason = Some(reason.clone());
            }),
            SampleEvent::SampleQcCorrected { passed, reason, .. } => self.update(|s| {
                if *passed {
                    s.status = SampleStatus::Validated;
                    s.rejection_reason = None;
                } else {
                    s.status = SampleStatus::Rejected;
                    s.rejection_reason = Some(reason.clone());
                }
            }),
            SampleEvent::SampleStored {
                box_id, position, ..
            }
            | SampleEvent::SampleMoved {
                box_id, position, ..
            } => self.update(|s| {
                s.status = SampleStatus::InStorage;
                s.location = Some((*box_id, *position));
            }),
            SampleEvent::SampleRemovedFromStorage { .. } => self.update(|s| {
                s.status = SampleStatus::Validated;
                s.location = None;
            }),
            SampleEvent::SampleCheckedOut {
                holder_id, holder, ..
            } => self.update(|s| {
                s.status = SampleStatus::CheckedOut;
                s.location = None;
                s.holder = Some((*holder_id, holder.clone()));
            }),
            SampleEvent::SampleReturned { .. } => self.update(|s| {
                s.status = SampleStatus::Validated;
                s.holder = None;
            }),
            SampleEvent::SampleAliquoted {
                remaining_volume_ul,
                ..
            } => self.update(|s| s.volume_left = *remaining_volume_ul),
            SampleEvent::SampleDisposed { .. } => self.update(|s| {
                s.status = SampleStatus::Disposed;
                s.location = None;
            }),
        }
    }
}

impl Sample {
    fn update(&mut self, change: impl FnOnce(&mut RegisteredSample)) {
        if let Some(sample) = &mut self.registered {
            change(sample);
        }
    }
}

#[cfg(test)]
mod tests;
