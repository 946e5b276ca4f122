//! The registry's HTTP API, shaped like Confluent's so its clients work unchanged.

use super::store::{Registration, RegistryError, RegistryStore, VersionRef, Visibility};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The media type answers carry unless the client asked for another one it accepts.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the registry answers in, best first (Confluent's list).
const PRODUCES: [&str; 3] = [
    CONTENT_TYPE,
    "application/vnd.schemaregistry+json",
    "application/json",
];

/// Request bodies the registry reads as JSON: Confluent's three types, and octet-stream
/// (and no type at all), which clients send too.
const CONSUMES: [&str; 4] = [
    CONTENT_TYPE,
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

struct ApiError(RegistryError);

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self(error)
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// An error outside Confluent's own codes (406, 415): the HTTP status is the code.
fn http_error(status: StatusCode) -> Response {
    reply(
        status,
        json!({
            "error_code": status.as_u16(),
            "message": format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()),
        }),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.0.code();
        if code == 50001 || code == 50002 {
            tracing::error!(error = %self.0, "schema registry backend failure");
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        reply(
            status,
            json!({ "error_code": code, "message": self.0.to_string() }),
        )
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(body: Value) -> ApiResult {
    Ok(reply(StatusCode::OK, body))
}

/// The media type of an `Accept` entry or `Content-Type`, lower-cased, parameters dropped.
fn media_type(entry: &str) -> String {
    entry
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The media type to answer in for this `Accept` header, or `None` for 406. Each entry is
/// weighed by its `q`; a wildcard (`*`, `*/*`, `application/*`, `*/x`) takes the default.
fn negotiate(accept: Option<&str>) -> Option<&'static str> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(CONTENT_TYPE);
    };
    let mut best: Option<(f32, &'static str)> = None;
    for entry in accept.split(',') {
        let kind = media_type(entry);
        let q = entry
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let (main, _) = kind.split_once('/').unwrap_or((kind.as_str(), "*"));
        let chosen = if let Some(exact) = PRODUCES.iter().find(|p| **p == kind) {
            Some(*exact)
        } else if kind == "*" || main == "*" || kind == "application/*" {
            Some(CONTENT_TYPE)
        } else {
            None
        };
        if let Some(chosen) = chosen
            && best.is_none_or(|(best_q, _)| q > best_q)
        {
            best = Some((q, chosen));
        }
    }
    best.map(|(_, chosen)| chosen)
}

/// Content negotiation as in Confluent's registry: 406 for an `Accept` that allows none of
/// the registry's media types, 415 for a body of a type it does not read, and the answer in
/// the type the client preferred.
async fn content_negotiation(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let Some(answer_type) = negotiate(text(header::ACCEPT)) else {
        return http_error(StatusCode::NOT_ACCEPTABLE);
    };
    if let Some(content_type) = text(header::CONTENT_TYPE)
        && !content_type.trim().is_empty()
        && !CONSUMES.contains(&media_type(content_type).as_str())
    {
        return http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let mut response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    if is_json {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(answer_type));
    }
    response
}

#[derive(Deserialize)]
struct SchemaBody {
    #[serde(default)]
    schema: Option<String>,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
    #[serde(default)]
    id: Option<i32>,
    #[serde(default)]
    version: Option<i32>,
}

/// The schema (and IMPORT mode's id and version) from a request body. Only Avro without
/// references is supported: other schema types and references are refused with 42201.
fn schema_body(body: &Bytes) -> Result<(String, Registration), ApiError> {
    let invalid = |message: String| ApiError(RegistryError::InvalidSchema(message));
    let parsed: SchemaBody = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("request body must be {{\"schema\": \"...\"}}: {e}")))?;
    match parsed.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(invalid(format!(
                "schemaType {other} is not supported: this registry only supports AVRO schemas"
            )));
        }
    }
    if parsed.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(invalid(
            "schema references are not supported by this registry".into(),
        ));
    }
    let schema = parsed
        .schema
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("Empty schema".into()))?;
    Ok((
        schema,
        Registration {
            id: parsed.id.filter(|id| *id > 0),
            version: parsed.version.filter(|v| *v > 0),
        },
    ))
}

/// A boolean query parameter read as Confluent's (Java) registry reads it: `true` in any
/// case is true, anything else false. Confluent's Python client sends `True`/`False`.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Ok(raw.trim().eq_ignore_ascii_case("true"))
}

