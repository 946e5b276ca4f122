//! The registry's HTTP API, shaped like Confluent's so its clients work unchanged.

use super::store::{RegistryError, RegistryStore, VersionRef};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::net::TcpListener;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

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

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

/// Clients send `application/vnd.schemaregistry.v1+json`, so the body is read as JSON
/// whatever the content type says.
fn schema_body(body: &Bytes) -> Result<String, ApiError> {
    let parsed: SchemaBody = serde_json::from_slice(body).map_err(|e| {
        ApiError(RegistryError::InvalidSchema(format!(
            "request body must be {{\"schema\": \"...\"}}: {e}"
        )))
    })?;
    match parsed.schema_type.as_deref() {
        None | Some("AVRO") => Ok(parsed.schema),
        Some(other) => Err(ApiError(RegistryError::InvalidSchema(format!(
            "only AVRO schemas are supported, not {other}"
        )))),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Flags {
    deleted: bool,
    verbose: bool,
    #[serde(rename = "defaultToGlobal")]
    default_to_global: bool,
}

async fn register(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let schema = schema_body(&body)?;
    let id = store.register(&subject, &schema).await?;
    ok(json!({ "id": id }))
}

async fn lookup(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let schema = schema_body(&body)?;
    ok(serde_json::to_value(store.lookup(&subject, &schema).await?).unwrap_or_default())
}

async fn subjects(State(store): State<RegistryStore>, Query(flags): Query<Flags>) -> ApiResult {
    ok(json!(store.subjects(flags.deleted).await?))
}

async fn versions(State(store): State<RegistryStore>, Path(subject): Path<String>) -> ApiResult {
    ok(json!(store.versions(&subject).await?))
}

async fn delete_subject(
    State(store): State<RegistryStore>,
    Path(subject): Path<String>,
) -> ApiResult {
    ok(json!(store.delete_subject(&subject).await?))
}

async fn version(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let found = store
        .version(&subject, VersionRef::parse(&version)?)
        .await?;
    ok(serde_json::to_value(found).unwrap_or_default())
}

async fn version_schema(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let found = store
        .version(&subject, VersionRef::parse(&version)?)
        .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], found.schema).into_response())
}

/// `?deleted=true` is accepted as Confluent's clients send it, and changes nothing: a
/// soft-deleted subject's schemas are readable by id either way.
async fn schema_by_id(State(store): State<RegistryStore>, Path(id): Path<i32>) -> ApiResult {
    ok(json!({ "schema": store.schema_by_id(id).await? }))
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

async fn compatibility(
    State(store): State<RegistryStore>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> ApiResult {
    let schema = schema_body(&body)?;
    let problems = store
        .test_compatibility(&subject, VersionRef::parse(&version)?, &schema)
        .await?;
    let mut answer = json!({ "is_compatible": problems.is_empty() });
    if flags.verbose {
        answer["messages"] = json!(problems);
    }
    ok(answer)
}

/// The registry's routes over `store`.
pub fn router(store: RegistryStore) -> Router {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility),
        )
        .with_state(store)
}

/// A registry bound to its address.
pub struct RegistryServer {
    listener: TcpListener,
    router: Router,
}

impl RegistryServer {
    pub async fn bind(store: RegistryStore, address: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(address).await?,
            router: router(store),
        })
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
