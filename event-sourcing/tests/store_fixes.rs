//! The store's guarantees for bulk appends, released claims, causation and idempotency,
//! against a real PostgreSQL
//! server, each test in its own fresh database. Every test here was seen to fail with the
//! guarantee it checks broken in the code.

use cqrs::sample::{Sample, SampleCommand, SampleEvent, SampleRejection, SampleStatus};
use event_sourcing::testkit::samples::{raw_request, register, signature};
use event_sourcing::testkit::{fresh_database, server_url};
use event_sourcing::{
    AppendRequest, CommandContext, CommandError, EventStore, ExpectedVersion, RecordedOutcome,
    StoreConfig, StoreError, UniqueClaim,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Every stream whose row version differs from its event count or its newest event.
async fn inconsistent_streams(pool: &PgPool) -> Result<Vec<(Uuid, i64, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.aggregate_id, s.version, count(e.position), coalesce(max(e.version), 0) \
         FROM streams s LEFT JOIN events e USING (aggregate_id) \
         GROUP BY s.aggregate_id, s.version \
         HAVING s.version <> count(e.position) OR s.version <> coalesce(max(e.version), 0)",
    )
    .fetch_all(pool)
    .await
}

/// Deadlocks PostgreSQL detected in database `name`, read once every connection to it has
/// gone: a backend reports its statistics on the way out, before it leaves
/// `pg_stat_activity`. `Pool::close` does not always end the server side of its
/// connections, so what is left of them (this test's own database) is terminated, which
/// also flushes their statistics.
async fn deadlocks_after_close(pool: PgPool, name: &str) -> Result<i64, sqlx::Error> {
    pool.close().await;
    let mut admin = PgConnection::connect(&server_url()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Client backends only: autovacuum workers come and go on their own.
        let connected: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend'",
        )
        .bind(name)
        .fetch_all(&mut admin)
        .await?;
        if connected.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections to {name} did not end"
        );
        tokio::task::yield_now().await;
    }
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
}

/// Concurrent `append_all` batches that all touch the same hot aggregates, each in its
/// own random order: no batch may deadlock another (a deadlock is hidden from callers by
/// the one-by-one fallback, so the test asks PostgreSQL how many it detected), and every
/// stream ends consistent with its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_over_shared_aggregates_never_deadlock() -> TestResult {
    race_over_hot_aggregates(false).await
}

/// The same race with half of the tasks appending to the hot aggregates one request at a
/// time, which takes the single-request form of the statement (no separate ordered lock):
/// singles and batches never deadlock each other, and racing singles at one version
/// advance a stream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_appends_racing_batches_never_deadlock_or_double_advance() -> TestResult {
    race_over_hot_aggregates(true).await
}