/// Query parameters the endpoints take (each reads the ones that apply to it).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Flags {
    #[serde(deserialize_with = "lenient_bool")]
    deleted: bool,
    #[serde(rename = "deletedOnly", deserialize_with = "lenient_bool")]
    deleted_only: bool,
    #[serde(deserialize_with = "lenient_bool")]
    permanent: bool,
    #[serde(deserialize_with = "lenient_bool")]
    verbose: bool,
    #[serde(deserialize_with = "lenient_bool")]
    force: bool,
    #[serde(rename = "defaultToGlobal", deserialize_with = "lenient_bool")]
    default_to_global: bool,
    #[serde(rename = "latestOnly", deserialize_with = "lenient_bool")]
    latest_only: bool,
    #[serde(rename = "subjectPrefix")]
    subject_prefix: Option<String>,
    #[serde(deserialize_with = "lenient_bool")]
    normalize: bool,
}

/// With `?normalize=true` the schema is registered and looked up in its normalised form
/// (see [`super::canonical::normalized`]), so spellings of one schema share an id.
fn normalize_if_asked(schema: String, flags: &Flags) -> Result<String, ApiError> {
    if flags.normalize {
        super::canonical::normalized(&schema)
            .map_err(|e| ApiError::from(RegistryError::InvalidSchema(e)))
    } else {
        Ok(schema)
    }
}

impl Flags {
    fn visibility(&self) -> Visibility {
        Visibility::from_flags(self.deleted, self.deleted_only)
    }
}

async fn register(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    let (schema, request) = schema_body(&body)?;
    let schema = normalize_if_asked(schema, &flags)?;
    let id = store.register_with(&subject, &schema, request).await?;
    ok(json!({ "id": id }))
}

async fn lookup(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    // An unknown subject is a 404 whatever the body (Confluent checks it first).
    let (schema, _) = match schema_body(&body) {
        Ok(parsed) => parsed,
        Err(error) => {
            store.versions(&subject, Visibility::All).await?;
            return Err(error);
        }
    };
    let schema = normalize_if_asked(schema, &flags)?;
    let found = store.lookup(&subject, &schema, flags.deleted).await?;
    ok(serde_json::to_value(found).unwrap_or_default())
}

async fn subjects(State(store): State<RegistryStore>, Query(flags): Query<Flags>) -> ApiResult {
    let prefix = flags.subject_prefix.as_deref();
    ok(json!(store.subjects(flags.visibility(), prefix).await?))
}

async fn versions(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    ok(json!(store.versions(&subject, flags.visibility()).await?))
}

async fn delete_subject(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    ok(json!(
        store.delete_subject(&subject, flags.permanent).await?
    ))
}

async fn version(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let found = store
        .version(&subject, VersionRef::parse(&version)?, flags.deleted)
        .await?;
    ok(serde_json::to_value(found).unwrap_or_default())
}

async fn delete_version(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let deleted = store
        .delete_version(&subject, VersionRef::parse(&version)?, flags.permanent)
        .await?;
    ok(json!(deleted))
}

/// The schema text alone, as Confluent's `/schema` endpoints answer.
fn raw(schema: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response()
}

async fn version_schema(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let found = store
        .version(&subject, VersionRef::parse(&version)?, flags.deleted)
        .await?;
    Ok(raw(found.schema))
}

/// Schema references are not supported, so nothing refers to any version; the version
/// must exist all the same.
async fn referenced_by(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    store
        .version(&subject, VersionRef::parse(&version)?, flags.deleted)
        .await?;
    ok(json!([]))
}

/// A schema id from the path; anything but a number names no resource, as in Confluent's
/// registry (404, "HTTP 404 Not Found").
fn schema_id(raw: &str) -> Result<i32, ApiError> {
    raw.parse()
        .map_err(|_| ApiError(RegistryError::NoSuchResource))
}

/// `?deleted=true` is accepted as Confluent's clients send it, and changes nothing: a
/// soft-deleted version's schema is readable by id either way.
async fn schema_by_id(State(store): State<RegistryStore>, Path(id): Path<String>) -> ApiResult {
    ok(json!({ "schema": store.schema_by_id(schema_id(&id)?).await? }))
}

async fn schema_by_id_raw(State(store): State<RegistryStore>, Path(id): Path<String>) -> ApiResult {
    Ok(raw(store.schema_by_id(schema_id(&id)?).await?))
}

async fn schema_versions(
    State(store): State<RegistryStore>,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let versions = store
        .versions_of_schema(schema_id(&id)?, flags.deleted)
        .await?;
    ok(json!(versions))
}

