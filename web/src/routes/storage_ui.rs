//! The storage pages: the hierarchy with fill bars, a unit's page (a box as a grid of
//! positions, click a free cell to place the scanned tube), unit administration, and the
//! scanner-first "store tubes" flow.
//!
//! No page runs a script (the Content-Security-Policy forbids them), so scanner flows
//! are built from plain forms: each scan ends with Enter, and Enter submits the step it
//! belongs to. On a box page the free cells are submit buttons of one form that also
//! holds the scanned barcode (`<button form=… name=position value=A1>`); its first
//! button is a disabled one, so Enter in the barcode field places nothing by accident.

use super::auth::{Identity, Me};
use super::context::command_context;
use super::ui::{PageError, render};
use crate::error::{AppError, FieldError};
use crate::startup::AppState;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cqrs::sample::TemperatureZone;
use event_sourcing::{CommandOutcome, ExpectedVersion};
use lab::idempotency::fingerprint;
use lab::storage::{CreateUnitInput, ExcursionRow, PathStep, UnitRow};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How long a page waits for the read side to show a change just made.
const CATCH_UP: Duration = Duration::from_secs(2);

fn field_error<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}

/// A bar's width class, in steps of 5 %: the stylesheet has one class per step (no
/// inline styles under the Content-Security-Policy).
pub fn fill_class(unit: &UnitRow) -> String {
    format!("fill-{}", (unit.fill_percent().clamp(0, 100) + 2) / 5 * 5)
}

/// How many racks and boxes the storage page lists beneath the freezers: a lab of
/// thousands of boxes shows the first freezers unfolded and the rest folded (their own
/// pages list their racks and boxes), so the page stays quick.
const TREE_BUDGET: usize = 400;

/// A freezer with its racks, each with its boxes; `folded` when they were not listed.
pub struct FreezerTree {
    pub freezer: UnitRow,
    pub racks: Vec<(UnitRow, Vec<UnitRow>)>,
    pub folded: bool,
}

/// The hierarchy, freezers › racks › boxes (one query per freezer unfolded), within
/// [`TREE_BUDGET`] units.
async fn tree(state: &AppState) -> Result<Vec<FreezerTree>, AppError> {
    let mut shown = 0;
    let mut tree = Vec::new();
    for freezer in state.storage.children(None).await? {
        if shown >= TREE_BUDGET {
            tree.push(FreezerTree {
                freezer,
                racks: Vec::new(),
                folded: true,
            });
            continue;
        }
        let mut racks: Vec<(UnitRow, Vec<UnitRow>)> = Vec::new();
        for unit in state.storage.subtree(freezer.unit_id).await? {
            shown += 1;
            if unit.parent_id == Some(freezer.unit_id) {
                racks.push((unit, Vec::new()));
            } else if let Some((_, boxes)) = racks
                .iter_mut()
                .rev()
                .find(|(r, _)| Some(r.unit_id) == unit.parent_id)
            {
                boxes.push(unit);
            }
        }
        tree.push(FreezerTree {
            freezer,
            racks,
            folded: false,
        });
    }
    Ok(tree)
}

#[derive(Template)]
#[template(path = "storage/index.html")]
struct IndexPage {
    freezers: Vec<FreezerTree>,
    input: CreateUnitInput,
    errors: Vec<FieldError>,
    message: Option<String>,
    zones: &'static [TemperatureZone],
    me: Option<Me>,
}

impl IndexPage {
    fn error(&self, field: &str) -> Option<&str> {
        field_error(&self.errors, field)
    }
}

