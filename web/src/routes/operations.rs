//! Operator endpoints: Prometheus metrics, and dead letters (list, re-process) as a page
//! and as JSON.

use super::auth::{Identity, Me};
use super::ui::PageError;
use crate::error::AppError;
use crate::startup::AppState;
use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kafka::consumer::{DeadLetter, DeadLetters, Reprocessed};
use lab::samples::SamplesProjection;
use serde::Deserialize;

/// `GET /metrics` in the Prometheus text format.
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

fn dead_letters(state: &AppState) -> Result<&DeadLetters<SamplesProjection>, AppError> {
    state.read_side.dead_letters().ok_or_else(|| {
        AppError::NotFound(
            "dead letters exist only when events flow through Kafka (KAFKA_BROKERS)".into(),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeadLetterQuery {
    event_type: Option<String>,
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
pub async fn list_api(
    State(state): State<AppState>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetter>>, AppError> {
    let letters = dead_letters(&state)?
        .list(q.event_type(), q.status()?, 500)
        .await?;
    Ok(Json(letters))
}

/// `POST /api/dead-letters/{id}/reprocess`
pub async fn reprocess_api(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Reprocessed>, AppError> {
    dead_letters(&state)?
        .reprocess(id)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no dead letter {id}")))
}

/// `POST /api/dead-letters/reprocess`: every pending one, oldest first.
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
pub async fn parked_api(
    State(state): State<AppState>,
) -> Result<Json<Vec<kafka::relay::ParkedEvent>>, AppError> {
    Ok(Json(kafka::relay::parked(state.samples.pool(), 500).await?))
}

/// `POST /api/outbox/parked/retry` (all) and `POST /api/outbox/parked/{position}/retry`:
/// puts parked events back in the queue once the cause is fixed.
pub async fn retry_parked_api(
    State(state): State<AppState>,
    position: Option<Path<i64>>,
) -> Result<Json<serde_json::Value>, AppError> {
    let position = position.map(|Path(p)| p);
    let requeued = kafka::relay::retry_parked(state.samples.pool(), position).await?;
    if position.is_some() && requeued == 0 {
        return Err(AppError::NotFound(format!(
            "no parked event at outbox position {}",
            position.unwrap_or_default()
        )));
    }
    Ok(Json(serde_json::json!({ "requeued": requeued })))
}
