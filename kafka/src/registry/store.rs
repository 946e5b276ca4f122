//! The registry's state in PostgreSQL: schemas with global ids, subject versions (live or
//! soft-deleted), compatibility levels and modes.
//!
//! A schema's identity (what makes two registrations "the same schema") is computed in one
//! place, [`identity`], and stored in `schema_registry_schemas.canonical`; every lookup
//! compares identities, never schema texts.

use super::compatibility::{self, Compatibility};
use apache_avro::Schema;
use serde::Serialize;
use sqlx::PgPool;
use std::fmt;
use std::str::FromStr;

/// Errors with Confluent's error codes, which clients act on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {} not found", .0.map_or_else(String::new, |id| id.to_string()))]
    SchemaNotFound(Option<i32>),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i32),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]; compatibility: '{level}'",
        .details.join("; ")
    )]
    Incompatible {
        subject: String,
        level: Compatibility,
        details: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("Invalid compatibility level: {0}")]
    InvalidCompatibility(String),
    #[error(
        "Invalid mode: {0}. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"
    )]
    InvalidMode(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("{0}")]
    IdDoesNotMatch(String),
    #[error("The specified subject '{0}' is not a valid.")]
    InvalidSubject(String),
    /// A path that names no resource (a schema id that is not a number, say).
    #[error("HTTP 404 Not Found")]
    NoSuchResource,
    #[error("Error in the backend data store: {0}")]
    Backend(#[from] sqlx::Error),
}

impl RegistryError {
    /// Confluent's `error_code` and the HTTP status it goes with.
    pub fn code(&self) -> (u16, u32) {
        match self {
            Self::SubjectNotFound(_) => (404, 40401),
            Self::VersionNotFound(_) => (404, 40402),
            Self::SchemaNotFound(_) => (404, 40403),
            Self::SubjectSoftDeleted(_) => (404, 40404),
            Self::SubjectNotSoftDeleted(_) => (404, 40405),
            Self::VersionSoftDeleted(..) => (404, 40406),
            Self::VersionNotSoftDeleted(..) => (404, 40407),
            Self::SubjectConfigNotFound(_) => (404, 40408),
            Self::SubjectModeNotFound(_) => (404, 40409),
            // Confluent's current code for an incompatible schema (older releases sent 409).
            Self::Incompatible { .. } => (409, 40901),
            Self::InvalidSchema(_) => (422, 42201),
            Self::InvalidVersion(_) => (422, 42202),
            Self::InvalidCompatibility(_) => (422, 42203),
            Self::InvalidMode(_) => (422, 42204),
            Self::OperationNotPermitted(_) => (422, 42205),
            Self::IdDoesNotMatch(_) => (422, 42207),
            Self::InvalidSubject(_) => (422, 42208),
            Self::NoSuchResource => (404, 404),
            // An unreachable database passes: 503 tells clients to try again.
            Self::Backend(e) if event_sourcing::is_transient_database_error(e) => (503, 50002),
            Self::Backend(_) => (500, 50001),
        }
    }
}

/// A version of a subject, as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub id: i32,
    pub version: i32,
    pub schema: String,
    /// Only sent (as `true`) for a soft-deleted version asked for with `?deleted=true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A subject and version that use a schema id (`GET /schemas/ids/{id}/versions`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct VersionOfSchema {
    pub subject: String,
    pub version: i32,
}

/// `latest` or a number.
#[derive(Debug, Clone, Copy)]
pub enum VersionRef {
    Latest,
    Number(i32),
}

impl VersionRef {
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        if raw == "latest" || raw == "-1" {
            return Ok(Self::Latest);
        }
        match raw.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(Self::Number(n)),
            _ => Err(RegistryError::InvalidVersion(raw.to_owned())),
        }
    }

    fn number(self) -> Option<i32> {
        match self {
            Self::Latest => None,
            Self::Number(n) => Some(n),
        }
    }

    fn describe(self) -> String {
        self.number()
            .map_or_else(|| "latest".into(), |n| n.to_string())
    }
}

/// The largest id or version IMPORT mode accepts, leaving room to count up after it.
const MAX_IMPORTED: i32 = i32::MAX / 2;

