//! The platform at lab scale, through HTTP: 1,000,000 samples, 20,000 boxes of 81 or 100
//! positions in 200 freezers (loaded in SQL by `lab_scale.sql`, event log and read
//! tables together), the application in-process on that database, and p50/p95/p99/max of
//! the dashboard, a filtered sample list (page and API), a box page, a sample page and a
//! store command at 16 concurrent clients.
//!
//! ```text
//! cargo bench -p web --bench lab_scale -- [--requests 300] [--stores 1600]
//! LAB_SCALE_DB=tracseq_test_… cargo bench -p web --bench lab_scale   # reuse a loaded lab
//! ```
//!
//! Every request must answer 2xx; any other status is counted and reported as an error.

use lab::accounts::{Accounts, NewUser, Role};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::{Duration, Instant};
use uuid::Uuid;
use web::config::Settings;
use web::startup::Application;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    requests: usize,
    stores: usize,
    clients: usize,
}

fn args() -> Result<Args, BoxError> {
    let mut args = Args {
        requests: 300,
        stores: 1600,
        clients: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--requests" => args.requests = it.next().ok_or("--requests needs a value")?.parse()?,
            "--stores" => args.stores = it.next().ok_or("--stores needs a value")?.parse()?,
            "--clients" => args.clients = it.next().ok_or("--clients needs a value")?.parse()?,
            _ => {}
        }
    }
    Ok(args)
}

async fn database() -> Result<(PgPool, String), BoxError> {
    if let Ok(name) = std::env::var("LAB_SCALE_DB") {
        let url = format!(
            "{}/{name}",
            event_sourcing::testkit::server_url()
                .rsplit_once('/')
                .map_or("postgres://postgres@127.0.0.1:5432", |(base, _)| base)
        );
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .connect(&url)
            .await?;
        event_sourcing::MIGRATOR.run(&pool).await?;
        let loaded: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
            .fetch_one(&pool)
            .await?;
        if loaded >= 1_000_000 {
            println!("reusing {name}: {loaded} samples");
            return Ok((pool, name));
        }
        return Err(format!("{name} has {loaded} samples, not a loaded lab").into());
    }
    let (pool, name) = event_sourcing::testkit::fresh_database(40).await?;
    let started = Instant::now();
    println!("loading the lab into {name} …");
    sqlx::raw_sql(include_str!("lab_scale.sql"))
        .execute(&pool)
        .await?;
    println!(
        "loaded in {:.0} s; VACUUM ANALYZE …",
        started.elapsed().as_secs_f64()
    );
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    println!(
        "ready after {:.0} s (LAB_SCALE_DB={name} reuses it)",
        started.elapsed().as_secs_f64()
    );
    Ok((pool, name))
}

/// Checks that the log and the read tables agree where it matters here.
async fn verify(pool: &PgPool) -> Result<(), BoxError> {
    let (samples, stored, boxes, events): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM samples WHERE box_id IS NOT NULL), \
                (SELECT count(*) FROM storage_units WHERE kind = 'box'), (SELECT count(*) FROM events)",
    )
    .fetch_one(pool)
    .await?;
    let claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE scope = 'storage-position'")
            .fetch_one(pool)
            .await?;
    println!("{samples} samples ({stored} stored), {boxes} boxes, {events} events");
    // A reused lab may have stores its read side had not applied when the last run
    // stopped: the application catches up when it starts (see `caught_up`).
    if samples != 1_000_000 || stored > claims || boxes != 20_000 {
        return Err("the loaded lab is inconsistent".into());
    }
    let store =
        event_sourcing::EventStore::new(pool.clone(), event_sourcing::StoreConfig::default());
    let (id, status, position): (Uuid, String, Option<String>) = sqlx::query_as(
        "SELECT sample_id, status, position FROM samples WHERE barcode = 'LAB-0123457'",
    )
    .fetch_one(pool)
    .await?;
    let state = store.load::<cqrs::sample::Sample>(id).await?.state;
    let sample = state.registered.ok_or("the sample has no events")?;
    if sample.status.as_str() != status || sample.location.map(|(_, p)| p.to_string()) != position {
        return Err(format!("events and read table disagree on {id}").into());
    }
    Ok(())
}

