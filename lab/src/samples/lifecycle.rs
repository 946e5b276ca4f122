//! The rest of a sample's lifecycle: storage (store, move, remove), custody (check out,
//! return), aliquots, disposal and QC corrections.
//!
//! **Only a sample that passed QC is stored.** SPEC.md's lifecycle runs `validated →
//! in_storage`: long-term storage holds material fit for use, and sequencing picks only
//! stored, validated samples. A received tube waiting for QC stays in the reception
//! fridge, which is not a tracked position; a tube that failed QC goes to disposal, not
//! into a freezer slot that fit material needs. A mistaken QC decision is corrected
//! (signed, with a reason) rather than stored around.
//!
//! A placement reads its box from the box's own stream (committed facts: zone, grid, in
//! service) and lets the event store's position claims settle races (see
//! `cqrs::storage`); a refused claim is turned back into words here: the position is
//! taken (by which tube), or the box was decommissioned.

use super::SampleService;
use crate::error::{Error, FieldError};
use cqrs::sample::{
    Barcode, MAX_ALIQUOTS, NewAliquot, Note, Sample, SampleCommand, SampleId, SampleRejection,
    Signature, VolumeUl,
};
use cqrs::storage::{BoxFacts, POSITION_SCOPE, Position, StorageUnit, UnitKind};
use event_sourcing::{CommandContext, CommandError, CommandOutcome, ExpectedVersion, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One aliquot to take, as typed: a scanned barcode (or none, to generate one) and a
/// volume in µL.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AliquotInput {
    pub barcode: String,
    pub volume_ul: String,
}

fn notes(raw: &str) -> Result<Option<Note>, Error> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        Note::parse(raw)
            .map(Some)
            .map_err(|e| Error::invalid("notes", e.message))
    }
}

fn required_note(raw: &str, field: &'static str, what: &str) -> Result<Note, Error> {
    if raw.trim().is_empty() {
        return Err(Error::invalid(field, what.to_owned()));
    }
    Note::parse(raw).map_err(|e| Error::invalid(field, e.message))
}

/// Why a signed action without a signature is refused.
pub const SIGNATURE_NEEDED: &str = "this needs your electronic signature: re-enter your password and choose what your signature means";

