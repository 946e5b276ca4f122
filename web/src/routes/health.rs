//! Liveness, readiness and start-up probes.

use crate::startup::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The process is up and answering.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    summary = "The process is up",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: PostgreSQL answers, the read side's tasks run, and no consumer or
/// projection has been failing without progress for longer than `TRACSEQ_STUCK_AFTER_S`
/// (each stuck one is named with its last error). A stuck relay is reported but does not
/// make the process unready: commands still work, their events wait in the outbox.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    summary = "Ready to serve",
    security(()),
    responses(
        (status = 200, description = "Ready: `status`, `checks`, `consumers`, `stuck`", body = Object),
        (status = 503, description = "Not ready; the body says which check fails", body = Object),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.samples.pool()),
    )
    .await;
    let database_ok = matches!(database, Ok(Ok(1)));
    let running = state.read_side.is_running();
    let stuck = state.board.stuck(state.stuck_after);
    let projections_ok = running && !stuck.iter().any(|s| s.critical);
    let ok = database_ok && projections_ok;
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": word(ok),
            "checks": {
                "postgresql": word(database_ok),
                "projections": word(projections_ok),
            },
            "consumers": state.board.names(),
            "stuck": stuck,
        })),
    )
}

/// Start-up finished (migrations ran before the listener opened).
#[utoipa::path(
    get,
    path = "/health/startup",
    tag = "health",
    summary = "Start-up finished",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
pub async fn startup() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
