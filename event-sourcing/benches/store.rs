//! Benchmark of the event store on a local PostgreSQL server.
//!
//! ```text
//! cargo bench -p event-sourcing --bench store -- [commands|replay|all]
//!     [--clients 1,4,16,64] [--modes register,lifecycle] [--seconds 15] [--warmup 2]
//!     [--events 1000000] [--page 500] [--vacuum] [--seed-batch 2000] [--writers N] [--keep-db]
//! ```
//!
//! `commands` mirrors the peer benchmark in `../shared/peers/postgres-es-bench`
//! (`cqrs-es` + `postgres-es`) so that the two can be compared on the same machine:
//! N concurrent clients (Tokio tasks) call `EventStore::execute::<Sample>` back to back
//! on a pool of `max(N, 4) + 2` connections, with a 2 s warm-up before the measured
//! window. Only commands that complete inside the window are counted; each command's
//! latency goes into an HdrHistogram (µs, 3 significant digits).
//!
//! * `register`: every command registers a new sample (new aggregate id, unique scanned
//!   barcode): load an empty stream, decide, append one event. Our append also writes an
//!   outbox row, a command record and the barcode's unique claim.
//! * `lifecycle`: each client registers a sample, then receives and validates it (three
//!   commands on one aggregate), every command timed separately.
//!
//! One line per run on stdout, in the peer's shape:
//! `mode=.. clients=N cmds=.. secs=.. cmd_per_s=.. p50_ms=.. p95_ms=.. p99_ms=.. errors=..`
//! and a `check:` line on stderr comparing the successful commands (warm-up included)
//! with the rows the store wrote (events, outbox, commands, unique claims); `lifecycle`
//! adds a `by command:` line with the latencies of register, receive and validate.
//!
//! `replay` seeds a realistic log (samples registered, received, then validated or
//! rejected; about three events per sample) with `append_all` in large batches, untimed,
//! then rebuilds every sample from the whole log on ONE connection, folding the events
//! into a `HashMap<Uuid, Sample>`: once with `stream_all` (one query) and once with
//! `read_after` pages. One line per variant on stdout:
//! `replay mode=stream|paged events=.. secs=.. events_per_s=.. aggregates=..`
//! and a `check:` line on stderr comparing the rebuilt states with what was seeded.
//!
//! Every run uses a fresh migrated database (`testkit::fresh_database`) on the server
//! of `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`), connected with
//! `sslmode=disable` like the peer, and drops it afterwards unless `--keep-db` is given.

use chrono::{DateTime, Days, NaiveDate, Utc};
use cqrs::sample::{
    Barcode, Note, PatientRef, Sample, SampleCommand, SampleDetails, SampleEvent, SampleId,
    SampleStatus, SampleType, TemperatureZone, VolumeUl,
};
use cqrs::{Aggregate, DomainEvent};
use event_sourcing::testkit::samples::signature;
use event_sourcing::testkit::{fresh_database, server_url};
use event_sourcing::{
    AppendRequest, CommandContext, EventMetadata, EventStore, ExpectedVersion, LogCursor, NewEvent,
    StoreConfig, UniqueClaim,
};
use futures::TryStreamExt;
use hdrhistogram::Histogram;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Register with `ExpectedVersion::Any` (load, then decide) rather than the web edge's
/// `Exactly(0)`, which decides on the empty state without a read.
static REGISTER_LOADS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
type Result<T, E = BoxError> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo bench -p event-sourcing --bench store -- [commands|replay|all] [options]

  --clients 1,4,16,64        concurrent clients per commands run
  --modes register,lifecycle command mixes to run
  --seconds 15               measured seconds per commands run (after the warm-up)
  --warmup 2                 warm-up seconds per commands run
  --events 1000000           events seeded for replay
  --page 500                 page size of the paged replay (read_after); 500 is what
                             the projection runner uses
  --vacuum                   VACUUM (ANALYZE) the seeded events before replaying (a
                             table autovacuum has already processed); off by default
  --seed-batch 2000          append requests per append_all call while seeding
  --writers N                the store's batch writers (default: StoreConfig's)
  --keep-db                  keep the benchmark databases instead of dropping them
  --register-load            register with ExpectedVersion::Any (load first) instead of
                             the product's path, ExpectedVersion::Exactly(0) (no read)