/// Which versions a read sees: Confluent's `?deleted=true` and `?deletedOnly=true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Live versions only (the default).
    #[default]
    Live,
    /// Live and soft-deleted versions.
    All,
    /// Soft-deleted versions only.
    DeletedOnly,
}

impl Visibility {
    pub fn from_flags(deleted: bool, deleted_only: bool) -> Self {
        match (deleted, deleted_only) {
            (_, true) => Self::DeletedOnly,
            (true, false) => Self::All,
            (false, false) => Self::Live,
        }
    }

    /// SQL condition on a `deleted` column; `$n` binds are avoided so it composes.
    fn condition(self, column: &str) -> String {
        match self {
            Self::Live => format!("NOT {column}"),
            Self::All => "true".into(),
            Self::DeletedOnly => column.to_owned(),
        }
    }
}

/// The registry's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    /// A global READONLY that subjects' own modes cannot override.
    ReadOnlyOverride,
    /// Registrations may carry their own id and version; no compatibility check.
    Import,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "READWRITE",
            Self::ReadOnly => "READONLY",
            Self::ReadOnlyOverride => "READONLY_OVERRIDE",
            Self::Import => "IMPORT",
        }
    }

    const fn writable(self) -> bool {
        matches!(self, Self::ReadWrite | Self::Import)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "READWRITE" => Self::ReadWrite,
            "READONLY" => Self::ReadOnly,
            "READONLY_OVERRIDE" => Self::ReadOnlyOverride,
            "IMPORT" => Self::Import,
            _ => return Err(RegistryError::InvalidMode(s.to_owned())),
        })
    }
}

/// A registration request beyond the schema text: an explicit id and version, which only
/// IMPORT mode accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registration {
    pub id: Option<i32>,
    pub version: Option<i32>,
}

fn parse_schema(text: &str) -> Result<Schema, RegistryError> {
    if text.trim().is_empty() {
        return Err(RegistryError::InvalidSchema("Empty schema".into()));
    }
    Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

/// What makes two registered schemas the same schema: the full text without whitespace
/// (see [`super::canonical::identity`]); defaults, doc, aliases, logical types and custom
/// properties count, as in Confluent's registry.
/// The caller has parsed the text as a schema first (an invalid schema has no identity).
fn identity(schema_text: &str) -> Result<String, RegistryError> {
    super::canonical::identity(schema_text).map_err(RegistryError::InvalidSchema)
}

/// Subject names must not contain control characters (Confluent refuses them with 42208).
fn validate_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSubject(subject.to_owned()));
    }
    Ok(())
}

type Conn = sqlx::PgConnection;

#[derive(Clone)]
pub struct RegistryStore {
    pool: PgPool,
}

