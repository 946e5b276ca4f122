use super::*;
use crate::testing::given;

fn details() -> SampleDetails {
    SampleDetails {
        barcode: Barcode::parse("LAB-TEST-0001").expect("barcode"),
        sample_type: SampleType::Plasma,
        volume: VolumeUl::parse("250").expect("volume"),
        temperature_zone: TemperatureZone::Minus80,
        patient: Some(PatientRef::parse("MRN-123").expect("patient")),
        collected_at: None,
        collected_by: None,
    }
}

fn id() -> SampleId {
    SampleId::from_uuid(uuid::Uuid::from_u128(7))
}

fn registered() -> SampleEvent {
    SampleEvent::SampleRegistered {
        id: id(),
        details: details(),
    }
}

fn note(text: &str) -> Note {
    Note::parse(text).expect("note")
}

fn signed_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .expect("time")
        .to_utc()
}

fn signature() -> Signature {
    Signature::new(
        uuid::Uuid::from_u128(0xa11ce),
        "Ana Müller",
        SignatureMeaning::Approved,
        signed_at(),
    )
}

#[test]
fn register_a_new_sample() {
    let state = given::<Sample>(vec![])
        .when(SampleCommand::Register {
            id: id(),
            details: details(),
        })
        .then_expect(vec![registered()]);
    assert_eq!(state.status(), Some(SampleStatus::Registered));
}

#[test]
fn register_twice_is_rejected() {
    given::<Sample>(vec![registered()])
        .when(SampleCommand::Register {
            id: id(),
            details: details(),
        })
        .then_reject(SampleRejection::AlreadyRegistered(id()));
}

#[test]
fn receive_a_registered_sample() {
    let state = given::<Sample>(vec![registered()])
        .when(SampleCommand::Receive {
            notes: Some(note("cold chain intact")),
        })
        .then_expect(vec![SampleEvent::SampleReceived {
            notes: Some(note("cold chain intact")),
        }]);
    assert_eq!(state.status(), Some(SampleStatus::Received));
}

#[test]
fn receive_twice_is_rejected() {
    given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
    ])
    .when(SampleCommand::Receive { notes: None })
    .then_reject(SampleRejection::CannotReceive(SampleStatus::Received));
}

#[test]
fn commands_on_an_unregistered_sample_are_rejected() {
    given::<Sample>(vec![])
        .when(SampleCommand::Receive { notes: None })
        .then_reject(SampleRejection::NotRegistered);
    given::<Sample>(vec![])
        .when(SampleCommand::Validate {
            notes: None,
            signature: signature(),
        })
        .then_reject(SampleRejection::NotRegistered);
    given::<Sample>(vec![])
        .when(SampleCommand::Reject {
            reason: note("x"),
            signature: signature(),
        })
        .then_reject(SampleRejection::NotRegistered);
}

#[test]
fn validate_a_received_sample() {
    let state = given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
    ])
    .when(SampleCommand::Validate {
        notes: None,
        signature: signature(),
    })
    .then_expect(vec![SampleEvent::SampleValidated {
        notes: None,
        signature: Some(signature()),
    }]);
    assert_eq!(state.status(), Some(SampleStatus::Validated));
}

#[test]
fn validate_before_receipt_is_rejected() {
    given::<Sample>(vec![registered()])
        .when(SampleCommand::Validate {
            notes: None,
            signature: signature(),
        })
        .then_reject(SampleRejection::CannotValidate(SampleStatus::Registered));
}

#[test]
fn a_rejected_sample_cannot_be_validated() {
    given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
        SampleEvent::SampleRejected {
            reason: note("haemolysed"),
            signature: Some(signature()),
        },
    ])
    .when(SampleCommand::Validate {
        notes: None,
        signature: signature(),
    })
    .then_reject(SampleRejection::CannotValidate(SampleStatus::Rejected));
}

#[test]
fn reject_a_received_sample_with_its_reason() {
    let state = given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
    ])
    .when(SampleCommand::Reject {
        reason: note("haemolysed"),
        signature: signature(),
    })
    .then_expect(vec![SampleEvent::SampleRejected {
        reason: note("haemolysed"),
        signature: Some(signature()),
    }]);
    assert_eq!(state.status(), Some(SampleStatus::Rejected));
    assert_eq!(
        state.registered.and_then(|s| s.rejection_reason),
        Some(note("haemolysed"))
    );
}

#[test]
fn reject_at_reception_is_allowed() {
    given::<Sample>(vec![registered()])
        .when(SampleCommand::Reject {
            reason: note("tube cracked"),
            signature: signature(),
        })
        .then_expect(vec![SampleEvent::SampleRejected {
            reason: note("tube cracked"),
            signature: Some(signature()),
        }]);
}

