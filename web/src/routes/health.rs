//! Liveness, readiness and start-up probes.

use crate::startup::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The process is up and answering.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: PostgreSQL answers and the read-side projection is running.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.samples.pool()),
    )
    .await;
    let database_ok = matches!(database, Ok(Ok(1)));
    let projection_ok = state.samples.read_side().is_running();
    let status = if database_ok && projection_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    (
        status,
        Json(json!({
            "status": word(database_ok && projection_ok),
            "checks": { "postgresql": word(database_ok), "projections": word(projection_ok) },
        })),
    )
}

/// Start-up finished (migrations ran before the listener opened).
pub async fn startup() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