async fn schema_subjects(
    State(store): State<RegistryStore>,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let mut subjects: Vec<String> = store
        .versions_of_schema(schema_id(&id)?, flags.deleted)
        .await?
        .into_iter()
        .map(|v| v.subject)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn schemas(State(store): State<RegistryStore>, Query(flags): Query<Flags>) -> ApiResult {
    let found = store
        .schemas(
            flags.subject_prefix.as_deref(),
            flags.deleted,
            flags.latest_only,
        )
        .await?;
    ok(serde_json::to_value(found).unwrap_or_default())
}

async fn schema_types() -> ApiResult {
    ok(json!(["AVRO"]))
}

async fn get_global_config(State(store): State<RegistryStore>) -> ApiResult {
    ok(json!({ "compatibilityLevel": store.global_level().await?.as_str() }))
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: String,
}

fn config_body(body: &Bytes) -> Result<String, ApiError> {
    serde_json::from_slice::<ConfigBody>(body)
        .map(|b| b.compatibility)
        .map_err(|e| {
            ApiError(RegistryError::InvalidCompatibility(format!(
                "body must be {{\"compatibility\": \"...\"}}: {e}"
            )))
        })
}

async fn put_global_config(State(store): State<RegistryStore>, body: Bytes) -> ApiResult {
    let level = store.set_level(None, &config_body(&body)?).await?;
    ok(json!({ "compatibility": level.as_str() }))
}

async fn delete_global_config(State(store): State<RegistryStore>) -> ApiResult {
    let old = store.delete_level(None).await?;
    ok(json!({ "compatibilityLevel": old.as_str() }))
}

async fn get_subject_config(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let level = store
        .subject_level(&subject, flags.default_to_global)
        .await?;
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_subject_config(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = store
        .set_level(Some(&subject), &config_body(&body)?)
        .await?;
    ok(json!({ "compatibility": level.as_str() }))
}

async fn delete_subject_config(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
) -> ApiResult {
    let removed = store.delete_level(Some(&subject)).await?;
    ok(json!({ "compatibilityLevel": removed.as_str() }))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

fn mode_body(body: &Bytes) -> Result<String, ApiError> {
    serde_json::from_slice::<ModeBody>(body)
        .map(|b| b.mode)
        .map_err(|e| {
            ApiError(RegistryError::InvalidMode(format!(
                "body must be {{\"mode\": \"...\"}}: {e}"
            )))
        })
}

async fn get_global_mode(State(store): State<RegistryStore>) -> ApiResult {
    ok(json!({ "mode": store.mode(None, false).await?.as_str() }))
}

async fn put_global_mode(
    State(store): State<RegistryStore>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    let mode = store
        .set_mode(None, &mode_body(&body)?, flags.force)
        .await?;
    ok(json!({ "mode": mode.as_str() }))
}

async fn get_subject_mode(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> ApiResult {
    let mode = store.mode(Some(&subject), flags.default_to_global).await?;
    ok(json!({ "mode": mode.as_str() }))
}

async fn put_subject_mode(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    let mode = store
        .set_mode(Some(&subject), &mode_body(&body)?, flags.force)
        .await?;
    ok(json!({ "mode": mode.as_str() }))
}

async fn delete_subject_mode(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
) -> ApiResult {
    ok(json!({ "mode": store.delete_mode(&subject).await?.as_str() }))
}

async fn check_compatibility(
    store: &RegistryStore,
    subject: &str,
    version: Option<VersionRef>,
    flags: &Flags,
    body: &Bytes,
) -> ApiResult {
    let (schema, _) = schema_body(body)?;
    let problems = store.test_compatibility(subject, version, &schema).await?;
    let mut answer = json!({ "is_compatible": problems.is_empty() });
    if flags.verbose {
        answer["messages"] = json!(problems);
    }
    ok(answer)
}

async fn compatibility_with_version(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    let version = VersionRef::parse(&version)?;
    check_compatibility(&store, &subject, Some(version), &flags, &body).await
}

async fn compatibility_with_all(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    check_compatibility(&store, &subject, None, &flags, &body).await
}

/// Routes that match nothing answer in Confluent's error shape.
async fn not_found() -> Response {
    ApiError(RegistryError::NoSuchResource).into_response()
}

/// The secret that requests changing the registry must present as
/// `Authorization: Bearer <token>`. Never printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct RegistryToken(String);

impl RegistryToken {
    /// A token from configuration; blank means none (the registry stays open).
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into().trim().to_owned();
        (!token.is_empty()).then_some(Self(token))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on how much of
    /// it matches (only on its length), so the token cannot be guessed byte by byte.
    fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryToken(<hidden>)")
    }
}

/// 401 in Confluent's error shape (its code for missing or bad credentials is 40101).
fn unauthorized(message: &str) -> Response {
    let mut response = reply(
        StatusCode::UNAUTHORIZED,
        json!({ "error_code": 40101, "message": message }),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"schema-registry\""),
    );
    response
}

/// Lets a request through only with `Authorization: Bearer <token>`.
async fn require_token(
    State(token): State<RegistryToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let refusal = match presented {
        None => "this request changes the registry and needs Authorization: Bearer <token>",
        Some(presented) if !token.matches(presented) => "the bearer token is not valid",
        Some(_) => return next.run(request).await,
    };
    tracing::warn!(method = %request.method(), path = %request.uri().path(), refusal, "schema registry request refused");
    unauthorized(refusal)
}

/// The registry's routes over `store`, open to every client.
pub fn router(store: RegistryStore) -> Router {
    router_with_token(store, None)
}

/// The registry's routes over `store`. With a `token`, the requests that change what the
/// registry holds (registering a schema, setting or deleting a compatibility level or a
/// mode, deleting a version or subject) need it; reads, look-ups of a schema (`POST
/// /subjects/{subject}`) and compatibility checks stay open.
pub fn router_with_token(store: RegistryStore, token: Option<RegistryToken>) -> Router {
    let guarded = |route: MethodRouter<RegistryStore>| match &token {
        None => route,
        Some(token) => {
            route.route_layer(middleware::from_fn_with_state(token.clone(), require_token))
        }
    };
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/subjects", get(subjects))
        .route(
            "/subjects/{subject}",
            post(lookup).merge(guarded(delete(delete_subject))),
        )
        .route(
            "/subjects/{subject}/versions",
            get(versions).merge(guarded(post(register))),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).merge(guarded(delete(delete_version))),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(schemas))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_by_id_raw))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route(
            "/config",
            get(get_global_config)
                .merge(guarded(put(put_global_config).delete(delete_global_config))),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config).merge(guarded(
                put(put_subject_config).delete(delete_subject_config),
            )),
        )
        .route(
            "/mode",
            get(get_global_mode).merge(guarded(put(put_global_mode))),
        )
        .route(
            "/mode/{subject}",
            get(get_subject_mode).merge(guarded(put(put_subject_mode).delete(delete_subject_mode))),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(content_negotiation))
        .with_state(store)
}