/// Tasks that each append one event to every hot aggregate per round, at the versions
/// they read, all starting together; with `singles`, every other task sends its requests
/// one by one (in its random order) instead of as one batch.
async fn race_over_hot_aggregates(singles: bool) -> TestResult {
    let (pool, name) = fresh_database(20).await?;
    // Detect deadlocks quickly, so that a broken lock order fails the test in seconds.
    sqlx::query(&format!(
        "ALTER DATABASE {name} SET deadlock_timeout = '20ms'"
    ))
    .execute(&pool)
    .await?;
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(PgConnectOptions::from_str(&server_url())?.database(&name))
        .await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    const HOT: usize = 16;
    const TASKS: usize = 8;
    const ROUNDS: usize = 12;
    let hot: Vec<Uuid> = (0..HOT).map(|_| Uuid::now_v7()).collect();
    let created: Vec<AppendRequest> = hot.iter().map(|id| raw_request(*id, 0, 1)).collect();
    for result in store.append_all(&created).await {
        result?;
    }

    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let one_by_one = singles && task % 2 == 1;
            let (store, hot, barrier) = (store.clone(), hot.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                let (mut appended, mut unexpected) = (0usize, Vec::new());
                for _ in 0..ROUNDS {
                    let mut ids = hot.clone();
                    ids.sort_by_cached_key(|_| Uuid::new_v4());
                    let current: Vec<(Uuid, i64)> = sqlx::query_as(
                        "SELECT aggregate_id, version FROM streams WHERE aggregate_id = ANY($1)",
                    )
                    .bind(&ids)
                    .fetch_all(store.pool())
                    .await?;
                    let requests: Vec<AppendRequest> = ids
                        .iter()
                        .map(|id| {
                            let version = current
                                .iter()
                                .find(|(a, _)| a == id)
                                .map_or(0, |(_, v)| *v as u64);
                            raw_request(*id, version, 1)
                        })
                        .collect();
                    // Every task takes part in every round, whatever happened before, so
                    // a failure shows as a failed assertion, never as a hang here.
                    barrier.wait().await;
                    let results = if one_by_one {
                        let mut results = Vec::with_capacity(requests.len());
                        for request in &requests {
                            results.extend(store.append_all(std::slice::from_ref(request)).await);
                        }
                        results
                    } else {
                        store.append_all(&requests).await
                    };
                    for result in results {
                        match result {
                            Ok(_) => appended += 1,
                            Err(StoreError::Conflict { .. }) => {}
                            Err(other) => unexpected.push(other.to_string()),
                        }
                    }
                }
                Ok::<_, sqlx::Error>((appended, unexpected))
            })
        })
        .collect();
    let (mut appended, mut unexpected) = (0, Vec::new());
    for task in tasks {
        let (n, errors) = task.await??;
        appended += n;
        unexpected.extend(errors);
    }
    assert_eq!(unexpected, Vec::<String>::new());
    assert!(appended > 0);
    assert_eq!(inconsistent_streams(&pool).await?, vec![]);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    assert_eq!(events as usize, HOT + appended);
    drop(store);
    assert_eq!(
        deadlocks_after_close(pool, &name).await?,
        0,
        "PostgreSQL detected deadlocks between batches"
    );
    Ok(())
}

/// Two requests for one aggregate in one `append_all` run one after the other, in the
/// order given: the later sees the earlier's version, and the stream stays writable.
#[tokio::test]
async fn a_batch_with_one_aggregate_twice_keeps_it_consistent_and_writable() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let id = Uuid::now_v7();
    let other = Uuid::now_v7();
    let results = store
        .append_all(&[
            raw_request(id, 0, 2),
            raw_request(other, 0, 1),
            raw_request(id, 2, 1),
        ])
        .await;
    let versions: Vec<(u64, u64)> = results
        .into_iter()
        .map(|r| r.map(|a| (a.first_version, a.last_version)))
        .collect::<Result<_, _>>()?;
    assert_eq!(versions, vec![(1, 2), (1, 1), (3, 3)]);
    assert_eq!(inconsistent_streams(&pool).await?, vec![]);

    // Two requests at the same expected version: the first wins, the second conflicts.
    let results = store
        .append_all(&[raw_request(id, 3, 1), raw_request(id, 3, 1)])
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Conflict { expected: 3, .. })),
        "{results:?}"
    );
    assert_eq!(inconsistent_streams(&pool).await?, vec![]);

    let next = store.append(raw_request(id, 4, 1)).await?;
    assert_eq!((next.first_version, next.last_version), (5, 5));
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM events WHERE aggregate_id = $1 ORDER BY version")
            .bind(id)
            .fetch_all(&pool)
            .await?;
    assert_eq!(stored, vec![1, 2, 3, 4, 5]);
    Ok(())
}

fn claim(scope: &str, value: &str) -> UniqueClaim {
    UniqueClaim {
        scope: scope.into(),
        value: value.into(),
    }
}