#[test]
fn a_validated_sample_cannot_be_rejected() {
    given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
        SampleEvent::SampleValidated {
            notes: None,
            signature: Some(signature()),
        },
    ])
    .when(SampleCommand::Reject {
        reason: note("late"),
        signature: signature(),
    })
    .then_reject(SampleRejection::CannotReject(SampleStatus::Validated));
}

#[test]
fn a_rejected_sample_cannot_be_rejected_or_received_again() {
    let history = vec![
        registered(),
        SampleEvent::SampleRejected {
            reason: note("x"),
            signature: Some(signature()),
        },
    ];
    given::<Sample>(history.clone())
        .when(SampleCommand::Reject {
            reason: note("y"),
            signature: signature(),
        })
        .then_reject(SampleRejection::CannotReject(SampleStatus::Rejected));
    given::<Sample>(history)
        .when(SampleCommand::Receive { notes: None })
        .then_reject(SampleRejection::CannotReceive(SampleStatus::Rejected));
}

#[test]
fn events_name_their_type_and_round_trip_through_json() {
    let events = vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
        SampleEvent::SampleValidated {
            notes: Some(note("RIN 9.1")),
            signature: Some(signature()),
        },
        SampleEvent::SampleRejected {
            reason: note("clotted"),
            signature: Some(signature()),
        },
    ];
    let types: Vec<_> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "SampleRegistered",
            "SampleReceived",
            "SampleValidated",
            "SampleRejected"
        ]
    );
    for event in events {
        let json = serde_json::to_value(&event).expect("serialise");
        assert!(json.get(event.event_type()).is_some(), "{json}");
        assert_eq!(
            serde_json::from_value::<SampleEvent>(json).expect("deserialise"),
            event
        );
    }
}

#[test]
fn state_round_trips_as_a_snapshot() {
    let state =
        Sample::default().fold(&[registered(), SampleEvent::SampleReceived { notes: None }]);
    let json = serde_json::to_value(&state).expect("serialise");
    assert_eq!(
        serde_json::from_value::<Sample>(json).expect("deserialise"),
        state
    );
}

#[test]
fn every_event_is_stored_as_its_fields_alone_and_reads_back() {
    use crate::DomainEvent;
    let events = [
        registered(),
        SampleEvent::SampleReceived {
            notes: Some(note("ok")),
        },
        SampleEvent::SampleValidated {
            notes: None,
            signature: Some(signature()),
        },
        SampleEvent::SampleRejected {
            reason: note("haemolysed"),
            signature: Some(signature()),
        },
    ];
    for event in events {
        let payload = event.to_payload().expect("payload");
        assert!(
            payload.get(event.event_type()).is_none(),
            "no enum tag in {payload}"
        );
        let back =
            SampleEvent::from_payload(event.event_type(), SampleEvent::SCHEMA_VERSION, payload)
                .expect("reads back");
        assert_eq!(back, event);
    }
    let payload = registered().to_payload().expect("payload");
    for field in ["sample_id", "barcode", "volume_ul", "patient_ref"] {
        assert!(payload.get(field).is_some(), "{field} in {payload}");
    }
}

#[test]
fn a_version_1_payload_loads_after_the_fields_were_renamed() {
    use crate::DomainEvent;
    // Exactly what version 1 stored: serde's tagged form, details nested, old names.
    let v1 = serde_json::json!({"SampleRegistered": {
        "id": id().to_string(),
        "details": {
            "barcode": "LAB-TEST-0001", "sample_type": "PLASMA", "volume": "250",
            "temperature_zone": "MINUS_80", "patient": "MRN-123",
            "collected_at": null, "collected_by": null
        }
    }});
    let event = SampleEvent::from_payload("SampleRegistered", 1, v1).expect("upcast");
    assert_eq!(event, registered());
    let v1 = serde_json::json!({"SampleRejected": {"reason": "haemolysed"}});
    assert_eq!(
        SampleEvent::from_payload("SampleRejected", 1, v1).expect("upcast"),
        SampleEvent::SampleRejected {
            reason: note("haemolysed"),
            signature: None,
        },
        "a decision recorded before signatures existed has none"
    );
    let unknown = SampleEvent::from_payload("SampleRejected", 9, serde_json::json!({}));
    assert!(
        unknown.is_err(),
        "an unknown version is an error, not a guess"
    );
}

