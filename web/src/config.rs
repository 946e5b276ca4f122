//! Configuration from environment variables, with defaults for a local run.

use sqlx::postgres::PgConnectOptions;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A connection string whose password never appears in logs or `Debug` output.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PgConnectOptions::from_str(&self.0) {
            Ok(o) => write!(
                f,
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Err(_) => f.write_str("<unparseable database url>"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`
    pub database_url: DatabaseUrl,
    /// `TRACSEQ_DB_MAX_CONNECTIONS`
    pub database_max_connections: u32,
    /// `TRACSEQ_LISTEN` (use port 0 for any free port)
    pub listen: SocketAddr,
    /// `SCHEMA_REGISTRY_LISTEN`: where `tracseq schema-registry` listens
    pub schema_registry_listen: SocketAddr,
    /// `TRACSEQ_LOG_FORMAT`: `human` or `json`
    pub log_format: LogFormat,
    /// `TRACSEQ_SNAPSHOT_EVERY`: events between snapshots of an aggregate (0 = never)
    pub snapshot_every: u64,
    /// `TRACSEQ_READ_YOUR_WRITES_MS`: how long a command waits for the read side to catch up
    pub read_your_writes_ms: u64,
    /// `TRACSEQ_TIME_ZONE`: the lab's IANA time zone (e.g. `Europe/Berlin`; default
    /// `UTC`). Pages show times in it and read typed times in it; storage is UTC.
    pub time_zone: chrono_tz::Tz,
    /// `KAFKA_BROKERS`: when set, events are published to Kafka by the outbox relay and
    /// the read tables are fed by Kafka consumers; unset, projections follow the event
    /// log in-process and nothing is published.
    pub kafka_brokers: Option<String>,
    /// `SCHEMA_REGISTRY_URL`
    pub schema_registry_url: String,
    /// `SCHEMA_REGISTRY_TOKEN`: when set, `tracseq schema-registry` requires it as
    /// `Authorization: Bearer <token>` on every request that changes the registry
    /// (registering, config, mode, deletes), and the platform's own registry client sends
    /// it. Unset or blank: the registry is open, as before. Never printed.
    pub schema_registry_token: Option<kafka::registry::RegistryToken>,
    /// `TRACSEQ_CONSUMER_SESSION_TIMEOUT_MS`: consumer-group session timeout
    pub consumer_session_timeout_ms: u64,
    /// `TRACSEQ_RETRY`: the backoff between retries of a transient failure, `aggressive`
    /// (default: 100 ms growing to 500 ms) or `conservative` (1 s to 10 s). Consumers
    /// retry without limit; the preset's attempt count bounds only an operator's
    /// re-processing of a dead letter.
    pub retry: kafka::retry::RetryPolicy,
    /// `TRACSEQ_PUBLISH_TIMEOUT_MS`: how long the relay waits for Kafka to acknowledge a
    /// message before counting it as failed (and sending it again)
    pub publish_timeout_ms: u64,
    /// `TRACSEQ_RELAY`: `on` (default) runs the outbox relay inside `serve`; `off` leaves
    /// publishing to separate `tracseq relay` processes.
    pub relay_in_process: bool,
    /// `TRACSEQ_STUCK_AFTER_S`: a consumer or projection failing without progress for
    /// this long makes `/health/ready` answer not ready (default 60)
    pub stuck_after_s: u64,
    /// `TRACSEQ_TOPIC_REPLICATION` (default 1) and `TRACSEQ_TOPIC_MIN_INSYNC` (default:
    /// the broker's): how topics are created; a real cluster wants 3 and 2
    pub topic_replication: i32,
    pub topic_min_insync: Option<u32>,
    /// `TRACSEQ_RETAIN_OUTBOX_DAYS` (default 7, 0 = keep forever): how long published
    /// outbox rows are kept; unpublished and parked rows are never deleted
    pub retain_outbox_days: u32,
    /// `TRACSEQ_RETAIN_PROCESSED_DAYS` (default 30, 0 = keep forever): how long consumers'
    /// de-duplication rows are kept; must exceed the Kafka topics' retention, or a
    /// redelivered old message would be applied again
    pub retain_processed_days: u32,
    /// `TRACSEQ_RETAIN_COMMANDS_DAYS` (default 7, 0 = keep forever): the idempotency
    /// window; an `Idempotency-Key` repeated after it counts as a new command
    pub retain_commands_days: u32,
    /// `TRACSEQ_BODY_LIMIT_BYTES` (default 65536): the largest request body accepted, form
    /// or JSON; a larger one is refused with 413 before it is read
    pub body_limit_bytes: usize,
    /// `TRACSEQ_REQUEST_TIMEOUT_MS` (default 30000): a request still unanswered after this
    /// long is stopped and answered 503
    pub request_timeout_ms: u64,
    /// `TRACSEQ_SESSION_IDLE_MINUTES` (default 30) and `TRACSEQ_SESSION_MAX_HOURS`
    /// (default 12): a session ends after this long without a request, and this long
    /// after login whatever happens
    pub session_idle_minutes: u64,
    pub session_max_hours: u64,
    /// `TRACSEQ_SECURE_COOKIES` (`auto`, the default: when the request came over HTTPS as
    /// the proxy's `X-Forwarded-Proto` says; `on`; `off`): whether the session cookie is
    /// marked `Secure`
    pub secure_cookies: SecureCookies,
    /// `TRACSEQ_LOGIN_ACCOUNT_FAILURES` (default 5) and `TRACSEQ_LOGIN_ADDRESS_FAILURES`
    /// (default 20) failed logins within 15 minutes lock further attempts for the rest of
    /// the window
    pub login_account_failures: u32,
    pub login_address_failures: u32,
}

/// When the session cookie gets the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    Auto,
    Always,
    Never,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

impl Settings {
    /// Session lifetimes and login limits, for [`lab::accounts::Accounts`].
    pub fn account_policy(&self) -> lab::accounts::AccountPolicy {
        lab::accounts::AccountPolicy {
            idle_timeout: std::time::Duration::from_secs(self.session_idle_minutes * 60),
            absolute_timeout: std::time::Duration::from_secs(self.session_max_hours * 3600),
            account_failures: i64::from(self.login_account_failures),
            address_failures: i64::from(self.login_address_failures),
            ..lab::accounts::AccountPolicy::default()
        }
    }

    pub const DEFAULT_DATABASE_URL: &'static str = "postgres://postgres@127.0.0.1:5432/tracseq";

    /// Reads the environment; anything unset takes its local default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            default: T,
        ) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            match lookup(name) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
                    name,
                    reason: e.to_string(),
                    value,
                }),
            }
        }
        fn positive<T: PartialEq + Default + fmt::Display>(
            value: T,
            name: &'static str,
        ) -> Result<T, ConfigError> {
            if value == T::default() {
                return Err(ConfigError {
                    name,
                    value: value.to_string(),
                    reason: "must be more than 0".into(),
                });
            }
            Ok(value)
        }
        fn at_most(value: u64, max: u64, name: &'static str) -> Result<u64, ConfigError> {
            if value > max {
                return Err(ConfigError {
                    name,
                    value: value.to_string(),
                    reason: format!("must be at most {max}"),
                });
            }
            Ok(value)
        }
        let database_url =
            lookup("DATABASE_URL").unwrap_or_else(|| Self::DEFAULT_DATABASE_URL.to_owned());
        PgConnectOptions::from_str(&database_url).map_err(|e| ConfigError {
            name: "DATABASE_URL",
            value: "<hidden>".into(),
            reason: e.to_string(),
        })?;
        let log_format = match lookup("TRACSEQ_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("") | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    name: "TRACSEQ_LOG_FORMAT",
                    value: other.to_owned(),
                    reason: "expected 'human' or 'json'".into(),
                });
            }
        };
        Ok(Self {
            database_url: DatabaseUrl(database_url),
            database_max_connections: parse(&lookup, "TRACSEQ_DB_MAX_CONNECTIONS", 20)?,
            listen: parse(
                &lookup,
                "TRACSEQ_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            schema_registry_listen: parse(
                &lookup,
                "SCHEMA_REGISTRY_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 8081)),
            )?,
            log_format,
            snapshot_every: parse(&lookup, "TRACSEQ_SNAPSHOT_EVERY", 50)?,
            read_your_writes_ms: parse(&lookup, "TRACSEQ_READ_YOUR_WRITES_MS", 2000)?,
            time_zone: parse(&lookup, "TRACSEQ_TIME_ZONE", chrono_tz::Tz::UTC)?,
            kafka_brokers: lookup("KAFKA_BROKERS")
                .map(|b| b.trim().to_owned())
                .filter(|b| !b.is_empty()),
            schema_registry_url: lookup("SCHEMA_REGISTRY_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8081".to_owned()),
            schema_registry_token: lookup("SCHEMA_REGISTRY_TOKEN")
                .and_then(kafka::registry::RegistryToken::new),
            consumer_session_timeout_ms: parse(
                &lookup,
                "TRACSEQ_CONSUMER_SESSION_TIMEOUT_MS",
                6000,
            )?,
            publish_timeout_ms: parse(&lookup, "TRACSEQ_PUBLISH_TIMEOUT_MS", 5000)?,
            retry: match lookup("TRACSEQ_RETRY") {
                None => kafka::retry::RetryPolicy::AGGRESSIVE,
                Some(name) => {
                    kafka::retry::RetryPolicy::preset(name.trim()).ok_or_else(|| ConfigError {
                        name: "TRACSEQ_RETRY",
                        value: name.clone(),
                        reason: "expected 'aggressive' or 'conservative'".into(),
                    })?
                }
            },
            stuck_after_s: parse(&lookup, "TRACSEQ_STUCK_AFTER_S", 60)?,
            topic_replication: parse(&lookup, "TRACSEQ_TOPIC_REPLICATION", 1)?,
            topic_min_insync: match lookup("TRACSEQ_TOPIC_MIN_INSYNC") {
                None => None,
                Some(_) => Some(parse(&lookup, "TRACSEQ_TOPIC_MIN_INSYNC", 1)?),
            },
            retain_outbox_days: parse(&lookup, "TRACSEQ_RETAIN_OUTBOX_DAYS", 7)?,
            retain_processed_days: parse(&lookup, "TRACSEQ_RETAIN_PROCESSED_DAYS", 30)?,
            retain_commands_days: parse(&lookup, "TRACSEQ_RETAIN_COMMANDS_DAYS", 7)?,
            body_limit_bytes: positive(
                parse(&lookup, "TRACSEQ_BODY_LIMIT_BYTES", 65_536)?,
                "TRACSEQ_BODY_LIMIT_BYTES",
            )?,
            request_timeout_ms: positive(
                parse(&lookup, "TRACSEQ_REQUEST_TIMEOUT_MS", 30_000)?,
                "TRACSEQ_REQUEST_TIMEOUT_MS",
            )?,
            session_idle_minutes: at_most(
                positive(
                    parse(&lookup, "TRACSEQ_SESSION_IDLE_MINUTES", 30)?,
                    "TRACSEQ_SESSION_IDLE_MINUTES",
                )?,
                7 * 24 * 60,
                "TRACSEQ_SESSION_IDLE_MINUTES",
            )?,
            session_max_hours: at_most(
                positive(
                    parse(&lookup, "TRACSEQ_SESSION_MAX_HOURS", 12)?,
                    "TRACSEQ_SESSION_MAX_HOURS",
                )?,
                30 * 24,
                "TRACSEQ_SESSION_MAX_HOURS",
            )?,
            secure_cookies: match lookup("TRACSEQ_SECURE_COOKIES").as_deref().map(str::trim) {
                None | Some("") | Some("auto") => SecureCookies::Auto,
                Some("on") => SecureCookies::Always,
                Some("off") => SecureCookies::Never,
                Some(other) => {
                    return Err(ConfigError {
                        name: "TRACSEQ_SECURE_COOKIES",
                        value: other.to_owned(),
                        reason: "expected 'auto', 'on' or 'off'".into(),
                    });
                }
            },
            login_account_failures: positive(
                parse(&lookup, "TRACSEQ_LOGIN_ACCOUNT_FAILURES", 5)?,
                "TRACSEQ_LOGIN_ACCOUNT_FAILURES",
            )?,
            login_address_failures: positive(
                parse(&lookup, "TRACSEQ_LOGIN_ADDRESS_FAILURES", 20)?,
                "TRACSEQ_LOGIN_ADDRESS_FAILURES",
            )?,
            relay_in_process: match lookup("TRACSEQ_RELAY").as_deref().map(str::trim) {
                None | Some("") | Some("on") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(ConfigError {
                        name: "TRACSEQ_RELAY",
                        value: other.to_owned(),
                        reason: "expected 'on' or 'off'".into(),
                    });
                }
            },
        })
    }
}

impl Settings {
    /// What the retention job deletes, from the `TRACSEQ_RETAIN_*_DAYS` settings (see
    /// [`event_sourcing::retention`] for why each is safe).
    pub fn retention(&self) -> event_sourcing::Retention {
        use event_sourcing::Retention;
        Retention {
            outbox: Retention::days(self.retain_outbox_days),
            processed_events: Retention::days(self.retain_processed_days),
            commands: Retention::days(self.retain_commands_days),
            ..Retention::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_suit_a_local_run() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.log_format, LogFormat::Human);
        assert_eq!(s.database_url.expose(), Settings::DEFAULT_DATABASE_URL);
    }

    #[test]
    fn environment_overrides_and_bad_values_are_named() {
        let s = settings(&[
            ("TRACSEQ_LISTEN", "0.0.0.0:9000"),
            ("TRACSEQ_LOG_FORMAT", "json"),
        ])
        .expect("valid");
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.log_format, LogFormat::Json);
        let err = settings(&[("TRACSEQ_LISTEN", "nowhere")]).expect_err("invalid");
        assert!(err.to_string().contains("TRACSEQ_LISTEN"), "{err}");
    }

    #[test]
    fn retention_defaults_can_be_changed_or_turned_off() {
        const DAY: u64 = 86_400;
        let days = |d: u64| Some(std::time::Duration::from_secs(d * DAY));
        let r = settings(&[]).expect("defaults").retention();
        assert_eq!(
            (r.outbox, r.processed_events, r.commands),
            (days(7), days(30), days(7))
        );

        let r = settings(&[
            ("TRACSEQ_RETAIN_OUTBOX_DAYS", "14"),
            ("TRACSEQ_RETAIN_PROCESSED_DAYS", " 0 "),
            ("TRACSEQ_RETAIN_COMMANDS_DAYS", "1"),
        ])
        .expect("valid")
        .retention();
        assert_eq!(
            (r.outbox, r.processed_events, r.commands),
            (days(14), None, days(1))
        );

        let off = settings(&[
            ("TRACSEQ_RETAIN_OUTBOX_DAYS", "0"),
            ("TRACSEQ_RETAIN_PROCESSED_DAYS", "0"),
            ("TRACSEQ_RETAIN_COMMANDS_DAYS", "0"),
        ])
        .expect("valid");
        assert!(off.retention().keeps_everything());

        for (name, bad) in [
            ("TRACSEQ_RETAIN_OUTBOX_DAYS", "-1"),
            ("TRACSEQ_RETAIN_PROCESSED_DAYS", "a month"),
            ("TRACSEQ_RETAIN_COMMANDS_DAYS", "1.5"),
        ] {
            let err = settings(&[(name, bad)]).expect_err("invalid");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn request_limits_default_to_64_kib_and_30_s_and_cannot_be_zero() {
        let s = settings(&[]).expect("defaults");
        assert_eq!((s.body_limit_bytes, s.request_timeout_ms), (65_536, 30_000));
        let s = settings(&[
            ("TRACSEQ_BODY_LIMIT_BYTES", "1048576"),
            ("TRACSEQ_REQUEST_TIMEOUT_MS", "500"),
        ])
        .expect("valid");
        assert_eq!((s.body_limit_bytes, s.request_timeout_ms), (1_048_576, 500));
        for name in ["TRACSEQ_BODY_LIMIT_BYTES", "TRACSEQ_REQUEST_TIMEOUT_MS"] {
            for bad in ["0", "-1", "lots"] {
                let err = settings(&[(name, bad)]).expect_err("invalid");
                assert!(err.to_string().contains(name), "{err}");
            }
        }
    }

    #[test]
    fn the_password_is_never_printed() {
        let s =
            settings(&[("DATABASE_URL", "postgres://lab:s3cret@db:5432/tracseq")]).expect("valid");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://lab@db:5432/tracseq"), "{shown}");
    }

    #[test]
    fn the_registry_token_is_optional_and_never_printed() {
        assert!(
            settings(&[])
                .expect("defaults")
                .schema_registry_token
                .is_none()
        );
        let blank = settings(&[("SCHEMA_REGISTRY_TOKEN", "  ")]).expect("valid");
        assert!(blank.schema_registry_token.is_none());
        let s = settings(&[("SCHEMA_REGISTRY_TOKEN", "t0ps3cret")]).expect("valid");
        assert_eq!(
            s.schema_registry_token.as_ref().map(|t| t.expose()),
            Some("t0ps3cret")
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("t0ps3cret"), "{shown}");
    }
}
