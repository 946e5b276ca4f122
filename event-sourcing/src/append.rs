//! The append path: requests are grouped into one statement per batch (group commit).
//!
//! Every request keeps its own optimistic-concurrency check and its own outcome. A batch
//! is a single autocommit statement whose first step compare-and-sets each aggregate's
//! row in `streams` (insert for expected version 0, `version = expected` otherwise);
//! only the aggregates that won get their events, outbox rows, command record, unique
//! claims and snapshot written, all in the same statement and so the same commit.
//! Losers get `Conflict` and nothing of theirs is written. If the statement fails as a
//! whole (a unique claim or command id taken, a deadlock), each request is retried alone
//! so that one bad request cannot fail the others.
//!
//! **One aggregate, one request per statement.** The statement decides per aggregate,
//! not per request, so two requests for the same aggregate in one statement would both
//! have their events written against a single compare-and-set. The queue never puts two
//! in one batch (`next_batch` defers the second), and [`commit_batch`] splits what it is
//! given (`append_all` passes callers' slices straight through) into *rounds*: the n-th
//! request for an aggregate goes into the n-th round, and rounds run one after another.
//! So duplicates are serialised in the order given — a bulk import may send a stream's
//! events as several consecutive requests — and each is checked against the version the
//! previous one left. The price is one commit per round instead of one per call; batches
//! without duplicates are still a single statement.
//!
//! **Lock order.** Two concurrent statements that share aggregates would deadlock if
//! each locked its stream rows in its own order (PostgreSQL detects it, aborts one, and
//! the fallback hides it at the cost of a second wait and a one-by-one retry). The
//! statement therefore locks every existing stream row it touches in `aggregate_id`
//! order before anything else (`SELECT ... ORDER BY aggregate_id FOR UPDATE`; PostgreSQL
//! applies the row locks above the sort, so they are taken in that order), then inserts
//! new stream rows in `aggregate_id` order, and only then writes events, claims and
//! command records. A wait in the second phase is always on a transaction that is
//! itself past its first phase, so no cycle of waits can form across the phases. A
//! round of one request has a single stream row, so its insert or update is its whole
//! first phase and takes no separate ordered lock (`sql/append_streams_single.sql`).
//! Unique claims and command records are inserted in key order for the same reason;
//! the one wait cycle that remains possible is two statements each releasing a claim
//! the other takes (a swap), which cannot succeed in either order anyway: PostgreSQL
//! aborts one, and the one-by-one retry reports the taken claim.

use crate::error::StoreError;
use crate::follow::LogCursor;
use crate::log_epoch;
use crate::metadata::EventMetadata;
use sqlx::PgPool;
use sqlx::postgres::PgDatabaseError;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use uuid::Uuid;

/// One event to append, already serialised.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub schema_version: u32,
    pub payload: String,
    pub metadata: EventMetadata,
}

/// A value that must be unique across aggregates, claimed with the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueClaim {
    pub scope: String,
    pub value: String,
}

/// The aggregate's state after the appended events, stored as its latest snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotWrite {
    pub state_version: u32,
    pub state: String,
}

/// Events for one aggregate, appended only if the aggregate is still at `expected_version`.
#[derive(Debug, Clone, Default)]
pub struct AppendRequest {
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
    /// Recorded so that a repeat of the command is recognised, with what it asked for
    /// (`command_name`, `fingerprint`, `principal`) so that a repeat asking for something
    /// else is not mistaken for it.
    pub command_id: Option<Uuid>,
    pub command_name: Option<String>,
    pub fingerprint: Option<String>,
    pub principal: Option<String>,
    pub unique_claims: Vec<UniqueClaim>,
    /// Claims this aggregate gives up (a freed storage position, a disposed barcode),
    /// deleted with the events. Only claims the aggregate holds are released; naming
    /// another aggregate's claim does nothing. Released before this statement's claims
    /// are taken, so another request in the same batch may take a value released here.
    pub released_claims: Vec<UniqueClaim>,
    pub snapshot: Option<SnapshotWrite>,
}

impl AppendRequest {
    fn last_version(&self) -> u64 {
        self.expected_version + self.events.len() as u64
    }
}

/// Where the appended events landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub aggregate_id: Uuid,
    pub first_version: u64,
    pub last_version: u64,
    /// Global positions, one per event, in order.
    pub positions: Vec<i64>,
    /// The log cursor of the last event: a follower past it has seen all of them.
    pub cursor: LogCursor,
}