/// `GET /storage`: the freezers, each with its fill level, and the form to add a unit.
pub async fn index(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Response, PageError> {
    let page = IndexPage {
        freezers: tree(&state).await?,
        input: CreateUnitInput {
            kind: "freezer".into(),
            grid: "9x9".into(),
            ..CreateUnitInput::default()
        },
        errors: Vec::new(),
        message: None,
        zones: TemperatureZone::ALL,
        me: Some(identity.me()),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateForm {
    #[serde(flatten)]
    input: CreateUnitInput,
    command_id: String,
}

/// `POST /storage/units`: creates a freezer, rack or box, then shows it.
pub async fn create(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Result<Response, PageError> {
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let context = command_context(&headers, &identity.principal, Some(command_id))
        .named("CreateStorageUnit")
        .with_fingerprint(fingerprint(&form.input));
    match state.storage.create(&form.input, &context).await {
        Ok(outcome) => {
            state
                .storage
                .wait_for_version(outcome.aggregate_id, outcome.last_version, CATCH_UP)
                .await;
            Ok(
                Redirect::to(&format!("/storage/{}?done=created", outcome.aggregate_id))
                    .into_response(),
            )
        }
        Err(error) => {
            let error = AppError::from(error);
            if matches!(error, AppError::Unavailable(_) | AppError::Internal(_)) {
                return Err(error.into());
            }
            let (errors, message) = match error {
                AppError::Invalid(errors) => (errors, None),
                other => (Vec::new(), Some(other.page_message())),
            };
            let status = if errors.is_empty() {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let page = IndexPage {
                freezers: tree(&state).await?,
                input: form.input,
                errors,
                message,
                zones: TemperatureZone::ALL,
                me: Some(identity.me()),
            };
            Ok(render(status, &page))
        }
    }
}

/// One cell of a box's grid.
pub struct Cell {
    pub position: String,
    pub occupant: Option<Occupant>,
}

/// Who is in a cell (now, or at the instant the page is "as of").
pub struct Occupant {
    pub sample_id: Uuid,
    pub barcode: String,
    pub sample_type: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "storage/unit.html")]
struct UnitPage {
    unit: UnitRow,
    path: Vec<PathStep>,
    /// A freezer's racks with their boxes, or a rack's boxes (with none beneath).
    children: Vec<(UnitRow, Vec<UnitRow>)>,
    /// A box's rows of cells.
    grid: Vec<Vec<Cell>>,
    columns: Vec<u8>,
    excursions: Vec<ExcursionRow>,
    /// Confirmation of what was just done.
    done: Option<String>,
    /// A refusal, in lab words.
    message: Option<String>,
    errors: Vec<FieldError>,
    /// What was typed into the page's forms, kept after a refusal.
    typed: HashMap<String, String>,
    /// The instant the page shows, when not now (lab time, as typed).
    as_of: Option<String>,
    me: Option<Me>,
}

impl UnitPage {
    fn typed(&self, field: &str) -> &str {
        self.typed.get(field).map_or("", String::as_str)
    }

    fn error(&self, field: &str) -> Option<&str> {
        field_error(&self.errors, field)
    }

    fn can(&self, permission: &str) -> bool {
        self.me.as_ref().is_some_and(|me| me.can(permission))
    }

    fn csrf(&self) -> &str {
        self.me.as_ref().map_or("", |m| m.csrf_token.as_str())
    }

    fn is_box(&self) -> bool {
        self.unit.kind == "box"
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnitQuery {
    done: String,
    /// A lab-time instant (`2026-11-23T10:00`) to show the box as it stood then.
    as_of: String,
}

fn done_message(done: &str) -> Option<String> {
    match done {
        "" => None,
        "created" => Some("Created.".into()),
        "renamed" => Some("Renamed.".into()),
        "moved" => Some("Moved.".into()),
        "decommissioned" => Some("Decommissioned: nothing more goes into it.".into()),
        "temperature" => Some("Temperature recorded.".into()),
        "resolved" => Some("Alert resolved.".into()),
        other => Some(other.to_owned()),
    }
}

/// A lab-time instant as typed (`YYYY-MM-DDTHH:MM[:SS]`, or RFC 3339) in UTC.
pub fn parse_instant(
    raw: &str,
    zone: chrono_tz::Tz,
) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
    use chrono::TimeZone;
    let raw = raw.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.to_utc());
    }
    let local = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            AppError::invalid(
                "as_of",
                format!("'{raw}' is not a date and time (e.g. 2026-11-23T10:00)"),
            )
        })?;
    zone.from_local_datetime(&local)
        .latest()
        .map(|t| t.to_utc())
        .ok_or_else(|| AppError::invalid("as_of", format!("{raw} does not exist in {zone}")))
}

async fn unit_page(
    state: &AppState,
    id: Uuid,
    me: Me,
    as_of: Option<String>,
) -> Result<UnitPage, PageError> {
    let missing = || AppError::NotFound("There is no storage unit with this id.".into());
    let unit = state.storage.unit(id).await?.ok_or_else(missing)?;
    let mut children = Vec::new();
    let mut grid = Vec::new();
    let mut columns = Vec::new();
    match unit.kind.as_str() {
        "box" => {
            let (rows, cols) = (
                unit.grid_rows.unwrap_or(0).clamp(0, 26),
                unit.grid_columns.unwrap_or(0).clamp(0, 99),
            );
            let mut occupants: HashMap<String, Occupant> = HashMap::new();
            match &as_of {
                Some(raw) => {
                    let at = parse_instant(raw, me.time_zone)?;
                    let then = lab::history::unit_as_of(state.storage.store(), id, at).await?;
                    for o in then.occupants {
                        occupants.insert(
                            o.position,
                            Occupant {
                                sample_id: o.sample_id,
                                barcode: o.barcode,
                                sample_type: o.sample_type,
                                status: o.status,
                            },
                        );
                    }
                }
                None => {
                    for o in state.storage.occupants(id).await? {
                        occupants.insert(
                            o.position,
                            Occupant {
                                sample_id: o.sample_id,
                                barcode: o.barcode,
                                sample_type: o.sample_type,
                                status: o.status,
                            },
                        );
                    }
                }
            }
            columns = (1..=u8::try_from(cols).unwrap_or(0)).collect();
            for r in 0..rows {
                let letter = char::from(b'A' + u8::try_from(r).unwrap_or(0));
                grid.push(
                    (1..=cols)
                        .map(|c| {
                            let position = format!("{letter}{c}");
                            let occupant = occupants.remove(&position);
                            Cell { position, occupant }
                        })
                        .collect(),
                );
            }
        }
        "rack" => {
            for b in state.storage.children(Some(id)).await? {
                children.push((b, Vec::new()));
            }
        }
        _ => {
            for rack in state.storage.children(Some(id)).await? {
                let boxes = state.storage.children(Some(rack.unit_id)).await?;
                children.push((rack, boxes));
            }
        }
    }
    Ok(UnitPage {
        path: state.storage.path(id).await?,
        excursions: state.storage.excursions_of(id).await?,
        unit,
        children,
        grid,
        columns,
        done: None,
        message: None,
        errors: Vec::new(),
        typed: HashMap::new(),
        as_of,
        me: Some(me),
    })
}

/// `GET /storage/{id}[?as_of=…]`: a unit; a box as its grid, now or as of an instant.
pub async fn unit(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
    query: Result<Query<UnitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| AppError::NotFound("There is no storage unit with this id.".into()))?;
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let as_of = Some(query.as_of.trim().to_owned()).filter(|a| !a.is_empty());
    let mut page = match unit_page(&state, id, identity.me(), as_of.clone()).await {
        Ok(page) => page,
        Err(PageError(AppError::Invalid(errors))) if as_of.is_some() => {
            let mut page = unit_page(&state, id, identity.me(), None).await?;
            page.errors = errors;
            page.typed.insert("as_of".into(), query.as_of.clone());
            return Ok(render(StatusCode::BAD_REQUEST, &page));
        }
        Err(other) => return Err(other),
    };
    page.done = done_message(&query.done);
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnitForm {
    command_id: String,
    /// Placing: the scanned tube's barcode and the clicked cell.
    sample: String,
    position: String,
    name: String,
    parent: String,
    slot: String,
    reason: String,
    celsius: String,
    note: String,
}

impl UnitForm {
    fn typed(&self) -> HashMap<String, String> {
        [
            ("sample", &self.sample),
            ("name", &self.name),
            ("parent", &self.parent),
            ("slot", &self.slot),
            ("reason", &self.reason),
            ("celsius", &self.celsius),
            ("note", &self.note),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum UnitAction {
    Place,
    Temperature,
    Rename,
    Move,
    Decommission,
    Resolve(Uuid),
}

/// Runs a unit page's form, then shows the unit again: with what was done, or with the
/// refusal beside what was typed.
async fn unit_action(
    state: &AppState,
    identity: Identity,
    headers: &HeaderMap,
    id: &str,
    action: UnitAction,
    form: UnitForm,
) -> Result<Response, PageError> {
    let id = Uuid::parse_str(id)
        .map_err(|_| AppError::NotFound("There is no storage unit with this id.".into()))?;
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let name = format!("{action:?}");
    let context = command_context(headers, &identity.principal, Some(command_id))
        .named(name.clone())
        .with_fingerprint(fingerprint(&(
            id,
            &name,
            form.typed()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
            &form.position,
        )));
    let storage = &state.storage;
    let result: Result<(String, Option<CommandOutcome>), AppError> = async {
        Ok(match action {
            UnitAction::Place => {
                let barcode = form.sample.trim().to_ascii_uppercase();
                if barcode.is_empty() {
                    return Err(AppError::invalid(
                        "sample",
                        "scan the tube first, then click a free cell",
                    ));
                }
                let sample = state
                    .samples
                    .find_by_barcode(&barcode)
                    .await?
                    .ok_or_else(|| {
                        AppError::invalid("sample", format!("no tube has the barcode {barcode}"))
                    })?;
                let stored = state
                    .samples
                    .load(sample)
                    .await?
                    .is_some_and(|s| s.location.is_some());
                let code = storage.unit(id).await?.map(|u| u.code).unwrap_or_default();
                let outcome = if stored {
                    state
                        .samples
                        .move_sample(
                            sample,
                            &id.to_string(),
                            &form.position,
                            ExpectedVersion::Any,
                            &context,
                        )
                        .await?
                } else {
                    state
                        .samples
                        .store_sample(
                            sample,
                            &id.to_string(),
                            &form.position,
                            ExpectedVersion::Any,
                            &context,
                        )
                        .await?
                };
                state
                    .samples
                    .wait_for_version(sample, outcome.last_version)
                    .await;
                let verb = if stored { "Moved" } else { "Stored" };
                (
                    format!(
                        "{verb} {barcode} in {code} {}",
                        form.position.trim().to_ascii_uppercase()
                    ),
                    None,
                )
            }
            UnitAction::Temperature => (
                "temperature".into(),
                Some(
                    storage
                        .record_temperature(id, &form.celsius, None, &context)
                        .await?,
                ),
            ),
            UnitAction::Rename => (
                "renamed".into(),
                Some(storage.rename(id, &form.name, &context).await?),
            ),
            UnitAction::Move => (
                "moved".into(),
                Some(
                    storage
                        .relocate(id, &form.parent, &form.slot, &context)
                        .await?,
                ),
            ),
            UnitAction::Decommission => (
                "decommissioned".into(),
                Some(storage.decommission(id, &form.reason, &context).await?),
            ),
            UnitAction::Resolve(excursion) => (
                "resolved".into(),
                Some(
                    storage
                        .resolve_excursion(id, excursion, &form.note, &context)
                        .await?,
                ),
            ),
        })
    }
    .await;
    match result {
        Ok((done, outcome)) => {
            if let Some(outcome) = outcome {
                storage
                    .wait_for_version(id, outcome.last_version, CATCH_UP)
                    .await;
            }
            let mut page = unit_page(state, id, identity.me(), None).await?;
            page.done = done_message(&done);
            Ok(render(StatusCode::OK, &page))
        }
        Err(error @ (AppError::NotFound(_) | AppError::Unavailable(_) | AppError::Internal(_))) => {
            Err(error.into())
        }
        Err(error) => {
            error.log();
            let mut page = unit_page(state, id, identity.me(), None).await?;
            page.typed = form.typed();
            if let AppError::Invalid(errors) = &error {
                page.errors = errors.clone();
            }
            page.message = Some(error.page_message());
            let mut response = render(error.status(), &page);
            error.decorate(&mut response);
            Ok(response)
        }
    }
}

macro_rules! unit_form_route {
    ($name:ident, $action:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            identity: Identity,
            headers: HeaderMap,
            Path(id): Path<String>,
            Form(form): Form<UnitForm>,
        ) -> Result<Response, PageError> {
            unit_action(&state, identity, &headers, &id, $action, form).await
        }
    };
}

unit_form_route!(place, UnitAction::Place);
unit_form_route!(temperature, UnitAction::Temperature);
unit_form_route!(rename, UnitAction::Rename);
unit_form_route!(relocate, UnitAction::Move);
unit_form_route!(decommission, UnitAction::Decommission);

/// `POST /storage/{id}/excursions/{excursion_id}/resolve`
pub async fn resolve(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Path((id, excursion)): Path<(String, String)>,
    Form(form): Form<UnitForm>,
) -> Result<Response, PageError> {
    let excursion = Uuid::parse_str(&excursion)
        .map_err(|_| AppError::NotFound("There is no such temperature alert.".into()))?;
    unit_action(
        &state,
        identity,
        &headers,
        &id,
        UnitAction::Resolve(excursion),
        form,
    )
    .await
}

// ---- the scanner flow ----

#[derive(Template)]
#[template(path = "storage/store.html")]
struct StorePage {
    /// Step 2: the scanned tube, found.
    tube: Option<lab::samples::SampleRow>,
    tube_code: String,
    box_code: String,
    position: String,
    done: Option<String>,
    message: Option<String>,
    me: Option<Me>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StoreQuery {
    tube: String,
}

/// `GET /store[?tube=…]`: scan a tube (step 1), then its box (step 2).
pub async fn store_page(
    State(state): State<AppState>,
    identity: Identity,
    query: Result<Query<StoreQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let tube_code = query
        .map(|Query(q)| q.tube)
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    let mut page = StorePage {
        tube: None,
        tube_code: tube_code.clone(),
        box_code: String::new(),
        position: String::new(),
        done: None,
        message: None,
        me: Some(identity.me()),
    };
    if tube_code.is_empty() {
        return Ok(render(StatusCode::OK, &page));
    }
    match state.samples.find_by_barcode(&tube_code).await? {
        Some(id) => {
            page.tube = state.samples.get(id).await?;
            Ok(render(StatusCode::OK, &page))
        }
        None => {
            page.message = Some(format!(
                "No tube has the barcode {tube_code}. Scan it again, or register it first."
            ));
            page.tube_code = String::new();
            Ok(render(StatusCode::NOT_FOUND, &page))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StoreForm {
    command_id: String,
    tube: String,
    #[serde(rename = "box")]
    box_code: String,
    position: String,
}

/// `POST /store`: stores the tube (or moves it, if it is stored) into the scanned box, at
/// the scanned position or, when only the box was scanned, its first free one.
pub async fn store(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Form(form): Form<StoreForm>,
) -> Result<Response, PageError> {
    let tube_code = form.tube.trim().to_ascii_uppercase();
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let context = command_context(&headers, &identity.principal, Some(command_id))
        .named("StoreByScan")
        .with_fingerprint(fingerprint(&(
            &tube_code,
            form.box_code.trim(),
            form.position.trim(),
        )));
    let result: Result<String, AppError> = async {
        let id = state
            .samples
            .find_by_barcode(&tube_code)
            .await?
            .ok_or_else(|| {
                AppError::invalid("tube", format!("no tube has the barcode {tube_code}"))
            })?;
        let box_field = form.box_code.trim();
        let mut position = form.position.trim().to_owned();
        let names_position = box_field
            .rsplit_once([' ', ':', '/'])
            .is_some_and(|(_, p)| cqrs::storage::Position::parse(p).is_ok());
        if position.is_empty() && !names_position && !box_field.is_empty() {
            position = first_free_in(&state, box_field).await?.ok_or_else(|| {
                AppError::Conflict(format!("box {box_field} has no free position"))
            })?;
        }
        let stored = state
            .samples
            .load(id)
            .await?
            .is_some_and(|s| s.location.is_some());
        let outcome = if stored {
            state
                .samples
                .move_sample(id, box_field, &position, ExpectedVersion::Any, &context)
                .await?
        } else {
            state
                .samples
                .store_sample(id, box_field, &position, ExpectedVersion::Any, &context)
                .await?
        };
        let place = state
            .samples
            .load(id)
            .await?
            .and_then(|s| s.location)
            .map(|(_, p)| p.to_string())
            .unwrap_or(position);
        let _ = outcome;
        let verb = if stored { "Moved" } else { "Stored" };
        let code = box_field
            .rsplit_once([' ', ':', '/'])
            .filter(|_| names_position)
            .map_or(box_field, |(b, _)| b.trim())
            .to_ascii_uppercase();
        Ok(format!(
            "{verb} {tube_code} in {code} {place}. Scan the next tube."
        ))
    }
    .await;
    match result {
        Ok(done) => Ok(render(
            StatusCode::OK,
            &StorePage {
                tube: None,
                tube_code: String::new(),
                box_code: String::new(),
                position: String::new(),
                done: Some(done),
                message: None,
                me: Some(identity.me()),
            },
        )),
        Err(error @ (AppError::Unavailable(_) | AppError::Internal(_))) => Err(error.into()),
        Err(error) => {
            error.log();
            let tube = match state.samples.find_by_barcode(&tube_code).await? {
                Some(id) => state.samples.get(id).await?,
                None => None,
            };
            Ok(render(
                error.status(),
                &StorePage {
                    tube_code: if tube.is_some() {
                        tube_code
                    } else {
                        String::new()
                    },
                    tube,
                    box_code: form.box_code,
                    position: form.position,
                    done: None,
                    message: Some(error.page_message()),
                    me: Some(identity.me()),
                },
            ))
        }
    }
}

/// The first free position, row by row, of the box a barcode (or id) names.
async fn first_free_in(state: &AppState, box_field: &str) -> Result<Option<String>, AppError> {
    let unit = match Uuid::parse_str(box_field) {
        Ok(id) => state.storage.unit(id).await?,
        Err(_) => state.storage.unit_by_code(box_field).await?,
    };
    let Some(unit) = unit.filter(|u| u.kind == "box") else {
        return Ok(None);
    };
    let taken: Vec<String> = state
        .storage
        .occupants(unit.unit_id)
        .await?
        .into_iter()
        .map(|o| o.position)
        .collect();
    let (rows, cols) = (unit.grid_rows.unwrap_or(0), unit.grid_columns.unwrap_or(0));
    Ok((0..rows).find_map(|r| {
        (1..=cols).find_map(|c| {
            let p = format!("{}{c}", char::from(b'A' + u8::try_from(r).unwrap_or(0)));
            (!taken.contains(&p)).then_some(p)
        })
    }))
}
