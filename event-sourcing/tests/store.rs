//! The event store against a real PostgreSQL server, each test in its own fresh database.

use cqrs::Aggregate;
use cqrs::sample::{Note, Sample, SampleCommand, SampleEvent, SampleRejection};
use event_sourcing::testkit::fresh_database;
use event_sourcing::testkit::samples::{note_event, raw_request, register, signature};
use event_sourcing::{
    CommandContext, CommandError, EventStore, ExpectedVersion, LogCursor, StoreConfig, StoreError,
    UniqueClaim,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn store(config: StoreConfig) -> Result<EventStore, sqlx::Error> {
    let (pool, _) = fresh_database(40).await?;
    Ok(EventStore::new(pool, config))
}

async fn versions(store: &EventStore, id: Uuid) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM events WHERE aggregate_id = $1 ORDER BY version")
        .bind(id)
        .fetch_all(store.pool())
        .await
}

async fn count(store: &EventStore, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_concurrent_appends_at_one_version_exactly_one_wins() -> TestResult {
    let store = store(StoreConfig {
        writers: 4,
        ..StoreConfig::default()
    })
    .await?;
    let id = Uuid::now_v7();
    store.append(raw_request(id, 0, 1)).await?;

    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(raw_request(id, 1, 2)).await
            })
        })
        .collect();
    let mut won = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await? {
            Ok(appended) => {
                won += 1;
                assert_eq!((appended.first_version, appended.last_version), (2, 3));
            }
            Err(StoreError::Conflict {
                aggregate_id,
                expected,
            }) => {
                assert_eq!((aggregate_id, expected), (id, 1));
                conflicts += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    assert_eq!((won, conflicts), (1, 31));
    assert_eq!(
        versions(&store, id).await?,
        vec![1, 2, 3],
        "gap-free, no duplicates"
    );
    assert_eq!(
        count(&store, "outbox").await?,
        3,
        "one outbox row per event"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_through_execute_with_exact_version_conflict() -> TestResult {
    let store = store(StoreConfig::default()).await?;
    let id = Uuid::now_v7();
    let ctx = CommandContext::new("tech");
    store
        .execute::<Sample>(
            id,
            register(id, "BC-CONC"),
            &ctx,
            ExpectedVersion::Exactly(0),
        )
        .await?;

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .execute::<Sample>(
                        id,
                        SampleCommand::Receive { notes: None },
                        &CommandContext::new("tech"),
                        ExpectedVersion::Exactly(1),
                    )
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await?);
    }
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(CommandError::Store(StoreError::Conflict { .. }))
                    | Err(CommandError::Rejected(SampleRejection::CannotReceive(_)))
            )
        })
        .count();
    assert_eq!((won, refused), (1, 31));
    assert_eq!(versions(&store, id).await?, vec![1, 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_command_id_twice_appends_once_and_answers_the_same() -> TestResult {
    let store = store(StoreConfig::default()).await?;
    let id = Uuid::now_v7();
    let ctx = CommandContext::new("tech");
    let first = store
        .execute::<Sample>(id, register(id, "BC-IDEM-1"), &ctx, ExpectedVersion::Any)
        .await?;
    let again = store
        .execute::<Sample>(id, register(id, "BC-IDEM-1"), &ctx, ExpectedVersion::Any)
        .await?;
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        (again.aggregate_id, again.first_version, again.last_version),
        (first.aggregate_id, first.first_version, first.last_version)
    );

    // A later command repeated after the aggregate moved on still answers the first outcome.
    let receive = CommandContext::new("tech");
    let received = store
        .execute::<Sample>(
            id,
            SampleCommand::Receive { notes: None },
            &receive,
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
        (repeat.first_version, repeat.last_version, repeat.duplicate),
        (2, 2, true)
    );
    assert_eq!(received.last_version, 2);

    // Eight concurrent duplicates of a new command: one set of events, eight equal answers.
    let validate = CommandContext::new("tech");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, validate) = (store.clone(), validate.clone());
            tokio::spawn(async move {
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
            })
        })
        .collect();
    let mut answers = HashSet::new();
    for task in tasks {
        let outcome = task.await??;
        answers.insert((
            outcome.aggregate_id,
            outcome.first_version,
            outcome.last_version,
        ));
    }
    assert_eq!(answers, HashSet::from([(id, 3, 3)]));
    assert_eq!(versions(&store, id).await?, vec![1, 2, 3]);
    assert_eq!(count(&store, "commands").await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_rejected_command_appends_nothing() -> TestResult {
    let store = store(StoreConfig::default()).await?;
    let id = Uuid::now_v7();
    let ctx = CommandContext::new("tech");
    store
        .execute::<Sample>(id, register(id, "BC-REJ"), &ctx, ExpectedVersion::Any)
        .await?;
    let reject = SampleCommand::Reject {
        reason: Note::parse("haemolysed")?,
        signature: signature(),
    };
    store
        .execute::<Sample>(
            id,
            reject,
            &CommandContext::new("tech"),
            ExpectedVersion::Any,
        )
        .await?;
    let result = store
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
    assert!(matches!(
        result,
        Err(CommandError::Rejected(SampleRejection::CannotValidate(_)))
    ));
    assert_eq!(versions(&store, id).await?, vec![1, 2]);
    Ok(())
}

#[tokio::test]
async fn a_taken_barcode_fails_only_its_own_request_in_a_batch() -> TestResult {
    let store = store(StoreConfig::default()).await?;
    let first = Uuid::now_v7();
    store
        .execute::<Sample>(
            first,
            register(first, "BC-TAKEN"),
            &CommandContext::new("t"),
            ExpectedVersion::Any,
        )
        .await?;

    let claim = |value: &str| {
        vec![UniqueClaim {
            scope: "barcode".into(),
            value: value.into(),
        }]
    };
    let mut requests = vec![
        raw_request(Uuid::now_v7(), 0, 1),
        raw_request(Uuid::now_v7(), 0, 1),
        raw_request(Uuid::now_v7(), 0, 1),
    ];
    requests[0].unique_claims = claim("BC-FREE-1");
    requests[1].unique_claims = claim("BC-TAKEN");
    requests[2].unique_claims = claim("BC-FREE-2");
    let results = store.append_all(&requests).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(StoreError::UniqueViolation { scope, value }) if scope == "barcode" && value == "BC-TAKEN"),
        "{results:?}"
    );
    assert!(versions(&store, requests[1].aggregate_id).await?.is_empty());
    assert_eq!(count(&store, "events").await?, 3);

    let second = Uuid::now_v7();
    let result = store
        .execute::<Sample>(
            second,
            register(second, "bc-taken"),
            &CommandContext::new("t"),
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::Store(StoreError::UniqueViolation { .. }))
        ),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn loading_uses_the_latest_snapshot_plus_later_events() -> TestResult {
    let store = store(StoreConfig {
        snapshot_every: 2,
        ..StoreConfig::default()
    })
    .await?;
    let id = Uuid::now_v7();
    let run = |command| {
        let store = store.clone();
        async move {
            store
                .execute::<Sample>(id, command, &CommandContext::new("t"), ExpectedVersion::Any)
                .await
        }
    };
    run(register(id, "BC-SNAP")).await?;
    run(SampleCommand::Receive { notes: None }).await?;
    let snapshot: (i64,) = sqlx::query_as("SELECT version FROM snapshots WHERE aggregate_id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await?;
    assert_eq!(snapshot.0, 2);
    run(SampleCommand::Validate {
        notes: None,
        signature: signature(),
    })
    .await?;

    // Make the snapshot's copy of the state recognisably different: if load used only
    // events the patient would be None, so seeing it proves the snapshot was read.
    sqlx::query("UPDATE snapshots SET state = jsonb_set(state, '{registered,details,patient_ref}', '\"FROM-SNAPSHOT\"') WHERE aggregate_id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    let loaded = store.load::<Sample>(id).await?;
    assert_eq!(loaded.version, 3);
    let sample = loaded.state.registered.ok_or("not registered")?;
    assert_eq!(
        sample.details.patient.map(|p| p.to_string()).as_deref(),
        Some("FROM-SNAPSHOT")
    );
    assert_eq!(sample.status, cqrs::sample::SampleStatus::Validated);

    // A snapshot of another state version is ignored: all events are replayed instead.
    sqlx::query("UPDATE snapshots SET state_version = 999 WHERE aggregate_id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    let loaded = store.load::<Sample>(id).await?;
    let events = store.read_stream::<SampleEvent>(id).await?;
    let replayed = Sample::default().fold(events.iter().map(|e| &e.payload));
    assert_eq!((loaded.state, loaded.version), (replayed, 3));
    Ok(())
}

/// Eight writers commit concurrently, some through slow explicit transactions that take
/// a position early and commit late; a follower reading all the while must see every
/// event exactly once, and always in the same order as a full read afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_under_8_concurrent_writers_sees_every_event_once_in_order() -> TestResult {
    let store = store(StoreConfig {
        writers: 4,
        ..StoreConfig::default()
    })
    .await?;
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 60;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    if w % 2 == 0 && i % 5 == 0 {
                        // Take a position now, commit after others have committed later ones.
                        let mut tx = store.pool().begin().await?;
                        let event = note_event("slow");
                        sqlx::query(
                            "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, \
                             event_type, schema_version, payload, metadata) \
                             VALUES ('Sample', $1, 1, $2, 'SampleReceived', 1, $3::jsonb, $4::jsonb)",
                        )
                        .bind(Uuid::now_v7())
                        .bind(event.event_id)
                        .bind(&event.payload)
                        .bind(serde_json::to_string(&event.metadata)?)
                        .execute(&mut *tx)
                        .await?;
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        tx.commit().await?;
                    } else {
                        store.append(raw_request(Uuid::now_v7(), 0, 1 + i % 3)).await?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut cursor = LogCursor::START;
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let batch = store.read_after(cursor, 37).await?;
                if batch.is_empty() {
                    if finished {
                        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                            .fetch_one(store.pool())
                            .await?;
                        if seen.len() as i64 >= total {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for event in batch {
                    assert!(event.cursor() > cursor, "log order went backwards");
                    cursor = event.cursor();
                    seen.push(event.position);
                }
            }
            Ok::<_, StoreError>(seen)
        })
    };

    for writer in writers {
        writer.await??;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.await??;
    let all: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events ORDER BY transaction_id, position")
            .fetch_all(store.pool())
            .await?;
    assert!(all.len() >= WRITERS * PER_WRITER);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was delivered twice");
    assert_eq!(
        seen, all,
        "the follower missed events or saw them out of order"
    );
    Ok(())
}

/// Two processes share the database; each caches the states it wrote. A stale cached
/// state must never produce a wrong answer: a rejection is confirmed against the stored
/// state, and an acceptance is confirmed by the append's version check.
#[tokio::test]
async fn a_stale_cached_state_never_decides_wrongly() -> TestResult {
    let (pool, _) = fresh_database(10).await?;
    let first = EventStore::new(pool.clone(), StoreConfig::default());
    let second = EventStore::new(pool, StoreConfig::default());
    let id = Uuid::now_v7();
    let run = |store: &EventStore, command| {
        let store = store.clone();
        async move {
            store
                .execute::<Sample>(id, command, &CommandContext::new("t"), ExpectedVersion::Any)
                .await
        }
    };
    run(&first, register(id, "BC-STALE")).await?; // `first` caches: registered, v1
    run(&second, SampleCommand::Receive { notes: None }).await?; // v2, unseen by `first`

    // On the cached state validation would be refused ("only a received sample...").
    let validated = run(
        &first,
        SampleCommand::Validate {
            notes: None,
            signature: signature(),
        },
    )
    .await?;
    assert_eq!(validated.last_version, 3);

    // `first` now caches v3 (validated); `second` still believes v2 (received) and would
    // accept a rejection, but the stored sample is validated: refused, nothing appended.
    let refused = run(
        &second,
        SampleCommand::Reject {
            reason: Note::parse("late")?,
            signature: signature(),
        },
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Rejected(SampleRejection::CannotReject(
                cqrs::sample::SampleStatus::Validated
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(versions(&first, id).await?, vec![1, 2, 3]);
    Ok(())
}
