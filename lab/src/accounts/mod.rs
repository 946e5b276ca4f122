//! Accounts: who may act, and the proof that it is them.
//!
//! # What lives here and why
//!
//! Staff accounts, their sessions, API tokens for instruments, login throttling and the
//! account audit trail are plain tables (migration `20261125000010_accounts.sql`), not
//! event-sourced aggregates: nothing downstream reacts to them, and what the audit trail
//! of the *samples* needs from them — the acting account's id and display name — is
//! copied into every event's metadata when the command runs
//! ([`Principal::command_context`]), so a later rename or deletion cannot change who did
//! what. Administration of accounts is itself recorded, append-only, in
//! `account_audit`.
//!
//! # Roles and permissions
//!
//! A role grants a fixed set of [`Permission`]s ([`Role::allows`]); the web edge maps
//! every route to one permission (or to "public") and refuses the rest, so a rule cannot
//! be forgotten in a handler. Technicians do the bench work, lab managers also take the
//! decisions a regulator audits and run operations, admins also administer accounts and
//! tokens; viewers (auditors) read.
//!
//! # Secrets
//!
//! - Passwords are hashed with argon2id (RustCrypto `argon2`, default parameters:
//!   19 MiB, 2 passes) on the blocking pool, never on the async runtime. An unknown
//!   username costs the same hash as a known one, so timing does not tell which
//!   usernames exist.
//! - Session ids and API tokens are 32 random bytes from the OS. Only their SHA-256 is
//!   stored: they are high-entropy, so a fast hash suffices, and a copy of the database
//!   lets no one in.
//! - A session has an absolute expiry fixed at login and an idle expiry; `last_seen_at`
//!   is written at most once a minute, so idle expiry is exact to a minute and reading a
//!   page does not write a row each time.
//! - Logging in always creates a new session id (whatever cookie came with the request is
//!   ignored), so a session id planted before login is worthless (fixation).
//! - Disabling an account, changing its role or password ends its sessions.
//!
//! # Throttling
//!
//! Failed logins (and failed signature passwords) are rows in `login_failures`, keyed by
//! account and by address, counted over a sliding window. Over the limit, further
//! attempts are refused *before* the password is checked, with a message saying when to
//! try again; a success clears the account's count. Counting in PostgreSQL keeps the
//! limit right with several server processes. The price of per-account limits is that
//! someone can lock a known username out for the window; the address limit is higher so
//! a lab behind one NAT address is not locked out by one person's typos.

mod passwords;

use crate::error::{Error, FieldError};
use chrono::{DateTime, Utc};
use event_sourcing::CommandContext;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::time::Duration;
use uuid::Uuid;

pub use passwords::{check_new_password, hash_password, verify_password};

/// What an account or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See samples, their history and the dashboard.
    Read,
    /// Bench work: register, receive, store, move, check out and return, aliquot.
    SampleWork,
    /// Decisions a regulator audits: QC validate/reject, disposal.
    QcDecision,
    /// Operations: dead letters, parked outbox rows, metrics, saga retry/abort.
    Operations,
    /// Accounts, roles and API tokens.
    Administer,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Technician,
    LabManager,
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Viewer,
        Role::Technician,
        Role::LabManager,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Technician => "technician",
            Self::LabManager => "lab_manager",
            Self::Admin => "admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Viewer => "Viewer (read only)",
            Self::Technician => "Technician",
            Self::LabManager => "Lab manager",
            Self::Admin => "Administrator",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let wanted = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown role '{raw}'; use viewer, technician, lab_manager or admin")
            })
    }

    /// Whether this role grants `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Viewer => matches!(permission, Read),
            Self::Technician => matches!(permission, Read | SampleWork),
            Self::LabManager => matches!(permission, Read | SampleWork | QcDecision | Operations),
            Self::Admin => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ApiToken,
}

