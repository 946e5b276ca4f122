//! The JSON API of storage and of the rest of the sample lifecycle: store, move, remove,
//! check out, return, aliquot, dispose and correct QC; create and arrange storage units,
//! record temperatures, resolve excursions.

use super::account::Peer;
use super::api::{ApiJson, idempotency_key, parse_id, respond, sender, signature_for};
use super::auth::Identity;
use super::context::command_context;
use crate::error::AppError;
use crate::startup::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs::sample::TemperatureZone;
use event_sourcing::{CommandOutcome, ExpectedVersion};
use lab::idempotency::fingerprint;
use lab::samples::AliquotInput;
use lab::storage::{CreateUnitInput, ExcursionRow, Occupant, PathStep, UnitRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A sample lifecycle command's body. Which fields count depends on the command (see
/// each route); unknown fields are refused.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleBody {
    /// Store, move: the box's barcode (or id); `"BOX-1 A1"` also names the position.
    #[serde(rename = "box")]
    pub box_code: Option<String>,
    /// Store, move: the position, e.g. `A1`.
    pub position: Option<String>,
    /// Remove, check out, return: a free-text note.
    pub notes: Option<String>,
    /// Dispose, correct QC: why (required).
    pub reason: Option<String>,
    /// Check out: the username of the person who takes it (default: you).
    pub holder: Option<String>,
    /// Aliquot: the children to take (barcode may be empty: one is generated).
    pub aliquots: Option<Vec<AliquotInput>>,
    /// Correct QC: the decision it should have been.
    pub passed: Option<bool>,
    /// The version the caller saw; the command is refused if the sample moved on.
    pub expected_version: Option<u64>,
    /// Dispose, correct QC: the electronic signature (see validate).
    pub signer: Option<String>,
    pub password: Option<String>,
    pub meaning: Option<String>,
}

/// The lifecycle commands of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Store,
    Move,
    Remove,
    CheckOut,
    Return,
    Aliquot,
    Dispose,
    CorrectQc,
}

impl Lifecycle {
    fn name(self) -> &'static str {
        match self {
            Self::Store => "StoreSample",
            Self::Move => "MoveSample",
            Self::Remove => "RemoveSampleFromStorage",
            Self::CheckOut => "CheckOutSample",
            Self::Return => "ReturnSample",
            Self::Aliquot => "AliquotSample",
            Self::Dispose => "DisposeSample",
            Self::CorrectQc => "CorrectSampleQc",
        }
    }
}

