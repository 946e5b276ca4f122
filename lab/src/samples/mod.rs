//! Sample use cases: parse raw input into commands, run them through the store, answer
//! queries from the `samples` read table (kept by [`SamplesProjection`]), and give the
//! caller read-your-writes on it.
//!
//! Whoever issues a command (a form, the JSON API, the saga) hands in a
//! [`CommandContext`]: who, which command id, what caused it. The service records nothing
//! about its caller beyond that.
//!
//! A QC decision (validate, reject) also needs the signer's electronic [`Signature`],
//! which the edge makes once it has verified the signer's password (21 CFR Part 11
//! §11.200). Without one the decision is refused as invalid input before anything is
//! appended. Who may sign is decided at the edge, where the password is: a person logged
//! in signs as themselves, and only an integration's API token may present another
//! person's credentials (their username and password) to record their signature.

mod lifecycle;
pub mod read_model;

pub use lifecycle::{AliquotInput, SIGNATURE_NEEDED};

pub use read_model::{SampleFilter, SamplePage, SampleRow, SamplesProjection};

use crate::error::{Error, FieldError};
use crate::idempotency::created_id;
use crate::metrics::CommandMetrics;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use cqrs::sample::{
    Barcode, Note, PatientRef, Sample, SampleCommand, SampleDetails, SampleEvent, SampleId,
    SampleStatus, SampleType, Signature, TemperatureZone, VolumeUl,
};
use cqrs::storage::{Position, UnitId};
use event_sourcing::{
    CommandContext, CommandOutcome, EventStore, ExpectedVersion, Projection, ReadProgress,
    StoredEvent,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Raw registration input, as typed into the form or sent to the API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RegisterInput {
    pub barcode: String,
    pub sample_type: String,
    pub volume_ul: String,
    pub temperature_zone: String,
    pub patient: String,
    pub collected_at: String,
    pub collected_by: String,
}

/// Registration input that parsed; a missing barcode is generated when registering.
#[derive(Debug, Clone)]
pub struct Registration {
    pub barcode: Option<Barcode>,
    pub sample_type: SampleType,
    pub volume: VolumeUl,
    pub temperature_zone: TemperatureZone,
    pub patient: Option<PatientRef>,
    pub collected_at: Option<DateTime<Utc>>,
    pub collected_by: Option<Note>,
}

fn optional<T, E: ToString>(
    raw: &str,
    field: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    if raw.trim().is_empty() {
        return None;
    }
    parse(raw)
        .map_err(|e| {
            errors.push(FieldError {
                field,
                message: e.to_string(),
            })
        })
        .ok()
}

fn required<T, E: ToString>(
    raw: &str,
    field: &'static str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    if raw.trim().is_empty() {
        errors.push(FieldError {
            field,
            message: format!("{what} is required"),
        });
        return None;
    }
    optional(raw, field, parse, errors)
}

/// Collection time: RFC 3339, or the form's `YYYY-MM-DDTHH:MM` as a wall-clock time in
/// the lab's time zone `zone`; not in the future. A wall-clock time the zone skips (the
/// hour clocks go forward) is refused; one it repeats (the hour they go back) is taken
/// as its first occurrence.
fn parse_collected_at(raw: &str, now: DateTime<Utc>, zone: Tz) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let local = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| format!("'{raw}' is not a date and time (e.g. 2026-11-22T09:30)"))?;
            zone.from_local_datetime(&local)
                .earliest()
                .ok_or_else(|| {
                    format!("{raw} does not exist in {zone}: the clocks skipped it; check the time")
                })?
                .with_timezone(&Utc)
        }
    };
    if at > now + chrono::Duration::minutes(5) {
        return Err("collection time is in the future".into());
    }
    Ok(at)
}

