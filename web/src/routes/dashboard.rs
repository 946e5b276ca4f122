//! The home page: what needs attention now. Samples by status, recent activity, open
//! temperature alerts, boxes nearly full and dead letters waiting; every number links to
//! the list it counts.

use super::auth::{Identity, Me};
use super::ui::{PageError, render};
use crate::startup::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use lab::dashboard::{Dashboard, NEARLY_FULL_PERCENT};

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    d: Dashboard,
    nearly_full_percent: i64,
    me: Option<Me>,
}

/// `GET /`
pub async fn page(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Response, PageError> {
    let d = lab::dashboard::dashboard(state.samples.pool()).await?;
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            d,
            nearly_full_percent: NEARLY_FULL_PERCENT,
            me: Some(identity.me()),
        },
    ))
}