macro_rules! lifecycle_route {
    ($name:ident, $op:expr, $path:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "samples",
            summary = $summary,
            params(super::api::SamplePath, super::api::IdempotencyHeader),
            request_body(content = LifecycleBody, content_type = "application/json"),
            responses(
                (status = 200, description = "Done (or, with a repeated Idempotency-Key, done before)", body = super::api::CommandResponse),
                (status = 400, description = "A field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
                (status = 401, description = "Not authenticated", body = crate::routes::openapi::ErrorResponse),
                (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
                (status = 409, description = "The lifecycle does not allow this now, the position is taken, or `expected_version` is stale", body = crate::routes::openapi::ErrorResponse),
                (status = 422, description = "The Idempotency-Key was used for another request", body = crate::routes::openapi::ErrorResponse),
            ),
        )]
        pub async fn $name(
            state: State<AppState>,
            peer: Peer,
            identity: Identity,
            path: Path<String>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> Result<Response, AppError> {
            lifecycle(state, peer, identity, path, headers, body, $op).await
        }
    };
}

lifecycle_route!(
    store,
    Lifecycle::Store,
    "/api/samples/{id}/store",
    "Store a sample (QC passed) in a box position"
);
lifecycle_route!(
    move_sample,
    Lifecycle::Move,
    "/api/samples/{id}/move",
    "Move a stored sample to another position"
);
lifecycle_route!(
    remove,
    Lifecycle::Remove,
    "/api/samples/{id}/remove",
    "Take a sample out of storage"
);
lifecycle_route!(
    check_out,
    Lifecycle::CheckOut,
    "/api/samples/{id}/check-out",
    "Check a sample out to a person"
);
lifecycle_route!(
    return_sample,
    Lifecycle::Return,
    "/api/samples/{id}/return",
    "Return a checked-out sample"
);
lifecycle_route!(
    aliquot,
    Lifecycle::Aliquot,
    "/api/samples/{id}/aliquot",
    "Take aliquots (child samples) from a sample"
);
lifecycle_route!(
    dispose,
    Lifecycle::Dispose,
    "/api/samples/{id}/dispose",
    "Dispose of a sample (electronically signed)"
);
lifecycle_route!(
    correct_qc,
    Lifecycle::CorrectQc,
    "/api/samples/{id}/correct-qc",
    "Correct a QC decision (electronically signed)"
);

async fn lifecycle(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    op: Lifecycle,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let body: LifecycleBody = if body.iter().all(u8::is_ascii_whitespace) {
        LifecycleBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("request body is not valid: {e}")))?
    };
    let key = idempotency_key(&headers, &sender(&identity))?;
    let context = command_context(&headers, &identity.principal, key)
        .named(op.name())
        .with_fingerprint(fingerprint(&(
            id,
            op.name(),
            &body.box_code,
            &body.position,
            &body.notes,
            &body.reason,
            &body.holder,
            &body.aliquots,
            body.passed,
            body.expected_version,
            &body.signer,
            &body.meaning,
        )));
    let expected = body
        .expected_version
        .map_or(ExpectedVersion::Any, ExpectedVersion::Exactly);
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let samples = &state.samples;
    let outcome: CommandOutcome = match op {
        Lifecycle::Store | Lifecycle::Move => {
            let box_code = text(&body.box_code);
            let position = text(&body.position);
            if op == Lifecycle::Store {
                samples
                    .store_sample(id, &box_code, &position, expected, &context)
                    .await?
            } else {
                samples
                    .move_sample(id, &box_code, &position, expected, &context)
                    .await?
            }
        }
        Lifecycle::Remove => {
            samples
                .remove_from_storage(id, &text(&body.notes), expected, &context)
                .await?
        }
        Lifecycle::CheckOut => {
            let (holder_id, holder_name) = match body.holder.as_deref().map(str::trim) {
                None | Some("")
                    if identity.principal.kind == lab::accounts::PrincipalKind::ApiToken =>
                {
                    return Err(AppError::invalid(
                        "holder",
                        "a tube is checked out to a person: send 'holder', their username",
                    ));
                }
                None | Some("") => (identity.principal.id, identity.principal.name.clone()),
                Some(username) => {
                    let user = state
                        .accounts
                        .user_by_name(username)
                        .await?
                        .filter(|u| u.enabled)
                        .ok_or_else(|| {
                            AppError::invalid(
                                "holder",
                                format!("no active account has the username '{username}'"),
                            )
                        })?;
                    (user.id, user.display_name)
                }
            };
            samples
                .check_out(
                    id,
                    (holder_id, &holder_name),
                    &text(&body.notes),
                    expected,
                    &context,
                )
                .await?
        }
        Lifecycle::Return => {
            samples
                .return_sample(id, &text(&body.notes), expected, &context)
                .await?
        }
        Lifecycle::Aliquot => {
            samples
                .aliquot(
                    id,
                    body.aliquots.as_deref().unwrap_or_default(),
                    expected,
                    &context,
                )
                .await?
        }
        Lifecycle::Dispose | Lifecycle::CorrectQc => {
            let what = if op == Lifecycle::Dispose {
                "disposing of a sample"
            } else {
                "correcting a QC decision"
            };
            let signature = signature_for(
                &state,
                &identity,
                address.as_deref(),
                body.signer.as_deref(),
                &text(&body.password),
                &text(&body.meaning),
                what,
            )
            .await?;
            if op == Lifecycle::Dispose {
                samples
                    .dispose(id, &text(&body.reason), Some(signature), expected, &context)
                    .await?
            } else {
                let passed = body.passed.ok_or_else(|| {
                    AppError::invalid(
                        "passed",
                        "say what the QC decision should have been: passed true or false",
                    )
                })?;
                samples
                    .correct_qc(
                        id,
                        passed,
                        &text(&body.reason),
                        Some(signature),
                        expected,
                        &context,
                    )
                    .await?
            }
        }
    };
    respond(&state, &headers, outcome, false).await
}

