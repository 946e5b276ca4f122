//! The OpenAPI description of the JSON API, generated from the handlers themselves.
//!
//! Every `/api/...` handler, `/metrics` and the `/health/*` probes carry a
//! `#[utoipa::path]` annotation next to their code; [`ApiDoc`] gathers them, adds the
//! error responses every authenticated call can get, and the bearer security scheme.
//! `GET /api/openapi.json` serves the result and `GET /api/docs` a Swagger UI over it
//! (the Swagger UI files are compiled in: `utoipa-swagger-ui` with `vendored`).
//! Both need a login, like every other page and API call.
//!
//! A test below compares the spec with `route_table()`, so a JSON route without an
//! annotation (or an annotation for a route that does not exist) fails the build's tests.

use super::{account, admin, api, health, operations, storage_api};
use crate::error::AppError;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use lab::FieldError;
use serde::Serialize;
use std::sync::{Arc, LazyLock};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

/// Where the spec is served.
pub const SPEC_PATH: &str = "/api/openapi.json";
/// Where the Swagger UI is served.
pub const DOCS_PATH: &str = "/api/docs";

const DESCRIPTION: &str = "\
The JSON API of TracSeq, the lab sample tracker: the same commands and queries as the \
web pages, for instruments and scripts.

**Authentication.** Send an API token on every request: `Authorization: Bearer tsq_...`. \
An administrator creates tokens (`POST /api/tokens` or the Administration page); each \
token has a role (viewer, technician or lab_manager; administration needs a person) that decides what it may do \
(a 403 otherwise). Browsers that are logged in use the session cookie instead; a browser \
session must also send its CSRF token in the `X-CSRF-Token` header on every POST (the \
token is on every page of the UI).

**Errors** are JSON: `{\"error\": \"what is wrong\", \"fields\": [{\"field\", \"message\"}]}` \
(`fields` only when particular fields are invalid). Bad input is a 4xx and changes \
nothing.

**Commands** answer at once with the sample's new version and a `consistency_token`; \
pass the version as `min_version` to `GET /api/samples/{id}` to read your own write. \
Send an `Idempotency-Key` header to make a retry safe: the same key and request is \
recorded once.";

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorResponse {
    /// What is wrong, in words for a person.
    pub error: String,
    /// The fields that are invalid, each with its message; absent when none is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TracSeq API",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        account::me,
        api::list,
        api::register,
        api::get,
        api::events,
        api::receive,
        api::validate,
        api::reject,
        storage_api::store,
        storage_api::move_sample,
        storage_api::remove,
        storage_api::check_out,
        storage_api::return_sample,
        storage_api::aliquot,
        storage_api::dispose,
        storage_api::correct_qc,
        storage_api::freezers,
        storage_api::create_unit,
        storage_api::unit,
        storage_api::rename_unit,
        storage_api::move_unit,
        storage_api::decommission_unit,
        storage_api::record_temperature,
        storage_api::resolve_excursion,
        storage_api::open_excursions,
        storage_api::free_position,
        storage_api::sample_as_of,
        storage_api::unit_as_of,
        operations::list_api,
        operations::reprocess_all_api,
        operations::reprocess_api,
        operations::parked_api,
        operations::retry_parked_api_all,
        operations::retry_parked_api_one,
        operations::metrics,
        admin::list_tokens_api,
        admin::create_token_api,
        admin::revoke_token_api,
        health::live,
        health::ready,
        health::startup,
    ),
    components(schemas(ErrorResponse, FieldError)),
    modifiers(&Security, &CommonErrors),
    tags(
        (name = "samples", description = "Registering samples and moving them through their lifecycle"),
        (name = "storage", description = "Freezers, racks and boxes; temperatures and excursions"),
        (name = "account", description = "Who the caller is"),
        (name = "tokens", description = "API tokens (administrators)"),
        (name = "operations", description = "Dead letters, the outbox, metrics (operators)"),
        (name = "health", description = "Probes for the orchestrator; no login needed"),
    ),
)]
pub struct ApiDoc;