/// A request with two claims whose second is taken: the error names the second, read
/// from PostgreSQL's report of the key, not guessed.
#[tokio::test]
async fn a_taken_claim_is_named_even_when_it_is_not_the_first() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool, StoreConfig::default());
    let mut holder = raw_request(Uuid::now_v7(), 0, 1);
    holder.unique_claims = vec![claim("barcode", "BC-(1, 2)=x")];
    store.append(holder).await?;

    let mut request = raw_request(Uuid::now_v7(), 0, 1);
    request.unique_claims = vec![
        claim("position", "F1/R1/B1/A1"),
        claim("barcode", "BC-(1, 2)=x"),
    ];
    let result = store.append(request).await;
    assert!(
        matches!(&result, Err(StoreError::UniqueViolation { scope, value })
            if scope == "barcode" && value == "BC-(1, 2)=x"),
        "{result:?}"
    );
    Ok(())
}

async fn claim_owner(pool: &PgPool, scope: &str, value: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT aggregate_id FROM unique_claims WHERE scope = $1 AND value = $2")
        .bind(scope)
        .bind(value)
        .fetch_optional(pool)
        .await
}

/// A released claim can be taken by another aggregate, in a later statement or in the
/// same batch; naming a claim the aggregate does not hold releases nothing.
#[tokio::test]
async fn a_released_claim_can_be_claimed_again_and_only_its_holder_releases_it() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let (holder, other, thief) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut take = raw_request(holder, 0, 1);
    take.unique_claims = vec![claim("position", "A1"), claim("position", "A2")];
    store.append(take).await?;

    // Someone else's claim: the append succeeds, the claim stays where it was.
    let mut steal = raw_request(thief, 0, 1);
    steal.released_claims = vec![claim("position", "A1")];
    store.append(steal).await?;
    assert_eq!(claim_owner(&pool, "position", "A1").await?, Some(holder));
    let mut grab = raw_request(thief, 1, 1);
    grab.unique_claims = vec![claim("position", "A1")];
    assert!(matches!(
        store.append(grab).await,
        Err(StoreError::UniqueViolation { .. })
    ));

    // Released by its holder, then claimed by another aggregate.
    let mut free = raw_request(holder, 1, 1);
    free.released_claims = vec![claim("position", "A1")];
    store.append(free).await?;
    assert_eq!(claim_owner(&pool, "position", "A1").await?, None);
    let mut reuse = raw_request(other, 0, 1);
    reuse.unique_claims = vec![claim("position", "A1")];
    store.append(reuse).await?;
    assert_eq!(claim_owner(&pool, "position", "A1").await?, Some(other));

    // In one batch: the claim comes first and the release second; both succeed.
    let mut claim_a2 = raw_request(thief, 1, 1);
    claim_a2.unique_claims = vec![claim("position", "A2")];
    let mut free_a2 = raw_request(holder, 2, 1);
    free_a2.released_claims = vec![claim("position", "A2")];
    let results = store.append_all(&[claim_a2, free_a2]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(claim_owner(&pool, "position", "A2").await?, Some(thief));
    assert_eq!(inconsistent_streams(&pool).await?, vec![]);
    Ok(())
}

/// Event A causes a command whose event is B (a saga step): B names its own command and
/// A as its cause, so one can walk back from B to A, and both share A's correlation.
#[tokio::test]
async fn an_event_caused_by_another_leads_back_to_it() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool, StoreConfig::default());
    let id = Uuid::now_v7();
    let request = CommandContext::new("tech");
    store
        .execute::<Sample>(id, register(id, "BC-CAUSE"), &request, ExpectedVersion::Any)
        .await?;
    let [a] = store
        .read_stream::<SampleEvent>(id)
        .await?
        .try_into()
        .map_err(|_| "one event")?;
    assert_eq!(a.metadata.command_id, request.command_id);
    assert_eq!(
        a.metadata.causation_id, request.command_id,
        "a user's command is its own cause"
    );

    let saga = CommandContext::caused_by(a.event_id, &a.metadata, "saga");
    store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &saga,
            ExpectedVersion::Any,
        )
        .await?;
    let events = store.read_stream::<SampleEvent>(id).await?;
    let b = events.last().ok_or("no event B")?;
    assert_eq!(b.metadata.command_id, saga.command_id);
    assert_ne!(b.metadata.command_id, a.metadata.command_id);
    assert_eq!(b.metadata.correlation_id, a.metadata.correlation_id);
    assert_eq!(b.metadata.traceparent, a.metadata.traceparent);
    let cause = events
        .iter()
        .find(|e| e.event_id == b.metadata.causation_id)
        .ok_or("B's cause is not an event")?;
    assert_eq!(cause.event_id, a.event_id);
    Ok(())
}