The server is DATABASE_URL's (default postgres://postgres@127.0.0.1:5432), always
with sslmode=disable. Unknown arguments (such as cargo's --bench) are ignored.";

#[tokio::main]
async fn main() -> Result<()> {
    let Some(args) = Args::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let c = &args.config;
    eprintln!(
        "# store: writers={} max_batch_requests={} max_batch_events={} snapshot_every={}",
        c.writers, c.max_batch_requests, c.max_batch_events, c.snapshot_every
    );
    if args.commands {
        for &mode in &args.modes {
            for &clients in &args.clients {
                run_commands(&args, mode, clients).await?;
            }
        }
    }
    if args.replay {
        run_replay(&args).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each command registers a new sample: load an empty stream, append one event.
    Register,
    /// Register, receive and validate one sample: three commands on one aggregate.
    Lifecycle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Lifecycle => "lifecycle",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "register" => Ok(Self::Register),
            "lifecycle" => Ok(Self::Lifecycle),
            other => Err(format!(
                "unknown mode '{other}'; expected register or lifecycle"
            )),
        }
    }
}

struct Args {
    commands: bool,
    replay: bool,
    clients: Vec<usize>,
    modes: Vec<Mode>,
    seconds: u64,
    warmup: u64,
    events: u64,
    page: i64,
    seed_batch: usize,
    config: StoreConfig,
    keep_db: bool,
    vacuum: bool,
}

impl Args {
    /// Parses the arguments after the program name; `None` when help was asked for.
    fn parse(raw: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let mut args = Self {
            commands: true,
            replay: true,
            clients: vec![1, 4, 16, 64],
            modes: vec![Mode::Register, Mode::Lifecycle],
            seconds: 15,
            warmup: 2,
            events: 1_000_000,
            page: 500,
            seed_batch: 2000,
            config: StoreConfig::default(),
            keep_db: false,
            vacuum: false,
        };
        let mut raw = raw.into_iter();
        while let Some(arg) = raw.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if arg.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| raw.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "commands" | "replay" | "all" => {
                    args.commands = flag != "replay";
                    args.replay = flag != "commands";
                }
                "--clients" => args.clients = parse_list(&flag, &value()?)?,
                "--modes" => args.modes = parse_list(&flag, &value()?)?,
                "--seconds" => args.seconds = parse_value(&flag, &value()?)?,
                "--warmup" => args.warmup = parse_value(&flag, &value()?)?,
                "--events" => args.events = parse_value(&flag, &value()?)?,
                "--page" => args.page = parse_value(&flag, &value()?)?,
                "--seed-batch" => args.seed_batch = parse_value(&flag, &value()?)?,
                "--writers" => args.config.writers = parse_value(&flag, &value()?)?,
                "--keep-db" => args.keep_db = true,
                "--vacuum" => args.vacuum = true,
                "--register-load" => REGISTER_LOADS.store(true, Ordering::Relaxed),
                "-h" | "--help" => return Ok(None),
                // `cargo bench` passes this to every bench binary.
                "--bench" => {}
                other => eprintln!("# ignoring unknown argument {other:?}"),
            }
        }
        let positive = [
            (
                "--clients",
                args.clients.iter().all(|&n| n > 0) && !args.clients.is_empty(),
            ),
            ("--modes", !args.modes.is_empty()),
            ("--seconds", args.seconds > 0),
            ("--events", args.events > 0),
            ("--page", args.page > 0),
            ("--seed-batch", args.seed_batch > 0),
            ("--writers", args.config.writers > 0),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, ok)| !ok) {
            return Err(format!("{flag} must be positive (and not empty)").into());
        }
        Ok(Some(args))
    }
}

fn parse_value<T: FromStr>(flag: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| format!("{flag}: cannot parse '{raw}': {e}").into())
}

fn parse_list<T: FromStr>(flag: &str, raw: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    raw.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| parse_value(flag, item))
        .collect()
}