/// The bearer scheme, required by every operation unless the operation says otherwise
/// (the health probes).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.description = Some(DESCRIPTION.to_owned());
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("tsq_...")
            .description(Some(
                "An API token: `Authorization: Bearer tsq_...`. Browsers use the session \
                 cookie of the login page instead, plus `X-CSRF-Token` on POSTs.",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The refusals any authenticated operation can answer with, whatever its handler does:
/// not logged in (401), role not allowed (403), the body over the limit (413, on POSTs),
/// the database unreachable or the request out of time (503). Handler-specific ones
/// (400, 404, 409, 422, 429) are on the handlers.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(RefOr::Ref(Ref::from_schema_name("Error")))),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = path.starts_with("/health/");
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
            ];
            for (operation, has_body) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                };
                if !public {
                    add(
                        "401",
                        "Not authenticated: no, an unknown, or a revoked token or session",
                    );
                    add(
                        "403",
                        "The caller's role does not allow this (or, for a browser session, the CSRF token is missing or wrong); nothing was changed",
                    );
                    add(
                        "503",
                        "The database is not reachable, or the request ran out of time; nothing was changed (or, after a timeout, look before retrying)",
                    );
                }
                if has_body {
                    add("413", "The request body is over the configured limit");
                }
            }
        }
    }
}

/// The spec, built once.
static SPEC: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
        format!("{{\"error\":\"the OpenAPI document could not be rendered: {e}\"}}")
    })
});

/// `GET /api/openapi.json`
pub async fn spec() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], SPEC.as_str()).into_response()
}

/// The Swagger UI needs scripts, its own stylesheets with inline styles, `data:` images
/// and to fetch the spec; the rest of the application allows none of that (see
/// `edge::CONTENT_SECURITY_POLICY`, which is only set when a handler sets none). So only
/// these responses carry this looser policy, still same-origin only: scripts and
/// stylesheets from this server, no inline scripts, no `eval`, fetches only to here,
/// never framed.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(utoipa_swagger_ui::Config::new([SPEC_PATH]).try_it_out_enabled(true))
});

/// `GET /api/docs`: to the Swagger UI's page, whose own files are relative to it.
pub async fn docs_index() -> Redirect {
    Redirect::to("/api/docs/index.html")
}

/// `GET /api/docs/{*file}`: the Swagger UI's files.
pub async fn docs_file(Path(file): Path<String>) -> Result<Response, AppError> {
    let served = utoipa_swagger_ui::serve(&file, SWAGGER.clone())
        .map_err(|e| AppError::Internal(format!("Swagger UI file {file}: {e}")))?;
    let Some(found) = served else {
        return Err(AppError::NotFound(format!(
            "no documentation file '{file}'"
        )));
    };
    let mut response = (StatusCode::OK, found.bytes.into_owned()).into_response();
    if let Ok(value) = HeaderValue::from_str(&found.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn spec() -> serde_json::Value {
        serde_json::from_str(&SPEC).expect("the spec is JSON")
    }

    /// The operations the router has that the spec must describe: every JSON route
    /// except the spec and the docs themselves, `/metrics` and the health probes.
    fn documented_routes() -> BTreeSet<(String, String)> {
        super::super::access_rules()
            .into_iter()
            .filter(|r| {
                (r.path.starts_with("/api/")
                    || r.path.starts_with("/health/")
                    || r.path == "/metrics")
                    && r.path != SPEC_PATH
                    && !r.path.starts_with(DOCS_PATH)
            })
            .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_owned()))
            .collect()
    }

    fn spec_operations(spec: &serde_json::Value) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    found.insert((method.to_owned(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn every_api_route_is_in_the_spec_and_nothing_else() {
        let routes = documented_routes();
        let documented = spec_operations(&spec());
        let missing: Vec<_> = routes.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routes).collect();
        assert!(
            missing.is_empty(),
            "routes without a #[utoipa::path] in ApiDoc: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "spec operations the router does not have: {extra:?}"
        );
        assert!(routes.len() >= 20, "the route table shrank: {routes:?}");
    }

    #[test]
    fn bearer_is_required_except_on_the_health_probes() {
        let spec = spec();
        assert_eq!(
            spec["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(spec["security"][0]["bearer"], serde_json::json!([]));
        let live = &spec["paths"]["/health/live"]["get"]["security"];
        assert_eq!(live, &serde_json::json!([{}]), "health probes are public");
        let me = &spec["paths"]["/api/me"]["get"];
        assert!(me.get("security").is_none(), "uses the global requirement");
        assert_eq!(
            me["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }
}