async fn versions(pool: &PgPool, id: Uuid) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM events WHERE aggregate_id = $1 ORDER BY version")
        .bind(id)
        .fetch_all(pool)
        .await
}

fn keyed(key: Uuid, name: &str, fingerprint: &str) -> CommandContext {
    CommandContext::new("tech")
        .with_command_id(key)
        .named(name)
        .with_fingerprint(fingerprint)
}

/// A key reused for a different request (other input, other command, other aggregate,
/// other user) is refused and appends nothing, even where the new request would succeed.
#[tokio::test]
async fn a_reused_idempotency_key_for_a_different_request_is_refused() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
    let key = Uuid::now_v7();
    let first = store
        .execute::<Sample>(
            id,
            register(id, "BC-KEY"),
            &keyed(key, "register", "f1"),
            ExpectedVersion::Any,
        )
        .await?;
    assert!(!first.duplicate);

    let reused = |result: Result<_, CommandError<SampleRejection>>| matches!(result, Err(CommandError::Store(StoreError::IdempotencyKeyReused { command_id })) if command_id == key);
    let other_input = store
        .execute::<Sample>(
            id,
            register(id, "BC-KEY-2"),
            &keyed(key, "register", "f2"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(reused(other_input));
    let other_command = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &keyed(key, "receive", "f1"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(reused(other_command));
    let other_aggregate = store
        .execute::<Sample>(
            other,
            register(other, "BC-KEY-3"),
            &keyed(key, "register", "f1"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(reused(other_aggregate));
    let mut other_user = keyed(key, "register", "f1");
    other_user.user = "someone else".into();
    let other_user = store
        .execute::<Sample>(
            id,
            register(id, "BC-KEY"),
            &other_user,
            ExpectedVersion::Any,
        )
        .await;
    assert!(reused(other_user));

    assert_eq!(versions(&pool, id).await?, vec![1]);
    assert_eq!(versions(&pool, other).await?, Vec::<i64>::new());
    let same = store
        .execute::<Sample>(
            id,
            register(id, "BC-KEY"),
            &keyed(key, "register", "f1"),
            ExpectedVersion::Any,
        )
        .await?;
    assert_eq!(
        (same.first_version, same.last_version, same.duplicate),
        (1, 1, true)
    );
    Ok(())
}

/// The principal a command id is recorded with is the account's id when the command has
/// one: a repeat by the same account is recognised even under another display name, and
/// an account that shares a name with the first sender cannot reuse its key. The account
/// is stored in every event's metadata.
#[tokio::test]
async fn a_repeat_is_matched_by_account_not_by_display_name() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let id = Uuid::now_v7();
    let (ana, impostor) = (Uuid::now_v7(), Uuid::now_v7());
    let as_account = |account: Uuid, name: &str, key: Uuid, command: &str| {
        CommandContext::for_user(account, name)
            .with_command_id(key)
            .named(command)
            .with_fingerprint("f1")
    };
    let key = Uuid::now_v7();
    store
        .execute::<Sample>(
            id,
            register(id, "BC-ACCOUNT"),
            &as_account(ana, "Ana", key, "register"),
            ExpectedVersion::Any,
        )
        .await?;
    let events = store.read_stream::<SampleEvent>(id).await?;
    assert_eq!(events[0].metadata.user_id, Some(ana));
    assert_eq!(events[0].metadata.user, "Ana");

    let renamed = store
        .execute::<Sample>(
            id,
            register(id, "BC-ACCOUNT"),
            &as_account(ana, "Ana Müller", key, "register"),
            ExpectedVersion::Any,
        )
        .await?;
    assert!(
        renamed.duplicate,
        "same account, new display name: a repeat"
    );
    let same_name = store
        .execute::<Sample>(
            id,
            register(id, "BC-ACCOUNT"),
            &as_account(impostor, "Ana", key, "register"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(
            same_name,
            Err(CommandError::Store(StoreError::IdempotencyKeyReused { .. }))
        ),
        "{same_name:?}"
    );

    // A recorded rejection is answered only to the account that sent it.
    store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &CommandContext::for_user(ana, "Ana"),
            ExpectedVersion::Any,
        )
        .await?;
    let receive_key = Uuid::now_v7();
    let refused = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &as_account(ana, "Ana", receive_key, "receive"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(_))),
        "{refused:?}"
    );
    let again = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &as_account(ana, "Ana Müller", receive_key, "receive"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(matches!(again, Err(CommandError::Rejected(_))), "{again:?}");
    let other = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &as_account(impostor, "Ana", receive_key, "receive"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(
            other,
            Err(CommandError::Store(StoreError::IdempotencyKeyReused { .. }))
        ),
        "{other:?}"
    );
    assert_eq!(versions(&pool, id).await?, vec![1, 2]);
    Ok(())
}

/// A rejected command repeated with the same key gets the same rejection, even after the
/// aggregate changed so that the command would now succeed; nothing is appended.
#[tokio::test]
async fn a_repeated_rejection_is_answered_with_the_first_rejection() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let id = Uuid::now_v7();
    store
        .execute::<Sample>(
            id,
            register(id, "BC-REJ-AGAIN"),
            &CommandContext::new("tech"),
            ExpectedVersion::Any,
        )
        .await?;
    let validate = keyed(Uuid::now_v7(), "validate", "v1");
    let refused = store
        .execute::<Sample>(
            id,
            SampleCommand::Validate {
                notes: None,
                signature: signature(),
            },
            &validate,
            ExpectedVersion::Any,
        )
        .await;
    let expected = SampleRejection::CannotValidate(SampleStatus::Registered);
    assert!(
        matches!(&refused, Err(CommandError::Rejected(r)) if *r == expected),
        "{refused:?}"
    );

    store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &CommandContext::new("tech"),
            ExpectedVersion::Any,
        )
        .await?;
    let again = store
        .execute::<Sample>(
            id,
            SampleCommand::Validate {
                notes: None,
                signature: signature(),
            },
            &validate,
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(&again, Err(CommandError::Rejected(r)) if *r == expected),
        "{again:?}"
    );
    assert_eq!(versions(&pool, id).await?, vec![1, 2]);
    Ok(())
}

