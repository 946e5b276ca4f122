//! HTTP routes: the UI pages, the JSON API and the health checks.

mod api;
pub mod assets;
mod context;
pub mod edge;
mod health;
mod operations;
mod ui;

use crate::startup::AppState;
use axum::Router;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::Redirect;
use axum::routing::{get, post};
use edge::Limits;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, and the layers every response passes through (outermost first): the
/// request-id, tracing, the security headers, messages for bare refusals, the request
/// timeout (a bare 503), the body limit (413) and a handler's panic (a bare 500).
pub fn router(state: AppState, limits: Limits) -> Router {
    let [csp, nosniff, referrer, frames] = edge::security_headers();
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %request_id,
        )
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/samples") }))
        .route("/samples", get(ui::list).post(ui::register))
        .route("/samples/new", get(ui::new_form))
        .route("/samples/{id}", get(ui::detail))
        .route("/samples/{id}/{action}", post(ui::act))
        .route("/api/samples", get(api::list).post(api::register))
        .route("/api/samples/{id}", get(api::get))
        .route("/api/samples/{id}/events", get(api::events))
        .route("/api/samples/{id}/{action}", post(api::act))
        .route("/dead-letters", get(operations::page))
        .route("/dead-letters/reprocess", post(operations::reprocess_page))
        .route(
            "/dead-letters/{id}/reprocess",
            post(operations::reprocess_page),
        )
        .route("/api/dead-letters", get(operations::list_api))
        .route(
            "/api/dead-letters/reprocess",
            post(operations::reprocess_all_api),
        )
        .route(
            "/api/dead-letters/{id}/reprocess",
            post(operations::reprocess_api),
        )
        .route("/api/outbox/parked", get(operations::parked_api))
        .route(
            "/api/outbox/parked/retry",
            post(operations::retry_parked_api),
        )
        .route(
            "/api/outbox/parked/{position}/retry",
            post(operations::retry_parked_api),
        )
        .route("/metrics", get(operations::metrics))
        .route("/static/app.css", get(assets::stylesheet))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/startup", get(health::startup))
        .fallback(ui::not_found)
        .layer(CatchPanicLayer::custom(edge::panicked))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            edge::explain_refusals,
        ))
        .layer(csp)
        .layer(nosniff)
        .layer(referrer)
        .layer(frames)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
