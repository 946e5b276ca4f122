//! The registry's state in PostgreSQL: schemas with global ids, subject versions, config.

use super::compatibility::{self, Compatibility};
use apache_avro::Schema;
use serde::Serialize;
use sqlx::PgPool;

/// Errors with Confluent's error codes, which clients act on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        subject: String,
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
    #[error("Error in the backend data store: {0}")]
    Backend(#[from] sqlx::Error),
}

impl RegistryError {
    /// Confluent's `error_code` and the HTTP status it goes with.
    pub fn code(&self) -> (u16, u32) {
        match self {
            Self::SubjectNotFound(_) => (404, 40401),
            Self::VersionNotFound(_) => (404, 40402),
            Self::SchemaNotFound => (404, 40403),
            Self::SubjectConfigNotFound(_) => (404, 40408),
            Self::Incompatible { .. } => (409, 409),
            Self::InvalidSchema(_) => (422, 42201),
            Self::InvalidVersion(_) => (422, 42202),
            Self::InvalidCompatibility(_) => (422, 42203),
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
}

fn parse_schema(text: &str) -> Result<Schema, RegistryError> {
    Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

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

    /// Registers `schema` under `subject` (or finds it there already) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<i32, RegistryError> {
        let parsed = parse_schema(schema)?;
        let canonical = parsed.canonical_form();
        let mut tx = self.pool.begin().await?;
        // One registration per subject at a time, so versions stay gap-free.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('schema-registry:' || $1))")
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        let existing: Option<i32> = sqlx::query_scalar(
            "SELECT s.id FROM schema_registry_versions v JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND NOT v.deleted AND s.canonical = $2",
        )
        .bind(subject)
        .bind(&canonical)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let level = self.effective_level(&mut tx, subject).await?;
        let history = self.history(&mut tx, subject).await?;
        let details = compatibility::check(level, &parsed, &history);
        if !details.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                details,
            });
        }
        let id: i32 = sqlx::query_scalar(
            "WITH ins AS (INSERT INTO schema_registry_schemas (canonical, schema) VALUES ($1, $2) \
                          ON CONFLICT (canonical) DO NOTHING RETURNING id) \
             SELECT id FROM ins UNION ALL SELECT id FROM schema_registry_schemas WHERE canonical = $1 \
             LIMIT 1",
        )
        .bind(&canonical)
        .bind(schema)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO schema_registry_versions (subject, version, schema_id) \
             SELECT $1, COALESCE(max(version), 0) + 1, $2 FROM schema_registry_versions WHERE subject = $1",
        )
        .bind(subject)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The live versions of a subject, oldest first, parsed.
    async fn history(
        &self,
        conn: &mut sqlx::PgConnection,
        subject: &str,
    ) -> Result<Vec<(i32, Schema)>, RegistryError> {
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
        &self,
        conn: &mut sqlx::PgConnection,
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

    /// Finds `schema` among the subject's versions.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<SubjectVersion, RegistryError> {
        let canonical = parse_schema(schema)?.canonical_form();
        self.require_subject(subject).await?;
        let row: Option<(i32, i32, String)> = sqlx::query_as(
            "SELECT s.id, v.version, s.schema FROM schema_registry_versions v \
             JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND NOT v.deleted AND s.canonical = $2 ORDER BY v.version DESC LIMIT 1",
        )
        .bind(subject)
        .bind(&canonical)
        .fetch_optional(&self.pool)
        .await?;
        let (id, version, schema) = row.ok_or(RegistryError::SchemaNotFound)?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            id,
            version,
            schema,
        })
    }

    async fn require_subject(&self, subject: &str) -> Result<(), RegistryError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM schema_registry_versions WHERE subject = $1 AND NOT deleted)",
        )
        .bind(subject)
        .fetch_one(&self.pool)
        .await?;
        if exists {
            Ok(())
        } else {
            Err(RegistryError::SubjectNotFound(subject.to_owned()))
        }
    }

    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>, RegistryError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT subject FROM schema_registry_versions WHERE $1 OR NOT deleted ORDER BY subject",
        )
        .bind(include_deleted)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn versions(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = sqlx::query_scalar(
            "SELECT version FROM schema_registry_versions WHERE subject = $1 AND NOT deleted ORDER BY version",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub async fn version(
        &self,
        subject: &str,
        version: VersionRef,
    ) -> Result<SubjectVersion, RegistryError> {
        self.require_subject(subject).await?;
        let number = match version {
            VersionRef::Latest => None,
            VersionRef::Number(n) => Some(n),
        };
        let row: Option<(i32, i32, String)> = sqlx::query_as(
            "SELECT s.id, v.version, s.schema FROM schema_registry_versions v \
             JOIN schema_registry_schemas s ON s.id = v.schema_id \
             WHERE v.subject = $1 AND NOT v.deleted AND ($2::int IS NULL OR v.version = $2) \
             ORDER BY v.version DESC LIMIT 1",
        )
        .bind(subject)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        let (id, version, schema) = row.ok_or_else(|| {
            RegistryError::VersionNotFound(
                number.map_or_else(|| "latest".into(), |n| n.to_string()),
            )
        })?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            id,
            version,
            schema,
        })
    }

    /// The schema with this id, whether or not any subject still uses it.
    ///
    /// Confluent answers `GET /schemas/ids/{id}` for soft-deleted subjects' schemas too:
    /// an id travels in every message written with it, and a consumer reading an old
    /// message must still be able to decode it after the subject was deleted. Only a
    /// permanent delete that leaves no version (live or soft-deleted) referring to the
    /// schema removes it there; this registry has no permanent delete, so a schema, once
    /// registered, stays readable by its id.
    pub async fn schema_by_id(&self, id: i32) -> Result<String, RegistryError> {
        sqlx::query_scalar("SELECT schema FROM schema_registry_schemas WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RegistryError::SchemaNotFound)
    }

    /// Soft-deletes every version of a subject; returns the versions deleted. The subject
    /// disappears from listings and lookups, but its schemas stay readable by id (see
    /// [`Self::schema_by_id`]).
    pub async fn delete_subject(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = sqlx::query_scalar(
            "UPDATE schema_registry_versions SET deleted = true WHERE subject = $1 AND NOT deleted \
             RETURNING version",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub async fn global_level(&self) -> Result<Compatibility, RegistryError> {
        let mut conn = self.pool.acquire().await?;
        self.effective_level(&mut conn, "").await
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

    /// Problems `schema` would have if registered as the next version after `version`.
    pub async fn test_compatibility(
        &self,
        subject: &str,
        version: VersionRef,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let parsed = parse_schema(schema)?;
        let mut conn = self.pool.acquire().await?;
        let level = self.effective_level(&mut conn, subject).await?;
        let history = self.history(&mut conn, subject).await?;
        if history.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let upto: Vec<(i32, Schema)> = match version {
            VersionRef::Latest => history,
            VersionRef::Number(n) => {
                if !history.iter().any(|(v, _)| *v == n) {
                    return Err(RegistryError::VersionNotFound(n.to_string()));
                }
                history.into_iter().filter(|(v, _)| *v <= n).collect()
            }
        };
        Ok(compatibility::check(level, &parsed, &upto))
    }
}
