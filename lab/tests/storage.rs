//! Storage invariants under concurrency, against a real PostgreSQL server: one sample per
//! position, one position per sample, nothing into a decommissioned box. Each test races
//! real commands through the services and then checks the committed state (the event
//! streams and the claims), never a timing.

use chrono::Utc;
use cqrs::sample::{Sample, SampleStatus, Signature, SignatureMeaning};
use cqrs::storage::StorageUnit;
use event_sourcing::testkit::fresh_database;
use event_sourcing::{CommandContext, EventStore, ExpectedVersion, StoreConfig};
use lab::samples::{Action, RegisterInput, SampleService};
use lab::storage::{CreateUnitInput, StorageService};
use lab::{CommandMetrics, Error};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

struct Lab {
    pool: PgPool,
    store: EventStore,
    samples: SampleService,
    storage: StorageService,
    who: Uuid,
}

impl Lab {
    async fn new(connections: u32) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (pool, _) = fresh_database(connections).await?;
        let store = EventStore::new(pool.clone(), StoreConfig::default());
        let metrics = CommandMetrics::new(&prometheus::Registry::new())?;
        Ok(Self {
            samples: SampleService::new(store.clone(), Duration::from_millis(10), metrics.clone()),
            storage: StorageService::new(store.clone(), metrics),
            pool,
            store,
            who: Uuid::now_v7(),
        })
    }

    fn context(&self) -> CommandContext {
        CommandContext::for_user(self.who, "Ana Müller")
    }

    async fn unit(&self, input: CreateUnitInput) -> Result<Uuid, Error> {
        Ok(self
            .storage
            .create(&input, &self.context())
            .await?
            .aggregate_id)
    }

    /// A −80 °C freezer with one rack holding `boxes` boxes of `grid`; returns the boxes.
    async fn boxes(&self, prefix: &str, boxes: usize, grid: &str) -> Result<Vec<Uuid>, Error> {
        self.unit(CreateUnitInput {
            kind: "freezer".into(),
            code: format!("{prefix}-F"),
            temperature_zone: "-80".into(),
            slots: "10".into(),
            ..CreateUnitInput::default()
        })
        .await?;
        self.unit(CreateUnitInput {
            kind: "rack".into(),
            code: format!("{prefix}-R"),
            parent: format!("{prefix}-F"),
            slot: "1".into(),
            slots: "100".into(),
            ..CreateUnitInput::default()
        })
        .await?;
        let mut ids = Vec::new();
        for i in 0..boxes {
            ids.push(
                self.unit(CreateUnitInput {
                    kind: "box".into(),
                    code: format!("{prefix}-B{i}"),
                    parent: format!("{prefix}-R"),
                    slot: (i + 1).to_string(),
                    grid: grid.into(),
                    ..CreateUnitInput::default()
                })
                .await?,
            );
        }
        Ok(ids)
    }

    /// A −80 °C plasma tube that passed QC.
    async fn validated_sample(&self) -> Result<Uuid, Error> {
        let input = RegisterInput {
            sample_type: "plasma".into(),
            volume_ul: "500".into(),
            temperature_zone: "-80".into(),
            ..RegisterInput::default()
        };
        let id = self
            .samples
            .register(&input, &self.context())
            .await?
            .aggregate_id;
        self.samples
            .act(
                id,
                Action::Receive,
                "",
                None,
                ExpectedVersion::Any,
                &self.context(),
            )
            .await?;
        let signature = Signature::new(
            self.who,
            "Ana Müller",
            SignatureMeaning::Performed,
            Utc::now(),
        );
        self.samples
            .act(
                id,
                Action::Validate,
                "",
                Some(signature),
                ExpectedVersion::Any,
                &self.context(),
            )
            .await?;
        Ok(id)
    }

    async fn location(&self, sample: Uuid) -> Result<Option<(Uuid, String)>, Error> {
        let state = self.store.load::<Sample>(sample).await?.state;
        Ok(state
            .registered
            .and_then(|s| s.location)
            .map(|(b, p)| (b.as_uuid(), p.to_string())))
    }

    async fn count(&self, sql: &str, bind: Uuid) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(&self.pool)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_samples_racing_for_one_position_leave_exactly_one_in_it() -> TestResult {
    let lab = Lab::new(30).await?;
    let boxes = lab.boxes("RACE", 1, "10x10").await?;
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples.push(lab.validated_sample().await?);
    }
    let mut tasks = Vec::new();
    for sample in samples.clone() {
        let service = lab.samples.clone();
        let context = lab.context();
        tasks.push(tokio::spawn(async move {
            service
                .store_sample(sample, "RACE-B0", "C3", ExpectedVersion::Any, &context)
                .await
        }));
    }
    let mut won = Vec::new();
    let mut conflicts = 0;
    for (sample, task) in samples.iter().zip(tasks) {
        match task.await? {
            Ok(_) => won.push(*sample),
            Err(Error::Conflict(message)) => {
                assert!(
                    message.contains("position C3 of box RACE-B0 is already taken by")
                        || message.contains("was just taken"),
                    "a loser is told why: {message}"
                );
                conflicts += 1;
            }
            Err(other) => panic!("a placement failed otherwise than by a conflict: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one sample wins the position");
    assert_eq!(conflicts, 99);
    // The losers appended nothing: one SampleStored in the whole log.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SampleStored'")
            .fetch_one(&lab.pool)
            .await?;
    assert_eq!(stored, 1);
    for sample in &samples {
        let state = lab.store.load::<Sample>(*sample).await?.state;
        let status = state.status();
        if *sample == won[0] {
            assert_eq!(status, Some(SampleStatus::InStorage));
            assert_eq!(lab.location(*sample).await?, Some((boxes[0], "C3".into())));
        } else {
            assert_eq!(
                status,
                Some(SampleStatus::Validated),
                "a loser is unchanged"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_moves_of_one_sample_leave_it_in_one_position_and_free_the_rest()
-> TestResult {
    let lab = Lab::new(30).await?;
    let boxes = lab.boxes("MOVE", 2, "10x10").await?;
    let sample = lab.validated_sample().await?;
    lab.samples
        .store_sample(
            sample,
            "MOVE-B0",
            "A1",
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await?;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let service = lab.samples.clone();
        let context = lab.context();
        // Half into the other box; every target distinct.
        let (target, position) = if i % 2 == 0 {
            (
                "MOVE-B1",
                format!("{}{}", char::from(b'A' + (i / 10) as u8), i % 10 + 1),
            )
        } else {
            (
                "MOVE-B0",
                format!("{}{}", char::from(b'B' + (i / 10) as u8), i % 10 + 1),
            )
        };
        tasks.push(tokio::spawn(async move {
            service
                .move_sample(sample, target, &position, ExpectedVersion::Any, &context)
                .await
        }));
    }
    let mut moved = 0;
    for task in tasks {
        match task.await? {
            Ok(_) => moved += 1,
            // Out-raced more often than the store re-decides: a clear 409, nothing appended.
            Err(Error::Conflict(_)) => {}
            Err(other) => panic!("a move failed otherwise than by a conflict: {other:?}"),
        }
    }
    assert!(moved >= 1, "at least one move succeeds");
    let (box_id, position) = lab.location(sample).await?.ok_or("the sample is stored")?;
    assert!(boxes.contains(&box_id));
    // Exactly one position claimed by the sample, and it is the one its stream says.
    let claims: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM unique_claims WHERE scope = 'storage-position' AND aggregate_id = $1",
    )
    .bind(sample)
    .fetch_all(&lab.pool)
    .await?;
    assert_eq!(claims, vec![format!("{box_id}/{position}")]);
    // Every freed position is free: no other claim in either box.
    let others = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM unique_claims WHERE scope = 'storage-position'",
    )
    .fetch_one(&lab.pool)
    .await?;
    assert_eq!(others, 1, "every position the sample left is free");
    let moves: i64 = lab
        .count(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'SampleMoved'",
            sample,
        )
        .await?;
    assert_eq!(
        moves, moved,
        "one event per successful move, none for the refused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decommission_racing_a_placement_never_leaves_a_sample_in_a_decommissioned_box()
-> TestResult {
    let lab = Lab::new(20).await?;
    let rounds = 20;
    let boxes = lab.boxes("SEAL", rounds, "9x9").await?;
    let (mut sealed, mut placed) = (0, 0);
    for (round, box_id) in boxes.iter().enumerate() {
        let sample = lab.validated_sample().await?;
        let code = format!("SEAL-B{round}");
        let place = {
            let service = lab.samples.clone();
            let context = lab.context();
            tokio::spawn(async move {
                service
                    .store_sample(sample, &code, "E5", ExpectedVersion::Any, &context)
                    .await
            })
        };
        let seal = {
            let service = lab.storage.clone();
            let context = lab.context();
            let box_id = *box_id;
            tokio::spawn(async move { service.decommission(box_id, "cracked lid", &context).await })
        };
        let (place, seal) = (place.await?, seal.await?);
        match (&place, &seal) {
            (Ok(_), Ok(_)) => panic!("round {round}: both the placement and the decommission won"),
            (Ok(_), Err(Error::Conflict(m))) => {
                assert!(m.contains("still holds samples"), "{m}");
                placed += 1;
            }
            (Err(Error::Conflict(m) | Error::Rejected(m)), Ok(_)) => {
                assert!(m.contains("decommissioned"), "{m}");
                sealed += 1;
            }
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
        let unit = lab
            .store
            .load::<StorageUnit>(*box_id)
            .await?
            .state
            .unit
            .ok_or("box")?;
        let in_box = lab
            .location(sample)
            .await?
            .is_some_and(|(b, _)| b == *box_id);
        assert!(
            !(unit.decommissioned && in_box),
            "round {round}: a sample in a decommissioned box"
        );
        assert!(
            unit.decommissioned || in_box,
            "round {round}: one of the two must win"
        );
    }
    // Both orders happen in practice; the invariant holds either way.
    assert_eq!(sealed + placed, rounds);
    Ok(())
}

#[tokio::test]
async fn decommissioning_a_unit_that_holds_anything_is_refused_and_appends_nothing() -> TestResult {
    let lab = Lab::new(5).await?;
    let boxes = lab.boxes("FULL", 1, "9x9").await?;
    let sample = lab.validated_sample().await?;
    lab.samples
        .store_sample(
            sample,
            "FULL-B0",
            "A1",
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await?;
    let rack = lab.storage.id_by_code("FULL-R").await?.ok_or("rack")?;
    for (unit, what) in [(boxes[0], "samples"), (rack, "racks or boxes")] {
        let before = lab
            .count("SELECT count(*) FROM events WHERE aggregate_id = $1", unit)
            .await?;
        match lab
            .storage
            .decommission(unit, "retired", &lab.context())
            .await
        {
            Err(Error::Conflict(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("decommissioning a unit in use: {other:?}"),
        }
        let after = lab
            .count("SELECT count(*) FROM events WHERE aggregate_id = $1", unit)
            .await?;
        assert_eq!(before, after);
    }
    // Once emptied, the box goes.
    lab.samples
        .remove_from_storage(sample, "", ExpectedVersion::Any, &lab.context())
        .await?;
    lab.storage
        .decommission(boxes[0], "retired", &lab.context())
        .await?;
    let again = lab.validated_sample().await?;
    match lab
        .samples
        .store_sample(again, "FULL-B0", "B2", ExpectedVersion::Any, &lab.context())
        .await
    {
        Err(Error::Rejected(m) | Error::Conflict(m)) => {
            assert!(m.contains("decommissioned"), "{m}")
        }
        other => panic!("placing into a decommissioned box: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_aliquot_command_creates_the_children_with_the_parent_all_or_nothing() -> TestResult {
    let lab = Lab::new(5).await?;
    let parent = lab.validated_sample().await?;
    let take = |barcode: &str, volume: &str| lab::samples::AliquotInput {
        barcode: barcode.into(),
        volume_ul: volume.into(),
    };
    // A child barcode already taken: nothing of the command lands, not even the parent's
    // volume change.
    let taken = lab.validated_sample().await?;
    let taken_barcode = lab
        .store
        .load::<Sample>(taken)
        .await?
        .state
        .registered
        .ok_or("taken")?
        .details
        .barcode;
    let before = lab
        .count(
            "SELECT count(*) FROM events WHERE aggregate_id = $1",
            parent,
        )
        .await?;
    let refused = lab
        .samples
        .aliquot(
            parent,
            &[take("ALQ-0001", "100"), take(taken_barcode.as_str(), "100")],
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert_eq!(
        before,
        lab.count(
            "SELECT count(*) FROM events WHERE aggregate_id = $1",
            parent
        )
        .await?
    );
    let orphans: i64 =
        sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE value = 'ALQ-0001'")
            .fetch_one(&lab.pool)
            .await?;
    assert_eq!(orphans, 0, "the first child was not created either");

    // More than there is: refused by the decider.
    let too_much = lab
        .samples
        .aliquot(
            parent,
            &[take("", "300"), take("", "200.001")],
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await;
    assert!(
        matches!(too_much, Err(Error::Rejected(ref m)) if m.contains("only 500 µL left")),
        "{too_much:?}"
    );

    let done = lab
        .samples
        .aliquot(
            parent,
            &[take("ALQ-0001", "300"), take("", "200")],
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await?;
    let parent_state = lab
        .store
        .load::<Sample>(parent)
        .await?
        .state
        .registered
        .ok_or("parent")?;
    assert_eq!(parent_state.volume_left.nanolitres(), 0, "all 500 µL taken");
    let children: Vec<Uuid> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'AliquotCreated' ORDER BY aggregate_id",
    )
    .fetch_all(&lab.pool)
    .await?;
    assert_eq!(children.len(), 2);
    for child in children {
        let state = lab
            .store
            .load::<Sample>(child)
            .await?
            .state
            .registered
            .ok_or("child")?;
        assert_eq!(state.parent.map(|p| p.as_uuid()), Some(parent));
        assert_eq!(state.status, SampleStatus::Validated);
    }
    assert!(!done.duplicate);
    Ok(())
}

#[tokio::test]
async fn a_box_as_of_before_and_after_a_move_shows_the_right_occupant() -> TestResult {
    let lab = Lab::new(5).await?;
    let boxes = lab.boxes("TIME", 2, "9x9").await?;
    let sample = lab.validated_sample().await?;
    lab.samples
        .store_sample(
            sample,
            "TIME-B0",
            "A1",
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await?;
    lab.samples
        .move_sample(
            sample,
            "TIME-B1",
            "C2",
            ExpectedVersion::Any,
            &lab.context(),
        )
        .await?;
    // The instants the events were recorded at, as the log has them.
    let at = |event_type: &'static str| {
        let pool = lab.pool.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<Utc>>(
                "SELECT recorded_at FROM events WHERE event_type = $1",
            )
            .bind(event_type)
            .fetch_one(&pool)
            .await
        }
    };
    let stored_at = at("SampleStored").await?;
    let moved_at = at("SampleMoved").await?;
    assert!(stored_at < moved_at);
    let just_before = stored_at - chrono::Duration::microseconds(1);
    let occupants = |b: Uuid, t| {
        let store = lab.store.clone();
        async move {
            lab::history::unit_as_of(&store, b, t).await.map(|u| {
                u.occupants
                    .into_iter()
                    .map(|o| (o.position, o.sample_id))
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        occupants(boxes[0], just_before).await?,
        vec![],
        "empty before the tube came"
    );
    assert_eq!(
        occupants(boxes[0], stored_at).await?,
        vec![("A1".to_owned(), sample)]
    );
    assert_eq!(
        occupants(boxes[1], stored_at).await?,
        vec![],
        "not yet in the second box"
    );
    assert_eq!(occupants(boxes[0], moved_at).await?, vec![], "moved out");
    assert_eq!(
        occupants(boxes[1], moved_at).await?,
        vec![("C2".to_owned(), sample)]
    );
    let then = lab::history::sample_as_of(&lab.store, sample, stored_at).await?;
    assert_eq!(then.sample.map(|s| s.status), Some(SampleStatus::InStorage));
    let before = lab::history::sample_as_of(&lab.store, sample, just_before).await?;
    assert_eq!(
        before.sample.map(|s| s.status),
        Some(SampleStatus::Validated)
    );
    Ok(())
}