pub(crate) type AppendResult = Result<Appended, StoreError>;

pub(crate) struct Pending {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<AppendResult>,
}

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub max_requests: usize,
    pub max_events: usize,
}

/// Spawns `writers` tasks that take requests from one queue and commit them in batches.
pub(crate) fn spawn_writers(
    pool: PgPool,
    writers: usize,
    limits: BatchLimits,
    committed: watch::Sender<u64>,
) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel::<Pending>(limits.max_requests * writers.max(1) * 4);
    let queue = Arc::new(Mutex::new(rx));
    for _ in 0..writers.max(1) {
        let queue = Arc::clone(&queue);
        let pool = pool.clone();
        let committed = committed.clone();
        tokio::spawn(async move {
            let mut carry = VecDeque::new();
            while let Some(batch) = next_batch(&queue, &mut carry, limits).await {
                let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
                let results = commit_batch(&pool, &requests).await;
                if results.iter().any(Result::is_ok) {
                    committed.send_modify(|n| *n += 1);
                }
                for (pending, result) in batch.into_iter().zip(results) {
                    // The caller may have gone away (request cancelled); the outcome stands.
                    let _ = pending.reply.send(result);
                }
            }
        });
    }
    tx
}

/// Waits for at least one request, then takes whatever else is queued, up to the limits.
/// A request for an aggregate already in the batch waits for the next one.
async fn next_batch(
    queue: &Mutex<mpsc::Receiver<Pending>>,
    carry: &mut VecDeque<Pending>,
    limits: BatchLimits,
) -> Option<Vec<Pending>> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut ids = HashSet::new();
    let mut events = 0;
    let mut deferred = VecDeque::new();
    let mut admit = |p: Pending, batch: &mut Vec<Pending>, deferred: &mut VecDeque<Pending>| {
        if ids.contains(&p.request.aggregate_id)
            || (!batch.is_empty() && events + p.request.events.len() > limits.max_events)
        {
            deferred.push_back(p);
        } else {
            ids.insert(p.request.aggregate_id);
            events += p.request.events.len();
            batch.push(p);
        }
    };
    while let Some(p) = carry.pop_front() {
        admit(p, &mut batch, &mut deferred);
    }
    // With work carried over, never wait for the queue: another writer may be holding it
    // while it waits for new requests, which may never come while ours go unanswered.
    let rx = if batch.is_empty() {
        Some(queue.lock().await)
    } else {
        queue.try_lock().ok()
    };
    if let Some(mut rx) = rx {
        if batch.is_empty() {
            let first = rx.recv().await?;
            admit(first, &mut batch, &mut deferred);
        }
        while batch.len() < limits.max_requests {
            match rx.try_recv() {
                Ok(p) => admit(p, &mut batch, &mut deferred),
                Err(_) => break,
            }
        }
    }
    *carry = deferred;
    Some(batch)
}

/// Commits a batch; the result for each request is in request order.
///
/// Requests for an aggregate already in the batch run in later rounds (see the module
/// doc), so a request sees the version left by the ones before it.
pub(crate) async fn commit_batch(pool: &PgPool, requests: &[&AppendRequest]) -> Vec<AppendResult> {
    let rounds = rounds(requests);
    if rounds.len() == 1 {
        return commit_round(pool, requests).await;
    }
    let mut results: Vec<Option<AppendResult>> = requests.iter().map(|_| None).collect();
    for round in rounds {
        let members: Vec<&AppendRequest> = round.iter().map(|&i| requests[i]).collect();
        for (i, result) in round.into_iter().zip(commit_round(pool, &members).await) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(StoreError::Closed)))
        .collect()
}

/// Indexes of `requests` grouped so that no group holds an aggregate twice: the n-th
/// request for an aggregate is in the n-th group, and groups keep request order.
fn rounds(requests: &[&AppendRequest]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let n = seen.entry(request.aggregate_id).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }
    if rounds.is_empty() {
        rounds.push(Vec::new());
    }
    rounds
}

