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
pub use values::{
    Barcode, Note, ParseError, PatientRef, SampleId, SampleType, TemperatureZone, VolumeUl,
};

use crate::{Aggregate, DomainEvent, PayloadError, untag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

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
}

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
}

impl SampleStatus {
    pub const ALL: &'static [Self] = &[
        Self::Registered,
        Self::Received,
        Self::Validated,
        Self::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Received => "received",
            Self::Validated => "validated",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| ParseError {
                message: format!(
                    "unknown status '{raw}'; expected one of registered, received, validated, rejected"
                ),
            })
    }
}

impl fmt::Display for SampleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command the sample's lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SampleRejection {
    #[error("sample {0} is already registered")]
    AlreadyRegistered(SampleId),
    #[error("no such sample: it has not been registered")]
    NotRegistered,
    #[error("sample is {0}; only a registered sample can be received")]
    CannotReceive(SampleStatus),
    #[error("sample is {0}; only a received sample can be validated")]
    CannotValidate(SampleStatus),
    #[error("sample is {0}; only a registered or received sample can be rejected")]
    CannotReject(SampleStatus),
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
}

impl Sample {
    pub fn status(&self) -> Option<SampleStatus> {
        self.registered.as_ref().map(|s| s.status)
    }

    fn require_status(&self) -> Result<SampleStatus, SampleRejection> {
        self.status().ok_or(SampleRejection::NotRegistered)
    }
}

impl Aggregate for Sample {
    const TYPE: &'static str = "Sample";
    /// 2: `SampleDetails` took the Avro field names.
    const SNAPSHOT_VERSION: u32 = 2;

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
        }
    }

    fn unique_values(event: &SampleEvent) -> Vec<(&'static str, String)> {
        match event {
            SampleEvent::SampleRegistered { details, .. } => {
                vec![("barcode", details.barcode.to_string())]
            }
            _ => Vec::new(),
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
                });
            }
            SampleEvent::SampleReceived { .. } => self.set_status(SampleStatus::Received),
            SampleEvent::SampleValidated { .. } => self.set_status(SampleStatus::Validated),
            SampleEvent::SampleRejected { reason, .. } => {
                if let Some(sample) = &mut self.registered {
                    sample.status = SampleStatus::Rejected;
                    sample.rejection_reason = Some(reason.clone());
                }
            }
        }
    }
}

impl Sample {
    fn set_status(&mut self, status: SampleStatus) {
        if let Some(sample) = &mut self.registered {
            sample.status = status;
        }
    }
}

#[cfg(test)]
mod tests;
