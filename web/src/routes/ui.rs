//! The server-rendered pages lab staff use: list and scan, register, detail with timeline
//! and actions.

use super::auth::{Identity, Me};
use super::context::{command_context, percent_encode};
use crate::error::{AppError, FieldError};
use crate::startup::AppState;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cqrs::sample::{SampleStatus, SampleType, SignatureMeaning, TemperatureZone};
use event_sourcing::ExpectedVersion;
use lab::idempotency::fingerprint;
use lab::samples::{Action, ListInput, RegisterInput, SamplePage, SampleRow, TimelineEntry};
use serde::Deserialize;
use std::collections::HashMap;
use uuid::Uuid;

/// An error shown as a page.
pub struct PageError(pub AppError);

impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        Self(error)
    }
}

impl From<lab::Error> for PageError {
    fn from(error: lab::Error) -> Self {
        Self(error.into())
    }
}

impl From<sqlx::Error> for PageError {
    fn from(error: sqlx::Error) -> Self {
        Self(error.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    me: Option<Me>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        error_page(self.0.status(), &self.0.public_message())
    }
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        title: status.canonical_reason().unwrap_or("Error"),
        message,
        me: None,
    };
    render(status, &page)
}

pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

pub async fn not_found() -> PageError {
    PageError(AppError::NotFound(
        "There is no page at this address.".into(),
    ))
}

#[derive(Template)]
#[template(path = "samples/list.html")]
struct ListPage {
    input: ListInput,
    statuses: &'static [SampleStatus],
    types: &'static [SampleType],
    zones: &'static [TemperatureZone],
    page: SamplePage,
    /// A barcode that matched nothing: offered for registration.
    not_found: Option<String>,
    errors: Vec<FieldError>,
    me: Option<Me>,
}