/// Commits requests for distinct aggregates in one statement, falling back to one
/// statement per request when it fails as a whole.
async fn commit_round(pool: &PgPool, requests: &[&AppendRequest]) -> Vec<AppendResult> {
    if requests.is_empty() {
        return Vec::new();
    }
    let error = match run_statement(pool, requests).await {
        Ok(results) => return results,
        Err(error) => error,
    };
    // Every request would be refused alike; one by one would only repeat the refusal.
    if let Some(StoreError::LogOrderBroken {
        newest_stored,
        current,
    }) = log_epoch::log_order_broken(&error)
    {
        return requests
            .iter()
            .map(|_| {
                Err(StoreError::LogOrderBroken {
                    newest_stored,
                    current,
                })
            })
            .collect();
    }
    if requests.len() == 1 {
        return vec![Err(classify(error, requests[0]))];
    }
    tracing::debug!(%error, size = requests.len(), "batch failed as a whole; retrying its requests one by one");
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let result = match run_statement(pool, std::slice::from_ref(request)).await {
            Ok(mut one) => one.pop().unwrap_or(Err(StoreError::Closed)),
            Err(error) => Err(classify(error, request)),
        };
        results.push(result);
    }
    results
}

fn classify(error: sqlx::Error, request: &AppendRequest) -> StoreError {
    if let Some(broken) = log_epoch::log_order_broken(&error) {
        return broken;
    }
    if let Some(db) = error.as_database_error() {
        match db.constraint() {
            Some("commands_pkey") => {
                if let Some(id) = request.command_id {
                    return StoreError::DuplicateCommand(id);
                }
            }
            Some("unique_claims_pkey") => {
                if let Some(claim) = taken_claim(db, request) {
                    return StoreError::UniqueViolation {
                        scope: claim.scope.clone(),
                        value: claim.value.clone(),
                    };
                }
                // The DETAIL is missing (no SELECT right on the table) or worded otherwise
                // (a translated server): still a taken value, never an outage. Name every
                // value the request claimed; with one claim, as usual, that is exact.
                if !request.unique_claims.is_empty() {
                    let join = |f: fn(&UniqueClaim) -> &str| {
                        let mut parts: Vec<&str> = request.unique_claims.iter().map(f).collect();
                        parts.dedup();
                        parts.join(" or ")
                    };
                    return StoreError::UniqueViolation {
                        scope: join(|c| c.scope.as_str()),
                        value: join(|c| c.value.as_str()),
                    };
                }
            }
            Some("streams_pkey") | Some("events_aggregate_id_version_key") => {
                return StoreError::Conflict {
                    aggregate_id: request.aggregate_id,
                    expected: request.expected_version,
                };
            }
            _ => {}
        }
    }
    StoreError::Database(error)
}

/// The claim PostgreSQL reported as taken. Its DETAIL names the key exactly,
/// `Key (scope, value)=(barcode, X) already exists.`; the message does not. Matching the
/// whole DETAIL line, rather than parsing it, stays right when a value itself contains
/// commas, parentheses or `=`. No match (another wording, no DETAIL) is answered by the
/// caller without pinning it on one claim that may be free.
fn taken_claim<'r>(
    db: &(dyn sqlx::error::DatabaseError + 'static),
    request: &'r AppendRequest,
) -> Option<&'r UniqueClaim> {
    let detail = db.try_downcast_ref::<PgDatabaseError>()?.detail()?;
    request.unique_claims.iter().find(|c| {
        detail
            == format!(
                "Key (scope, value)=({}, {}) already exists.",
                c.scope, c.value
            )
    })
}

/// The append statement in its four forms, put together from the `sql/append_*.sql`
/// fragments (each says what it does). Every form takes the same parameters, so
/// [`Columns`] binds them all alike; a form that does not use some (an empty release
/// or snapshot column) still declares their types, since sqlx sends every bound
/// parameter's type with the statement.
///
/// Why forms: at low concurrency every append is a round of one request, and its
/// latency is the statement's fixed server cost plus the commit. That cost is mostly
/// executor start-up, per plan node, and the full statement grew to carry steps that
/// nearly every append leaves empty: the batch's ordered locking (`locked`) and the
/// release and snapshot writes. A round of one request uses the single stream phase, and
/// a round with no release and no snapshot leaves those two writes out; anything else
/// runs the full statement, unchanged. Each form is one statement and one commit, with
/// the same guarantees; sqlx prepares each form once per connection.
mod statements {
    macro_rules! append {
        ($streams:literal, $claims:literal) => {
            concat!(
                include_str!(concat!("sql/", $streams)),
                include_str!("sql/append_writes.sql"),
                include_str!(concat!("sql/", $claims)),
                include_str!("sql/append_result.sql"),
            )
        };
    }
    pub(super) const SINGLE: &str = append!("append_streams_single.sql", "append_claims.sql");
    pub(super) const SINGLE_FULL: &str = append!(
        "append_streams_single.sql",
        "append_claims_releases_snapshots.sql"
    );
    pub(super) const BATCH: &str = append!("append_streams_batch.sql", "append_claims.sql");
    pub(super) const BATCH_FULL: &str = append!(
        "append_streams_batch.sql",
        "append_claims_releases_snapshots.sql"
    );
}