/// A rejection is recorded only for a command id the caller chose (and may repeat): a
/// stream of refused requests without one leaves no rows behind.
#[tokio::test]
async fn only_rejections_of_repeatable_commands_are_recorded() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let id = Uuid::now_v7();
    store
        .execute::<Sample>(
            id,
            register(id, "BC-REJ-ONCE"),
            &CommandContext::new("tech"),
            ExpectedVersion::Any,
        )
        .await?;
    let rejections = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM commands WHERE outcome = 'rejected'")
            .fetch_one(&pool)
            .await
    };
    for _ in 0..3 {
        let refused = store
            .execute::<Sample>(
                id,
                SampleCommand::Validate {
                    notes: None,
                    signature: signature(),
                },
                &CommandContext::new("tech"),
                ExpectedVersion::Any,
            )
            .await;
        assert!(
            matches!(refused, Err(CommandError::Rejected(_))),
            "{refused:?}"
        );
    }
    assert_eq!(rejections().await?, 0, "random command ids recorded");
    let refused = store
        .execute::<Sample>(
            id,
            SampleCommand::Validate {
                notes: None,
                signature: signature(),
            },
            &keyed(Uuid::now_v7(), "validate", "v1"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(rejections().await?, 1, "a keyed rejection is recorded");
    Ok(())
}

/// A command repeated after the aggregate moved on returns its first outcome (the
/// versions it appended then), marked as a duplicate, and appends nothing.
#[tokio::test]
async fn a_repeat_after_the_aggregate_moved_on_returns_the_first_outcome() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    let id = Uuid::now_v7();
    let plain = || CommandContext::new("tech");
    store
        .execute::<Sample>(id, register(id, "BC-MOVED"), &plain(), ExpectedVersion::Any)
        .await?;
    let receive = keyed(Uuid::now_v7(), "receive", "r1");
    let first = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &receive,
            ExpectedVersion::Any,
        )
        .await?;
    store
        .execute::<Sample>(
            id,
            SampleCommand::Validate {
                notes: None,
                signature: signature(),
            },
            &plain(),
            ExpectedVersion::Any,
        )
        .await?;
    let repeat = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &receive,
            ExpectedVersion::Any,
        )
        .await?;
    assert_eq!(
        (first.first_version, first.last_version, first.duplicate),
        (2, 2, false)
    );
    assert_eq!(
        (repeat.first_version, repeat.last_version, repeat.duplicate),
        (2, 2, true)
    );
    assert_eq!(versions(&pool, id).await?, vec![1, 2, 3]);
    Ok(())
}