impl ListPage {
    fn page_link(&self, page: u32) -> String {
        let i = &self.input;
        format!(
            "/samples?q={}&status={}&type={}&zone={}&location={}&patient={}&from={}&to={}&page={page}",
            percent_encode(&i.q),
            percent_encode(&i.status),
            percent_encode(&i.sample_type),
            percent_encode(&i.zone),
            percent_encode(&i.location),
            percent_encode(&i.patient),
            percent_encode(&i.from),
            percent_encode(&i.to),
        )
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

/// `GET /samples`: samples filtered by barcode prefix, status, type, zone, location,
/// patient and registration day, most recently changed first. Scanning an exact barcode
/// (the scanner types it and presses Enter) jumps straight to the sample; a barcode that
/// matches nothing clears the search box for the next scan and offers to register it.
pub async fn list(
    State(state): State<AppState>,
    identity: Identity,
    query: Result<Query<ListInput>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let mut input = query.map(|Query(q)| q).unwrap_or_default();
    input.q = input.q.trim().to_ascii_uppercase();
    if !input.q.is_empty()
        && let Some(id) = state.samples.find_by_barcode(&input.q).await?
    {
        return Ok(Redirect::to(&format!("/samples/{id}")).into_response());
    }
    input.per_page = Some(50);
    let (page, errors) = match input.filter(&state.samples).await {
        Ok(filter) => (state.samples.list(&filter).await?, Vec::new()),
        Err(lab::Error::Invalid(errors)) => (
            SamplePage {
                items: Vec::new(),
                page: 1,
                per_page: 50,
                total: 0,
                total_capped: false,
            },
            errors,
        ),
        Err(other) => return Err(other.into()),
    };
    let not_found = (!input.q.is_empty() && page.total == 0).then(|| input.q.clone());
    if not_found.is_some() {
        // The next scan goes into an empty box, not onto the end of this one.
        input.q.clear();
    }
    Ok(render(
        if errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        },
        &ListPage {
            input,
            statuses: SampleStatus::ALL,
            types: SampleType::ALL,
            zones: TemperatureZone::ALL,
            page,
            not_found,
            errors,
            me: Some(identity.me()),
        },
    ))
}

/// `GET /samples/new`
#[derive(Template)]
#[template(path = "samples/new.html")]
struct RegisterPage {
    input: RegisterInput,
    errors: Vec<FieldError>,
    message: Option<String>,
    /// The tube just registered, when registering tube after tube: `(id, barcode)`.
    registered: Option<(Uuid, String)>,
    /// This form's id was already used for another tube (Back, edit, submit again).
    already_used_for: Option<Uuid>,
    command_id: Uuid,
    me: Option<Me>,
    types: &'static [SampleType],
    zones: &'static [TemperatureZone],
}

impl RegisterPage {
    fn new(input: RegisterInput, me: Me, command_id: Uuid) -> Self {
        Self {
            input,
            errors: Vec::new(),
            message: None,
            registered: None,
            already_used_for: None,
            command_id,
            me: Some(me),
            types: SampleType::ALL,
            zones: TemperatureZone::ALL,
        }
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

/// `GET /samples/new[?barcode=]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewQuery {
    /// A scanned barcode that matched no sample, to register.
    barcode: String,
}

/// What the next tube keeps from the one before: its type and zone.
fn next_tube(previous: &RegisterInput) -> RegisterInput {
    RegisterInput {
        sample_type: previous.sample_type.clone(),
        temperature_zone: previous.temperature_zone.clone(),
        ..RegisterInput::default()
    }
}

pub async fn new_form(
    identity: Identity,
    query: Result<Query<NewQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let input = RegisterInput {
        barcode: query.map(|Query(q)| q.barcode).unwrap_or_default(),
        ..RegisterInput::default()
    };
    render(
        StatusCode::OK,
        &RegisterPage::new(input, identity.me(), Uuid::now_v7()),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterForm {
    #[serde(flatten)]
    input: RegisterInput,
    command_id: String,
    /// `next`: stay on the form for the next tube (type and zone kept).
    then: String,
}

/// `POST /samples`: registers, then shows the new sample. Invalid input re-shows the form
/// with each message beside its field and everything typed kept.
pub async fn register(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let mut page = RegisterPage::new(form.input.clone(), identity.me(), command_id);
    let context = command_context(&headers, &identity.principal, Some(command_id))
        .named("RegisterSample")
        .with_fingerprint(fingerprint(&form.input));
    match state.samples.register(&form.input, &context).await {
        Ok(outcome) if form.then == "next" => {
            let barcode = match state.samples.load(outcome.aggregate_id).await {
                Ok(Some(sample)) => sample.details.barcode.to_string(),
                _ => form.input.barcode.trim().to_ascii_uppercase(),
            };
            let mut next = RegisterPage::new(next_tube(&form.input), identity.me(), Uuid::now_v7());
            next.registered = Some((outcome.aggregate_id, barcode));
            render(StatusCode::OK, &next)
        }
        Ok(outcome) => Redirect::to(&format!(
            "/samples/{}?v={}",
            outcome.aggregate_id, outcome.last_version
        ))
        .into_response(),
        Err(error) => {
            let error = AppError::from(error);
            error.log();
            let status = error.status();
            match error {
                AppError::Invalid(errors) => page.errors = errors,
                AppError::Conflict(message) if message.starts_with("barcode") => {
                    page.errors = vec![FieldError {
                        field: "barcode",
                        message,
                    }];
                }
                // Back, edit, submit again: the form's id already registered a tube. Keep
                // what was typed, under a fresh id, and say so.
                AppError::Unprocessable(_) => {
                    page.already_used_for = Some(lab::idempotency::created_id(command_id));
                    page.command_id = Uuid::now_v7();
                }
                other => page.message = Some(other.public_message()),
            }
            render(status, &page)
        }
    }
}

/// Every action form a sample page can carry, each with a command id of its own.
const ACTIONS: &[&str] = &[
    "receive",
    "validate",
    "reject",
    "store",
    "move",
    "remove",
    "check-out",
    "return",
    "aliquot",
    "dispose",
    "correct-qc",
];

#[derive(Template)]
#[template(path = "samples/detail.html")]
struct DetailPage {
    sample: SampleRow,
    timeline: Vec<TimelineEntry>,
    message: Option<String>,
    /// What was just done, in lab words.
    done: Option<String>,
    me: Option<Me>,
    /// One command id per action form: submitting one form twice is one command, and
    /// each form is a command of its own.
    command_ids: HashMap<&'static str, Uuid>,
    meanings: &'static [SignatureMeaning],
    /// Freezer › rack › box, while it is stored.
    path: Vec<lab::storage::PathStep>,
    parent: Option<(Uuid, String)>,
    aliquots: Vec<(Uuid, String)>,
    /// What was typed into the forms, kept after a refusal.
    typed: HashMap<String, String>,
    /// The form whose action was just refused, and why: shown beside that form.
    refused: Option<(&'static str, String)>,
    /// A proposed free position (box code, position) for the store form.
    suggestion: Option<(String, String)>,
    /// The instant the page is shown "as of" (as typed), and the sample then.
    as_of: Option<(String, chrono::DateTime<chrono::Utc>, String)>,
}

impl DetailPage {
    fn command_id(&self, action: &str) -> Uuid {
        self.command_ids
            .get(action)
            .copied()
            .unwrap_or_else(Uuid::now_v7)
    }

    fn csrf_token(&self) -> &str {
        self.me.as_ref().map_or("", |me| me.csrf_token.as_str())
    }

    fn typed(&self, field: &str) -> &str {
        self.typed.get(field).map_or("", String::as_str)
    }

    /// Why `action`'s form was just refused, if it was.
    fn refusal(&self, action: &str) -> Option<&str> {
        self.refused
            .as_ref()
            .filter(|(a, _)| *a == action)
            .map(|(_, why)| why.as_str())
    }

    /// Whether an event came after the instant the page is shown as of.
    fn after(&self, e: &TimelineEntry) -> bool {
        self.as_of.as_ref().is_some_and(|(_, at, _)| e.at > *at)
    }

    /// Whether the lifecycle allows `action` now and the viewer's role allows it at all.
    fn can(&self, action: &str) -> bool {
        use SampleStatus::*;
        if self.as_of.is_some() {
            return false;
        }
        let role_allows = self.me.as_ref().is_some_and(|me| match action {
            "validate" | "reject" | "correct-qc" => me.can("qc"),
            _ => me.can("sample_work"),
        });
        let status = self.sample.status();
        role_allows
            && match (status, action) {
                (Some(Registered), "receive" | "reject") => true,
                (Some(Received), "validate" | "reject") => true,
                (Some(Validated), "store" | "check-out" | "aliquot" | "correct-qc") => true,
                (Some(InStorage), "move" | "remove" | "check-out" | "aliquot") => true,
                (Some(CheckedOut), "return") => true,
                (Some(Rejected), "correct-qc") => true,
                (Some(s), "dispose") => !matches!(s, Disposed | CheckedOut),
                _ => false,
            }
    }
}

/// The sample page's content. With `catch_up`, it first waits (briefly) until the read
/// table shows the latest version the events hold, as the store says, not the form.
async fn detail_page(
    state: &AppState,
    id: Uuid,
    me: Me,
    message: Option<String>,
    catch_up: bool,
) -> Result<DetailPage, PageError> {
    let missing = || AppError::NotFound("There is no sample with this id.".into());
    let timeline = state.samples.timeline(id).await?;
    let latest = timeline.last().map(|e| e.version).ok_or_else(missing)?;
    if catch_up {
        state.samples.wait_for_version(id, latest).await;
    }
    let sample = state.samples.get(id).await?.ok_or_else(missing)?;
    let path = match sample.box_id {
        Some(b) => state.storage.path(b).await?,
        None => Vec::new(),
    };
    let (parent, aliquots) = state.samples.lineage(id, sample.parent_id).await?;
    Ok(DetailPage {
        sample,
        timeline,
        message,
        done: None,
        me: Some(me),
        command_ids: ACTIONS.iter().map(|a| (*a, Uuid::now_v7())).collect(),
        meanings: SignatureMeaning::ALL,
        path,
        parent,
        aliquots,
        typed: HashMap::new(),
        refused: None,
        suggestion: None,
        as_of: None,
    })
}

fn parse_id(raw: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| {
        PageError(AppError::NotFound(
            "There is no sample with this id.".into(),
        ))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DetailQuery {
    /// The version a command just wrote (its consistency token): the page waits until
    /// the read model shows it.
    v: Option<u64>,
    /// Set after an action: the page says what was done (the latest event).
    done: Option<String>,
    /// Propose a free position in a box of the sample's zone for the store form.
    suggest: Option<String>,
    /// A lab-time instant: show the sample as it stood then, rebuilt from its events.
    as_of: Option<String>,
}

/// `GET /samples/{id}[?v=N]`: the sample, its complete timeline, and what can be done
/// next; after a command, as of that command at least.
pub async fn detail(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let message = match query.v {
        Some(version) if !state.samples.wait_for_version(id, version).await => Some(
            "Your change is saved; this page may not show it yet. Refresh in a moment.".to_owned(),
        ),
        _ => None,
    };
    let mut page = detail_page(&state, id, identity.me(), message, false).await?;
    if query.done.is_some()
        && let Some(last) = page.timeline.last()
    {
        page.done = Some(done_phrase(&last.what, last.detail.as_deref()));
    }
    if query.suggest.is_some()
        && let Ok(zone) = TemperatureZone::parse(&page.sample.temperature_zone)
    {
        match state.storage.first_free_position(zone).await? {
            Some((unit, position)) => page.suggestion = Some((unit.code, position)),
            None => page.message = Some(format!("No box at {} has a free position.", zone.label())),
        }
    }
    if let Some(raw) = query
        .as_of
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        match super::storage_ui::parse_instant(
            raw,
            page.me.as_ref().map_or(chrono_tz::Tz::UTC, |m| m.time_zone),
        ) {
            Ok(at) => {
                let then = lab::history::sample_as_of(state.storage.store(), id, at).await?;
                let summary = match then.sample {
                    None => "not registered yet".to_owned(),
                    Some(s) => {
                        let mut text = s.status.phrase().to_owned();
                        if let Some((b, p)) = s.location {
                            let code = state
                                .storage
                                .unit(b.as_uuid())
                                .await?
                                .map_or_else(|| b.to_string(), |u| u.code);
                            text.push_str(&format!(", at {code} {p}"));
                        }
                        if let Some((_, holder)) = s.holder {
                            text.push_str(&format!(", held by {holder}"));
                        }
                        text.push_str(&format!(", {} µL left", s.volume_left));
                        text
                    }
                };
                page.as_of = Some((raw.to_owned(), at, summary));
            }
            Err(error) => page.message = Some(error.page_message()),
        }
    }
    Ok(render(StatusCode::OK, &page))
}

/// What an action just did, in lab words ("Stored in BOX-1 A1.").
fn done_phrase(what: &str, detail: Option<&str>) -> String {
    match (what, detail) {
        ("Stored", Some(place)) => format!("Stored in {place}."),
        ("Moved", Some(d)) => match d.split_once(" → ") {
            Some((from, to)) => format!("Moved from {from} to {to}."),
            None => format!("Moved: {d}."),
        },
        ("Removed from storage" | "Checked out" | "Returned", Some(d)) => format!("{what} {d}."),
        ("Disposed", Some(d)) => format!("Disposed of: {d}."),
        (_, Some(d)) => format!("Done: {what} ({d})."),
        (_, None) => format!("Done: {what}."),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    command_id: String,
    notes: String,
    reason: String,
    expected_version: String,
    /// The electronic signature of a QC decision: the person's password again, and
    /// what their signature means.
    password: String,
    meaning: String,
}

/// `POST /samples/{id}/receive`
pub async fn receive(
    state: State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Form<ActionForm>,
) -> Result<Response, PageError> {
    act(state, identity, headers, &id, Action::Receive, form).await
}

/// `POST /samples/{id}/validate`
pub async fn validate(
    state: State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Form<ActionForm>,
) -> Result<Response, PageError> {
    act(state, identity, headers, &id, Action::Validate, form).await
}

/// `POST /samples/{id}/reject`
pub async fn reject(
    state: State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Form<ActionForm>,
) -> Result<Response, PageError> {
    act(state, identity, headers, &id, Action::Reject, form).await
}

/// Acts, then shows the sample again. A refused action shows the sample with the
/// reason, and changes nothing.
async fn act(
    State(state): State<AppState>,
    identity: Identity,
    headers: HeaderMap,
    id: &str,
    action: Action,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    let id = parse_id(id)?;
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let text = if action == Action::Reject {
        &form.reason
    } else {
        &form.notes
    };
    let result = async {
        // Blank means "whatever it is now"; anything else must be the version the form showed.
        let expected = match form.expected_version.trim() {
            "" => ExpectedVersion::Any,
            raw => ExpectedVersion::Exactly(raw.parse().map_err(|_| {
                AppError::invalid(
                    "expected_version",
                    "expected_version must be the sample's version number shown on the page; reload the page",
                )
            })?),
        };
        let signature = if action.needs_signature() {
            Some(
                super::signing::sign(&state, &identity.principal, &form.password, &form.meaning)
                    .await?,
            )
        } else {
            None
        };
        let context = command_context(&headers, &identity.principal, Some(command_id))
            .named(action.command_name())
            .with_fingerprint(fingerprint(&(
                id,
                action.name(),
                text.trim(),
                form.expected_version.trim(),
                form.meaning.trim(),
            )));
        state
            .samples
            .act(id, action, text, signature, expected, &context)
            .await
            .map_err(AppError::from)
    }
    .await;
    match result {
        Ok(outcome) => Ok(Redirect::to(&format!(
            "/samples/{id}?v={}&done=1",
            outcome.last_version
        ))
        .into_response()),
        Err(error @ (AppError::NotFound(_) | AppError::Unavailable(_) | AppError::Internal(_))) => {
            Err(error.into())
        }
        Err(error) => {
            error.log();
            let status = error.status();
            // Show the sample as its events stand: the read table may lag behind them.
            let message = Some(error.page_message());
            let page = detail_page(&state, id, identity.me(), message, true).await?;
            let mut response = render(status, &page);
            error.decorate(&mut response);
            Ok(response)
        }
    }
}

/// A sample page's storage, custody, aliquot, disposal and QC-correction forms.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LifecycleForm {
    command_id: String,
    expected_version: String,
    #[serde(rename = "box")]
    box_code: String,
    position: String,
    notes: String,
    reason: String,
    /// Check out: the username of who takes it (empty: yourself).
    holder: String,
    /// Aliquots: up to four rows of barcode (empty: generate) and volume.
    barcode_1: String,
    volume_1: String,
    barcode_2: String,
    volume_2: String,
    barcode_3: String,
    volume_3: String,
    barcode_4: String,
    volume_4: String,
    /// Correct QC: `passed` or `failed`.
    decision: String,
    password: String,
    meaning: String,
}

impl LifecycleForm {
    /// What was typed, to put back into the forms after a refusal (never the password).
    fn typed(&self) -> HashMap<String, String> {
        [
            ("box", &self.box_code),
            ("position", &self.position),
            ("notes", &self.notes),
            ("reason", &self.reason),
            ("holder", &self.holder),
            ("barcode_1", &self.barcode_1),
            ("volume_1", &self.volume_1),
            ("barcode_2", &self.barcode_2),
            ("volume_2", &self.volume_2),
            ("barcode_3", &self.barcode_3),
            ("volume_3", &self.volume_3),
            ("barcode_4", &self.barcode_4),
            ("volume_4", &self.volume_4),
            ("decision", &self.decision),
            ("meaning", &self.meaning),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

/// Runs a lifecycle form, then shows the sample with what was done; a refusal shows the
/// sample as it stands with the reason and what was typed.
async fn lifecycle(
    state: &AppState,
    identity: Identity,
    headers: &HeaderMap,
    id: &str,
    action: &'static str,
    form: LifecycleForm,
) -> Result<Response, PageError> {
    let id = parse_id(id)?;
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let typed = form.typed();
    let result = async {
        let expected = match form.expected_version.trim() {
            "" => ExpectedVersion::Any,
            raw => ExpectedVersion::Exactly(raw.parse().map_err(|_| {
                AppError::invalid("expected_version", "reload the page and try again")
            })?),
        };
        let context = command_context(headers, &identity.principal, Some(command_id))
            .named(action)
            .with_fingerprint(fingerprint(&(
                id,
                action,
                typed.iter().collect::<std::collections::BTreeMap<_, _>>(),
                form.expected_version.trim(),
            )));
        let samples = &state.samples;
        let outcome = match action {
            "store" => {
                samples
                    .store_sample(id, &form.box_code, &form.position, expected, &context)
                    .await?
            }
            "move" => {
                samples
                    .move_sample(id, &form.box_code, &form.position, expected, &context)
                    .await?
            }
            "remove" => {
                samples
                    .remove_from_storage(id, &form.notes, expected, &context)
                    .await?
            }
            "check-out" => {
                let (holder_id, holder) = match form.holder.trim() {
                    "" => (identity.principal.id, identity.principal.name.clone()),
                    username => {
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
                    .check_out(id, (holder_id, &holder), &form.notes, expected, &context)
                    .await?
            }
            "return" => {
                samples
                    .return_sample(id, &form.notes, expected, &context)
                    .await?
            }
            "aliquot" => {
                let rows = [
                    (&form.barcode_1, &form.volume_1),
                    (&form.barcode_2, &form.volume_2),
                    (&form.barcode_3, &form.volume_3),
                    (&form.barcode_4, &form.volume_4),
                ];
                let inputs: Vec<lab::samples::AliquotInput> = rows
                    .iter()
                    .map(|(b, v)| lab::samples::AliquotInput {
                        barcode: (*b).clone(),
                        volume_ul: (*v).clone(),
                    })
                    .collect();
                samples.aliquot(id, &inputs, expected, &context).await?
            }
            "dispose" | "correct-qc" => {
                let signature =
                    super::signing::sign(state, &identity.principal, &form.password, &form.meaning)
                        .await?;
                if action == "dispose" {
                    samples
                        .dispose(id, &form.reason, Some(signature), expected, &context)
                        .await?
                } else {
                    let passed = match form.decision.trim() {
                        "passed" => true,
                        "failed" => false,
                        _ => {
                            return Err(AppError::invalid(
                                "decision",
                                "choose what the QC decision should have been: passed or failed",
                            ));
                        }
                    };
                    samples
                        .correct_qc(
                            id,
                            passed,
                            &form.reason,
                            Some(signature),
                            expected,
                            &context,
                        )
                        .await?
                }
            }
            _ => return Err(AppError::NotFound("There is no such action.".into())),
        };
        Ok::<_, AppError>(outcome)
    }
    .await;
    match result {
        Ok(outcome) => Ok(Redirect::to(&format!(
            "/samples/{id}?v={}&done=1",
            outcome.last_version
        ))
        .into_response()),
        Err(error @ (AppError::NotFound(_) | AppError::Unavailable(_) | AppError::Internal(_))) => {
            Err(error.into())
        }
        Err(error) => {
            error.log();
            let mut page =
                detail_page(state, id, identity.me(), Some(error.page_message()), true).await?;
            page.typed = typed;
            page.refused = Some((action, error.page_message()));
            let mut response = render(error.status(), &page);
            error.decorate(&mut response);
            Ok(response)
        }
    }
}

macro_rules! lifecycle_route {
    ($name:ident, $action:literal) => {
        #[doc = concat!("`POST /samples/{id}/", $action, "`")]
        pub async fn $name(
            State(state): State<AppState>,
            identity: Identity,
            headers: HeaderMap,
            Path(id): Path<String>,
            Form(form): Form<LifecycleForm>,
        ) -> Result<Response, PageError> {
            lifecycle(&state, identity, &headers, &id, $action, form).await
        }
    };
}

lifecycle_route!(store, "store");
lifecycle_route!(move_sample, "move");
lifecycle_route!(remove, "remove");
lifecycle_route!(check_out, "check-out");
lifecycle_route!(return_sample, "return");
lifecycle_route!(aliquot, "aliquot");
lifecycle_route!(dispose, "dispose");
lifecycle_route!(correct_qc, "correct-qc");