/// The form of the append statement for these requests and their columns.
fn append_sql(requests: &[&AppendRequest], c: &Columns) -> &'static str {
    let full = !c.release_aggregate_ids.is_empty() || !c.snapshot_ids.is_empty();
    match (requests.len() == 1, full) {
        (true, false) => statements::SINGLE,
        (true, true) => statements::SINGLE_FULL,
        (false, false) => statements::BATCH,
        (false, true) => statements::BATCH_FULL,
    }
}

/// Columns of the batch statement, one array per column.
#[derive(Default)]
struct Columns {
    stream_ids: Vec<Uuid>,
    stream_types: Vec<&'static str>,
    stream_expected: Vec<i64>,
    stream_new: Vec<i64>,
    event_types_agg: Vec<&'static str>,
    event_aggregate_ids: Vec<Uuid>,
    event_versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    event_types: Vec<&'static str>,
    event_schema_versions: Vec<i32>,
    event_payloads: Vec<String>,
    event_metadata: Vec<String>,
    command_ids: Vec<Uuid>,
    command_types: Vec<&'static str>,
    command_aggregate_ids: Vec<Uuid>,
    command_first: Vec<i64>,
    command_last: Vec<i64>,
    command_names: Vec<Option<String>>,
    command_fingerprints: Vec<Option<String>>,
    command_principals: Vec<Option<String>>,
    claim_scopes: Vec<String>,
    claim_values: Vec<String>,
    claim_aggregate_ids: Vec<Uuid>,
    release_scopes: Vec<String>,
    release_values: Vec<String>,
    release_aggregate_ids: Vec<Uuid>,
    snapshot_ids: Vec<Uuid>,
    snapshot_types: Vec<&'static str>,
    snapshot_versions: Vec<i64>,
    snapshot_state_versions: Vec<i32>,
    snapshot_states: Vec<String>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Columns {
    fn build(requests: &[&AppendRequest]) -> Result<Self, serde_json::Error> {
        let mut c = Self::default();
        for r in requests {
            c.stream_ids.push(r.aggregate_id);
            c.stream_types.push(r.aggregate_type);
            c.stream_expected.push(to_i64(r.expected_version));
            c.stream_new.push(to_i64(r.last_version()));
            for (i, e) in r.events.iter().enumerate() {
                c.event_types_agg.push(r.aggregate_type);
                c.event_aggregate_ids.push(r.aggregate_id);
                c.event_versions
                    .push(to_i64(r.expected_version + 1 + i as u64));
                c.event_ids.push(e.event_id);
                c.event_types.push(e.event_type);
                c.event_schema_versions
                    .push(i32::try_from(e.schema_version).unwrap_or(i32::MAX));
                c.event_payloads.push(e.payload.clone());
                c.event_metadata.push(serde_json::to_string(&e.metadata)?);
            }
            if let Some(id) = r.command_id {
                c.command_ids.push(id);
                c.command_types.push(r.aggregate_type);
                c.command_aggregate_ids.push(r.aggregate_id);
                c.command_first.push(to_i64(r.expected_version + 1));
                c.command_last.push(to_i64(r.last_version()));
                c.command_names.push(r.command_name.clone());
                c.command_fingerprints.push(r.fingerprint.clone());
                c.command_principals.push(r.principal.clone());
            }
            for claim in &r.unique_claims {
                c.claim_scopes.push(claim.scope.clone());
                c.claim_values.push(claim.value.clone());
                c.claim_aggregate_ids.push(r.aggregate_id);
            }
            for claim in &r.released_claims {
                c.release_scopes.push(claim.scope.clone());
                c.release_values.push(claim.value.clone());
                c.release_aggregate_ids.push(r.aggregate_id);
            }
            if let Some(s) = &r.snapshot {
                c.snapshot_ids.push(r.aggregate_id);
                c.snapshot_types.push(r.aggregate_type);
                c.snapshot_versions.push(to_i64(r.last_version()));
                c.snapshot_state_versions
                    .push(i32::try_from(s.state_version).unwrap_or(i32::MAX));
                c.snapshot_states.push(s.state.clone());
            }
        }
        Ok(c)
    }
}

/// Commits requests for distinct aggregates all or nothing: the batch statement inside a
/// transaction that is committed only if every request won. The first refusal is the
/// answer; nothing of any request is written then.
pub(crate) async fn commit_together(
    pool: &PgPool,
    requests: &[&AppendRequest],
) -> Result<Vec<Appended>, StoreError> {
    let mut seen = HashSet::new();
    if requests.is_empty() || !requests.iter().all(|r| seen.insert(r.aggregate_id)) {
        return Err(StoreError::Database(sqlx::Error::Protocol(
            "append_together takes one request per aggregate".into(),
        )));
    }
    let mut tx = pool.begin().await.map_err(StoreError::Database)?;
    let results = match run_statement(&mut *tx, requests).await {
        Ok(results) => results,
        Err(error) => {
            // The transaction is aborted; dropping it rolls it back.
            let guilty = requests
                .iter()
                .find(|r| {
                    error
                        .as_database_error()
                        .is_some_and(|db| taken_claim(db, r).is_some())
                })
                .copied()
                .unwrap_or(requests[0]);
            return Err(classify(error, guilty));
        }
    };
    let mut appended = Vec::with_capacity(results.len());
    for result in results {
        // Dropping the transaction on the way out rolls the winners back.
        appended.push(result?);
    }
    tx.commit().await.map_err(StoreError::Database)?;
    Ok(appended)
}

/// Runs the batch statement: `Err` only when the statement failed as a whole.
async fn run_statement<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    requests: &[&AppendRequest],
) -> Result<Vec<AppendResult>, sqlx::Error> {
    let c = Columns::build(requests).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(append_sql(requests, &c))
        .bind(&c.stream_ids)
        .bind(&c.stream_types)
        .bind(&c.stream_expected)
        .bind(&c.stream_new)
        .bind(&c.event_types_agg)
        .bind(&c.event_aggregate_ids)
        .bind(&c.event_versions)
        .bind(&c.event_ids)
        .bind(&c.event_types)
        .bind(&c.event_schema_versions)
        .bind(&c.event_payloads)
        .bind(&c.event_metadata)
        .bind(&c.command_ids)
        .bind(&c.command_types)
        .bind(&c.command_aggregate_ids)
        .bind(&c.command_first)
        .bind(&c.command_last)
        .bind(&c.claim_scopes)
        .bind(&c.claim_values)
        .bind(&c.claim_aggregate_ids)
        .bind(&c.snapshot_ids)
        .bind(&c.snapshot_types)
        .bind(&c.snapshot_versions)
        .bind(&c.snapshot_state_versions)
        .bind(&c.snapshot_states)
        .bind(&c.release_scopes)
        .bind(&c.release_values)
        .bind(&c.release_aggregate_ids)
        .bind(&c.command_names)
        .bind(&c.command_fingerprints)
        .bind(&c.command_principals)
        .fetch_all(executor)
        .await?;

    Ok(requests
        .iter()
        .map(|r| {
            let mut positions = Vec::with_capacity(r.events.len());
            let mut cursor = None;
            for (aggregate_id, position, transaction_id) in &rows {
                if *aggregate_id == r.aggregate_id {
                    positions.push(*position);
                    cursor = Some(LogCursor {
                        transaction_id: *transaction_id,
                        position: *position,
                    });
                }
            }
            match cursor {
                Some(cursor) => {
                    positions.sort_unstable();
                    Ok(Appended {
                        aggregate_id: r.aggregate_id,
                        first_version: r.expected_version + 1,
                        last_version: r.last_version(),
                        cursor: LogCursor {
                            position: positions.last().copied().unwrap_or(cursor.position),
                            ..cursor
                        },
                        positions,
                    })
                }
                None => Err(StoreError::Conflict {
                    aggregate_id: r.aggregate_id,
                    expected: r.expected_version,
                }),
            }
        })
        .collect())
}