/// Waits until the read side shows every stored sample the claims hold.
async fn caught_up(pool: &PgPool) -> Result<(), BoxError> {
    for _ in 0..1200 {
        let (stored, claims): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM samples WHERE box_id IS NOT NULL), \
                    (SELECT count(*) FROM unique_claims WHERE scope = 'storage-position')",
        )
        .fetch_one(pool)
        .await?;
        if stored == claims {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the read side did not catch up with the log".into())
}

struct Timings {
    name: String,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Timings {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            latencies: Vec::new(),
            errors: 0,
        }
    }

    fn report(&mut self) {
        self.latencies.sort();
        let at = |q: f64| {
            let i = ((self.latencies.len() as f64 * q).ceil() as usize)
                .clamp(1, self.latencies.len().max(1))
                - 1;
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            self.name,
            self.latencies.len(),
            at(0.50),
            at(0.95),
            at(0.99),
            self.latencies
                .last()
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            self.errors
        );
    }
}

async fn time_get(
    client: &reqwest::Client,
    url: &str,
    timings: &mut Timings,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let response = client.get(url).send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    timings.latencies.push(started.elapsed());
    if !status.is_success() {
        timings.errors += 1;
        eprintln!("{url}: {status}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let (pool, _name) = database().await?;
    verify(&pool).await?;

    let settings = Settings::from_lookup(|name| match name {
        "TRACSEQ_LISTEN" => Some("127.0.0.1:0".into()),
        "TRACSEQ_DB_MAX_CONNECTIONS" => Some("40".into()),
        _ => None,
    })?;
    let app = Application::with_pool(pool.clone(), &settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    caught_up(&pool).await?;
    let accounts = Accounts::new(pool.clone(), settings.account_policy());
    let username = format!("bench-{}", Uuid::now_v7().simple());
    let password = "a benchmark password, long enough";
    let user = accounts
        .create_user(
            &NewUser {
                username: username.clone(),
                display_name: "Benchmark".into(),
                role: "admin".into(),
                password: password.into(),
            },
            lab::accounts::Actor::CLI,
        )
        .await?;
    let principal = lab::accounts::Principal {
        id: user.id,
        name: user.display_name,
        role: Role::Admin,
        kind: lab::accounts::PrincipalKind::User,
    };
    let token = accounts
        .create_token("lab-scale bench", "lab_manager", &principal, None)
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token.secret))?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()?;

    // Varied ids: boxes, stored samples and freezers spread over the whole lab.
    let boxes: Vec<Uuid> = sqlx::query_scalar(
        "SELECT unit_id FROM storage_units WHERE kind = 'box' ORDER BY md5(unit_id::text) LIMIT $1",
    )
    .bind(i64::try_from(args.requests)?)
    .fetch_all(&pool)
    .await?;
    let samples: Vec<Uuid> =
        sqlx::query_scalar("SELECT sample_id FROM samples ORDER BY md5(sample_id::text) LIMIT $1")
            .bind(i64::try_from(args.requests)?)
            .fetch_all(&pool)
            .await?;
    let freezers: Vec<String> =
        sqlx::query_scalar("SELECT code FROM storage_units WHERE kind = 'freezer' AND temperature_zone = 'MINUS_80' ORDER BY code")
            .fetch_all(&pool)
            .await?;

    // Warm up (connections, prepared statements, caches).
    let mut warm = Timings::new("warm-up");
    for i in 0..20 {
        time_get(&client, &format!("{base}/"), &mut warm).await?;
        time_get(
            &client,
            &format!("{base}/storage/{}", boxes[i % boxes.len()]),
            &mut warm,
        )
        .await?;
        time_get(
            &client,
            &format!("{base}/samples/{}", samples[i % samples.len()]),
            &mut warm,
        )
        .await?;
    }

    println!();
    println!("| operation | requests | p50 ms | p95 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mut dashboard = Timings::new("dashboard `GET /`");
    let mut list =
        Timings::new("filtered list `GET /samples?type=PLASMA&zone=MINUS_80&location=<freezer>`");
    let mut list_api = Timings::new("filtered list `GET /api/samples?…` (same filter)");
    let mut box_page = Timings::new("box page `GET /storage/{box}`");
    let mut sample_page = Timings::new("sample page `GET /samples/{id}`");
    for i in 0..args.requests {
        let freezer = &freezers[i % freezers.len()];
        time_get(&client, &format!("{base}/"), &mut dashboard).await?;
        time_get(
            &client,
            &format!("{base}/samples?type=PLASMA&zone=MINUS_80&location={freezer}"),
            &mut list,
        )
        .await?;
        time_get(
            &client,
            &format!("{base}/api/samples?type=PLASMA&zone=MINUS_80&location={freezer}"),
            &mut list_api,
        )
        .await?;
        time_get(
            &client,
            &format!("{base}/storage/{}", boxes[i % boxes.len()]),
            &mut box_page,
        )
        .await?;
        time_get(
            &client,
            &format!("{base}/samples/{}", samples[i % samples.len()]),
            &mut sample_page,
        )
        .await?;
    }
    for t in [
        &mut dashboard,
        &mut list,
        &mut list_api,
        &mut box_page,
        &mut sample_page,
    ] {
        t.report();
    }

    // Store commands: validated, unstored samples, each into its own free position (the
    // 41st position onwards of a box of its zone, −80 °C), 16 clients at once.
    let targets: Vec<(Uuid, String, String)> = sqlx::query_as(
        "WITH todo AS (SELECT sample_id, row_number() OVER (ORDER BY sample_id) AS k FROM samples \
                        WHERE status = 'validated' AND temperature_zone = 'MINUS_80' LIMIT $1), \
              boxes AS (SELECT code, grid_columns AS side, row_number() OVER (ORDER BY code) AS b FROM storage_units \
                        WHERE kind = 'box' AND temperature_zone = 'MINUS_80' AND grid_rows = 10 \
                          AND NOT EXISTS (SELECT 1 FROM box_occupancy o WHERE o.box_id = unit_id AND o.occupied > 40)) \
         SELECT t.sample_id, bx.code, chr(65 + (40 + ((t.k - 1) % 60)::int) / bx.side) || ((40 + ((t.k - 1) % 60)::int) % bx.side + 1)::text \
         FROM todo t JOIN boxes bx ON bx.b = (t.k - 1) / 60 + 1",
    )
    .bind(i64::try_from(args.stores)?)
    .fetch_all(&pool)
    .await?;
    let per_client = targets.len().div_ceil(args.clients.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in targets.chunks(per_client.max(1)) {
        let chunk = chunk.to_vec();
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut timings = Timings::new("store");
            for (sample, code, position) in chunk {
                let at = Instant::now();
                let result = client
                    .post(format!("{base}/api/samples/{sample}/store"))
                    .json(&serde_json::json!({"box": code, "position": position}))
                    .send()
                    .await;
                timings.latencies.push(at.elapsed());
                match result {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        timings.errors += 1;
                        eprintln!(
                            "store {sample} {code} {position}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    Err(e) => {
                        timings.errors += 1;
                        eprintln!("store {sample}: {e}");
                    }
                }
            }
            timings
        }));
    }
    let mut store = Timings::new(&format!(
        "store command `POST /api/samples/{{id}}/store`, {} clients",
        args.clients
    ));
    for task in tasks {
        let t = task.await?;
        store.latencies.extend(t.latencies);
        store.errors += t.errors;
    }
    let elapsed = started.elapsed();
    store.report();
    println!();
    println!(
        "{} stores in {:.1} s: {:.0} stores/s",
        store.latencies.len(),
        elapsed.as_secs_f64(),
        store.latencies.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