/// What a storage command answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitCommandResponse {
    pub unit_id: Uuid,
    pub command_id: Uuid,
    /// The unit's version after the command.
    pub version: u64,
    /// True when this repeated an earlier request with the same Idempotency-Key.
    pub replayed: bool,
}

fn unit_response(outcome: CommandOutcome, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(UnitCommandResponse {
            unit_id: outcome.aggregate_id,
            command_id: outcome.command_id,
            version: outcome.last_version,
            replayed: outcome.duplicate,
        }),
    )
        .into_response()
}

/// `POST /api/storage/units`
#[utoipa::path(
    post,
    path = "/api/storage/units",
    tag = "storage",
    summary = "Create a freezer, rack or box",
    params(super::api::IdempotencyHeader),
    request_body(content = CreateUnitInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = UnitCommandResponse),
        (status = 400, description = "A field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The barcode or the slot is taken, or the parent is decommissioned", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn create_unit(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CreateUnitInput>,
) -> Result<Response, AppError> {
    let key = idempotency_key(&headers, &sender(&identity))?;
    let context = command_context(&headers, &identity.principal, key)
        .named("CreateStorageUnit")
        .with_fingerprint(fingerprint(&input));
    let outcome = state.storage.create(&input, &context).await?;
    Ok(unit_response(outcome, true))
}

/// A unit with where it is, what is in it, and (for a box) its occupants.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitView {
    pub unit: UnitRow,
    /// Freezer › rack › box, down to this unit.
    pub path: Vec<PathStep>,
    /// Racks of a freezer, boxes of a rack.
    pub children: Vec<UnitRow>,
    /// Samples of a box, by position.
    pub occupants: Vec<Occupant>,
    pub excursions: Vec<ExcursionRow>,
}

/// `GET /api/storage/units` — the freezers.
#[utoipa::path(
    get,
    path = "/api/storage/units",
    tag = "storage",
    summary = "The freezers, with capacity and fill",
    responses((status = 200, description = "Every freezer", body = Vec<UnitRow>)),
)]
pub async fn freezers(State(state): State<AppState>) -> Result<Json<Vec<UnitRow>>, AppError> {
    Ok(Json(state.storage.children(None).await?))
}