impl RegistryStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// One writer per subject at a time, so versions stay gap-free and deletes see a
    /// settled subject.
    async fn lock_subject(conn: &mut Conn, subject: &str) -> Result<(), RegistryError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('schema-registry:' || $1))")
            .bind(subject)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Recomputes the identity of schemas stored before the identity became the full
    /// text (`identity_form` 1), from their stored text; idempotent, and cheap once done.
    pub async fn upgrade_identities(&self) -> Result<u64, RegistryError> {
        let old: Vec<(i32, String)> = sqlx::query_as(
            "SELECT id, schema FROM schema_registry_schemas WHERE identity_form < 2 ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut upgraded = 0;
        for (id, text) in old {
            let identity = match parse_schema(&text).and_then(|_| identity(&text)) {
                Ok(identity) => identity,
                Err(error) => {
                    // Stays readable by id; only finding it again by its text is lost.
                    tracing::warn!(id, %error, "a stored schema no longer parses; its identity is left as it was");
                    continue;
                }
            };
            // If a newer registry already stored the same schema under the new identity
            // (while an older one still ran), this row is marked superseded, an identity
            // no schema text can have: both ids stay readable by id, and look-ups by text
            // find the newer row. (Keeping the old canonical form could let a later
            // schema with that text take this row's id.)
            upgraded += sqlx::query(
                "UPDATE schema_registry_schemas SET identity_form = 2, \
                 canonical = CASE WHEN EXISTS (SELECT 1 FROM schema_registry_schemas o \
                                               WHERE o.canonical = $2 AND o.id <> $1) \
                             THEN 'superseded:' || id ELSE $2 END \
                 WHERE id = $1 AND identity_form < 2",
            )
            .bind(id)
            .bind(identity)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(upgraded)
    }

    /// Registers `schema` under `subject` (or finds it there already) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<i32, RegistryError> {
        self.register_with(subject, schema, Registration::default())
            .await
    }

    /// [`Self::register`], with the explicit id and version IMPORT mode allows.
    pub async fn register_with(
        &self,
        subject: &str,
        schema: &str,
        request: Registration,
    ) -> Result<i32, RegistryError> {
        validate_subject(subject)?;
        let parsed = parse_schema(schema)?;
        let identity = identity(schema)?;
        let mut tx = self.pool.begin().await?;
        Self::lock_subject(&mut tx, subject).await?;
        let mode = Self::effective_mode(&mut tx, subject).await?;
        if !mode.writable() {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let importing = mode == Mode::Import;
        if !importing && (request.id.is_some() || request.version.is_some()) {
            return Err(RegistryError::OperationNotPermitted(format!(
                "an id or version may only be given in IMPORT mode; subject {subject} is in {mode} mode"
            )));
        }
        // Ids and versions count up from the largest one: an imported one near the top of
        // the range would leave no room for the next registration.
        if request
            .id
            .is_some_and(|id| !(1..=MAX_IMPORTED).contains(&id))
            || request
                .version
                .is_some_and(|v| !(1..=MAX_IMPORTED).contains(&v))
        {
            return Err(RegistryError::OperationNotPermitted(format!(
                "an imported id or version must be between 1 and {MAX_IMPORTED}"
            )));
        }
        let existing: Option<i32> = sqlx::query_scalar(
            "SELECT s.id FROM schema_registry_versions v JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND NOT v.deleted AND s.canonical = $2 \
             AND ($3::int IS NULL OR s.id = $3) AND ($4::int IS NULL OR v.version = $4)",
        )
        .bind(subject)
        .bind(&identity)
        .bind(request.id)
        .bind(request.version)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        if !importing {
            let level = Self::effective_level(&mut tx, subject).await?;
            let history = Self::history(&mut tx, subject).await?;
            let details = compatibility::check(level, &parsed, &history);
            if !details.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    level,
                    details,
                });
            }
        }
        let id = match request.id {
            Some(id) => Self::import_schema(&mut tx, id, &identity, schema).await?,
            None => Self::store_schema(&mut tx, &identity, schema).await?,
        };
        match request.version {
            Some(version) => {
                let taken: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM schema_registry_versions WHERE subject = $1 AND version = $2)",
                )
                .bind(subject)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
                if taken {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Subject {subject} already has a version {version} with another schema"
                    )));
                }
                sqlx::query(
                    "INSERT INTO schema_registry_versions (subject, version, schema_id) VALUES ($1, $2, $3)",
                )
                .bind(subject)
                .bind(version)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                // Versions continue after soft- and permanently-deleted ones that remain.
                sqlx::query(
                    "INSERT INTO schema_registry_versions (subject, version, schema_id) \
                     SELECT $1, COALESCE(max(version), 0) + 1, $2 FROM schema_registry_versions WHERE subject = $1",
                )
                .bind(subject)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The id of the schema with this identity, stored now if it is new. A schema keeps its
    /// id for good, even after every version using it was permanently deleted, so
    /// registering it again gives the same id.
    async fn store_schema(
        conn: &mut Conn,
        identity: &str,
        schema: &str,
    ) -> Result<i32, RegistryError> {
        // DO UPDATE (a no-op write) rather than DO NOTHING: a registration racing another
        // one of the same new schema under another subject waits for it and then gets its
        // row back, where a SELECT in the same statement would not see it (its snapshot
        // predates the other's commit).
        Ok(sqlx::query_scalar(
            "INSERT INTO schema_registry_schemas (canonical, schema, identity_form) VALUES ($1, $2, 2) \
             ON CONFLICT (canonical) DO UPDATE SET canonical = EXCLUDED.canonical RETURNING id",
        )
        .bind(identity)
        .bind(schema)
        .fetch_one(&mut *conn)
        .await?)
    }

    /// IMPORT mode: the schema gets the id it had in the registry it is copied from.
    async fn import_schema(
        conn: &mut Conn,
        id: i32,
        identity: &str,
        schema: &str,
    ) -> Result<i32, RegistryError> {
        let by_id: Option<String> =
            sqlx::query_scalar("SELECT canonical FROM schema_registry_schemas WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let by_identity: Option<i32> =
            sqlx::query_scalar("SELECT id FROM schema_registry_schemas WHERE canonical = $1")
                .bind(identity)
                .fetch_optional(&mut *conn)
                .await?;
        match (by_id, by_identity) {
            (Some(existing), _) if existing == identity => Ok(id),
            (Some(_), _) => Err(RegistryError::IdDoesNotMatch(format!(
                "Schema id {id} is already used by a different schema"
            ))),
            (None, Some(other)) => Err(RegistryError::IdDoesNotMatch(format!(
                "The schema is already registered with id {other}, not {id}"
            ))),
            (None, None) => {
                sqlx::query(
                    "INSERT INTO schema_registry_schemas (id, canonical, schema, identity_form) \
                     VALUES ($1, $2, $3, 2)",
                )
                .bind(id)
                .bind(identity)
                .bind(schema)
                .execute(&mut *conn)
                .await?;
                // Ids assigned later continue after the imported ones.
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('schema_registry_schemas', 'id'), \
                     GREATEST((SELECT max(id) FROM schema_registry_schemas), 1))",
                )
                .execute(&mut *conn)
                .await?;
                Ok(id)
            }
        }
    }

    /// The live versions of a subject, oldest first, parsed.
    async fn history(conn: &mut Conn, subject: &str) -> Result<Vec<(i32, Schema)>, RegistryError> {
        let rows: Vec<(i32, String)> = sqlx::query_as(
            "SELECT v.version, s.schema FROM schema_registry_versions v \
             JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND NOT v.deleted ORDER BY v.version",
        )
        .bind(subject)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(v, text)| Ok((v, parse_schema(&text)?)))
            .collect()
    }

    async fn effective_level(
        conn: &mut Conn,
        subject: &str,
    ) -> Result<Compatibility, RegistryError> {
        let level: Option<String> = sqlx::query_scalar(
            "SELECT compatibility FROM schema_registry_config WHERE subject IN ($1, '') \
             ORDER BY subject DESC LIMIT 1",
        )
        .bind(subject)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(level
            .and_then(|l| l.parse().ok())
            .unwrap_or(Compatibility::Backward))
    }

    /// How many versions the subject has: (live, soft-deleted).
    async fn counts(conn: &mut Conn, subject: &str) -> Result<(i64, i64), RegistryError> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted) \
             FROM schema_registry_versions WHERE subject = $1",
        )
        .bind(subject)
        .fetch_one(&mut *conn)
        .await?)
    }

    /// Fails with 40401 unless the subject has a version `visibility` lets through.
    async fn require_subject(
        &self,
        subject: &str,
        visibility: Visibility,
    ) -> Result<(), RegistryError> {
        let mut conn = self.pool.acquire().await?;
        let (live, deleted) = Self::counts(&mut conn, subject).await?;
        let visible = match visibility {
            Visibility::Live => live,
            Visibility::All => live + deleted,
            Visibility::DeletedOnly => deleted,
        };
        if visible > 0 {
            Ok(())
        } else {
            Err(RegistryError::SubjectNotFound(subject.to_owned()))
        }
    }

    /// Finds `schema` among the subject's versions (soft-deleted ones too with
    /// `include_deleted`); the newest matching version wins.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let visibility = if include_deleted {
            Visibility::All
        } else {
            Visibility::Live
        };
        self.require_subject(subject, visibility).await?;
        parse_schema(schema)?;
        let identity = identity(schema)?;
        let row: Option<(i32, i32, String, bool)> = sqlx::query_as(&format!(
            "SELECT s.id, v.version, s.schema, v.deleted FROM schema_registry_versions v \
             JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND {} AND s.canonical = $2 ORDER BY v.version DESC LIMIT 1",
            visibility.condition("v.deleted")
        ))
        .bind(subject)
        .bind(&identity)
        .fetch_optional(&self.pool)
        .await?;
        let (id, version, schema, deleted) = row.ok_or(RegistryError::SchemaNotFound(None))?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            id,
            version,
            schema,
            deleted,
        })
    }

    /// Subjects, by name. `Live`: those with a live version; `All`: also those whose every
    /// version is soft-deleted; `DeletedOnly`: only those.
    pub async fn subjects(
        &self,
        visibility: Visibility,
        prefix: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let having = match visibility {
            Visibility::Live => "bool_or(NOT deleted)",
            Visibility::All => "true",
            Visibility::DeletedOnly => "NOT bool_or(NOT deleted)",
        };
        Ok(sqlx::query_scalar(&format!(
            "SELECT subject FROM schema_registry_versions \
             WHERE starts_with(subject, COALESCE($1, '')) \
             GROUP BY subject HAVING {having} ORDER BY subject"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn versions(
        &self,
        subject: &str,
        visibility: Visibility,
    ) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = sqlx::query_scalar(&format!(
            "SELECT version FROM schema_registry_versions WHERE subject = $1 AND {} ORDER BY version",
            visibility.condition("deleted")
        ))
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        // `deletedOnly` on a subject that exists with no deleted version is an empty list
        // (Confluent), not "no such subject".
        if versions.is_empty() && visibility == Visibility::DeletedOnly {
            self.require_subject(subject, Visibility::Live).await?;
            return Ok(versions);
        }
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    /// One version of a subject; `latest` is the newest version the visibility lets through.
    pub async fn version(
        &self,
        subject: &str,
        version: VersionRef,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let visibility = if include_deleted {
            Visibility::All
        } else {
            Visibility::Live
        };
        self.require_subject(subject, visibility).await?;
        let row: Option<(i32, i32, String, bool)> = sqlx::query_as(&format!(
            "SELECT s.id, v.version, s.schema, v.deleted FROM schema_registry_versions v \
             JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND {} AND ($2::int IS NULL OR v.version = $2) \
             ORDER BY v.version DESC LIMIT 1",
            visibility.condition("v.deleted")
        ))
        .bind(subject)
        .bind(version.number())
        .fetch_optional(&self.pool)
        .await?;
        let (id, version, schema, deleted) =
            row.ok_or_else(|| RegistryError::VersionNotFound(version.describe()))?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            id,
            version,
            schema,
            deleted,
        })
    }

    /// Every schema version, by subject and version (`GET /schemas`).
    pub async fn schemas(
        &self,
        prefix: Option<&str>,
        include_deleted: bool,
        latest_only: bool,
    ) -> Result<Vec<SubjectVersion>, RegistryError> {
        let visibility = if include_deleted {
            Visibility::All
        } else {
            Visibility::Live
        };
        let rows: Vec<(String, i32, i32, String, bool)> = sqlx::query_as(&format!(
            "SELECT subject, id, version, schema, deleted FROM ( \
               SELECT v.subject, s.id, v.version, s.schema, v.deleted, \
                      row_number() OVER (PARTITION BY v.subject ORDER BY v.version DESC) AS newest \
               FROM schema_registry_versions v JOIN schema_registry_schemas s ON s.id = v.schema_id \
               WHERE starts_with(v.subject, COALESCE($1, '')) AND {}) versions \
             WHERE NOT $2 OR newest = 1 ORDER BY subject, version",
            visibility.condition("v.deleted")
        ))
        .bind(prefix)
        .bind(latest_only)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(subject, id, version, schema, deleted)| SubjectVersion {
                subject,
                id,
                version,
                schema,
                deleted,
            })
            .collect())
    }

    /// The schema with this id.
    ///
    /// Confluent answers `GET /schemas/ids/{id}` for soft-deleted versions' schemas too: an
    /// id travels in every message written with it, and a consumer reading an old message
    /// must still be able to decode it after the subject or version was deleted. Only when
    /// no version at all (live or soft-deleted) refers to the schema any more, that is after
    /// permanent deletes, does the id answer 40403. The row itself stays, so registering
    /// the same schema again gives back the same id.
    pub async fn schema_by_id(&self, id: i32) -> Result<String, RegistryError> {
        sqlx::query_scalar(
            "SELECT schema FROM schema_registry_schemas s WHERE id = $1 \
             AND EXISTS (SELECT 1 FROM schema_registry_versions v WHERE v.schema_id = s.id)",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(RegistryError::SchemaNotFound(Some(id)))
    }

    /// The subject versions that use a schema id (40403 when the id answers nothing).
    pub async fn versions_of_schema(
        &self,
        id: i32,
        include_deleted: bool,
    ) -> Result<Vec<VersionOfSchema>, RegistryError> {
        self.schema_by_id(id).await?;
        let visibility = if include_deleted {
            Visibility::All
        } else {
            Visibility::Live
        };
        Ok(sqlx::query_as(&format!(
            "SELECT subject, version FROM schema_registry_versions WHERE schema_id = $1 AND {} \
             ORDER BY subject, version",
            visibility.condition("deleted")
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Soft-deletes (or, once soft-deleted, permanently deletes) one version; returns its
    /// number. A soft-deleted version's schema stays readable by id (see
    /// [`Self::schema_by_id`]).
    pub async fn delete_version(
        &self,
        subject: &str,
        version: VersionRef,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let mut tx = self.pool.begin().await?;
        Self::lock_subject(&mut tx, subject).await?;
        Self::require_writable(&mut tx, subject).await?;
        let (live, deleted) = Self::counts(&mut tx, subject).await?;
        if live + deleted == 0 || (!permanent && live == 0) {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        // `latest` is the newest live version for a soft delete, the newest of all for a
        // permanent one (the live ones are then refused below).
        let row: Option<(i32, bool)> = sqlx::query_as(
            "SELECT version, deleted FROM schema_registry_versions \
             WHERE subject = $1 AND ($2::int IS NULL OR version = $2) AND ($3 OR $2::int IS NOT NULL OR NOT deleted) \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(subject)
        .bind(version.number())
        .bind(permanent)
        .fetch_optional(&mut *tx)
        .await?;
        let (number, was_deleted) =
            row.ok_or_else(|| RegistryError::VersionNotFound(version.describe()))?;
        match (permanent, was_deleted) {
            (false, true) => {
                return Err(RegistryError::VersionSoftDeleted(
                    subject.to_owned(),
                    number,
                ));
            }
            (true, false) => {
                return Err(RegistryError::VersionNotSoftDeleted(
                    subject.to_owned(),
                    number,
                ));
            }
            (false, false) => {
                sqlx::query(
                    "UPDATE schema_registry_versions SET deleted = true WHERE subject = $1 AND version = $2",
                )
                .bind(subject)
                .bind(number)
                .execute(&mut *tx)
                .await?;
            }
            (true, true) => {
                sqlx::query(
                    "DELETE FROM schema_registry_versions WHERE subject = $1 AND version = $2",
                )
                .bind(subject)
                .bind(number)
                .execute(&mut *tx)
                .await?;
                if live + deleted == 1 {
                    Self::forget_subject_settings(&mut tx, subject).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(number)
    }

    /// Soft-deletes every version of a subject, or permanently deletes a subject that was
    /// soft-deleted first; returns the versions deleted. A soft-deleted subject disappears
    /// from listings and lookups, but its schemas stay readable by id (see
    /// [`Self::schema_by_id`]).
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let mut tx = self.pool.begin().await?;
        Self::lock_subject(&mut tx, subject).await?;
        Self::require_writable(&mut tx, subject).await?;
        let (live, deleted) = Self::counts(&mut tx, subject).await?;
        if live + deleted == 0 {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let versions: Vec<i32> = if permanent {
            if live > 0 {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            sqlx::query_scalar(
                "WITH gone AS (DELETE FROM schema_registry_versions WHERE subject = $1 RETURNING version) \
                 SELECT version FROM gone ORDER BY version",
            )
            .bind(subject)
            .fetch_all(&mut *tx)
            .await?
        } else {
            if live == 0 {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
            }
            sqlx::query_scalar(
                "WITH gone AS (UPDATE schema_registry_versions SET deleted = true \
                               WHERE subject = $1 AND NOT deleted RETURNING version) \
                 SELECT version FROM gone ORDER BY version",
            )
            .bind(subject)
            .fetch_all(&mut *tx)
            .await?
        };
        if permanent {
            Self::forget_subject_settings(&mut tx, subject).await?;
        }
        tx.commit().await?;
        Ok(versions)
    }

    /// As in Confluent (since 2025), a subject that is permanently gone — no version left,
    /// live or soft-deleted — loses its own compatibility level and mode; a soft-deleted
    /// subject keeps them for when it is registered again.
    async fn forget_subject_settings(conn: &mut Conn, subject: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM schema_registry_config WHERE subject = $1")
            .bind(subject)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM schema_registry_modes WHERE subject = $1")
            .bind(subject)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn global_level(&self) -> Result<Compatibility, RegistryError> {
        let mut conn = self.pool.acquire().await?;
        Self::effective_level(&mut conn, "").await
    }

    /// The subject's own level, or the global one when `default_to_global`.
    pub async fn subject_level(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<Compatibility, RegistryError> {
        let own: Option<String> = sqlx::query_scalar(
            "SELECT compatibility FROM schema_registry_config WHERE subject = $1",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        match own.and_then(|l| l.parse().ok()) {
            Some(level) => Ok(level),
            None if default_to_global => self.global_level().await,
            None => Err(RegistryError::SubjectConfigNotFound(subject.to_owned())),
        }
    }

    /// Sets the level of a subject, or the global level for `None`.
    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<Compatibility, RegistryError> {
        if let Some(subject) = subject {
            validate_subject(subject)?;
        }
        let parsed: Compatibility = level
            .parse()
            .map_err(|_| RegistryError::InvalidCompatibility(level.to_owned()))?;
        sqlx::query(
            "INSERT INTO schema_registry_config (subject, compatibility) VALUES ($1, $2) \
             ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
        )
        .bind(subject.unwrap_or(""))
        .bind(parsed.as_str())
        .execute(&self.pool)
        .await?;
        Ok(parsed)
    }

    /// Removes a subject's own level and returns it (40408 when it had none); for `None`,
    /// puts the global level back to the default, BACKWARD, and returns the one it had.
    pub async fn delete_level(
        &self,
        subject: Option<&str>,
    ) -> Result<Compatibility, RegistryError> {
        let Some(subject) = subject else {
            let old = self.global_level().await?;
            self.set_level(None, Compatibility::Backward.as_str())
                .await?;
            return Ok(old);
        };
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM schema_registry_config WHERE subject = $1 RETURNING compatibility",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        removed
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| RegistryError::SubjectConfigNotFound(subject.to_owned()))
    }

    async fn own_mode(conn: &mut Conn, subject: &str) -> Result<Option<Mode>, RegistryError> {
        let mode: Option<String> =
            sqlx::query_scalar("SELECT mode FROM schema_registry_modes WHERE subject = $1")
                .bind(subject)
                .fetch_optional(&mut *conn)
                .await?;
        mode.map(|m| m.parse()).transpose()
    }

    async fn global_mode_in(conn: &mut Conn) -> Result<Mode, RegistryError> {
        Ok(Self::own_mode(conn, "").await?.unwrap_or(Mode::ReadWrite))
    }

    /// The mode that applies to a subject: a global READONLY_OVERRIDE, else the subject's
    /// own mode, else the global one.
    async fn effective_mode(conn: &mut Conn, subject: &str) -> Result<Mode, RegistryError> {
        let global = Self::global_mode_in(conn).await?;
        if global == Mode::ReadOnlyOverride {
            return Ok(global);
        }
        Ok(Self::own_mode(conn, subject).await?.unwrap_or(global))
    }

    async fn require_writable(conn: &mut Conn, subject: &str) -> Result<(), RegistryError> {
        let mode = Self::effective_mode(conn, subject).await?;
        if mode.writable() {
            Ok(())
        } else {
            Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )))
        }
    }

    /// The global mode, or a subject's: its own (40409 when it has none), or the one that
    /// applies to it when `default_to_global`.
    pub async fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let mut conn = self.pool.acquire().await?;
        let Some(subject) = subject else {
            return Self::global_mode_in(&mut conn).await;
        };
        if default_to_global {
            return Self::effective_mode(&mut conn, subject).await;
        }
        Self::own_mode(&mut conn, subject)
            .await?
            .ok_or_else(|| RegistryError::SubjectModeNotFound(subject.to_owned()))
    }

    /// Sets the global mode or a subject's. IMPORT is refused (42205) where schemas are
    /// registered already, unless `force`: imported ids could collide with theirs.
    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: &str,
        force: bool,
    ) -> Result<Mode, RegistryError> {
        if let Some(subject) = subject {
            validate_subject(subject)?;
        }
        let parsed: Mode = mode.parse()?;
        if parsed == Mode::Import && !force {
            let occupied: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM schema_registry_versions WHERE $1::text IS NULL OR subject = $1)",
            )
            .bind(subject)
            .fetch_one(&self.pool)
            .await?;
            if occupied {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Cannot import since found existing subjects{}; set force=true to do it anyway",
                    subject.map_or_else(String::new, |s| format!(" ({s})"))
                )));
            }
        }
        sqlx::query(
            "INSERT INTO schema_registry_modes (subject, mode) VALUES ($1, $2) \
             ON CONFLICT (subject) DO UPDATE SET mode = EXCLUDED.mode",
        )
        .bind(subject.unwrap_or(""))
        .bind(parsed.as_str())
        .execute(&self.pool)
        .await?;
        Ok(parsed)
    }

    /// Removes a subject's own mode and returns it (40409 when it had none).
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM schema_registry_modes WHERE subject = $1 RETURNING mode",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        removed
            .ok_or_else(|| RegistryError::SubjectModeNotFound(subject.to_owned()))?
            .parse()
    }

    /// Problems `schema` would have if registered under `subject`, as Confluent's
    /// `POST /compatibility/subjects/{s}/versions[/{v}]` answers: against one given version
    /// (`latest` is the newest), or, with no version, against the versions the subject's
    /// level names (the latest, or every one for a transitive level) as a registration
    /// would be. A subject with no versions is compatible with anything.
    pub async fn test_compatibility(
        &self,
        subject: &str,
        version: Option<VersionRef>,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let parsed = parse_schema(schema)?;
        let mut conn = self.pool.acquire().await?;
        let level = Self::effective_level(&mut conn, subject).await?;
        let history = Self::history(&mut conn, subject).await?;
        let against: Vec<(i32, Schema)> = match version {
            None => history,
            Some(VersionRef::Latest) => history.into_iter().last().into_iter().collect(),
            Some(VersionRef::Number(n)) => {
                if history.is_empty() {
                    return Err(RegistryError::SubjectNotFound(subject.to_owned()));
                }
                let one: Vec<_> = history.into_iter().filter(|(v, _)| *v == n).collect();
                if one.is_empty() {
                    return Err(RegistryError::VersionNotFound(n.to_string()));
                }
                one
            }
        };
        Ok(compatibility::check(level, &parsed, &against))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_make_a_subject_invalid() {
        assert!(validate_subject("tubes-value").is_ok());
        assert!(validate_subject("odd \"{:}' chars/ok").is_ok());
        assert!(validate_subject("\rbad\nsubject\t").is_err());
        assert!(validate_subject("nul\u{0}").is_err());
    }

    #[test]
    fn modes_parse_case_insensitively_and_refuse_others() {
        assert_eq!("readonly".parse::<Mode>().ok(), Some(Mode::ReadOnly));
        assert_eq!(
            "IMPORT".parse::<Mode>().ok().map(Mode::as_str),
            Some("IMPORT")
        );
        assert_eq!(
            "SOMETIMES".parse::<Mode>().map_err(|e| e.code()).err(),
            Some((422, 42204))
        );
    }
}