#[test]
fn validating_binds_the_signature_into_the_event() {
    let reviewer = Signature::new(
        uuid::Uuid::from_u128(0xb0b),
        "Bo Lindqvist",
        SignatureMeaning::Reviewed,
        signed_at(),
    );
    given::<Sample>(vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
    ])
    .when(SampleCommand::Validate {
        notes: Some(note("RIN 9.1")),
        signature: reviewer.clone(),
    })
    .then_expect(vec![SampleEvent::SampleValidated {
        notes: Some(note("RIN 9.1")),
        signature: Some(reviewer),
    }]);
}

#[test]
fn rejecting_binds_the_signature_into_the_event() {
    let performer = Signature::new(
        uuid::Uuid::from_u128(0xc0c),
        "Chidi Okafor",
        SignatureMeaning::Performed,
        signed_at(),
    );
    let state = given::<Sample>(vec![registered()])
        .when(SampleCommand::Reject {
            reason: note("tube cracked"),
            signature: performer.clone(),
        })
        .then_expect(vec![SampleEvent::SampleRejected {
            reason: note("tube cracked"),
            signature: Some(performer),
        }]);
    assert_eq!(state.status(), Some(SampleStatus::Rejected));
}

#[test]
fn a_signature_is_stored_as_four_flat_fields_named_as_in_avro() {
    let event = SampleEvent::SampleValidated {
        notes: None,
        signature: Some(signature()),
    };
    let payload = event.to_payload().expect("payload");
    assert_eq!(
        payload,
        serde_json::json!({
            "notes": null,
            "signed_by_id": "00000000-0000-0000-0000-0000000a11ce",
            "signed_by": "Ana Müller",
            "signature_meaning": "approved",
            "signed_at": "2026-11-23T10:00:00Z",
        })
    );
    let back = SampleEvent::from_payload("SampleValidated", SampleEvent::SCHEMA_VERSION, payload)
        .expect("reads back");
    assert_eq!(back, event);
}

#[test]
fn a_qc_decision_recorded_before_signatures_loads_without_one() {
    for (event_type, payload) in [
        ("SampleValidated", serde_json::json!({"notes": "ok"})),
        // As read back from an Avro record: the new fields are null.
        (
            "SampleRejected",
            serde_json::json!({"reason": "late", "signed_by_id": null, "signed_by": null,
                "signature_meaning": null, "signed_at": null, "user": "ana"}),
        ),
    ] {
        let event = SampleEvent::from_payload(event_type, SampleEvent::SCHEMA_VERSION, payload)
            .expect("loads");
        match event {
            SampleEvent::SampleValidated { signature, .. }
            | SampleEvent::SampleRejected { signature, .. } => assert_eq!(signature, None),
            other => panic!("{other:?}"),
        }
    }
    let unsigned = SampleEvent::SampleRejected {
        reason: note("late"),
        signature: None,
    };
    assert_eq!(
        unsigned.to_payload().expect("payload"),
        serde_json::json!({"reason": "late"}),
        "no signature, no signature fields"
    );
}

#[test]
fn a_partial_signature_is_an_error_not_an_unsigned_decision() {
    let payload = serde_json::json!({
        "reason": "late",
        "signed_by": "Ana Müller",
        "signature_meaning": "approved",
    });
    assert!(
        SampleEvent::from_payload("SampleRejected", SampleEvent::SCHEMA_VERSION, payload).is_err()
    );
}

#[test]
fn signature_meanings_parse_and_print_as_their_codes() {
    for meaning in SignatureMeaning::ALL {
        assert_eq!(SignatureMeaning::parse(meaning.as_str()), Ok(*meaning));
        assert_eq!(meaning.to_string(), meaning.as_str());
        assert!(!meaning.label().is_empty());
    }
    assert_eq!(
        " Approved ".parse::<SignatureMeaning>(),
        Ok(SignatureMeaning::Approved)
    );
    assert!(SignatureMeaning::parse("authored").is_err());
    assert!(SignatureMeaning::parse("").is_err());
    assert_eq!(
        serde_json::to_value(SignatureMeaning::Reviewed).expect("json"),
        serde_json::json!("reviewed")
    );
}

#[test]
fn a_signature_reads_as_who_why_and_when() {
    assert_eq!(
        signature().to_string(),
        "Signed by Ana Müller (approved) at 2026-11-23 10:00 UTC"
    );
    let precise = Signature::new(
        uuid::Uuid::nil(),
        "x",
        SignatureMeaning::Performed,
        signed_at() + chrono::Duration::nanoseconds(1_234_567),
    );
    assert_eq!(
        precise.signed_at,
        signed_at() + chrono::Duration::microseconds(1_234),
        "kept to the microsecond, as Avro keeps it"
    );
}