impl RegisterInput {
    /// Parses every field, typed times as UTC.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<Registration, Vec<FieldError>> {
        self.parse_in(now, Tz::UTC)
    }

    /// Parses every field, collecting all problems at once so the form can show each
    /// beside its field; a typed time without an offset is a wall-clock time in `zone`.
    pub fn parse_in(&self, now: DateTime<Utc>, zone: Tz) -> Result<Registration, Vec<FieldError>> {
        let mut errors = Vec::new();
        let barcode = optional(&self.barcode, "barcode", Barcode::parse, &mut errors);
        let sample_type = required(
            &self.sample_type,
            "sample_type",
            "sample type",
            SampleType::parse,
            &mut errors,
        );
        let volume = required(
            &self.volume_ul,
            "volume_ul",
            "volume",
            VolumeUl::parse,
            &mut errors,
        );
        let temperature_zone = required(
            &self.temperature_zone,
            "temperature_zone",
            "temperature zone",
            TemperatureZone::parse,
            &mut errors,
        );
        let patient = optional(&self.patient, "patient", PatientRef::parse, &mut errors);
        let collected_at = optional(
            &self.collected_at,
            "collected_at",
            |r| parse_collected_at(r, now, zone),
            &mut errors,
        );
        let collected_by = optional(&self.collected_by, "collected_by", Note::parse, &mut errors);
        match (sample_type, volume, temperature_zone) {
            (Some(sample_type), Some(volume), Some(temperature_zone)) if errors.is_empty() => {
                Ok(Registration {
                    barcode,
                    sample_type,
                    volume,
                    temperature_zone,
                    patient,
                    collected_at,
                    collected_by,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A sample list's filters as typed into the page or sent to the API (all optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ListInput {
    /// A barcode prefix.
    pub q: String,
    pub status: String,
    #[serde(rename = "type")]
    pub sample_type: String,
    pub zone: String,
    /// A storage unit's barcode (or id): a box, or every box of a rack or freezer.
    pub location: String,
    pub patient: String,
    /// Registered on or after this day / on or before this day (`YYYY-MM-DD`, UTC).
    pub from: String,
    pub to: String,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

impl ListInput {
    /// The filter, every problem reported by field; `location` needs the store to find
    /// the unit.
    pub async fn filter(&self, service: &SampleService) -> Result<SampleFilter, Error> {
        let mut errors = Vec::new();
        let status = optional(&self.status, "status", SampleStatus::parse, &mut errors);
        let sample_type = optional(&self.sample_type, "type", SampleType::parse, &mut errors);
        let zone = optional(&self.zone, "zone", TemperatureZone::parse, &mut errors);
        let day = |raw: &str| {
            chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
                .map_err(|_| format!("'{}' is not a day (YYYY-MM-DD)", raw.trim()))
        };
        let from = optional(&self.from, "from", day, &mut errors);
        let to = optional(&self.to, "to", day, &mut errors);
        let patient = optional(&self.patient, "patient", PatientRef::parse, &mut errors);
        let location = if self.location.trim().is_empty() {
            None
        } else {
            let raw = self.location.trim();
            let found = match Uuid::parse_str(raw) {
                Ok(id) => Some(id),
                Err(_) => sqlx::query_scalar(
                    "SELECT aggregate_id FROM unique_claims WHERE scope = 'unit-code' AND value = $1",
                )
                .bind(raw.to_ascii_uppercase())
                .fetch_optional(service.pool())
                .await?,
            };
            if found.is_none() {
                errors.push(FieldError {
                    field: "location",
                    message: format!("no freezer, rack or box has the barcode '{raw}'"),
                });
            }
            found
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(SampleFilter {
            barcode_prefix: Some(self.q.trim().to_ascii_uppercase()).filter(|q| !q.is_empty()),
            status,
            sample_type,
            zone,
            location,
            patient: patient.map(|p| p.to_string()),
            registered_from: from.map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
            registered_to: to
                .and_then(|d| d.succ_opt())
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
            page: self.page.unwrap_or(1),
            per_page: self.per_page.unwrap_or(50),
        })
    }
}

/// One line of a sample's history: what happened, who did it, when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub version: u64,
    pub event_type: String,
    pub what: String,
    pub detail: Option<String>,
    /// Who issued the command, as recorded (a display name).
    pub user: String,
    /// The authenticated account that issued it; `None` for events recorded before
    /// accounts existed.
    pub user_id: Option<Uuid>,
    /// A QC decision's electronic signature, as people read it: `Signed by Ana Müller
    /// (approved) at 2026-11-23 10:00 UTC`. `None` for other events and for decisions
    /// recorded before signatures existed.
    pub signature: Option<String>,
    pub at: DateTime<Utc>,
    pub correlation_id: Uuid,
}

impl TimelineEntry {
    /// The history line of one stored event.
    pub fn of(event: StoredEvent<SampleEvent>) -> Self {
        Self::with_boxes(event, &HashMap::new())
    }

    /// The history line of one stored event, naming boxes by their barcodes where
    /// `boxes` knows them (ids otherwise).
    pub fn with_boxes(event: StoredEvent<SampleEvent>, boxes: &HashMap<Uuid, String>) -> Self {
        let place = |box_id: &UnitId, position: &Position| {
            let code = boxes
                .get(&box_id.as_uuid())
                .cloned()
                .unwrap_or_else(|| format!("box {}", &box_id.to_string()[..8]));
            format!("{code} {position}")
        };
        let with_notes = |base: String, notes: &Option<Note>| match notes {
            Some(n) => format!("{base} · {n}"),
            None => base,
        };
        let (what, detail, signature): (&str, Option<String>, Option<&Signature>) =
            match &event.payload {
                SampleEvent::SampleRegistered { details, .. } => (
                    "Registered",
                    Some(format!(
                        "{} · {} · {} µL · {}",
                        details.barcode,
                        details.sample_type.label(),
                        details.volume,
                        details.temperature_zone.label()
                    )),
                    None,
                ),
                SampleEvent::SampleReceived { notes } => {
                    ("Received", notes.as_ref().map(ToString::to_string), None)
                }
                SampleEvent::SampleValidated { notes, signature } => (
                    "Validated (QC passed)",
                    notes.as_ref().map(ToString::to_string),
                    signature.as_ref(),
                ),
                SampleEvent::SampleRejected { reason, signature } => (
                    "Rejected (QC failed)",
                    Some(reason.to_string()),
                    signature.as_ref(),
                ),
                SampleEvent::SampleQcCorrected {
                    passed,
                    reason,
                    signature,
                } => (
                    if *passed {
                        "QC corrected to passed"
                    } else {
                        "QC corrected to failed"
                    },
                    Some(reason.to_string()),
                    signature.as_ref(),
                ),
                SampleEvent::SampleStored {
                    box_code, position, ..
                } => ("Stored", Some(format!("{box_code} {position}")), None),
                SampleEvent::SampleMoved {
                    from_box_id,
                    from_position,
                    box_code,
                    position,
                    ..
                } => (
                    "Moved",
                    Some(format!(
                        "{} → {box_code} {position}",
                        place(from_box_id, from_position)
                    )),
                    None,
                ),
                SampleEvent::SampleRemovedFromStorage {
                    box_id,
                    position,
                    notes,
                } => (
                    "Removed from storage",
                    Some(with_notes(
                        format!("from {}", place(box_id, position)),
                        notes,
                    )),
                    None,
                ),
                SampleEvent::SampleCheckedOut {
                    holder,
                    notes,
                    from_box_id,
                    from_position,
                    ..
                } => {
                    let mut base = format!("to {holder}");
                    if let (Some(b), Some(p)) = (from_box_id, from_position) {
                        base.push_str(&format!(", from {}", place(b, p)));
                    }
                    ("Checked out", Some(with_notes(base, notes)), None)
                }
                SampleEvent::SampleReturned { holder, notes, .. } => (
                    "Returned",
                    Some(with_notes(format!("by {holder}"), notes)),
                    None,
                ),
                SampleEvent::SampleAliquoted {
                    aliquots,
                    remaining_volume_ul,
                } => (
                    "Aliquoted",
                    Some(format!(
                        "{} · {remaining_volume_ul} µL left",
                        aliquots
                            .iter()
                            .map(|a| format!("{} ({} µL)", a.barcode, a.volume_ul))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    None,
                ),
                SampleEvent::AliquotCreated {
                    parent_barcode,
                    barcode,
                    volume_ul,
                    ..
                } => (
                    "Created as an aliquot",
                    Some(format!("{barcode} · {volume_ul} µL from {parent_barcode}")),
                    None,
                ),
                SampleEvent::SampleDisposed {
                    reason,
                    from_box_id,
                    from_position,
                    signature,
                } => {
                    let detail = match (from_box_id, from_position) {
                        (Some(b), Some(p)) => format!("{reason} · freed {}", place(b, p)),
                        _ => reason.to_string(),
                    };
                    ("Disposed", Some(detail), signature.as_ref())
                }
            };
        Self {
            version: event.version,
            what: what.to_owned(),
            detail,
            signature: signature.map(ToString::to_string),
            event_type: event.event_type,
            user: event.metadata.user,
            user_id: event.metadata.user_id,
            at: event.recorded_at,
            correlation_id: event.metadata.correlation_id,
        }
    }
}

/// Why a QC decision without a signature is refused, as the form shows it.
pub const SIGNATURE_REQUIRED: &str = "a QC decision needs your electronic signature: re-enter your password and choose what your signature means";

/// The lifecycle actions on an existing sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Receive,
    Validate,
    Reject,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "receive" => Some(Self::Receive),
            "validate" => Some(Self::Validate),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }

    /// The command this action issues, as metrics name it.
    pub fn command_name(self) -> &'static str {
        match self {
            Self::Receive => "ReceiveSample",
            Self::Validate => "ValidateSample",
            Self::Reject => "RejectSample",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Validate => "validate",
            Self::Reject => "reject",
        }
    }

    /// Whether the action is a QC decision, which must be electronically signed.
    pub fn needs_signature(self) -> bool {
        matches!(self, Self::Validate | Self::Reject)
    }

    /// The command for this action; `text` is the notes, or the reason for a rejection.
    /// A QC decision (validate, reject) needs the signer's `signature`; receiving ignores
    /// it. Every problem is reported at once, field by field.
    pub fn command(self, text: &str, signature: Option<Signature>) -> Result<SampleCommand, Error> {
        let signature = signature.filter(|_| self.needs_signature());
        match (self.command_text(text), signature) {
            // Both problems at once, so the form shows each beside its field.
            (Err(Error::Invalid(mut errors)), None) if self.needs_signature() => {
                errors.push(FieldError {
                    field: "signature",
                    message: SIGNATURE_REQUIRED.into(),
                });
                Err(Error::Invalid(errors))
            }
            (Err(error), _) => Err(error),
            (Ok(Unsigned::Receive(notes)), _) => Ok(SampleCommand::Receive { notes }),
            (Ok(Unsigned::Validate(notes)), Some(signature)) => {
                Ok(SampleCommand::Validate { notes, signature })
            }
            (Ok(Unsigned::Reject(reason)), Some(signature)) => {
                Ok(SampleCommand::Reject { reason, signature })
            }
            (Ok(Unsigned::Validate(_) | Unsigned::Reject(_)), None) => {
                Err(Error::invalid("signature", SIGNATURE_REQUIRED))
            }
        }
    }

    /// The action's parsed text, before a signature is attached.
    fn command_text(self, text: &str) -> Result<Unsigned, Error> {
        let notes = || -> Result<Option<Note>, Error> {
            if text.trim().is_empty() {
                Ok(None)
            } else {
                Note::parse(text)
                    .map(Some)
                    .map_err(|e| Error::invalid("notes", e.message))
            }
        };
        Ok(match self {
            Self::Receive => Unsigned::Receive(notes()?),
            Self::Validate => Unsigned::Validate(notes()?),
            Self::Reject => {
                if text.trim().is_empty() {
                    return Err(Error::invalid("reason", "a rejection needs a reason"));
                }
                Unsigned::Reject(
                    Note::parse(text).map_err(|e| Error::invalid("reason", e.message))?,
                )
            }
        })
    }
}

/// An action's parsed text: notes, or a rejection's reason.
enum Unsigned {
    Receive(Option<Note>),
    Validate(Option<Note>),
    Reject(Note),
}

/// Runs sample commands and queries.
#[derive(Clone)]
pub struct SampleService {
    store: EventStore,
    read_progress: ReadProgress,
    read_your_writes: Duration,
    metrics: CommandMetrics,
    time_zone: Tz,
    /// Boxes as placements last read them, by barcode (see `lifecycle::resolve_target`).
    pub(crate) boxes: std::sync::Arc<std::sync::Mutex<HashMap<String, cqrs::storage::BoxFacts>>>,
}

impl SampleService {
    pub fn new(store: EventStore, read_your_writes: Duration, metrics: CommandMetrics) -> Self {
        let read_progress = ReadProgress::listen(store.pool());
        Self {
            store,
            read_progress,
            read_your_writes,
            metrics,
            time_zone: Tz::UTC,
            boxes: Default::default(),
        }
    }

    /// Typed times without an offset are wall-clock times in `zone` (the lab's).
    pub fn with_time_zone(mut self, zone: Tz) -> Self {
        self.time_zone = zone;
        self
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }

    /// Registers a sample. Its id is derived from the command id, so a repeated command
    /// finds the sample it created the first time instead of creating another.
    #[tracing::instrument(name = "register_sample", skip_all, fields(command_id = %context.command_id))]
    pub async fn register(
        &self,
        input: &RegisterInput,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command("RegisterSample", self.register_sample(input, context))
            .await
    }

    async fn register_sample(
        &self,
        input: &RegisterInput,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        let now = Utc::now();
        let registration = input
            .parse_in(now, self.time_zone)
            .map_err(Error::Invalid)?;
        let barcode = match registration.barcode {
            Some(barcode) => barcode,
            None => {
                let seq: i64 = sqlx::query_scalar("SELECT nextval('barcode_seq')")
                    .fetch_one(self.store.pool())
                    .await?;
                Barcode::generate(
                    registration.sample_type,
                    now.date_naive(),
                    u64::try_from(seq).unwrap_or_default(),
                )
            }
        };
        let id = created_id(context.command_id);
        let command = SampleCommand::Register {
            id: SampleId::from_uuid(id),
            details: SampleDetails {
                barcode,
                sample_type: registration.sample_type,
                volume: registration.volume,
                temperature_zone: registration.temperature_zone,
                patient: registration.patient,
                collected_at: registration.collected_at,
                collected_by: registration.collected_by,
            },
        };
        let outcome = self
            .store
            .execute::<Sample>(id, command, context, ExpectedVersion::Exactly(0))
            .await?;
        Ok(outcome)
    }

    /// Receives, validates or rejects a sample. Validating and rejecting are QC
    /// decisions and need the signer's electronic `signature` (see the module
    /// documentation); receiving ignores it.
    #[tracing::instrument(name = "sample_action", skip_all, fields(sample_id = %id, action = action.name()))]
    pub async fn act(
        &self,
        id: Uuid,
        action: Action,
        text: &str,
        signature: Option<Signature>,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        self.command(
            action.command_name(),
            self.act_on_sample(id, action, text, signature, expected, context),
        )
        .await
    }

    /// Runs a command, counting its outcome and timing it.
    async fn command(
        &self,
        command: &str,
        run: impl std::future::Future<Output = Result<CommandOutcome, Error>>,
    ) -> Result<CommandOutcome, Error> {
        let started = Instant::now();
        let result = run.await;
        let outcome = match &result {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .commands
            .with_label_values(&[command, outcome])
            .inc();
        self.metrics
            .command_duration
            .with_label_values(&[command])
            .observe(started.elapsed().as_secs_f64());
        if let Ok(o) = &result {
            let seen = if o.duplicate { "repeated" } else { "first" };
            self.metrics
                .idempotency_checks
                .with_label_values(&[seen])
                .inc();
        }
        result
    }

    /// Runs a query, counting it and timing it.
    pub async fn query<T>(
        &self,
        name: &str,
        run: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = run.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .queries
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .query_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn act_on_sample(
        &self,
        id: Uuid,
        action: Action,
        text: &str,
        signature: Option<Signature>,
        expected: ExpectedVersion,
        context: &CommandContext,
    ) -> Result<CommandOutcome, Error> {
        // Who may sign is the edge's decision, made with the password in hand: a person
        // logged in signs as themselves; an integration's token presents the signer's
        // own credentials (web/src/routes/signing.rs). The signer need not be the
        // principal issuing the command.
        let command = action.command(text, signature)?;
        let outcome = self
            .store
            .execute::<Sample>(id, command, context, expected)
            .await?;
        Ok(outcome)
    }

    /// Waits until the samples table shows sample `id` at `version` or later (the
    /// consistency token a command answered with), woken by the projections' progress;
    /// at most `TRACSEQ_READ_YOUR_WRITES_MS`. False if it did not get there in time, and
    /// the page says so.
    pub async fn wait_for_version(&self, id: Uuid, version: u64) -> bool {
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        let pool = self.store.pool();
        let reached = self
            .read_progress
            .wait_for(
                SamplesProjection::NAME,
                id,
                version,
                self.read_your_writes,
                || async move {
                    let at: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM samples WHERE sample_id = $1")
                            .bind(id)
                            .fetch_optional(pool)
                            .await
                            .ok()
                            .flatten();
                    at.is_some_and(|v| v >= wanted)
                },
            )
            .await;
        if !reached {
            tracing::warn!(sample = %id, version, "the read side did not reach this version in time");
        }
        reached
    }

    /// The sample's complete history.
    pub async fn timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>, Error> {
        self.query("SampleTimeline", self.read_timeline(id)).await
    }

    async fn read_timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>, Error> {
        let events = self.store.read_stream::<SampleEvent>(id).await?;
        Ok(events.into_iter().map(TimelineEntry::of).collect())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<SampleRow>, Error> {
        self.query("GetSample", async {
            Ok(read_model::get(self.store.pool(), id).await?)
        })
        .await
    }

    /// The sample as its stream has it now (not the read table).
    pub async fn load(&self, id: Uuid) -> Result<Option<cqrs::sample::RegisteredSample>, Error> {
        Ok(self.store.load::<Sample>(id).await?.state.registered)
    }

    /// The sample's parent and its aliquots, as `(id, barcode)`.
    #[allow(clippy::type_complexity)]
    pub async fn lineage(
        &self,
        id: Uuid,
        parent: Option<Uuid>,
    ) -> Result<(Option<(Uuid, String)>, Vec<(Uuid, String)>), Error> {
        let parent = match parent {
            Some(p) => {
                sqlx::query_as("SELECT sample_id, barcode FROM samples WHERE sample_id = $1")
                    .bind(p)
                    .fetch_optional(self.pool())
                    .await?
            }
            None => None,
        };
        let children = sqlx::query_as(
            "SELECT sample_id, barcode FROM samples WHERE parent_id = $1 ORDER BY barcode",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok((parent, children))
    }

    /// The sample with exactly this barcode, if any.
    pub async fn find_by_barcode(&self, barcode: &str) -> Result<Option<Uuid>, Error> {
        self.query("FindSampleByBarcode", async {
            Ok(read_model::find_by_barcode(self.store.pool(), barcode).await?)
        })
        .await
    }

    pub async fn list(&self, filter: &SampleFilter) -> Result<SamplePage, Error> {
        self.query("ListSamples", async {
            Ok(read_model::list(self.store.pool(), filter).await?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs::sample::SignatureMeaning;

    fn input() -> RegisterInput {
        RegisterInput {
            sample_type: "plasma".into(),
            volume_ul: "250".into(),
            temperature_zone: "-80".into(),
            ..RegisterInput::default()
        }
    }

    #[test]
    fn a_minimal_registration_parses_and_leaves_the_barcode_to_generate() {
        let r = input().parse(Utc::now()).expect("valid");
        assert!(r.barcode.is_none());
        assert_eq!(r.sample_type, SampleType::Plasma);
    }

    #[test]
    fn every_bad_field_is_reported_by_name() {
        let bad = RegisterInput {
            barcode: "no spaces".into(),
            sample_type: "lava".into(),
            volume_ul: "-5".into(),
            temperature_zone: "".into(),
            collected_at: "yesterday".into(),
            ..RegisterInput::default()
        };
        let errors = bad.parse(Utc::now()).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "barcode",
                "sample_type",
                "volume_ul",
                "temperature_zone",
                "collected_at"
            ]
        );
    }

    #[test]
    fn collection_in_the_future_is_refused() {
        let mut future = input();
        future.collected_at = "2999-01-01T00:00".into();
        let errors = future.parse(Utc::now()).expect_err("future");
        assert_eq!(errors[0].message, "collection time is in the future");
    }

    fn signature() -> Signature {
        Signature::new(
            Uuid::from_u128(0xa11ce),
            "Ana Müller",
            SignatureMeaning::Approved,
            DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
                .expect("time")
                .to_utc(),
        )
    }

    fn fields(result: Result<SampleCommand, Error>) -> Vec<&'static str> {
        match result {
            Err(Error::Invalid(errors)) => errors.iter().map(|e| e.field).collect(),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_rejection_needs_a_reason() {
        assert_eq!(
            fields(Action::Reject.command("  ", Some(signature()))),
            ["reason"]
        );
        assert!(Action::Receive.command("", None).is_ok());
    }

    #[test]
    fn a_qc_decision_without_a_signature_is_refused() {
        for action in [Action::Validate, Action::Reject] {
            let result = action.command("haemolysed", None);
            let Err(Error::Invalid(errors)) = result else {
                panic!("{action:?} without a signature: {result:?}");
            };
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "signature");
            assert_eq!(errors[0].message, SIGNATURE_REQUIRED);
            assert!(errors[0].message.contains("password"));
        }
        assert_eq!(
            fields(Action::Reject.command("", None)),
            ["reason", "signature"],
            "every problem at once"
        );
    }

    #[test]
    fn a_signed_qc_decision_carries_its_signature_and_receiving_ignores_one() {
        assert_eq!(
            Action::Validate
                .command("RIN 9.1", Some(signature()))
                .expect("valid"),
            SampleCommand::Validate {
                notes: Some(Note::parse("RIN 9.1").expect("note")),
                signature: signature(),
            }
        );
        assert_eq!(
            Action::Reject
                .command("haemolysed", Some(signature()))
                .expect("valid"),
            SampleCommand::Reject {
                reason: Note::parse("haemolysed").expect("note"),
                signature: signature(),
            }
        );
        assert_eq!(
            Action::Receive
                .command("", Some(signature()))
                .expect("valid"),
            SampleCommand::Receive { notes: None }
        );
    }

    fn stored(payload: SampleEvent, user_id: Option<Uuid>) -> StoredEvent<SampleEvent> {
        let id = Uuid::from_u128(1);
        StoredEvent {
            position: 3,
            transaction_id: 1,
            aggregate_type: "Sample".into(),
            aggregate_id: id,
            version: 3,
            event_id: id,
            event_type: <SampleEvent as cqrs::DomainEvent>::event_type(&payload).to_owned(),
            schema_version: 2,
            payload,
            metadata: event_sourcing::EventMetadata {
                user: "Ana Müller".into(),
                user_id,
                command_id: id,
                correlation_id: id,
                causation_id: id,
                traceparent: None,
                tracestate: None,
            },
            recorded_at: signature().signed_at,
        }
    }

    #[test]
    fn the_timeline_shows_the_signature_and_the_account() {
        let account = Uuid::from_u128(0xa11ce);
        let entry = TimelineEntry::of(stored(
            SampleEvent::SampleValidated {
                notes: None,
                signature: Some(signature()),
            },
            Some(account),
        ));
        assert_eq!(
            entry.signature.as_deref(),
            Some("Signed by Ana Müller (approved) at 2026-11-23 10:00 UTC")
        );
        assert_eq!(entry.user_id, Some(account));
        assert_eq!(entry.what, "Validated (QC passed)");

        let entry = TimelineEntry::of(stored(
            SampleEvent::SampleRejected {
                reason: Note::parse("clotted").expect("note"),
                signature: None,
            },
            None,
        ));
        assert_eq!(entry.signature, None, "recorded before signatures existed");
        assert_eq!(entry.user_id, None, "recorded before accounts existed");
        assert_eq!(entry.detail.as_deref(), Some("clotted"));
    }
}