/// A registry bound to its address.
pub struct RegistryServer {
    listener: TcpListener,
    router: Router,
    store: RegistryStore,
}

impl RegistryServer {
    /// Binds, after bringing stored schema identities up to date (see
    /// [`RegistryStore::upgrade_identities`]).
    pub async fn bind(store: RegistryStore, address: SocketAddr) -> std::io::Result<Self> {
        let upgraded = store
            .upgrade_identities()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if upgraded > 0 {
            tracing::info!(upgraded, "schema identities recomputed as full text");
        }
        Ok(Self {
            listener: TcpListener::bind(address).await?,
            router: router(store.clone()),
            store,
        })
    }

    /// Requires `token` (when there is one) on the requests that change the registry;
    /// see [`router_with_token`].
    #[must_use]
    pub fn require_token(mut self, token: Option<RegistryToken>) -> Self {
        self.router = router_with_token(self.store.clone(), token);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_are_negotiated_like_confluents() {
        assert_eq!(negotiate(None), Some(CONTENT_TYPE));
        assert_eq!(negotiate(Some("*/*")), Some(CONTENT_TYPE));
        assert_eq!(negotiate(Some("application/*")), Some(CONTENT_TYPE));
        assert_eq!(
            negotiate(Some("application/json")),
            Some("application/json")
        );
        assert_eq!(
            negotiate(Some(
                "application/vnd.schemaregistry.v2+json; q=0.1, application/vnd.schemaregistry+json; q=0.9"
            )),
            Some("application/vnd.schemaregistry+json")
        );
        assert_eq!(negotiate(Some("text/html, image/gif")), None);
        assert_eq!(negotiate(Some("text/*")), None);
        assert_eq!(negotiate(Some("application/octet-stream")), None);
    }
}