/// Who is acting: a logged-in account or an API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub id: Uuid,
    /// The display name (for a token: "API token '<name>'").
    pub name: String,
    pub role: Role,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn allows(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    /// A command context acting as this principal: its id and display name go into the
    /// metadata of every event the command produces.
    pub fn command_context(&self) -> CommandContext {
        CommandContext::for_user(self.id, self.name.clone())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token as created: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

/// A live session: who, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
}

/// A session just created at login.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value (the only copy of the session id).
    pub cookie: String,
    pub csrf_token: String,
    pub user: User,
    pub max_age: Duration,
}

/// Session lifetimes and login limits.
#[derive(Debug, Clone, Copy)]
pub struct AccountPolicy {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// Failed attempts allowed per account within [`Self::failure_window`].
    pub account_failures: i64,
    /// Failed attempts allowed per address within [`Self::failure_window`].
    pub address_failures: i64,
    pub failure_window: Duration,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            account_failures: 5,
            address_failures: 20,
            failure_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Input for a new account.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub password: String,
}

/// Who performed an administrative action, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub principal: Option<&'a Principal>,
    pub address: Option<&'a str>,
}

impl Actor<'_> {
    /// The command line (`tracseq user create`).
    pub const CLI: Actor<'static> = Actor {
        principal: None,
        address: Some("command line"),
    };
}

/// One line of the account audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor_name: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub detail: Option<String>,
    pub address: Option<String>,
}

/// Writes an audit line through `executor`: inside the transaction of the change it
/// records, so the trail has a line exactly when the change happened.
async fn audit<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    actor: Actor<'_>,
    action: &str,
    subject: Option<&str>,
    detail: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO account_audit (actor_id, actor_name, action, subject, detail, address) \
             VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor.principal.map(|p| p.id))
    .bind(actor.principal.map(|p| p.name.as_str()))
    .bind(action)
    .bind(subject)
    .bind(detail)
    .bind(actor.address)
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    policy: AccountPolicy,
}

const SESSION_TOUCH_EVERY_S: f64 = 60.0;
const TOKEN_PREFIX: &str = "tsq_";

fn random_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("the OS random source failed: {e}")))?;
    Ok(hex::encode(bytes))
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn interval(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn parse_username(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(FieldError {
            field: "username",
            message: "a username is 1–64 letters, digits, '.', '_', '-' or '@'".into(),
        })
    }
}

fn parse_display_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        Err(FieldError {
            field: "display_name",
            message:
                "the full name is 1–100 printable characters; it is what the audit trail shows"
                    .into(),
        })
    } else {
        Ok(name.to_owned())
    }
}

fn role_of(raw: &str) -> Result<Role, Error> {
    Role::parse(raw).map_err(|_| Error::Internal(format!("unknown role '{raw}' stored")))
}

fn user_from(row: &sqlx::postgres::PgRow) -> Result<User, Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: role_of(row.try_get("role")?)?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
    })
}