impl SampleService {
    /// The box a `box` field names (its barcode, or its id), as committed in its stream,
    /// and the position: the `position` field, or the end of the box field when a
    /// scanner sent both at once (`BOX-0001 A1`, `BOX-0001:A1`).
    pub async fn resolve_target(
        &self,
        box_field: &str,
        position_field: &str,
    ) -> Result<(BoxFacts, Position), Error> {
        let mut errors = Vec::new();
        let raw = box_field.trim();
        let (box_raw, position_raw) = if position_field.trim().is_empty() {
            match raw.rsplit_once([' ', ':', '/']) {
                Some((b, p)) if Position::parse(p).is_ok() => (b.trim(), p.trim()),
                _ => (raw, ""),
            }
        } else {
            (raw, position_field.trim())
        };
        if box_raw.is_empty() {
            errors.push(FieldError {
                field: "box",
                message: "scan or type the box's barcode".into(),
            });
        }
        let position = if position_raw.is_empty() {
            errors.push(FieldError {
                field: "position",
                message: "say which position (e.g. A1)".into(),
            });
            None
        } else {
            Position::parse(position_raw)
                .map_err(|e| {
                    errors.push(FieldError {
                        field: "position",
                        message: e.message,
                    })
                })
                .ok()
        };
        let Some(position) = position.filter(|_| errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        let not_found = || Error::invalid("box", format!("no box has the barcode '{box_raw}'"));
        let key = box_raw.to_ascii_uppercase();
        // A box's id, zone and grid never change, so placements may reuse what they read;
        // whether it is still in service is settled by the position claims whatever this
        // says (a sealed box holds them all), and the refusal then says so.
        if let Some(facts) = self.boxes.lock().ok().and_then(|b| b.get(&key).cloned()) {
            return Ok((facts, position));
        }
        let id = match Uuid::parse_str(box_raw) {
            Ok(id) => Some(id),
            Err(_) => match cqrs::storage::UnitCode::parse(box_raw) {
                Ok(code) => {
                    sqlx::query_scalar(
                        "SELECT aggregate_id FROM unique_claims WHERE scope = 'unit-code' AND value = $1",
                    )
                    .bind(code.as_str())
                    .fetch_optional(self.pool())
                    .await?
                }
                Err(_) => None,
            },
        };
        let id = id.ok_or_else(not_found)?;
        let unit = self
            .store
            .load::<StorageUnit>(id)
            .await?
            .state
            .unit
            .ok_or_else(not_found)?;
        if unit.kind != UnitKind::Box {
            return Err(Error::invalid(
                "box",
                format!("{} is a {}, not a box", unit.code, unit.kind),
            ));
        }
        let facts = unit.as_box().ok_or_else(not_found)?;
        if let Ok(mut boxes) = self.boxes.lock() {
            if boxes.len() >= 100_000 {
                boxes.clear();
            }
            boxes.insert(key, facts.clone());
        }
        Ok((facts, position))
    }

    /// Stores a sample that passed QC into a free position of a box of its zone.
    pub async fn store_sample(
        &self,
        id: Uuid,
        box_field: &str,
        position_field: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command(
            "StoreSample",
            self.place(id, box_field, position_field, expected, context, false),
        )
        .await
    }

    /// Moves a stored sample; the old position is freed in the same commit.
    pub async fn move_sample(
        &self,
        id: Uuid,
        box_field: &str,
        position_field: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command(
            "MoveSample",
            self.place(id, box_field, position_field, expected, context, true),
        )
        .await
    }

    async fn place(
        &self,
        id: Uuid,
        box_field: &str,
        position_field: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
        moving: bool,
    ) -> Result<CommandOutcome, Error> {
        let (target, position) = self.resolve_target(box_field, position_field).await?;
        let command = if moving {
            SampleCommand::Move {
                target: target.clone(),
                position,
            }
        } else {
            SampleCommand::Store {
                target: target.clone(),
                position,
            }
        };
        let result = self
            .store
            .execute::<Sample>(id, command, context, expected)
            .await;
        self.explain_placement(result, &target, position).await
    }

    pub async fn remove_from_storage(
        &self,
        id: Uuid,
        text: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("RemoveSampleFromStorage", async {
            let command = SampleCommand::RemoveFromStorage {
                notes: notes(text)?,
            };
            Ok(self
                .store
                .execute::<Sample>(id, command, context, expected)
                .await?)
        })
        .await
    }

    /// Hands the sample to `holder` (an account: id and name).
    pub async fn check_out(
        &self,
        id: Uuid,
        holder: (Uuid, &str),
        text: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("CheckOutSample", async {
            let command = SampleCommand::CheckOut {
                holder_id: holder.0,
                holder: Note::parse(holder.1).map_err(|e| Error::invalid("holder", e.message))?,
                notes: notes(text)?,
            };
            Ok(self
                .store
                .execute::<Sample>(id, command, context, expected)
                .await?)
        })
        .await
    }

    pub async fn return_sample(
        &self,
        id: Uuid,
        text: &str,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("ReturnSample", async {
            let command = SampleCommand::Return {
                notes: notes(text)?,
            };
            Ok(self
                .store
                .execute::<Sample>(id, command, context, expected)
                .await?)
        })
        .await
    }

    /// Takes aliquots; a missing barcode is generated from the parent's type. The
    /// children's ids derive from the command id, so a repeat finds them again.
    pub async fn aliquot(
        &self,
        id: Uuid,
        inputs: &[AliquotInput],
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("AliquotSample", async {
            let inputs: Vec<&AliquotInput> = inputs
                .iter()
                .filter(|a| !(a.barcode.trim().is_empty() && a.volume_ul.trim().is_empty()))
                .collect();
            if inputs.is_empty() {
                return Err(Error::invalid(
                    "aliquots",
                    "give at least one aliquot's volume",
                ));
            }
            if inputs.len() > MAX_ALIQUOTS {
                return Err(Error::invalid(
                    "aliquots",
                    format!("at most {MAX_ALIQUOTS} aliquots at once"),
                ));
            }
            let mut errors = Vec::new();
            let mut parsed = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                let barcode = if input.barcode.trim().is_empty() {
                    None
                } else {
                    match Barcode::parse(&input.barcode) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            errors.push(FieldError {
                                field: "aliquots",
                                message: format!("aliquot {}: {}", i + 1, e.message),
                            });
                            None
                        }
                    }
                };
                let volume = if input.volume_ul.trim().is_empty() {
                    errors.push(FieldError {
                        field: "aliquots",
                        message: format!("aliquot {}: the volume is required", i + 1),
                    });
                    None
                } else {
                    VolumeUl::parse(&input.volume_ul)
                        .map_err(|e| {
                            errors.push(FieldError {
                                field: "aliquots",
                                message: format!("aliquot {}: {}", i + 1, e.message),
                            })
                        })
                        .ok()
                };
                parsed.push((barcode, volume));
            }
            if !errors.is_empty() {
                return Err(Error::Invalid(errors));
            }
            let parent = self.store.load::<Sample>(id).await?.state;
            let sample_type = parent
                .registered
                .as_ref()
                .map(|p| p.details.sample_type)
                .ok_or_else(|| Error::NotFound("no such sample".into()))?;
            let today = chrono::Utc::now().date_naive();
            let mut aliquots = Vec::with_capacity(parsed.len());
            for (i, (barcode, volume)) in parsed.into_iter().enumerate() {
                let Some(volume_ul) = volume else { continue };
                let barcode = match barcode {
                    Some(b) => b,
                    None => {
                        let seq: i64 = sqlx::query_scalar("SELECT nextval('barcode_seq')")
                            .fetch_one(self.pool())
                            .await?;
                        Barcode::generate(sample_type, today, u64::try_from(seq).unwrap_or(0))
                    }
                };
                aliquots.push(NewAliquot {
                    sample_id: SampleId::from_uuid(child_id(context.command_id, i)),
                    barcode,
                    volume_ul,
                });
            }
            let result = self
                .store
                .execute::<Sample>(id, SampleCommand::Aliquot { aliquots }, context, expected)
                .await;
            match result {
                Err(CommandError::Store(StoreError::UniqueViolation { scope, value }))
                    if scope.contains("barcode") =>
                {
                    Err(Error::Conflict(format!(
                        "barcode {value} is already on another tube; scan a fresh tube or leave it empty to generate one"
                    )))
                }
                other => Ok(other?),
            }
        })
        .await
    }

    /// Disposes of a sample (signed): its position is freed.
    pub async fn dispose(
        &self,
        id: Uuid,
        reason: &str,
        signature: Option<Signature>,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("DisposeSample", async {
            let reason = required_note(reason, "reason", "say why the sample is disposed of");
            let (reason, signature) = signed(reason, signature)?;
            Ok(self
                .store
                .execute::<Sample>(
                    id,
                    SampleCommand::Dispose { reason, signature },
                    context,
                    expected,
                )
                .await?)
        })
        .await
    }

    /// Corrects a QC decision (signed, with a reason), as a new event.
    pub async fn correct_qc(
        &self,
        id: Uuid,
        passed: bool,
        reason: &str,
        signature: Option<Signature>,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("CorrectSampleQc", async {
            let reason = required_note(reason, "reason", "say why the QC decision was wrong");
            let (reason, signature) = signed(reason, signature)?;
            Ok(self
                .store
                .execute::<Sample>(
                    id,
                    SampleCommand::CorrectQc {
                        passed,
                        reason,
                        signature,
                    },
                    context,
                    expected,
                )
                .await?)
        })
        .await
    }

    /// A placement's outcome in lab words: which tube has the position, or the box was
    /// decommissioned.
    async fn explain_placement(
        &self,
        result: Result<CommandOutcome, CommandError<SampleRejection>>,
        target: &BoxFacts,
        position: Position,
    ) -> Result<CommandOutcome, Error> {
        match result {
            Err(CommandError::Store(StoreError::UniqueViolation { scope, .. }))
                if scope == POSITION_SCOPE =>
            {
                let holder: Option<Uuid> = sqlx::query_scalar(
                    "SELECT aggregate_id FROM unique_claims WHERE scope = $1 AND value = $2",
                )
                .bind(POSITION_SCOPE)
                .bind(format!("{}/{position}", target.id))
                .fetch_optional(self.pool())
                .await?;
                if holder == Some(target.id.as_uuid()) {
                    return Err(Error::Conflict(format!(
                        "box {} was decommissioned; nothing more goes into it",
                        target.code
                    )));
                }
                let barcode: Option<String> = match holder {
                    Some(h) => {
                        sqlx::query_scalar(
                            "SELECT value FROM unique_claims WHERE scope = 'barcode' AND aggregate_id = $1",
                        )
                        .bind(h)
                        .fetch_optional(self.pool())
                        .await?
                    }
                    None => None,
                };
                Err(Error::Conflict(match barcode {
                    Some(b) => format!(
                        "position {position} of box {} is already taken by {b}; choose a free position",
                        target.code
                    ),
                    None => format!(
                        "position {position} of box {} was just taken; choose a free position",
                        target.code
                    ),
                }))
            }
            other => Ok(other?),
        }
    }
}

/// Both problems of a signed action at once: the text and the signature.
fn signed(
    text: Result<Note, Error>,
    signature: Option<Signature>,
) -> Result<(Note, Signature), Error> {
    match (text, signature) {
        (Ok(text), Some(signature)) => Ok((text, signature)),
        (Err(Error::Invalid(mut errors)), None) => {
            errors.push(FieldError {
                field: "signature",
                message: SIGNATURE_NEEDED.into(),
            });
            Err(Error::Invalid(errors))
        }
        (Err(error), _) => Err(error),
        (Ok(_), None) => Err(Error::invalid("signature", SIGNATURE_NEEDED)),
    }
}

/// The `index`-th child's id of an aliquot command: derived from the command id, so a
/// repeated command names the same children.
fn child_id(command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&command_id, format!("aliquot-{index}").as_bytes())
}
