//! The JSON API: the same commands and queries as the UI, for instruments and scripts.

use super::account::Peer;
use super::auth::Identity;
use super::context::command_context;
use crate::error::AppError;
use crate::startup::AppState;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use event_sourcing::{CommandOutcome, ExpectedVersion};
use lab::accounts::PrincipalKind;
use lab::idempotency::{command_id_for_key, fingerprint};
use lab::samples::{Action, RegisterInput, SamplePage, SampleRow, TimelineEntry};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The `Idempotency-Key` header, as the spec describes it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// Makes a retry safe: the same key with the same request is recorded once (a
    /// replay answers `replayed: true`); the same key with another request is a 422.
    /// 1–255 characters.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// The path of one sample.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SamplePath {
    /// The sample's id (a UUID); anything else is a 404.
    id: Uuid,
}

/// `volume_ul`: a JSON number or a string holding one.
fn volume_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number).build())
            .item(ObjectBuilder::new().schema_type(Type::String).build())
            .description(Some("Microlitres, as a number or a string (\"12.5\")"))
            .build(),
    )
}

/// A JSON body whose problems become a 400 that says what is wrong.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::BadRequest(
                "send the body as JSON with 'Content-Type: application/json'".into(),
            )),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::TooLarge(rejection.body_text()))
            }
            Err(rejection) => Err(AppError::BadRequest(format!(
                "request body is not valid: {}",
                rejection.body_text().trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            ))),
        }
    }
}

/// The command id an `Idempotency-Key` names for `sender`.
pub(super) fn idempotency_key(headers: &HeaderMap, sender: &str) -> Result<Option<Uuid>, AppError> {
    match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= 255 => {
            Ok(Some(command_id_for_key(sender, key.trim())))
        }
        Some(_) => Err(AppError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1–255 characters of plain text",
        )),
    }
}

pub(super) fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound(format!("no sample with id '{raw}'")))
}

/// Registration body: the volume may be a JSON number or a string. Every field is
/// checked by the lab's rules; a missing or invalid one is a 400 that names it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({
    "barcode": "LAB-0001", "sample_type": "DNA", "volume_ul": 10,
    "temperature_zone": "MINUS_80", "collected_at": "2026-11-20T09:30:00Z"
}))]
pub struct RegisterBody {
    /// The tube's barcode; one is assigned when absent.
    barcode: Option<String>,
    /// BLOOD, PLASMA, SERUM, DNA, RNA, TISSUE, URINE, SALIVA, CSF, SWAB, CELLS or STOOL
    /// (case-insensitive).
    #[schema(required = true)]
    sample_type: Option<String>,
    /// Up to 1,000,000 µl, at most three decimals.
    #[schema(schema_with = volume_schema, required = true)]
    volume_ul: Option<Value>,
    /// MINUS_80, MINUS_20, PLUS_4, ROOM_TEMPERATURE or PLUS_37 (or "-80", "FRIDGE", ...).
    #[schema(required = true)]
    temperature_zone: Option<String>,
    /// A pseudonymous patient reference (the same name as in the sample it returns).
    patient_ref: Option<String>,
    /// When the sample was collected (RFC 3339).
    collected_at: Option<String>,
    collected_by: Option<String>,
}

impl RegisterBody {
    fn into_input(self) -> Result<RegisterInput, AppError> {
        let volume_ul = match self.volume_ul {
            None | Some(Value::Null) => String::new(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(AppError::invalid(
                    "volume_ul",
                    "volume_ul must be a number of microlitres",
                ));
            }
        };
        Ok(RegisterInput {
            barcode: self.barcode.unwrap_or_default(),
            sample_type: self.sample_type.unwrap_or_default(),
            volume_ul,
            temperature_zone: self.temperature_zone.unwrap_or_default(),
            patient: self.patient_ref.unwrap_or_default(),
            collected_at: self.collected_at.unwrap_or_default(),
            collected_by: self.collected_by.unwrap_or_default(),
        })
    }
}

/// What a command answers: its own outcome, at once. The read model catches up
/// asynchronously; `consistency_token` (also the `Consistency-Token` header) is what a
/// later read passes to see at least this write (`GET /api/samples/{id}?min_version=`).
/// With `Prefer: return=representation` the answer waits for the read model and includes
/// the sample as it now stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResponse {
    pub sample_id: Uuid,
    pub command_id: Uuid,
    /// The sample's version after this command's events.
    pub version: u64,
    pub consistency_token: String,
    /// True when this repeated an earlier request with the same Idempotency-Key.
    pub replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleRow>,
}

fn wants_representation(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("return=representation"))
}

