//! Operator endpoints: Prometheus metrics, and dead letters (list, re-process) as a page
//! and as JSON.

use super::auth::{Identity, Me};
use super::ui::PageError;
use crate::error::AppError;
use crate::startup::AppState;
use askama::Template;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kafka::consumer::{DeadLetter, Reprocessed};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "The Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(error) = state.metrics.refresh_gauges(state.samples.pool()).await {
        tracing::warn!(%error, "outbox and transaction gauges could not be refreshed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

fn dead_letters(state: &AppState) -> Result<&crate::startup::AllDeadLetters, AppError> {
    state.read_side.dead_letters().ok_or_else(|| {
        AppError::NotFound(
            "dead letters exist only when events flow through Kafka (KAFKA_BROKERS)".into(),
        )
    })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this event type.
    event_type: Option<String>,
    /// pending or reprocessed.
    status: Option<String>,
}

impl DeadLetterQuery {
    fn event_type(&self) -> Option<&str> {
        self.event_type
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn status(&self) -> Result<Option<&str>, AppError> {
        match self
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => Ok(None),
            Some(s @ ("pending" | "reprocessed")) => Ok(Some(s)),
            Some(other) => Err(AppError::invalid(
                "status",
                format!("unknown status '{other}'; use pending or reprocessed"),
            )),
        }
    }
}

/// `GET /api/dead-letters?event_type=&status=`
#[utoipa::path(
    get,
    path = "/api/dead-letters",
    tag = "operations",
    summary = "Dead letters (at most 500)",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "The dead letters, newest first", body = Vec<DeadLetter>),
        (status = 400, description = "A query parameter is invalid", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "Dead letters exist only when events flow through Kafka", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn list_api(
    State(state): State<AppState>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<Vec<DeadLetter>>, AppError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let letters = dead_letters(&state)?
        .list(q.event_type(), q.status()?, 500)
        .await?;
    Ok(Json(letters))
}

/// `POST /api/dead-letters/{id}/reprocess`
#[utoipa::path(
    post,
    path = "/api/dead-letters/{id}/reprocess",
    tag = "operations",
    summary = "Re-process one dead letter",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "What re-processing did", body = Reprocessed),
        (status = 400, description = "The id is not a number", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No such dead letter, or no Kafka", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn reprocess_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Reprocessed>, AppError> {
    let Path(id) = id.map_err(|e| AppError::BadRequest(e.body_text()))?;
    dead_letters(&state)?
        .reprocess(id)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no dead letter {id}")))
}

/// `POST /api/dead-letters/reprocess`: every pending one, oldest first.
#[utoipa::path(
    post,
    path = "/api/dead-letters/reprocess",
    tag = "operations",
    summary = "Re-process every pending dead letter, oldest first",
    responses(
        (status = 200, description = "What re-processing did, one entry per dead letter", body = Vec<Reprocessed>),
        (status = 404, description = "Dead letters exist only when events flow through Kafka", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn reprocess_all_api(
    State(state): State<AppState>,
) -> Result<Json<Vec<Reprocessed>>, AppError> {
    Ok(Json(dead_letters(&state)?.reprocess_all().await?))
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    letters: Vec<DeadLetter>,
    event_type: String,
    me: Option<Me>,
}

impl DeadLettersPage {
    fn csrf_token(&self) -> &str {
        self.me.as_ref().map_or("", |me| me.csrf_token.as_str())
    }
}

/// `GET /dead-letters`
pub async fn page(
    State(state): State<AppState>,
    identity: Identity,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Response, PageError> {
    let letters = dead_letters(&state)?
        .list(q.event_type(), q.status()?, 200)
        .await?;
    let page = DeadLettersPage {
        letters,
        event_type: q.event_type().unwrap_or_default().to_owned(),
        me: Some(identity.me()),
    };
    page.render()
        .map(|html| (StatusCode::OK, Html(html)).into_response())
        .map_err(|e| AppError::Internal(e.to_string()).into())
}

/// `POST /dead-letters/{id}/reprocess` and `POST /dead-letters/reprocess` from the page.
pub async fn reprocess_page(
    State(state): State<AppState>,
    id: Option<Path<i64>>,
) -> Result<Response, PageError> {
    let letters = dead_letters(&state)?;
    match id {
        Some(Path(id)) => {
            letters.reprocess(id).await?;
        }
        None => {
            letters.reprocess_all().await?;
        }
    }
    Ok(Redirect::to("/dead-letters").into_response())
}

/// `GET /api/outbox/parked`: events the relay set aside because they could not be
/// encoded, with the reason; their aggregates' later events wait behind them.
#[utoipa::path(
    get,
    path = "/api/outbox/parked",
    tag = "operations",
    summary = "Events the outbox relay set aside (at most 500)",
    responses((status = 200, description = "The parked events, oldest first", body = Vec<kafka::relay::ParkedEvent>)),
)]
pub async fn parked_api(
    State(state): State<AppState>,
) -> Result<Json<Vec<kafka::relay::ParkedEvent>>, AppError> {
    Ok(Json(kafka::relay::parked(state.samples.pool(), 500).await?))
}

/// How many parked events went back in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    pub requeued: u64,
}

/// `POST /api/outbox/parked/retry`: puts every parked event back in the queue once the
/// cause is fixed.
#[utoipa::path(
    post,
    path = "/api/outbox/parked/retry",
    tag = "operations",
    summary = "Put every parked event back in the outbox queue",
    responses((status = 200, description = "How many were requeued", body = Requeued)),
)]
pub async fn retry_parked_api_all(
    State(state): State<AppState>,
) -> Result<Json<Requeued>, AppError> {
    let requeued = kafka::relay::retry_parked(state.samples.pool(), None).await?;
    Ok(Json(Requeued { requeued }))
}

/// `POST /api/outbox/parked/{position}/retry`: puts one parked event back in the queue.
#[utoipa::path(
    post,
    path = "/api/outbox/parked/{position}/retry",
    tag = "operations",
    summary = "Put one parked event back in the outbox queue",
    params(("position" = i64, Path, description = "The event's outbox position")),
    responses(
        (status = 200, description = "Requeued", body = Requeued),
        (status = 400, description = "The position is not a number", body = crate::routes::openapi::ErrorResponse),
        (status = 404, description = "No parked event at that position", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn retry_parked_api_one(
    State(state): State<AppState>,
    position: Result<Path<i64>, PathRejection>,
) -> Result<Json<Requeued>, AppError> {
    let Path(position) = position.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let requeued = kafka::relay::retry_parked(state.samples.pool(), Some(position)).await?;
    if requeued == 0 {
        return Err(AppError::NotFound(format!(
            "no parked event at outbox position {position}"
        )));
    }
    Ok(Json(Requeued { requeued }))
}