// ---------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------

/// A fresh, migrated database on the benchmark server.
struct BenchDb {
    name: String,
    options: PgConnectOptions,
}

impl BenchDb {
    async fn create() -> Result<Self> {
        // The testkit creates and migrates it; we connect ourselves so that the pool
        // has exactly the size we want and never negotiates TLS (as in the peer).
        let (setup, name) = fresh_database(1).await?;
        setup.close().await;
        let options = PgConnectOptions::from_str(&server_url())?
            .database(&name)
            .ssl_mode(PgSslMode::Disable)
            .disable_statement_logging();
        Ok(Self { name, options })
    }

    async fn pool(&self, max_connections: u32) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options.clone())
            .await?)
    }

    /// Drops the database (all pools on it must be closed); failures are only reported.
    async fn finish(self, keep: bool) {
        if keep {
            eprintln!("# kept database {}", self.name);
            return;
        }
        let dropped = async {
            let mut admin =
                PgConnection::connect_with(&self.options.clone().database("postgres")).await?;
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("# could not drop database {}: {error}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Commands scenario
// ---------------------------------------------------------------------------

fn new_hist() -> Result<Histogram<u64>> {
    // Microseconds, 1 µs .. 60 s, 3 significant digits (as the peer).
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// What one client did.
struct ClientResult {
    /// Latencies of the successful commands that completed inside the window.
    hist: Histogram<u64>,
    /// The same, by command kind (register, receive, validate).
    by_kind: [Histogram<u64>; 3],
    /// Failed commands that completed inside the window.
    errors: u64,
    /// Successful commands, warm-up included.
    ok: u64,
    /// Successful registrations, warm-up included (each claims a barcode).
    registered: u64,
    first_error: Option<String>,
}

impl ClientResult {
    fn new() -> Result<Self> {
        Ok(Self {
            hist: new_hist()?,
            by_kind: [new_hist()?, new_hist()?, new_hist()?],
            errors: 0,
            ok: 0,
            registered: 0,
            first_error: None,
        })
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        self.hist.add(&other.hist)?;
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            mine.add(theirs)?;
        }
        self.errors += other.errors;
        self.ok += other.ok;
        self.registered += other.registered;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    fn failed(&mut self, in_window: bool, error: String) {
        if in_window {
            self.errors += 1;
        }
        self.first_error.get_or_insert(error);
    }

    /// Runs one command; records its latency if it completed inside `window`.
    async fn timed(
        &mut self,
        store: &EventStore,
        id: SampleId,
        command: SampleCommand,
        window: (Instant, Instant),
    ) -> bool {
        let kind = match command {
            SampleCommand::Register { .. } => 0,
            SampleCommand::Receive { .. } => 1,
            _ => 2,
        };
        let context = CommandContext::new("bench");
        let expected = if kind == 0 && !REGISTER_LOADS.load(Ordering::Relaxed) {
            ExpectedVersion::Exactly(0)
        } else {
            ExpectedVersion::Any
        };
        let t0 = Instant::now();
        let result = store
            .execute::<Sample>(id.as_uuid(), command, &context, expected)
            .await;
        let t1 = Instant::now();
        let in_window = t1 >= window.0 && t1 <= window.1;
        match result {
            Ok(outcome) if !outcome.duplicate => {
                self.ok += 1;
                self.registered += u64::from(kind == 0);
                if in_window {
                    let micros = u64::try_from((t1 - t0).as_micros()).unwrap_or(u64::MAX);
                    self.hist.saturating_record(micros.max(1));
                    self.by_kind[kind].saturating_record(micros.max(1));
                }
                true
            }
            Ok(_) => {
                self.failed(in_window, "a fresh command was reported as a repeat".into());
                false
            }
            Err(error) => {
                self.failed(in_window, error.to_string());
                false
            }
        }
    }
}

/// A registration as a scanner would send it: the barcode arrives as text and is parsed.
fn register_command(
    template: &SampleDetails,
    id: SampleId,
    client: usize,
    seq: u64,
) -> Result<SampleCommand> {
    Ok(SampleCommand::Register {
        id,
        details: SampleDetails {
            barcode: Barcode::parse(&format!("LAB-BLOOD-20250101-{client:03}{seq:08}"))?,
            ..template.clone()
        },
    })
}

async fn client_loop(
    store: EventStore,
    template: Arc<SampleDetails>,
    mode: Mode,
    client: usize,
    window: (Instant, Instant),
    stop: Arc<AtomicBool>,
    mut res: ClientResult,
) -> ClientResult {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = SampleId::new();
        let register = match register_command(&template, id, client, seq) {
            Ok(command) => command,
            Err(error) => {
                res.failed(true, format!("bad benchmark command: {error}"));
                break;
            }
        };
        match mode {
            Mode::Register => {
                res.timed(&store, id, register, window).await;
            }
            Mode::Lifecycle => {
                let commands = [
                    register,
                    SampleCommand::Receive { notes: None },
                    SampleCommand::Validate {
                        notes: None,
                        signature: signature(),
                    },
                ];
                for command in commands {
                    if stop.load(Ordering::Relaxed) || !res.timed(&store, id, command, window).await
                    {
                        break;
                    }
                }
            }
        }
    }
    res
}

async fn run_commands(args: &Args, mode: Mode, clients: usize) -> Result<()> {
    let db = BenchDb::create().await?;
    let pool_size = u32::try_from(clients.max(4) + 2)?;
    let pool = db.pool(pool_size).await?;
    let store = EventStore::new(pool.clone(), args.config.clone());
    let template = Arc::new(SampleDetails {
        barcode: Barcode::parse("LAB-BLOOD-20250101-00000000000")?,
        sample_type: SampleType::Blood,
        volume: VolumeUl::parse("500")?,
        temperature_zone: TemperatureZone::Minus80,
        patient: None,
        collected_at: None,
        collected_by: None,
    });

    let start = Instant::now();
    let m_start = start + Duration::from_secs(args.warmup);
    let m_end = m_start + Duration::from_secs(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(clients);
    for client in 0..clients {
        handles.push(tokio::spawn(client_loop(
            store.clone(),
            Arc::clone(&template),
            mode,
            client,
            (m_start, m_end),
            Arc::clone(&stop),
            ClientResult::new()?,
        )));
    }
    tokio::time::sleep_until(m_end.into()).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = ClientResult::new()?;
    for handle in handles {
        total.merge(handle.await?)?;
    }

    let secs = (m_end - m_start).as_secs_f64();
    let hist = &total.hist;
    let cmds = hist.len();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "mode={} clients={} cmds={} secs={:.1} cmd_per_s={:.1} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3} errors={}",
        mode.name(),
        clients,
        cmds,
        secs,
        cmds as f64 / secs,
        ms(0.50),
        ms(0.95),
        ms(0.99),
        total.errors
    );

    // Every successful command appended exactly one event, with one outbox row and one
    // command record; every registration claimed one barcode.
    let (events, outbox, commands, claims): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outbox), \
                (SELECT count(*) FROM commands), (SELECT count(*) FROM unique_claims)",
    )
    .fetch_one(&pool)
    .await?;
    let ok = i64::try_from(total.ok)?;
    let consistent = events == ok
        && outbox == ok
        && commands == ok
        && claims == i64::try_from(total.registered)?;
    eprintln!(
        "check: pool_size={pool_size} writers={} ok_cmds_incl_warmup={ok} events_in_table={events} \
         outbox={outbox} commands={commands} claims={claims} registered={} {} max_ms={:.3}",
        args.config.writers,
        total.registered,
        if consistent { "OK" } else { "MISMATCH" },
        hist.max() as f64 / 1000.0
    );
    if mode == Mode::Lifecycle {
        let kinds = ["register", "receive", "validate"];
        let detail: Vec<String> = kinds
            .iter()
            .zip(&total.by_kind)
            .map(|(kind, h)| {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                format!(
                    "{kind}: n={} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3}",
                    h.len(),
                    ms(0.50),
                    ms(0.95),
                    ms(0.99)
                )
            })
            .collect();
        eprintln!("by command: {}", detail.join("; "));
    }
    if let Some(error) = &total.first_error {
        eprintln!("first error: {error}");
    }

    drop(store);
    pool.close().await;
    db.finish(args.keep_db).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Replay scenario
// ---------------------------------------------------------------------------

/// How many events and samples, by final status, a log holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    events: u64,
    samples: u64,
    registered: u64,
    received: u64,
    validated: u64,
    rejected: u64,
}

impl Tally {
    fn count(&mut self, sample: &Sample) {
        self.samples += 1;
        match sample.status() {
            Some(SampleStatus::Registered) => self.registered += 1,
            Some(SampleStatus::Received) => self.received += 1,
            Some(SampleStatus::Validated) => self.validated += 1,
            Some(SampleStatus::Rejected) => self.rejected += 1,
            // This benchmark's samples never get past QC.
            Some(SampleStatus::InStorage | SampleStatus::CheckedOut | SampleStatus::Disposed)
            | None => {}
        }
    }

    fn of(events: u64, samples: &HashMap<Uuid, Sample>) -> Self {
        let mut tally = Self {
            events,
            ..Self::default()
        };
        samples.values().for_each(|s| tally.count(s));
        tally
    }
}

/// The `n`th seeded sample's history, at most `max_events` long, decided by the aggregate
/// itself so that the log is one the domain could have produced: registered, received
/// (some with notes), then validated, or rejected one time in ten.
fn seed_request(n: u64, max_events: usize, tally: &mut Tally) -> Result<AppendRequest> {
    let index = |len: usize| usize::try_from(n).unwrap_or(0) % len;
    let sample_type = SampleType::ALL[index(SampleType::ALL.len())];
    let date = NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("bad date")? + Days::new(n / 1000);
    let collected_at = DateTime::<Utc>::from_timestamp(1_767_225_600 + i64::try_from(n)?, 0)
        .ok_or("bad timestamp")?;
    let details = SampleDetails {
        barcode: Barcode::generate(sample_type, date, n),
        sample_type,
        volume: VolumeUl::parse(&format!("{}.{}", 100 + n % 900, n % 10))?,
        temperature_zone: TemperatureZone::ALL[index(TemperatureZone::ALL.len())],
        patient: (!n.is_multiple_of(5))
            .then(|| PatientRef::parse(&format!("MRN-{:07}", n % 50_000)))
            .transpose()?,
        collected_at: Some(collected_at),
        collected_by: n
            .is_multiple_of(3)
            .then(|| Note::parse("phlebotomy, ward 3"))
            .transpose()?,
    };
    let id = SampleId::new();
    let commands = [
        SampleCommand::Register { id, details },
        SampleCommand::Receive {
            notes: n
                .is_multiple_of(4)
                .then(|| Note::parse("arrived on dry ice"))
                .transpose()?,
        },
        if n % 10 == 9 {
            SampleCommand::Reject {
                reason: Note::parse("haemolysed")?,
                signature: signature(),
            }
        } else {
            SampleCommand::Validate {
                notes: None,
                signature: signature(),
            }
        },
    ];

    let correlation_id = Uuid::now_v7();
    let mut state = Sample::default();
    let mut events = Vec::with_capacity(max_events);
    let mut unique_claims = Vec::new();
    for command in commands.into_iter().take(max_events) {
        let command_id = Uuid::now_v7();
        for event in state.handle(command)? {
            state.apply(&event);
            unique_claims.extend(Sample::unique_values(&event).into_iter().map(
                |(scope, value)| UniqueClaim {
                    scope: scope.to_owned(),
                    value,
                },
            ));
            events.push(NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type(),
                schema_version: SampleEvent::SCHEMA_VERSION,
                payload: event.to_payload()?.to_string(),
                metadata: EventMetadata {
                    user: "seed".into(),
                    user_id: None,
                    command_id,
                    correlation_id,
                    causation_id: command_id,
                    traceparent: None,
                    tracestate: None,
                },
            });
        }
    }
    tally.events += events.len() as u64;
    tally.count(&state);
    Ok(AppendRequest {
        aggregate_type: Sample::TYPE,
        aggregate_id: id.as_uuid(),
        expected_version: 0,
        events,
        command_id: None,
        unique_claims,
        snapshot: None,
        ..AppendRequest::default()
    })
}

