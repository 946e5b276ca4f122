//! The server-rendered pages lab staff use: list and scan, register, detail with timeline
//! and actions.

use super::context::{command_context, cookie, parse_operator, percent_encode};
use crate::error::{AppError, FieldError};
use crate::startup::AppState;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cqrs::sample::{SampleStatus, SampleType, TemperatureZone};
use event_sourcing::ExpectedVersion;
use lab::idempotency::fingerprint;
use lab::samples::{Action, RegisterInput, SampleFilter, SamplePage, SampleRow, TimelineEntry};
use serde::Deserialize;
use uuid::Uuid;

const OPERATOR_COOKIE: &str = "tracseq_operator";

/// An error shown as a page.
pub struct PageError(AppError);

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
    operator: &'a str,
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
        operator: "",
    };
    render(status, &page)
}

fn render(status: StatusCode, page: &impl Template) -> Response {
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

fn operator_of(headers: &HeaderMap) -> String {
    cookie(headers, OPERATOR_COOKIE).unwrap_or_default()
}

fn remember_operator(mut response: Response, operator: &str) -> Response {
    let value = format!(
        "{OPERATOR_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
        percent_encode(operator)
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn not_found() -> PageError {
    PageError(AppError::NotFound(
        "There is no page at this address.".into(),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    status: String,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "samples/list.html")]
struct ListPage {
    q: String,
    status: String,
    statuses: &'static [SampleStatus],
    page: SamplePage,
    notice: Option<String>,
    operator: String,
}

impl ListPage {
    fn page_link(&self, page: u32) -> String {
        format!(
            "/samples?q={}&status={}&page={page}",
            percent_encode(&self.q),
            percent_encode(&self.status)
        )
    }
}

/// `GET /samples`: recent samples, filtered by barcode prefix and status. Scanning an
/// exact barcode (the scanner types it and presses Enter) jumps straight to the sample.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let q = query.q.trim().to_ascii_uppercase();
    if !q.is_empty()
        && let Some(id) = state.samples.find_by_barcode(&q).await?
    {
        return Ok(Redirect::to(&format!("/samples/{id}")).into_response());
    }
    let status = SampleStatus::parse(&query.status).ok();
    let filter = SampleFilter {
        barcode_prefix: Some(q.clone()).filter(|q| !q.is_empty()),
        status,
        page: query.page.unwrap_or(1),
        per_page: 25,
    };
    let page = state.samples.list(&filter).await?;
    let notice = (!q.is_empty() && page.total == 0)
        .then(|| format!("No sample has a barcode starting with {q}."));
    Ok(render(
        StatusCode::OK,
        &ListPage {
            q,
            status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            statuses: SampleStatus::ALL,
            page,
            notice,
            operator: operator_of(&headers),
        },
    ))
}

#[derive(Template)]
#[template(path = "samples/new.html")]
struct RegisterPage {
    input: RegisterInput,
    errors: Vec<FieldError>,
    message: Option<String>,
    command_id: Uuid,
    operator: String,
    types: &'static [SampleType],
    zones: &'static [TemperatureZone],
}

impl RegisterPage {
    fn new(input: RegisterInput, operator: String, command_id: Uuid) -> Self {
        Self {
            input,
            errors: Vec::new(),
            message: None,
            command_id,
            operator,
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

/// `GET /samples/new`
pub async fn new_form(headers: HeaderMap) -> Response {
    render(
        StatusCode::OK,
        &RegisterPage::new(
            RegisterInput::default(),
            operator_of(&headers),
            Uuid::now_v7(),
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterForm {
    #[serde(flatten)]
    input: RegisterInput,
    operator: String,
    command_id: String,
}

/// `POST /samples`: registers, then shows the new sample. Invalid input re-shows the form
/// with each message beside its field and everything typed kept.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let mut page = RegisterPage::new(form.input.clone(), form.operator.clone(), command_id);
    let operator = parse_operator(&form.operator);
    let result = match &operator {
        Ok(name) => {
            let context = command_context(&headers, name.clone(), Some(command_id))
                .named("RegisterSample")
                .with_fingerprint(fingerprint(&form.input));
            state
                .samples
                .register(&form.input, &context)
                .await
                .map_err(AppError::from)
        }
        Err(error) => {
            // Report the operator together with any field problems.
            match form.input.parse(chrono::Utc::now()) {
                Err(mut errors) => {
                    errors.extend(error.field_errors().iter().cloned());
                    Err(AppError::Invalid(errors))
                }
                Ok(_) => Err(AppError::Invalid(error.field_errors().to_vec())),
            }
        }
    };
    match result {
        Ok(outcome) => {
            let response = Redirect::to(&format!(
                "/samples/{}?v={}",
                outcome.aggregate_id, outcome.last_version
            ))
            .into_response();
            remember_operator(response, operator.as_deref().unwrap_or_default())
        }
        Err(error) => {
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
                other => page.message = Some(other.public_message()),
            }
            render(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "samples/detail.html")]
struct DetailPage {
    sample: SampleRow,
    timeline: Vec<TimelineEntry>,
    message: Option<String>,
    operator: String,
    /// One command id per action form: submitting one form twice is one command, and
    /// each form is a command of its own.
    command_ids: [Uuid; 3],
}

impl DetailPage {
    fn command_id(&self, action: &str) -> Uuid {
        let index = match action {
            "receive" => 0,
            "validate" => 1,
            _ => 2,
        };
        self.command_ids[index]
    }

    fn can(&self, action: &str) -> bool {
        matches!(
            (self.sample.status(), action),
            (Some(SampleStatus::Registered), "receive" | "reject")
                | (Some(SampleStatus::Received), "validate" | "reject")
        )
    }
}

async fn detail_page(
    state: &AppState,
    id: Uuid,
    operator: String,
    message: Option<String>,
) -> Result<DetailPage, PageError> {
    let sample = state
        .samples
        .get(id)
        .await?
        .ok_or_else(|| AppError::NotFound("There is no sample with this id.".into()))?;
    let timeline = state.samples.timeline(id).await?;
    Ok(DetailPage {
        sample,
        timeline,
        message,
        operator,
        command_ids: [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()],
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
}

/// `GET /samples/{id}[?v=N]`: the sample, its complete timeline, and what can be done
/// next; after a command, as of that command at least.
pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
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
    let page = detail_page(&state, id, operator_of(&headers), message).await?;
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    operator: String,
    command_id: String,
    notes: String,
    reason: String,
    expected_version: String,
}

/// `POST /samples/{id}/{receive|validate|reject}`: acts, then shows the sample again. A
/// refused action shows the sample with the reason, and changes nothing.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let Some(action) = Action::parse(&action) else {
        return Err(AppError::NotFound(format!("There is no action '{action}'.")).into());
    };
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    // Blank means "whatever it is now"; anything else must be the version the form showed.
    let expected = match form.expected_version.trim() {
        "" => ExpectedVersion::Any,
        raw => match raw.parse() {
            Ok(version) => ExpectedVersion::Exactly(version),
            Err(_) => {
                return Err(AppError::invalid(
                    "expected_version",
                    "expected_version must be the sample's version number shown on the page; reload the page",
                )
                .into());
            }
        },
    };
    let text = if action == Action::Reject {
        &form.reason
    } else {
        &form.notes
    };
    let result = match parse_operator(&form.operator) {
        Ok(operator) => {
            let context = command_context(&headers, operator, Some(command_id))
                .named(action.command_name())
                .with_fingerprint(fingerprint(&(
                    id,
                    action.name(),
                    text.trim(),
                    form.expected_version.trim(),
                )));
            state
                .samples
                .act(id, action, text, None, expected, &context)
                .await
                .map_err(AppError::from)
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(outcome) => {
            let response =
                Redirect::to(&format!("/samples/{id}?v={}", outcome.last_version)).into_response();
            Ok(remember_operator(response, form.operator.trim()))
        }
        Err(error @ (AppError::NotFound(_) | AppError::Unavailable(_) | AppError::Internal(_))) => {
            Err(error.into())
        }
        Err(error) => {
            error.log();
            let status = error.status();
            let page = detail_page(
                &state,
                id,
                form.operator.clone(),
                Some(error.public_message()),
            )
            .await?;
            Ok(render(status, &page))
        }
    }
}