/// `GET /api/storage/units/{id}` (an id or a barcode)
#[utoipa::path(
    get,
    path = "/api/storage/units/{id}",
    tag = "storage",
    summary = "One storage unit: its place, contents and excursions",
    params(("id" = String, Path, description = "The unit's id or barcode")),
    responses(
        (status = 200, description = "The unit", body = UnitView),
        (status = 404, description = "No such unit", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn unit(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UnitView>, AppError> {
    let unit = match Uuid::parse_str(&id) {
        Ok(uuid) => state.storage.unit(uuid).await?,
        Err(_) => state.storage.unit_by_code(&id).await?,
    }
    .ok_or_else(|| AppError::NotFound(format!("no storage unit '{id}'")))?;
    let (children, occupants) = if unit.kind == "box" {
        (Vec::new(), state.storage.occupants(unit.unit_id).await?)
    } else {
        (
            state.storage.children(Some(unit.unit_id)).await?,
            Vec::new(),
        )
    };
    Ok(Json(UnitView {
        path: state.storage.path(unit.unit_id).await?,
        excursions: state.storage.excursions_of(unit.unit_id).await?,
        children,
        occupants,
        unit,
    }))
}

/// A storage unit command's body.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UnitBody {
    /// Rename: the new name.
    pub name: Option<String>,
    /// Move: the barcode of the freezer or rack it goes into, and the slot.
    pub parent: Option<String>,
    pub slot: Option<String>,
    /// Decommission: why.
    pub reason: Option<String>,
    /// Temperature: °C, e.g. `-80.5`; and when it was measured (RFC 3339; default now).
    pub celsius: Option<String>,
    pub measured_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Resolve an excursion: what was done.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitOp {
    Rename,
    Move,
    Decommission,
    Temperature,
}

macro_rules! unit_route {
    ($name:ident, $op:expr, $path:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "storage",
            summary = $summary,
            params(("id" = Uuid, Path, description = "The unit's id"), super::api::IdempotencyHeader),
            request_body(content = UnitBody, content_type = "application/json"),
            responses(
                (status = 200, description = "Done", body = UnitCommandResponse),
                (status = 400, description = "A field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
                (status = 404, description = "No such unit", body = crate::routes::openapi::ErrorResponse),
                (status = 409, description = "Not allowed now (decommissioned, not empty, slot taken)", body = crate::routes::openapi::ErrorResponse),
            ),
        )]
        pub async fn $name(
            state: State<AppState>,
            identity: Identity,
            path: Path<String>,
            headers: HeaderMap,
            body: ApiJson<UnitBody>,
        ) -> Result<Response, AppError> {
            unit_command(state, identity, path, headers, body, $op).await
        }
    };
}

unit_route!(
    rename_unit,
    UnitOp::Rename,
    "/api/storage/units/{id}/rename",
    "Rename a storage unit"
);
unit_route!(
    move_unit,
    UnitOp::Move,
    "/api/storage/units/{id}/move",
    "Move a rack or box to another slot"
);
unit_route!(
    decommission_unit,
    UnitOp::Decommission,
    "/api/storage/units/{id}/decommission",
    "Decommission an empty storage unit"
);
unit_route!(
    record_temperature,
    UnitOp::Temperature,
    "/api/storage/units/{id}/temperature",
    "Record a temperature reading"
);

async fn unit_command(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UnitBody>,
    op: UnitOp,
) -> Result<Response, AppError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| AppError::NotFound(format!("no storage unit with id '{id}'")))?;
    let key = idempotency_key(&headers, &sender(&identity))?;
    let name = format!("{op:?}StorageUnit");
    let context = command_context(&headers, &identity.principal, key)
        .named(name)
        .with_fingerprint(fingerprint(&(id, format!("{op:?}"), &body)));
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let storage = &state.storage;
    let outcome = match op {
        UnitOp::Rename => storage.rename(id, &text(&body.name), &context).await?,
        UnitOp::Move => {
            storage
                .relocate(id, &text(&body.parent), &text(&body.slot), &context)
                .await?
        }
        UnitOp::Decommission => {
            storage
                .decommission(id, &text(&body.reason), &context)
                .await?
        }
        UnitOp::Temperature => {
            storage
                .record_temperature(id, &text(&body.celsius), body.measured_at, &context)
                .await?
        }
    };
    Ok(unit_response(outcome, false))
}