/// Seeds exactly `total` events, `batch` append requests per commit.
async fn seed(store: &EventStore, total: u64, batch: usize) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut requests = Vec::with_capacity(batch);
    let mut n = 0u64;
    while tally.events < total {
        let remaining = usize::try_from((total - tally.events).min(3))?;
        requests.push(seed_request(n, remaining, &mut tally)?);
        n += 1;
        if requests.len() == batch || tally.events == total {
            for result in store.append_all(&requests).await {
                result?;
            }
            requests.clear();
        }
    }
    Ok(tally)
}

fn fold(samples: &mut HashMap<Uuid, Sample>, aggregate_id: Uuid, event: &SampleEvent) {
    samples.entry(aggregate_id).or_default().apply(event);
}

/// Rebuilds every sample from one `stream_all` query.
async fn replay_stream(store: &EventStore) -> Result<Tally> {
    let mut samples = HashMap::new();
    let mut events = 0u64;
    let mut stream = std::pin::pin!(store.stream_all());
    while let Some(event) = stream.try_next().await? {
        let event = event.decode::<SampleEvent>()?;
        fold(&mut samples, event.aggregate_id, &event.payload);
        events += 1;
    }
    Ok(Tally::of(events, &samples))
}

/// Rebuilds every sample by following the log with `read_after`, `page` events at a time.
async fn replay_paged(store: &EventStore, page: i64) -> Result<Tally> {
    let mut samples = HashMap::new();
    let mut events = 0u64;
    let mut cursor = LogCursor::START;
    loop {
        let batch = store.read_after(cursor, page).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor();
        events += batch.len() as u64;
        for event in batch {
            let event = event.decode::<SampleEvent>()?;
            fold(&mut samples, event.aggregate_id, &event.payload);
        }
    }
    Ok(Tally::of(events, &samples))
}