pub(super) async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    outcome: CommandOutcome,
    created: bool,
) -> Result<Response, AppError> {
    let representation = wants_representation(headers);
    let mut stale = false;
    let sample = if representation {
        stale = !state
            .samples
            .wait_for_version(outcome.aggregate_id, outcome.last_version)
            .await;
        state.samples.get(outcome.aggregate_id).await?
    } else {
        None
    };
    let token = format!("{}@{}", outcome.aggregate_id, outcome.last_version);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        Json(CommandResponse {
            sample_id: outcome.aggregate_id,
            command_id: outcome.command_id,
            version: outcome.last_version,
            consistency_token: token.clone(),
            replayed: outcome.duplicate,
            sample,
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("consistency-token", value);
    }
    if representation && !stale {
        response.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("return=representation"),
        );
    }
    if stale {
        // The read model did not catch up in time: `sample` may be older than `version`.
        response
            .headers_mut()
            .insert("read-model-stale", HeaderValue::from_static("true"));
    }
    if created
        && let Ok(location) =
            HeaderValue::from_str(&format!("/api/samples/{}", outcome.aggregate_id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if outcome.duplicate {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The sender an `Idempotency-Key` is scoped to: the principal's stable id.
pub(super) fn sender(identity: &Identity) -> String {
    identity.principal.id.to_string()
}

/// `POST /api/samples`
#[utoipa::path(
    post,
    path = "/api/samples",
    tag = "samples",
    summary = "Register a sample",
    description = "Registers a sample. With `Prefer: return=representation` the answer waits for the read model and includes the sample.",
    params(IdempotencyHeader),
    request_body(content = RegisterBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered (or, with a repeated Idempotency-Key, registered before)", body = CommandResponse,
            headers(("Location" = String, description = "The sample's URL"), ("Consistency-Token" = String))),
        (status = 400, description = "A field is missing or invalid, or the body is not JSON", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The barcode is taken", body = crate::routes::openapi::ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, AppError> {
    let key = idempotency_key(&headers, &sender(&identity))?;
    let input = body.into_input()?;
    let context = command_context(&headers, &identity.principal, key)
        .named("RegisterSample")
        .with_fingerprint(fingerprint(&input));
    let outcome = state.samples.register(&input, &context).await?;
    respond(&state, &headers, outcome, true).await
}

/// A lifecycle command's body; an empty body is allowed (`{}` too).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({ "notes": "arrived intact" }))]
pub struct ActionBody {
    /// Receive and validate: a free-text note.
    notes: Option<String>,
    /// Reject: why (required for a rejection).
    reason: Option<String>,
    /// The version the caller saw; the command is refused if the sample has moved on.
    expected_version: Option<u64>,
    /// QC decisions only: the electronic signature. `password` is the signer's; the
    /// signer is the logged-in person, or, with an API token, the account `signer`.
    signer: Option<String>,
    password: Option<String>,
    /// What the signature means, e.g. `approved` or `reviewed`.
    meaning: Option<String>,
}

/// `POST /api/samples/{id}/receive`
#[utoipa::path(
    post,
    path = "/api/samples/{id}/receive",
    tag = "samples",
    summary = "Receive a sample in the lab",
    params(SamplePath, IdempotencyHeader),
    request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Done (or, with a repeated Idempotency-Key, done before)", body = CommandResponse),
        (status = 400, description = "The body is not valid, or a field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The lifecycle does not allow this now, or `expected_version` is stale", body = crate::routes::openapi::ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn receive(
    state: State<AppState>,
    peer: Peer,
    identity: Identity,
    path: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    act(state, peer, identity, path, headers, body, Action::Receive).await
}

/// `POST /api/samples/{id}/validate`
#[utoipa::path(
    post,
    path = "/api/samples/{id}/validate",
    tag = "samples",
    summary = "Validate a sample (QC decision, electronically signed)",
    params(SamplePath, IdempotencyHeader),
    request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Done (or, with a repeated Idempotency-Key, done before)", body = CommandResponse),
        (status = 400, description = "The body is not valid, or a field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The lifecycle does not allow this now, or `expected_version` is stale", body = crate::routes::openapi::ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::routes::openapi::ErrorResponse),
        (status = 429, description = "Too many failed signature attempts; `Retry-After` says when to try again", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn validate(
    state: State<AppState>,
    peer: Peer,
    identity: Identity,
    path: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    act(state, peer, identity, path, headers, body, Action::Validate).await
}

/// `POST /api/samples/{id}/reject`
#[utoipa::path(
    post,
    path = "/api/samples/{id}/reject",
    tag = "samples",
    summary = "Reject a sample (QC decision, electronically signed)",
    params(SamplePath, IdempotencyHeader),
    request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Done (or, with a repeated Idempotency-Key, done before)", body = CommandResponse),
        (status = 400, description = "The body is not valid, or a field is missing or invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The lifecycle does not allow this now, or `expected_version` is stale", body = crate::routes::openapi::ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::routes::openapi::ErrorResponse),
        (status = 429, description = "Too many failed signature attempts; `Retry-After` says when to try again", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn reject(
    state: State<AppState>,
    peer: Peer,
    identity: Identity,
    path: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    act(state, peer, identity, path, headers, body, Action::Reject).await
}

/// The electronic signature a signed command carries: the logged-in person's own (their
/// password), or, with an API token, that of the account `signer` names.
pub(super) async fn signature_for(
    state: &AppState,
    identity: &Identity,
    address: Option<&str>,
    signer: Option<&str>,
    password: &str,
    meaning: &str,
    what: &str,
) -> Result<cqrs::sample::Signature, AppError> {
    match (identity.principal.kind, signer) {
        (PrincipalKind::User, Some(_)) => Err(AppError::invalid(
            "signer",
            "you sign with your own password: leave out 'signer' (it is for integrations using an API token)",
        )),
        (PrincipalKind::ApiToken, Some(signer)) => {
            super::signing::sign_as(state, signer, password, meaning, address).await
        }
        (PrincipalKind::User, None) => {
            super::signing::sign(state, &identity.principal, password, meaning).await
        }
        (PrincipalKind::ApiToken, None) => Err(AppError::invalid(
            "signer",
            format!(
                "{what} needs a person's electronic signature: send 'signer' (their username), 'password' and 'meaning'"
            ),
        )),
    }
}

async fn act(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    action: Action,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("request body is not valid: {e}")))?
    };
    let key = idempotency_key(&headers, &sender(&identity))?;
    let text = match action {
        Action::Reject => body.reason.unwrap_or_default(),
        _ => body.notes.unwrap_or_default(),
    };
    let meaning = body.meaning.unwrap_or_default();
    let signature = if action.needs_signature() {
        Some(
            signature_for(
                &state,
                &identity,
                address.as_deref(),
                body.signer.as_deref(),
                &body.password.unwrap_or_default(),
                &meaning,
                "a QC decision",
            )
            .await?,
        )
    } else {
        None
    };
    let context = command_context(&headers, &identity.principal, key)
        .named(action.command_name())
        .with_fingerprint(fingerprint(&(
            id,
            action.name(),
            text.trim(),
            body.expected_version,
            meaning.trim(),
            body.signer.as_deref().map(str::trim),
        )));
    let expected = body
        .expected_version
        .map_or(ExpectedVersion::Any, ExpectedVersion::Exactly);
    let outcome = state
        .samples
        .act(id, action, &text, signature, expected, &context)
        .await?;
    respond(&state, &headers, outcome, false).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A barcode prefix (case-insensitive).
    q: Option<String>,
    /// registered, received, validated, rejected, in_storage, checked_out or disposed.
    status: Option<String>,
    /// A sample type (BLOOD, PLASMA, DNA, ...).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    sample_type: Option<String>,
    /// A temperature zone (MINUS_80, -20, FRIDGE, ...).
    zone: Option<String>,
    /// A storage unit's barcode or id: samples in that box, or in any box of that rack
    /// or freezer.
    location: Option<String>,
    /// A patient reference, exactly.
    patient_ref: Option<String>,
    /// Registered on or after this day (YYYY-MM-DD, UTC).
    from: Option<String>,
    /// Registered on or before this day (YYYY-MM-DD, UTC).
    to: Option<String>,
    /// From 1.
    page: Option<u32>,
    /// 1–200 (default 50).
    per_page: Option<u32>,
}

/// `GET /api/samples?q=&status=&type=&zone=&location=&patient_ref=&from=&to=&page=&per_page=`
#[utoipa::path(
    get,
    path = "/api/samples",
    tag = "samples",
    summary = "List samples, most recently changed first",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of samples; `total` counts up to 10,000 (`total_capped` when more match)", body = SamplePage),
        (status = 400, description = "A query parameter is invalid", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<SamplePage>, AppError> {
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let text = |v: Option<String>| v.unwrap_or_default();
    let input = lab::samples::ListInput {
        q: text(query.q),
        status: text(query.status),
        sample_type: text(query.sample_type),
        zone: text(query.zone),
        location: text(query.location),
        patient: text(query.patient_ref),
        from: text(query.from),
        to: text(query.to),
        page: query.page,
        per_page: query.per_page,
    };
    let filter = input.filter(&state.samples).await?;
    Ok(Json(state.samples.list(&filter).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Wait (briefly) until the read model shows at least this version: the version a
    /// command answered with.
    min_version: Option<u64>,
}

/// `GET /api/samples/{id}[?min_version=N]`
#[utoipa::path(
    get,
    path = "/api/samples/{id}",
    tag = "samples",
    summary = "One sample",
    params(SamplePath, GetQuery),
    responses(
        (status = 200, description = "The sample (header `Read-Model-Stale: true` when `min_version` was not reached in time)", body = SampleRow),
        (status = 400, description = "A query parameter is invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let stale = match query.min_version {
        Some(version) => !state.samples.wait_for_version(id, version).await,
        None => false,
    };
    let sample = state
        .samples
        .get(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no sample with id '{id}'")))?;
    let mut response = Json(sample).into_response();
    if stale {
        response
            .headers_mut()
            .insert("read-model-stale", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /api/samples/{id}/events`: the complete history, oldest first.
#[utoipa::path(
    get,
    path = "/api/samples/{id}/events",
    tag = "samples",
    summary = "A sample's complete history, oldest first",
    params(SamplePath),
    responses(
        (status = 200, description = "The history", body = Vec<TimelineEntry>),
        (status = 404, description = "No such sample", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<TimelineEntry>>, AppError> {
    let id = parse_id(&id)?;
    let timeline = state.samples.timeline(id).await?;
    if timeline.is_empty() {
        return Err(AppError::NotFound(format!("no sample with id '{id}'")));
    }
    Ok(Json(timeline))
}