/// `POST /api/storage/units/{id}/excursions/{excursion_id}/resolve`
#[utoipa::path(
    post,
    path = "/api/storage/units/{id}/excursions/{excursion_id}/resolve",
    tag = "storage",
    summary = "Resolve an open temperature excursion, saying what was done",
    params(("id" = Uuid, Path), ("excursion_id" = Uuid, Path), super::api::IdempotencyHeader),
    request_body(content = UnitBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Resolved", body = UnitCommandResponse),
        (status = 400, description = "The note is missing", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such unit", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "No such open excursion", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn resolve_excursion(
    State(state): State<AppState>,
    identity: Identity,
    Path((id, excursion)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UnitBody>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound("no such storage unit or excursion".into());
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let excursion = Uuid::parse_str(&excursion).map_err(|_| not_found())?;
    let key = idempotency_key(&headers, &sender(&identity))?;
    let context = command_context(&headers, &identity.principal, key)
        .named("ResolveExcursion")
        .with_fingerprint(fingerprint(&(id, excursion, &body.note)));
    let outcome = state
        .storage
        .resolve_excursion(
            id,
            excursion,
            body.note.as_deref().unwrap_or_default(),
            &context,
        )
        .await?;
    Ok(unit_response(outcome, false))
}

/// `GET /api/storage/excursions` — the open ones.
#[utoipa::path(
    get,
    path = "/api/storage/excursions",
    tag = "storage",
    summary = "Open temperature excursions, newest first",
    responses((status = 200, description = "Open excursions", body = Vec<ExcursionRow>)),
)]
pub async fn open_excursions(
    State(state): State<AppState>,
) -> Result<Json<Vec<ExcursionRow>>, AppError> {
    Ok(Json(state.storage.open_excursions(200).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FreeQuery {
    /// The temperature zone (MINUS_80, -20, FRIDGE, ...).
    zone: Option<String>,
}

/// A proposed free position.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreePosition {
    pub box_id: Uuid,
    pub box_code: String,
    pub position: String,
}

/// `GET /api/storage/free-position?zone=`
#[utoipa::path(
    get,
    path = "/api/storage/free-position",
    tag = "storage",
    summary = "Propose the first free position in a box of a zone",
    params(FreeQuery),
    responses(
        (status = 200, description = "A free position", body = FreePosition),
        (status = 400, description = "The zone is missing or unknown", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No box of that zone has room", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn free_position(
    State(state): State<AppState>,
    Query(query): Query<FreeQuery>,
) -> Result<Json<FreePosition>, AppError> {
    let raw = query.zone.unwrap_or_default();
    let zone = TemperatureZone::parse(&raw).map_err(|e| AppError::invalid("zone", e.message))?;
    let (unit, position) = state
        .storage
        .first_free_position(zone)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("no box at {} has a free position", zone.label()))
        })?;
    Ok(Json(FreePosition {
        box_id: unit.unit_id,
        box_code: unit.code,
        position,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The instant (RFC 3339, e.g. `2026-11-23T10:00:00Z`).
    at: Option<String>,
}

fn instant(query: &AsOfQuery) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
    let raw = query.at.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(AppError::invalid(
            "at",
            "say which instant: at=2026-11-23T10:00:00Z",
        ));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .map_err(|_| {
            AppError::invalid(
                "at",
                format!("'{raw}' is not an instant; use RFC 3339, e.g. 2026-11-23T10:00:00Z"),
            )
        })
}

/// `GET /api/samples/{id}/as-of?at=`
#[utoipa::path(
    get,
    path = "/api/samples/{id}/as-of",
    tag = "samples",
    summary = "A sample as it stood at an instant, rebuilt from its events",
    params(super::api::SamplePath, AsOfQuery),
    responses(
        (status = 200, description = "The sample then (`sample` is null if it did not exist yet)", body = Object),
        (status = 400, description = "`at` is missing or not an instant", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn sample_as_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<lab::history::SampleAsOf>, AppError> {
    let id = parse_id(&id)?;
    let at = instant(&query)?;
    let then = lab::history::sample_as_of(state.storage.store(), id, at).await?;
    if then.sample.is_none() && state.samples.get(id).await?.is_none() {
        return Err(AppError::NotFound(format!("no sample with id '{id}'")));
    }
    Ok(Json(then))
}

/// `GET /api/storage/units/{id}/as-of?at=`
#[utoipa::path(
    get,
    path = "/api/storage/units/{id}/as-of",
    tag = "storage",
    summary = "A storage unit (a box with its occupants) as it stood at an instant, rebuilt from the events",
    params(("id" = Uuid, Path, description = "The unit's id"), AsOfQuery),
    responses(
        (status = 200, description = "The unit then", body = Object),
        (status = 400, description = "`at` is missing or not an instant", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such unit", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn unit_as_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<AsOfQuery>,
) -> Result<Json<lab::history::UnitAsOf>, AppError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| AppError::NotFound(format!("no storage unit with id '{id}'")))?;
    let at = instant(&query)?;
    let then = lab::history::unit_as_of(state.storage.store(), id, at).await?;
    if then.unit.is_none() && state.storage.unit(id).await?.is_none() {
        return Err(AppError::NotFound(format!(
            "no storage unit with id '{id}'"
        )));
    }
    Ok(Json(then))
}