async fn run_replay(args: &Args) -> Result<()> {
    let db = BenchDb::create().await?;

    let seed_pool = db.pool(2).await?;
    let seeder = EventStore::new(seed_pool.clone(), args.config.clone());
    let started = Instant::now();
    let seeded = seed(&seeder, args.events, args.seed_batch).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    // Only when asked: a rebuild after a burst of writes meets a table whose hint bits
    // and visibility map are not set yet, and the first replay pays for them.
    let started = Instant::now();
    if args.vacuum {
        sqlx::raw_sql("VACUUM (ANALYZE) events")
            .execute(&seed_pool)
            .await?;
    }
    eprintln!(
        "seed: events={} samples={} secs={seed_secs:.1} events_per_s={:.0} vacuum_secs={:.1}",
        seeded.events,
        seeded.samples,
        seeded.events as f64 / seed_secs,
        started.elapsed().as_secs_f64()
    );
    drop(seeder);
    seed_pool.close().await;

    // The replays share one connection, as a process rebuilding its state would.
    let pool = db.pool(1).await?;
    let store = EventStore::new(pool.clone(), args.config.clone());
    for mode in ["stream", "paged"] {
        let started = Instant::now();
        let rebuilt = match mode {
            "stream" => replay_stream(&store).await?,
            _ => replay_paged(&store, args.page).await?,
        };
        let secs = started.elapsed().as_secs_f64();
        println!(
            "replay mode={mode} events={} secs={secs:.2} events_per_s={:.0} aggregates={}",
            rebuilt.events,
            rebuilt.events as f64 / secs,
            rebuilt.samples
        );
        eprintln!(
            "check: replay mode={mode} {} rebuilt={rebuilt:?}{}",
            if rebuilt == seeded { "OK" } else { "MISMATCH" },
            if rebuilt == seeded {
                String::new()
            } else {
                format!(" seeded={seeded:?}")
            }
        );
    }

    drop(store);
    pool.close().await;
    db.finish(args.keep_db).await;
    Ok(())
}
