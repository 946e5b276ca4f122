//! The platform with its event pipeline on: commands reach Kafka through the outbox relay
//! and the samples page is fed by a Kafka consumer group; poison messages go to the dead
//! letters, and re-processing them once the cause is fixed applies them once.

mod support;

use kafka::testkit::{Broker, read_topic, registry};
use lab::accounts::{Accounts, Actor, NewUser, Role};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use web::{Application, Settings};

use support::TestResult;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A `tracseq relay` process, killed when dropped, so that a failing test leaves none
/// running.
struct RelayProcess(std::process::Child);

impl RelayProcess {
    /// SIGKILL: no clean-up, as in a crash.
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Platform {
    base: String,
    pool: sqlx::PgPool,
    database_url: String,
    registry_url: String,
    /// Authenticated as an administrator by API token.
    http: reqwest::Client,
    accounts: Accounts,
    broker: Broker,
}

/// A browser-like client logged in through the login form, and its CSRF token.
struct Session {
    client: reqwest::Client,
    csrf: String,
}

impl Platform {
    async fn start() -> Result<Self, BoxError> {
        Self::start_with(&[]).await
    }

    /// Starts the platform with these settings on top of the test's own.
    async fn start_with(extra: &[(&str, &str)]) -> Result<Self, BoxError> {
        web::telemetry::init(web::config::LogFormat::Human);
        let broker = Broker::start().await?;
        let (pool, name) = event_sourcing::testkit::fresh_database(20).await?;
        event_sourcing::MIGRATOR.run(&pool).await?;
        let registry_url = registry(pool.clone()).await?;
        let brokers = broker.address.clone();
        let mut vars: std::collections::HashMap<String, String> = [
            ("TRACSEQ_LISTEN", "127.0.0.1:0"),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("SCHEMA_REGISTRY_URL", registry_url.as_str()),
            ("TRACSEQ_CONSUMER_SESSION_TIMEOUT_MS", "3000"),
            ("TRACSEQ_READ_YOUR_WRITES_MS", "8000"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let server = event_sourcing::testkit::server_url();
        let (without_query, _) = server.split_once('?').unwrap_or((server.as_str(), ""));
        let (root, _) = without_query
            .rsplit_once('/')
            .ok_or("DATABASE_URL has no database")?;
        let database_url = format!("{root}/{name}");
        vars.insert("DATABASE_URL".into(), database_url.clone());
        let settings = Settings::from_lookup(|name| vars.get(name).cloned())?;
        let app = Application::with_pool(pool.clone(), &settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        // Every call needs a login: an administrator, whose API token the tests use.
        let accounts = Accounts::new(pool.clone(), settings.account_policy());
        let (_, token) = support::seed_admin(&accounts).await?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        Ok(Self {
            base,
            pool,
            database_url,
            registry_url,
            http,
            accounts,
            broker,
        })
    }

    /// A new account `username` with `role` (display name "`username` (`role`)"),
    /// logged in through the login form.
    async fn session(&self, username: &str, role: Role) -> Result<Session, BoxError> {
        self.accounts
            .create_user(
                &NewUser {
                    username: username.into(),
                    display_name: format!("{username} ({})", role.as_str()),
                    role: role.as_str().into(),
                    password: support::PASSWORD.into(),
                },
                Actor::CLI,
            )
            .await?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()?;
        let response = client
            .post(format!("{}/login", self.base))
            .form(&[
                ("username", username),
                ("password", support::PASSWORD),
                ("next", "/account"),
            ])
            .send()
            .await?;
        if response.status() != StatusCode::SEE_OTHER {
            return Err(format!("login as {username} answered {}", response.status()).into());
        }
        let page = client
            .get(format!("{}/account", self.base))
            .send()
            .await?
            .text()
            .await?;
        let csrf = support::csrf_in(&page).ok_or("no csrf_token on the account page")?;
        Ok(Session { client, csrf })
    }

    /// A `tracseq relay` process of its own for this platform.
    fn spawn_relay(&self) -> Result<RelayProcess, BoxError> {
        Ok(RelayProcess(
            std::process::Command::new(env!("CARGO_BIN_EXE_tracseq"))
                .arg("relay")
                .env("DATABASE_URL", &self.database_url)
                .env("KAFKA_BROKERS", &self.broker.address)
                .env("SCHEMA_REGISTRY_URL", &self.registry_url)
                .env("TRACSEQ_PUBLISH_TIMEOUT_MS", "1000")
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        ))
    }

    /// Lab work through the API: `count` samples registered, received and validated.
    async fn lab_work(&self, tag: &str, count: usize) -> Result<(), BoxError> {
        for i in 0..count {
            let body = json!({"barcode": format!("{tag}-{i:04}"), "sample_type": "rna", "volume_ul": 20, "temperature_zone": "-80"});
            let (status, created) = self.post("/api/samples", body).await?;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            let id = created["sample_id"].as_str().unwrap_or_default().to_owned();
            // A QC decision sent with an API token is signed by a person.
            let signature =
                json!({"signer": "admin", "password": support::PASSWORD, "meaning": "approved"});
            for (action, body) in [("receive", json!({})), ("validate", signature)] {
                let (status, body) = self
                    .post(&format!("/api/samples/{id}/{action}"), body)
                    .await?;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }
        Ok(())
    }

    /// Waits until every event is published and applied, then checks the read table
    /// against one rebuilt from the event store, and that no event was applied twice.
    async fn assert_read_side_matches_the_event_store(&self, within: Duration) -> TestResult {
        let deadline = Instant::now() + within;
        loop {
            let (unpublished, applied, events): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL), \
                        (SELECT count(*) FROM processed_events WHERE consumer = 'samples'), \
                        (SELECT count(*) FROM events)",
            )
            .fetch_one(&self.pool)
            .await?;
            if unpublished == 0 && applied == events {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not drained: {unpublished} unpublished, {applied} of {events} applied"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The rebuild: fold each sample's events from the store.
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events")
            .fetch_all(&self.pool)
            .await?;
        let store = event_sourcing::EventStore::new(
            self.pool.clone(),
            event_sourcing::StoreConfig::default(),
        );
        for id in &ids {
            let history = store.read_stream::<cqrs::sample::SampleEvent>(*id).await?;
            let rebuilt = cqrs::Aggregate::fold(
                cqrs::sample::Sample::default(),
                history.iter().map(|e| &e.payload),
            );
            let row: (String, i64, String) =
                sqlx::query_as("SELECT status, version, barcode FROM samples WHERE sample_id = $1")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
            let expected = rebuilt.registered.ok_or("not registered")?;
            assert_eq!(
                (row.0.as_str(), row.1, row.2.as_str()),
                (
                    expected.status.as_str(),
                    history.len() as i64,
                    expected.details.barcode.as_str()
                ),
                "sample {id}"
            );
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
            .fetch_one(&self.pool)
            .await?;
        assert_eq!(rows as usize, ids.len());
        // Applied exactly once: the consumer's count of first applications equals the
        // events (a redelivery counts as a duplicate; applying it again would show here).
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        let metrics = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let applied_line = format!(
            "cqrs_consumer_events_total{{consumer=\"samples\",outcome=\"applied\"}} {events}"
        );
        assert!(
            metrics.lines().any(|l| l == applied_line),
            "{applied_line}\n{metrics}"
        );
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&self.pool)
            .await?;
        assert_eq!(dead, 0, "no dead letter for a transient failure");
        Ok(())
    }

    /// Posts a command and asks for the resource as it then stands (the answer waits for
    /// the read model, fed through Kafka).
    async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value), reqwest::Error> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Prefer", "return=representation")
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value), reqwest::Error> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn register(&self, barcode: &str) -> Result<Value, BoxError> {
        let (status, body) = self
            .post("/api/samples", json!({"barcode": barcode, "sample_type": "serum", "volume_ul": 75, "temperature_zone": "-20"}))
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Ok(body)
    }

    /// Polls until `check` holds for the JSON at `path`.
    async fn eventually(
        &self,
        path: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value, BoxError> {
        let deadline = Instant::now() + within;
        loop {
            let (_, body) = self.get(path).await?;
            if check(&body) {
                return Ok(body);
            }
            if Instant::now() > deadline {
                return Err(format!("{path} never satisfied the check: {body}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_flow_through_kafka_to_the_samples_page() -> TestResult {
    let p = Platform::start().await?;
    let created = p.register("KFK-0001").await?;
    assert_eq!(
        created["sample"]["status"], "registered",
        "read-your-writes through Kafka: {created}"
    );
    let id = created["sample_id"].as_str().unwrap_or_default().to_owned();
    let (status, received) = p
        .post(
            &format!("/api/samples/{id}/receive"),
            json!({"notes": "cold"}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(received["sample"]["status"], "received", "{received}");

    // A form's command answers at once; the page it leads to waits for the read model
    // (fed through Kafka) to show the write. A lab manager, logged in, signs it.
    let cy = p.session("cy", Role::LabManager).await?;
    let no_redirects = &cy.client;
    let response = no_redirects
        .post(format!("{}/samples/{id}/validate", p.base))
        .form(&[
            ("password", support::PASSWORD),
            ("meaning", "approved"),
            ("command_id", &uuid::Uuid::now_v7().to_string()),
            ("csrf_token", &cy.csrf),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(to, format!("/samples/{id}?v=3&done=1"));
    let page = no_redirects
        .get(format!("{}{to}", p.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("id=\"status\">QC passed<"), "{page}");
    let who: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_type, metadata->>'user' FROM events ORDER BY position")
            .fetch_all(&p.pool)
            .await?;
    assert_eq!(
        who[2],
        (
            "SampleValidated".to_owned(),
            Some("cy (lab_manager)".to_owned())
        ),
        "{who:?}"
    );

    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'samples'")
            .fetch_one(&p.pool)
            .await?;
    assert_eq!(applied, 3, "every event came through the consumer");
    let metrics = p
        .http
        .get(format!("{}/metrics", p.base))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        "cqrs_events_published_total",
        "cqrs_consumer_events_total",
        "cqrs_circuit_breaker_state",
        "cqrs_outbox_backlog 0",
        "cqrs_projection_lag_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_dead_lettered_and_reprocessed_once_fixed() -> TestResult {
    let p = Platform::start().await?;
    p.register("WARMUP-1").await?; // the consumer group is up

    // 1. Bytes that are not an event at all.
    let producer: FutureProducer = kafka::topics::client_config(&p.broker.address).create()?;
    producer
        .send(
            FutureRecord::to(kafka::topics::SAMPLE_EVENTS)
                .key("garbage")
                .payload("not avro"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;

    // 2. An event the read table refuses: a stale row already holds its barcode.
    sqlx::query(
        "INSERT INTO samples (sample_id, barcode, sample_type, status, volume_ul, temperature_zone, \
         registered_at, registered_by, last_changed_at, last_changed_by, version) \
         VALUES (gen_random_uuid(), 'CLASH-1', 'BLOOD', 'registered', 1, 'PLUS_4', now(), 'import', now(), 'import', 1)",
    )
    .execute(&p.pool)
    .await?;
    let clash = p.register("CLASH-1").await?;
    let clash_id = clash["sample_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        clash["sample"]["sample_id"],
        Value::Null,
        "the read side could not show it"
    );
    let (status, _) = p
        .post(&format!("/api/samples/{clash_id}/receive"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK, "the write side is unaffected");

    // Later events are still processed.
    let later = p.register("LATER-1").await?;
    assert_eq!(later["sample"]["status"], "registered", "{later}");

    let letters = p
        .eventually("/api/dead-letters", Duration::from_secs(15), |b| {
            b.as_array().is_some_and(|a| a.len() == 3)
        })
        .await?;
    let types: Vec<&str> = letters
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["event_type"].as_str().unwrap_or("none"))
        .collect();
    assert!(
        types.contains(&"none")
            && types.contains(&"SampleRegistered")
            && types.contains(&"SampleReceived"),
        "{types:?}"
    );
    let (_, only) = p
        .get("/api/dead-letters?event_type=SampleRegistered")
        .await?;
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert!(
        only[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate key"),
        "{only}"
    );

    let dead = tokio::task::block_in_place(|| {
        read_topic(
            &p.broker.address,
            kafka::topics::DEAD_LETTER,
            3,
            Duration::from_secs(20),
        )
    })?;
    assert_eq!(dead.len(), 3);
    for header in [
        "error",
        "original_topic",
        "original_partition",
        "original_offset",
        "attempts",
        "first_failure",
        "last_failure",
    ] {
        assert!(
            dead.iter()
                .all(|m| m.headers.iter().any(|(k, _)| k == header)),
            "{header} header on every dead letter"
        );
    }

    // The cause is fixed; re-processing all applies the sample's two events, in order, once.
    sqlx::query("DELETE FROM samples WHERE barcode = 'CLASH-1' AND registered_by = 'import'")
        .execute(&p.pool)
        .await?;
    let (status, results) = p.post("/api/dead-letters/reprocess", json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let outcomes: Vec<&str> = results
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "applied").count(),
        2,
        "{results}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "failed").count(),
        1,
        "the garbage stays dead: {results}"
    );
    let (_, sample) = p.get(&format!("/api/samples/{clash_id}")).await?;
    assert_eq!(
        (sample["status"].clone(), sample["version"].clone()),
        (json!("received"), json!(2))
    );

    // Re-processing again changes nothing.
    let (_, all) = p.get("/api/dead-letters?status=reprocessed").await?;
    for d in all.as_array().into_iter().flatten() {
        let (_, again) = p
            .post(
                &format!("/api/dead-letters/{}/reprocess", d["id"]),
                json!({}),
            )
            .await?;
        assert_eq!(again["outcome"], "already_reprocessed", "{again}");
    }
    let (_, sample) = p.get(&format!("/api/samples/{clash_id}")).await?;
    assert_eq!(sample["version"], 2);
    let page = p
        .http
        .get(format!("{}/dead-letters", p.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("cannot decode"),
        "the page lists the undecodable message"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_process_killed_mid_stream_loses_nothing_and_applies_nothing_twice() -> TestResult {
    // The broker is frozen for a few seconds below: the consumer's group session must
    // outlast that (see the outage test).
    let p = Platform::start_with(&[
        ("TRACSEQ_RELAY", "off"),
        ("TRACSEQ_READ_YOUR_WRITES_MS", "300"),
        ("TRACSEQ_CONSUMER_SESSION_TIMEOUT_MS", "20000"),
    ])
    .await?;
    let mut relay = p.spawn_relay()?;
    p.lab_work("BEFORE", 5).await?;

    // The relay process claims a batch that Kafka does not acknowledge (the broker is
    // frozen) and dies with it (SIGKILL: no clean-up).
    p.broker.freeze()?;
    p.lab_work("KILL", 5).await?;
    let claimed = "SELECT count(*) FROM outbox WHERE published_at IS NULL AND leased_until > clock_timestamp()";
    let deadline = Instant::now() + Duration::from_secs(20);
    while sqlx::query_scalar::<_, i64>(claimed)
        .fetch_one(&p.pool)
        .await?
        == 0
    {
        assert!(Instant::now() < deadline, "the relay never claimed a batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.kill()?;
    let held: i64 = sqlx::query_scalar(claimed).fetch_one(&p.pool).await?;
    assert!(held > 0, "the dead relay's claim is still held");
    p.broker.thaw()?;
    let mut relay = p.spawn_relay()?;

    p.lab_work("AFTER", 5).await?;

    let result = p
        .assert_read_side_matches_the_event_store(Duration::from_secs(90))
        .await;
    relay.kill()?;
    result
}

/// The broker is frozen for 10 s while the lab keeps working. The consumer's group session
/// (20 s here; Kafka's default is 45 s) outlasts the outage, as it should in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_second_broker_outage_loses_nothing_and_applies_nothing_twice() -> TestResult {
    let p = Platform::start_with(&[
        ("TRACSEQ_CONSUMER_SESSION_TIMEOUT_MS", "20000"),
        ("TRACSEQ_READ_YOUR_WRITES_MS", "300"),
        ("TRACSEQ_PUBLISH_TIMEOUT_MS", "1000"),
    ])
    .await?;
    p.lab_work("BEFORE", 5).await?;
    p.broker.freeze()?;
    let frozen = Instant::now();
    p.lab_work("OUTAGE", 5).await?;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(frozen.elapsed())).await;
    p.broker.thaw()?;
    p.lab_work("AFTER", 5).await?;
    p.assert_read_side_matches_the_event_store(Duration::from_secs(90))
        .await?;
    let metrics = p
        .http
        .get(format!("{}/metrics", p.base))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        "cqrs_circuit_breaker_total{name=\"kafka-relay\",state=\"open\"}",
        "cqrs_circuit_breaker_total{name=\"kafka-relay\",state=\"half_open\"}",
        "cqrs_circuit_breaker_state{name=\"kafka-relay\"} 0",
    ] {
        assert!(
            metrics.contains(line),
            "the relay's circuit opened and closed again: {line}\n{metrics}"
        );
    }
    Ok(())
}