fn token_from(row: &sqlx::postgres::PgRow) -> Result<ApiToken, Error> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: role_of(row.try_get("role")?)?,
        prefix: row.try_get("prefix")?,
        created_by: row.try_get("created_by_name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, enabled, created_at, password_changed_at";

impl Accounts {
    pub fn new(pool: PgPool, policy: AccountPolicy) -> Self {
        Self { pool, policy }
    }

    pub fn policy(&self) -> AccountPolicy {
        self.policy
    }

    /// Records an audit line on its own (for events with nothing else to commit).
    async fn audit(
        &self,
        actor: Actor<'_>,
        action: &str,
        subject: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        audit(&self.pool, actor, action, subject, detail).await
    }

    /// The newest `limit` lines of the account audit trail.
    pub async fn audit_trail(&self, limit: i64) -> Result<Vec<AuditEntry>, Error> {
        sqlx::query(
            "SELECT at, actor_name, action, subject, detail, address FROM account_audit \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                at: row.try_get("at")?,
                actor_name: row.try_get("actor_name")?,
                action: row.try_get("action")?,
                subject: row.try_get("subject")?,
                detail: row.try_get("detail")?,
                address: row.try_get("address")?,
            })
        })
        .collect()
    }

    // ----- users -------------------------------------------------------------------

    pub async fn count_users(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Creates an account; every problem with the input is reported field by field.
    pub async fn create_user(&self, input: &NewUser, actor: Actor<'_>) -> Result<User, Error> {
        let mut errors = Vec::new();
        let username = parse_username(&input.username).map_err(|e| errors.push(e));
        let display_name = parse_display_name(&input.display_name).map_err(|e| errors.push(e));
        let role = Role::parse(&input.role).map_err(|message| {
            errors.push(FieldError {
                field: "role",
                message,
            })
        });
        if let Err(message) = check_new_password(&input.password, &input.username) {
            errors.push(FieldError {
                field: "password",
                message,
            });
        }
        let (Ok(username), Ok(display_name), Ok(role), true) =
            (username, display_name, role, errors.is_empty())
        else {
            return Err(Error::Invalid(errors));
        };
        let hash = hash_password(input.password.clone()).await?;
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO users (id, username, display_name, role, password_hash, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(&username)
        .bind(&display_name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(
            actor
                .principal
                .filter(|p| p.kind == PrincipalKind::User)
                .map(|p| p.id),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(Error::Invalid(vec![FieldError {
                field: "username",
                message: format!("the username '{username}' is taken; choose another"),
            }]));
        };
        let user = user_from(&row)?;
        audit(
            &mut *tx,
            actor,
            "user.create",
            Some(&user.username),
            Some(role.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY lower(username)"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from)
        .collect()
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, Error> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, Error> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)"
        ))
        .bind(username.trim())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    /// Changes an account's role and ends its sessions (they carried the old role).
    /// The last enabled admin cannot be demoted, so the lab cannot lock itself out.
    pub async fn set_role(&self, id: Uuid, role: Role, actor: Actor<'_>) -> Result<User, Error> {
        let mut tx = self.pool.begin().await?;
        self.keep_an_admin(&mut tx, id, role == Role::Admin).await?;
        let row = sqlx::query(&format!(
            "UPDATE users SET role = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(role.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound("there is no such account".into()))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let user = user_from(&row)?;
        audit(
            &mut *tx,
            actor,
            "user.role",
            Some(&user.username),
            Some(role.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Enables or disables an account; disabling ends its sessions at once.
    pub async fn set_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        actor: Actor<'_>,
    ) -> Result<User, Error> {
        let mut tx = self.pool.begin().await?;
        if !enabled {
            self.keep_an_admin(&mut tx, id, false).await?;
        }
        let row = sqlx::query(&format!(
            "UPDATE users SET enabled = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(enabled)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound("there is no such account".into()))?;
        if !enabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let user = user_from(&row)?;
        let action = if enabled {
            "user.enable"
        } else {
            "user.disable"
        };
        audit(&mut *tx, actor, action, Some(&user.username), None).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Refuses (409) when `id` is the last enabled admin and would stop being one. Locks
    /// the admins' rows so two concurrent demotions cannot both pass.
    async fn keep_an_admin(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        id: Uuid,
        stays_admin: bool,
    ) -> Result<(), Error> {
        if stays_admin {
            return Ok(());
        }
        let admins: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM users WHERE role = 'admin' AND enabled FOR UPDATE")
                .fetch_all(&mut **tx)
                .await?;
        if admins == [id] {
            return Err(Error::Conflict(
                "this is the last enabled administrator; make another account an administrator first".into(),
            ));
        }
        Ok(())
    }

    /// Sets a new password (an admin's reset, or the user's own change after
    /// [`Self::verify_password_of`]) and ends the account's sessions.
    pub async fn set_password(
        &self,
        id: Uuid,
        password: &str,
        actor: Actor<'_>,
    ) -> Result<(), Error> {
        let user = self
            .user(id)
            .await?
            .ok_or_else(|| Error::NotFound("there is no such account".into()))?;
        check_new_password(password, &user.username)
            .map_err(|message| Error::invalid("new_password", message))?;
        let hash = hash_password(password.to_owned()).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $2, password_changed_at = clock_timestamp() WHERE id = $1",
        )
        .bind(id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // A reset unlocks the account (the lock-out message says to ask for one).
        sqlx::query("DELETE FROM login_failures WHERE key = ANY($1)")
            .bind(vec![
                format!("account:{}", user.username.to_lowercase()),
                format!("signature:{}", user.id),
            ])
            .execute(&mut *tx)
            .await?;
        audit(&mut *tx, actor, "user.password", Some(&user.username), None).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- passwords, throttled ------------------------------------------------------

    /// Counts an attempt against each `(key, limit)` before its password is checked, or
    /// refuses it when a key is already at its limit. Each key is counted under an
    /// advisory lock, so parallel attempts cannot all pass the check before any is
    /// recorded: at most `limit` attempts per window ever reach the hash.
    async fn reserve_attempt(&self, keys: &[(String, i64, &str)]) -> Result<(), Error> {
        let mut sorted: Vec<&(String, i64, &str)> = keys.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        // A key already at its limit is refused without queueing on its lock, so a flood
        // from one address cannot hold the pool's connections while it waits.
        for (key, limit, whose) in &sorted {
            if let Some(wait) = self.over_limit(&self.pool, key, *limit).await? {
                return Err(Self::too_many(wait, whose));
            }
        }
        let mut tx = self.pool.begin().await?;
        for (key, limit, whose) in sorted {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7227))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            if let Some(wait) = self.over_limit(&mut *tx, key, *limit).await? {
                return Err(Self::too_many(wait, whose));
            }
            sqlx::query("INSERT INTO login_failures (key) VALUES ($1)")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How long until `key` may try again, if it is at `limit` attempts in the window.
    async fn over_limit<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        key: &str,
        limit: i64,
    ) -> Result<Option<Duration>, Error> {
        let row = sqlx::query(
            "SELECT count(*) AS attempts, \
                    EXTRACT(EPOCH FROM (min(failed_at) + make_interval(secs => $2) - clock_timestamp()))::float8 AS wait_s \
             FROM login_failures WHERE key = $1 AND failed_at > clock_timestamp() - make_interval(secs => $2)",
        )
        .bind(key)
        .bind(interval(self.policy.failure_window))
        .fetch_one(executor)
        .await?;
        let attempts: i64 = row.try_get("attempts")?;
        if attempts < limit {
            return Ok(None);
        }
        let wait: Option<f64> = row.try_get("wait_s")?;
        Ok(Some(Duration::from_secs_f64(wait.unwrap_or(60.0).max(1.0))))
    }

    /// Gives back attempts counted in advance whose password was never judged (the
    /// server was busy or the database failed): they are not the person's failures.
    async fn give_back(&self, keys: &[&str]) {
        for key in keys {
            if let Err(error) = sqlx::query(
                "DELETE FROM login_failures WHERE ctid = \
                 (SELECT ctid FROM login_failures WHERE key = $1 ORDER BY failed_at DESC LIMIT 1)",
            )
            .bind(key)
            .execute(&self.pool)
            .await
            {
                tracing::warn!(%error, "a counted attempt could not be given back");
            }
        }
    }

    /// After a right password: the account's (or signer's) count starts again, and the
    /// address gets back the one attempt that was counted in advance.
    async fn attempt_succeeded(&self, clear: &str, give_back: Option<&str>) -> Result<(), Error> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(clear)
            .execute(&self.pool)
            .await?;
        if let Some(key) = give_back {
            sqlx::query(
                "DELETE FROM login_failures WHERE ctid = \
                 (SELECT ctid FROM login_failures WHERE key = $1 ORDER BY failed_at DESC LIMIT 1)",
            )
            .bind(key)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    fn too_many(wait: Duration, whose: &str) -> Error {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        Error::TooManyAttempts {
            message: format!(
                "Too many failed attempts {whose}. Try again in {minutes} minute{}{}.",
                if minutes == 1 { "" } else { "s" },
                if whose.contains("account") {
                    ", or ask an administrator to reset the password"
                } else {
                    ""
                }
            ),
            retry_after: wait,
        }
    }

    /// Checks a username and password, throttled per account and per address. The
    /// refusal does not say whether the username exists, nor whether a disabled
    /// account's password was right.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<User, Error> {
        let wrong = || Error::Unauthenticated("Wrong username or password.".into());
        let Ok(username) = parse_username(username) else {
            // No account can have this name (and PostgreSQL text cannot hold a NUL).
            return Err(wrong());
        };
        let account_key = format!("account:{}", username.to_ascii_lowercase());
        let address_key = address.map(|a| format!("address:{a}"));
        let mut keys = vec![(
            account_key.clone(),
            self.policy.account_failures,
            "for this account",
        )];
        if let Some(key) = &address_key {
            keys.push((
                key.clone(),
                self.policy.address_failures,
                "from this address",
            ));
        }
        self.reserve_attempt(&keys).await?;
        let judged = async {
            let row = sqlx::query(&format!(
                "SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)"
            ))
            .bind(&username)
            .fetch_optional(&self.pool)
            .await?;
            let stored: Option<String> = row
                .as_ref()
                .map(|r| r.try_get("password_hash"))
                .transpose()?;
            let matches = verify_password(password.to_owned(), stored).await?;
            let user = row.as_ref().map(user_from).transpose()?;
            Ok::<_, Error>((matches, user))
        }
        .await;
        let (matches, user) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                let mut counted = vec![account_key.as_str()];
                counted.extend(address_key.as_deref());
                self.give_back(&counted).await;
                return Err(error);
            }
        };
        match user {
            Some(user) if matches && user.enabled => {
                self.attempt_succeeded(&account_key, address_key.as_deref())
                    .await?;
                Ok(user)
            }
            user => {
                let known = user.as_ref().map(|u| u.username.as_str());
                let reason = match &user {
                    Some(u) if !u.enabled => "account disabled",
                    Some(_) => "wrong password",
                    None => "unknown username",
                };
                // A username that matches no account is not written down: people type
                // their password into the username field.
                tracing::warn!(
                    username = known.unwrap_or("(unknown)"),
                    address = address.unwrap_or("-"),
                    reason,
                    "login failed"
                );
                let actor = Actor {
                    principal: None,
                    address,
                };
                self.audit(
                    actor,
                    "login.failure",
                    Some(known.unwrap_or("(unknown username)")),
                    Some(reason),
                )
                .await?;
                Err(wrong())
            }
        }
    }

    /// Re-checks a logged-in user's password (for an electronic signature or a password
    /// change), throttled like a login.
    pub async fn verify_password_of(
        &self,
        principal: &Principal,
        password: &str,
    ) -> Result<(), Error> {
        if principal.kind != PrincipalKind::User {
            return Err(Error::Forbidden(
                "an electronic signature needs a person's password; API tokens cannot sign".into(),
            ));
        }
        let key = format!("signature:{}", principal.id);
        self.reserve_attempt(&[(
            key.clone(),
            self.policy.account_failures,
            "to enter your password",
        )])
        .await?;
        let judged = async {
            let stored: Option<String> =
                sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 AND enabled")
                    .bind(principal.id)
                    .fetch_optional(&self.pool)
                    .await?;
            verify_password(password.to_owned(), stored).await
        }
        .await;
        let matches = match judged {
            Ok(matches) => matches,
            Err(error) => {
                self.give_back(&[key.as_str()]).await;
                return Err(error);
            }
        };
        if matches {
            self.attempt_succeeded(&key, None).await?;
            Ok(())
        } else {
            tracing::warn!(user_id = %principal.id, "password re-entry failed");
            let actor = Actor {
                principal: Some(principal),
                address: None,
            };
            self.audit(actor, "password.failure", None, None).await?;
            Err(Error::invalid(
                "password",
                "that is not your password; nothing was changed",
            ))
        }
    }

    // ----- sessions ----------------------------------------------------------------

    /// Logs in: a new session with a new id, whatever session the browser had.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<NewSession, Error> {
        let user = self.authenticate(username, password, address).await?;
        let cookie = random_secret()?;
        let csrf_token = random_secret()?;
        let principal = Principal {
            id: user.id,
            name: user.display_name.clone(),
            role: user.role,
            kind: PrincipalKind::User,
        };
        let actor = Actor {
            principal: Some(&principal),
            address,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at, address) \
             VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4), $5)",
        )
        .bind(digest(&cookie))
        .bind(user.id)
        .bind(&csrf_token)
        .bind(interval(self.policy.absolute_timeout))
        .bind(address)
        .execute(&mut *tx)
        .await?;
        audit(&mut *tx, actor, "login", Some(&user.username), None).await?;
        tx.commit().await?;
        Ok(NewSession {
            cookie,
            csrf_token,
            user,
            max_age: self.policy.absolute_timeout,
        })
    }

    /// The live session a cookie names, or `None` when it is unknown, expired (idle or
    /// absolute) or its account disabled.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, Error> {
        let hash = digest(cookie);
        let row = sqlx::query(
            "SELECT u.id, u.display_name, u.role, s.csrf_token, \
                    EXTRACT(EPOCH FROM (clock_timestamp() - s.last_seen_at))::float8 AS idle_s \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND u.enabled AND s.expires_at > clock_timestamp() \
               AND s.last_seen_at > clock_timestamp() - make_interval(secs => $2)",
        )
        .bind(&hash)
        .bind(interval(self.policy.idle_timeout))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let idle: f64 = row.try_get("idle_s")?;
        if idle > SESSION_TOUCH_EVERY_S {
            sqlx::query("UPDATE sessions SET last_seen_at = clock_timestamp() WHERE id_hash = $1")
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session {
            principal: Principal {
                id: row.try_get("id")?,
                name: row.try_get("display_name")?,
                role: role_of(row.try_get("role")?)?,
                kind: PrincipalKind::User,
            },
            csrf_token: row.try_get("csrf_token")?,
        }))
    }

    /// Deletes what can no longer count: expired sessions (idle or absolute) and failed
    /// attempts older than the throttling window. Run by the retention job, not on the
    /// login path; until then such rows are only ignored.
    pub async fn prune(&self) -> Result<(u64, u64), Error> {
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE expires_at < clock_timestamp() \
                OR last_seen_at < clock_timestamp() - make_interval(secs => $1)",
        )
        .bind(interval(self.policy.idle_timeout))
        .execute(&self.pool)
        .await?
        .rows_affected();
        let failures = sqlx::query(
            "DELETE FROM login_failures WHERE failed_at < clock_timestamp() - make_interval(secs => $1)",
        )
        .bind(interval(self.policy.failure_window))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((sessions, failures))
    }

    /// Ends the session a cookie names, if any (a new login in the same browser).
    pub async fn end_session(&self, cookie: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(digest(cookie))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Logs out: the session is deleted, so its cookie is worthless from now on.
    pub async fn logout(&self, cookie: &str, actor: Actor<'_>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(digest(cookie))
            .execute(&mut *tx)
            .await?;
        if ended.rows_affected() > 0 {
            audit(&mut *tx, actor, "logout", None, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- API tokens --------------------------------------------------------------

    /// Issues a token with `role`; its secret is in the result and nowhere else.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        creator: &Principal,
        address: Option<&str>,
    ) -> Result<IssuedToken, Error> {
        let mut errors = Vec::new();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            errors.push(FieldError {
                field: "name",
                message: "name the token after what will use it (1–100 printable characters)"
                    .into(),
            });
        }
        let role = Role::parse(role).map_err(|message| {
            errors.push(FieldError {
                field: "role",
                message,
            })
        });
        if role == Ok(Role::Admin) {
            errors.push(FieldError {
                field: "role",
                message:
                    "a token's role is at most lab manager: administration needs a person logged in"
                        .into(),
            });
        }
        let (Ok(role), true) = (role, errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        if creator.kind != PrincipalKind::User {
            return Err(Error::Forbidden(
                "API tokens are created by a person, not by another token".into(),
            ));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_secret()?);
        let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "WITH t AS (INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_by) \
                        VALUES ($1, $2, $3, $4, $5, $6) RETURNING *) \
             SELECT t.*, u.display_name AS created_by_name FROM t JOIN users u ON u.id = t.created_by",
        )
        .bind(id)
        .bind(name)
        .bind(role.as_str())
        .bind(digest(&secret))
        .bind(&prefix)
        .bind(creator.id)
        .fetch_one(&mut *tx)
        .await?;
        let token = token_from(&row)?;
        let actor = Actor {
            principal: Some(creator),
            address,
        };
        audit(
            &mut *tx,
            actor,
            "token.create",
            Some(name),
            Some(role.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedToken { token, secret })
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, Error> {
        sqlx::query(
            "SELECT t.*, u.display_name AS created_by_name FROM api_tokens t \
             JOIN users u ON u.id = t.created_by ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from)
        .collect()
    }

    /// Revokes a token: it stops working with the next request.
    pub async fn revoke_token(&self, id: Uuid, actor: Actor<'_>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE api_tokens SET revoked_at = clock_timestamp(), revoked_by = $2 \
             WHERE id = $1 AND revoked_at IS NULL RETURNING name",
        )
        .bind(id)
        .bind(
            actor
                .principal
                .filter(|p| p.kind == PrincipalKind::User)
                .map(|p| p.id),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Err(Error::NotFound(
                "there is no such token, or it is already revoked".into(),
            ));
        };
        audit(&mut *tx, actor, "token.revoke", Some(&name), None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The principal a bearer token stands for, if it is live. Its last use is recorded
    /// (at most once a minute).
    pub async fn token_principal(&self, secret: &str) -> Result<Option<Principal>, Error> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, name, role, \
                    last_used_at IS NULL OR last_used_at < clock_timestamp() - make_interval(secs => $2) AS stale \
             FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(digest(secret))
        .bind(SESSION_TOUCH_EVERY_S)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: Uuid = row.try_get("id")?;
        if row.try_get::<bool, _>("stale")? {
            sqlx::query("UPDATE api_tokens SET last_used_at = clock_timestamp() WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        let name: String = row.try_get("name")?;
        Ok(Some(Principal {
            id,
            name: format!("API token '{name}'"),
            role: role_of(row.try_get("role")?)?,
            kind: PrincipalKind::ApiToken,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_lab_expects() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Technician, [true, true, false, false, false]),
            (Role::LabManager, [true, true, true, true, false]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let got =
                [Read, SampleWork, QcDecision, Operations, Administer].map(|p| role.allows(p));
            assert_eq!(got, expected, "{role:?}");
        }
    }

    #[test]
    fn roles_parse_as_typed() {
        assert_eq!(Role::parse("Lab manager"), Ok(Role::LabManager));
        assert_eq!(Role::parse("lab-manager"), Ok(Role::LabManager));
        assert_eq!(Role::parse(" ADMIN "), Ok(Role::Admin));
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn usernames_and_names_are_checked() {
        assert!(parse_username("ana.muller").is_ok());
        assert!(parse_username("").is_err());
        assert!(parse_username("ana muller").is_err());
        assert!(parse_username(&"a".repeat(65)).is_err());
        assert!(parse_display_name("Ana Müller").is_ok());
        assert!(parse_display_name("Ana\u{7}").is_err());
    }
}