/// Identical requests with one key, racing a change that makes the command acceptable:
/// whatever each saw, all get the one recorded outcome and at most one set of events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_racing_a_change_agree_on_one_outcome() -> TestResult {
    let (pool, _) = fresh_database(20).await?;
    let store = EventStore::new(pool.clone(), StoreConfig::default());
    for round in 0..10 {
        let id = Uuid::now_v7();
        store
            .execute::<Sample>(
                id,
                register(id, &format!("BC-RACE-{round}")),
                &CommandContext::new("t"),
                ExpectedVersion::Any,
            )
            .await?;
        let validate = keyed(Uuid::now_v7(), "validate", "v");
        let barrier = Arc::new(tokio::sync::Barrier::new(9));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, validate, barrier) =
                (store.clone(), validate.clone(), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .execute::<Sample>(
                        id,
                        SampleCommand::Validate {
                            notes: None,
                            signature: signature(),
                        },
                        &validate,
                        ExpectedVersion::Any,
                    )
                    .await
                    .map(|o| (o.first_version, o.last_version))
                    .map_err(|e| e.to_string())
            }));
        }
        let receiver = {
            let store = store.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .execute::<Sample>(
                        id,
                        SampleCommand::Receive { notes: None },
                        &CommandContext::new("t"),
                        ExpectedVersion::Any,
                    )
                    .await
            })
        };
        let mut answers = std::collections::HashSet::new();
        for task in tasks {
            answers.insert(task.await?);
        }
        receiver.await??;
        assert_eq!(answers.len(), 1, "{answers:?}");
        let validated: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'SampleValidated'",
        )
        .bind(id)
        .fetch_one(&pool)
        .await?;
        let recorded = store
            .command_outcome(validate.command_id)
            .await?
            .ok_or("not recorded")?;
        match recorded.outcome {
            RecordedOutcome::Succeeded { .. } => assert_eq!(validated, 1),
            RecordedOutcome::Rejected(_) => assert_eq!(validated, 0),
        }
        assert_eq!(inconsistent_streams(&pool).await?, vec![]);
    }
    Ok(())
}
