//! QC decisions through the sample service against a real PostgreSQL server: refused
//! without an electronic signature (nothing appended), recorded with one, and shown in the
//! sample's history with the signer and the issuing account.

use chrono::Utc;
use cqrs::sample::{Signature, SignatureMeaning};
use event_sourcing::testkit::fresh_database;
use event_sourcing::{CommandContext, EventStore, ExpectedVersion, StoreConfig};
use lab::samples::{Action, RegisterInput, SIGNATURE_REQUIRED, SampleService};
use lab::{CommandMetrics, Error};
use std::time::Duration;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn invalid_fields(result: &Result<event_sourcing::CommandOutcome, Error>) -> Vec<&'static str> {
    match result {
        Err(Error::Invalid(errors)) => errors.iter().map(|e| e.field).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_qc_decision_is_recorded_only_with_the_signers_signature() -> TestResult {
    let (pool, _) = fresh_database(5).await?;
    let store = EventStore::new(pool, StoreConfig::default());
    let metrics = CommandMetrics::new(&prometheus::Registry::new())?;
    let service = SampleService::new(store, Duration::from_millis(10), metrics);
    let ana = Uuid::now_v7();
    let as_ana = || CommandContext::for_user(ana, "Ana Müller");
    let input = RegisterInput {
        sample_type: "plasma".into(),
        volume_ul: "250".into(),
        temperature_zone: "-80".into(),
        ..RegisterInput::default()
    };
    let id = service.register(&input, &as_ana()).await?.aggregate_id;
    let signature =
        |signer: Uuid| Signature::new(signer, "Ana Müller", SignatureMeaning::Approved, Utc::now());
    // Receiving is not a QC decision: no signature needed, one given is ignored.
    service
        .act(
            id,
            Action::Receive,
            "",
            Some(signature(ana)),
            ExpectedVersion::Any,
            &as_ana(),
        )
        .await?;

    for action in [Action::Validate, Action::Reject] {
        let unsigned = service
            .act(
                id,
                action,
                "haemolysed",
                None,
                ExpectedVersion::Any,
                &as_ana(),
            )
            .await;
        assert_eq!(invalid_fields(&unsigned), ["signature"], "{unsigned:?}");
        assert!(
            unsigned
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains(SIGNATURE_REQUIRED))
        );
    }
    assert_eq!(service.timeline(id).await?.len(), 2, "nothing appended");

    let signed = signature(ana);
    let outcome = service
        .act(
            id,
            Action::Validate,
            "RIN 9.1",
            Some(signed.clone()),
            ExpectedVersion::Exactly(2),
            &as_ana(),
        )
        .await?;
    assert_eq!(outcome.last_version, 3);
    let timeline = service.timeline(id).await?;
    let validated = timeline.last().ok_or("no history")?;
    assert_eq!(validated.event_type, "SampleValidated");
    assert_eq!(validated.signature, Some(signed.to_string()));
    assert!(
        validated
            .signature
            .as_deref()
            .is_some_and(|s| s.starts_with("Signed by Ana Müller (approved) at ")),
        "{validated:?}"
    );
    assert_eq!(validated.user_id, Some(ana));
    assert!(timeline.iter().all(|e| e.user_id == Some(ana)));
    assert!(timeline[..2].iter().all(|e| e.signature.is_none()));
    Ok(())
}
