//! HTTP routes: the UI pages, the JSON API and the health checks.

mod account;
mod admin;
mod api;
pub mod assets;
pub mod auth;
mod context;
mod dashboard;
pub mod edge;
mod health;
pub mod openapi;
mod operations;
mod signing;
mod storage_api;
pub mod storage_ui;
mod ui;

use crate::startup::AppState;
use auth::{Access, Rule};
use axum::Router;
use axum::http::{HeaderName, Method, Request, StatusCode};
use axum::routing::{MethodRouter, get, post};
use edge::Limits;
use lab::accounts::Permission;
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
    let mut router = Router::new();
    for (route, handler) in route_table() {
        let rule = Rule {
            state: state.clone(),
            access: route.access,
        };
        router = router.route(
            route.path,
            handler.route_layer(axum::middleware::from_fn_with_state(rule, auth::guard)),
        );
    }
    router
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

/// A route and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// Every route, each with its access rule: the router is built from this table, so a
/// route cannot exist without a rule (`web/tests/roles.rs` tries every role on every
/// entry).
pub fn route_table() -> Vec<(RouteRule, MethodRouter<AppState>)> {
    use Access::{LoggedIn, Needs, Public};
    use Permission::{Administer, Operations, QcDecision, Read, SampleWork};
    let r = |method: Method, path: &'static str, access: Access, handler| {
        (
            RouteRule {
                method,
                path,
                access,
            },
            handler,
        )
    };
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    vec![
        // Logging in and one's own account.
        r(GET, "/login", Public, get(account::page)),
        r(POST, "/login", Public, post(account::login)),
        r(POST, "/logout", LoggedIn, post(account::logout)),
        r(GET, "/account", LoggedIn, get(account::account)),
        r(
            POST,
            "/account/password",
            LoggedIn,
            post(account::change_password),
        ),
        r(GET, "/api/me", LoggedIn, get(account::me)),
        // The API's description and its docs page: like everything else, for the logged in.
        r(GET, openapi::SPEC_PATH, LoggedIn, get(openapi::spec)),
        r(GET, openapi::DOCS_PATH, LoggedIn, get(openapi::docs_index)),
        r(GET, "/api/docs/{*file}", LoggedIn, get(openapi::docs_file)),
        // Samples: pages.
        r(GET, "/", Needs(Read), get(dashboard::page)),
        r(GET, "/samples", Needs(Read), get(ui::list)),
        r(POST, "/samples", Needs(SampleWork), post(ui::register)),
        r(GET, "/samples/new", Needs(SampleWork), get(ui::new_form)),
        r(GET, "/samples/{id}", Needs(Read), get(ui::detail)),
        r(
            POST,
            "/samples/{id}/receive",
            Needs(SampleWork),
            post(ui::receive),
        ),
        r(
            POST,
            "/samples/{id}/validate",
            Needs(QcDecision),
            post(ui::validate),
        ),
        r(
            POST,
            "/samples/{id}/reject",
            Needs(QcDecision),
            post(ui::reject),
        ),
        r(
            POST,
            "/samples/{id}/store",
            Needs(SampleWork),
            post(ui::store),
        ),
        r(
            POST,
            "/samples/{id}/move",
            Needs(SampleWork),
            post(ui::move_sample),
        ),
        r(
            POST,
            "/samples/{id}/remove",
            Needs(SampleWork),
            post(ui::remove),
        ),
        r(
            POST,
            "/samples/{id}/check-out",
            Needs(SampleWork),
            post(ui::check_out),
        ),
        r(
            POST,
            "/samples/{id}/return",
            Needs(SampleWork),
            post(ui::return_sample),
        ),
        r(
            POST,
            "/samples/{id}/aliquot",
            Needs(SampleWork),
            post(ui::aliquot),
        ),
        r(
            POST,
            "/samples/{id}/dispose",
            Needs(SampleWork),
            post(ui::dispose),
        ),
        r(
            POST,
            "/samples/{id}/correct-qc",
            Needs(QcDecision),
            post(ui::correct_qc),
        ),
        // Samples: JSON.
        r(GET, "/api/samples", Needs(Read), get(api::list)),
        r(POST, "/api/samples", Needs(SampleWork), post(api::register)),
        r(GET, "/api/samples/{id}", Needs(Read), get(api::get)),
        r(
            GET,
            "/api/samples/{id}/events",
            Needs(Read),
            get(api::events),
        ),
        r(
            POST,
            "/api/samples/{id}/receive",
            Needs(SampleWork),
            post(api::receive),
        ),
        r(
            POST,
            "/api/samples/{id}/validate",
            Needs(QcDecision),
            post(api::validate),
        ),
        r(
            POST,
            "/api/samples/{id}/reject",
            Needs(QcDecision),
            post(api::reject),
        ),
        // Storage: pages.
        r(GET, "/storage", Needs(Read), get(storage_ui::index)),
        r(
            POST,
            "/storage/units",
            Needs(Operations),
            post(storage_ui::create),
        ),
        r(GET, "/storage/{id}", Needs(Read), get(storage_ui::unit)),
        r(
            POST,
            "/storage/{id}/place",
            Needs(SampleWork),
            post(storage_ui::place),
        ),
        r(
            POST,
            "/storage/{id}/temperature",
            Needs(SampleWork),
            post(storage_ui::temperature),
        ),
        r(
            POST,
            "/storage/{id}/rename",
            Needs(Operations),
            post(storage_ui::rename),
        ),
        r(
            POST,
            "/storage/{id}/move",
            Needs(Operations),
            post(storage_ui::relocate),
        ),
        r(
            POST,
            "/storage/{id}/decommission",
            Needs(Operations),
            post(storage_ui::decommission),
        ),
        r(
            POST,
            "/storage/{id}/excursions/{excursion_id}/resolve",
            Needs(Operations),
            post(storage_ui::resolve),
        ),
        r(
            GET,
            "/store",
            Needs(SampleWork),
            get(storage_ui::store_page),
        ),
        r(POST, "/store", Needs(SampleWork), post(storage_ui::store)),
        // Storage: JSON.
        r(
            POST,
            "/api/samples/{id}/store",
            Needs(SampleWork),
            post(storage_api::store),
        ),
        r(
            POST,
            "/api/samples/{id}/move",
            Needs(SampleWork),
            post(storage_api::move_sample),
        ),
        r(
            POST,
            "/api/samples/{id}/remove",
            Needs(SampleWork),
            post(storage_api::remove),
        ),
        r(
            POST,
            "/api/samples/{id}/check-out",
            Needs(SampleWork),
            post(storage_api::check_out),
        ),
        r(
            POST,
            "/api/samples/{id}/return",
            Needs(SampleWork),
            post(storage_api::return_sample),
        ),
        r(
            POST,
            "/api/samples/{id}/aliquot",
            Needs(SampleWork),
            post(storage_api::aliquot),
        ),
        r(
            POST,
            "/api/samples/{id}/dispose",
            Needs(SampleWork),
            post(storage_api::dispose),
        ),
        r(
            POST,
            "/api/samples/{id}/correct-qc",
            Needs(QcDecision),
            post(storage_api::correct_qc),
        ),
        r(
            GET,
            "/api/storage/units",
            Needs(Read),
            get(storage_api::freezers),
        ),
        r(
            POST,
            "/api/storage/units",
            Needs(Operations),
            post(storage_api::create_unit),
        ),
        r(
            GET,
            "/api/storage/units/{id}",
            Needs(Read),
            get(storage_api::unit),
        ),
        r(
            POST,
            "/api/storage/units/{id}/rename",
            Needs(Operations),
            post(storage_api::rename_unit),
        ),
        r(
            POST,
            "/api/storage/units/{id}/move",
            Needs(Operations),
            post(storage_api::move_unit),
        ),
        r(
            POST,
            "/api/storage/units/{id}/decommission",
            Needs(Operations),
            post(storage_api::decommission_unit),
        ),
        r(
            POST,
            "/api/storage/units/{id}/temperature",
            Needs(SampleWork),
            post(storage_api::record_temperature),
        ),
        r(
            POST,
            "/api/storage/units/{id}/excursions/{excursion_id}/resolve",
            Needs(Operations),
            post(storage_api::resolve_excursion),
        ),
        r(
            GET,
            "/api/storage/excursions",
            Needs(Read),
            get(storage_api::open_excursions),
        ),
        r(
            GET,
            "/api/storage/free-position",
            Needs(Read),
            get(storage_api::free_position),
        ),
        r(
            GET,
            "/api/samples/{id}/as-of",
            Needs(Read),
            get(storage_api::sample_as_of),
        ),
        r(
            GET,
            "/api/storage/units/{id}/as-of",
            Needs(Read),
            get(storage_api::unit_as_of),
        ),
        // Operations.
        r(
            GET,
            "/dead-letters",
            Needs(Operations),
            get(operations::page),
        ),
        r(
            POST,
            "/dead-letters/reprocess",
            Needs(Operations),
            post(operations::reprocess_page),
        ),
        r(
            POST,
            "/dead-letters/{id}/reprocess",
            Needs(Operations),
            post(operations::reprocess_page),
        ),
        r(
            GET,
            "/api/dead-letters",
            Needs(Operations),
            get(operations::list_api),
        ),
        r(
            POST,
            "/api/dead-letters/reprocess",
            Needs(Operations),
            post(operations::reprocess_all_api),
        ),
        r(
            POST,
            "/api/dead-letters/{id}/reprocess",
            Needs(Operations),
            post(operations::reprocess_api),
        ),
        r(
            GET,
            "/api/outbox/parked",
            Needs(Operations),
            get(operations::parked_api),
        ),
        r(
            POST,
            "/api/outbox/parked/retry",
            Needs(Operations),
            post(operations::retry_parked_api_all),
        ),
        r(
            POST,
            "/api/outbox/parked/{position}/retry",
            Needs(Operations),
            post(operations::retry_parked_api_one),
        ),
        r(GET, "/metrics", Needs(Read), get(operations::metrics)),
        // Administration.
        r(GET, "/admin/users", Needs(Administer), get(admin::users)),
        r(
            POST,
            "/admin/users",
            Needs(Administer),
            post(admin::create_user),
        ),
        r(
            POST,
            "/admin/users/{id}/role",
            Needs(Administer),
            post(admin::set_role),
        ),
        r(
            POST,
            "/admin/users/{id}/enable",
            Needs(Administer),
            post(admin::enable),
        ),
        r(
            POST,
            "/admin/users/{id}/disable",
            Needs(Administer),
            post(admin::disable),
        ),
        r(
            POST,
            "/admin/users/{id}/password",
            Needs(Administer),
            post(admin::reset_password),
        ),
        r(GET, "/admin/audit", Needs(Administer), get(admin::audit)),
        r(GET, "/admin/tokens", Needs(Administer), get(admin::tokens)),
        r(
            POST,
            "/admin/tokens",
            Needs(Administer),
            post(admin::create_token),
        ),
        r(
            POST,
            "/admin/tokens/{id}/revoke",
            Needs(Administer),
            post(admin::revoke_token),
        ),
        r(
            GET,
            "/api/tokens",
            Needs(Administer),
            get(admin::list_tokens_api),
        ),
        r(
            POST,
            "/api/tokens",
            Needs(Administer),
            post(admin::create_token_api),
        ),
        r(
            POST,
            "/api/tokens/{id}/revoke",
            Needs(Administer),
            post(admin::revoke_token_api),
        ),
        // Open to all: the stylesheet, and health checks for the orchestrator.
        r(GET, "/static/app.css", Public, get(assets::stylesheet)),
        r(GET, "/health/live", Public, get(health::live)),
        r(GET, "/health/ready", Public, get(health::ready)),
        r(GET, "/health/startup", Public, get(health::startup)),
    ]
}

/// Who may use each route: the route table without its handlers.
pub fn access_rules() -> Vec<RouteRule> {
    route_table().into_iter().map(|(rule, _)| rule).collect()
}
