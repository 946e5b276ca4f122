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

// ---- storage, custody, aliquots, disposal, QC corrections ----

use crate::storage::{BoxFacts, Grid, Position, UnitCode, UnitId, position_claim};

fn box_id() -> UnitId {
    UnitId::from_uuid(uuid::Uuid::from_u128(0xb0c5))
}

fn other_box_id() -> UnitId {
    UnitId::from_uuid(uuid::Uuid::from_u128(0xb0c6))
}

fn box_facts(id: UnitId, zone: TemperatureZone) -> BoxFacts {
    BoxFacts {
        id,
        code: UnitCode::parse(if id == box_id() { "BOX-1" } else { "BOX-2" }).expect("code"),
        zone,
        grid: Grid::parse("9x9").expect("grid"),
        decommissioned: false,
    }
}

fn pos(p: &str) -> Position {
    Position::parse(p).expect("position")
}

fn validated() -> Vec<SampleEvent> {
    vec![
        registered(),
        SampleEvent::SampleReceived { notes: None },
        SampleEvent::SampleValidated {
            notes: None,
            signature: Some(signature()),
        },
    ]
}

fn stored_event() -> SampleEvent {
    SampleEvent::SampleStored {
        box_id: box_id(),
        box_code: UnitCode::parse("BOX-1").expect("code"),
        position: pos("A1"),
    }
}

fn stored() -> Vec<SampleEvent> {
    let mut events = validated();
    events.push(stored_event());
    events
}

fn holder() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x401d)
}

fn checked_out() -> Vec<SampleEvent> {
    let mut events = stored();
    events.push(SampleEvent::SampleCheckedOut {
        holder_id: holder(),
        holder: note("Ben Okafor"),
        notes: None,
        from_box_id: Some(box_id()),
        from_position: Some(pos("A1")),
    });
    events
}

fn store(target: BoxFacts, position: &str) -> SampleCommand {
    SampleCommand::Store {
        target,
        position: pos(position),
    }
}

#[test]
fn a_validated_sample_is_stored_and_claims_its_position() {
    let state = given::<Sample>(validated())
        .when(store(box_facts(box_id(), TemperatureZone::Minus80), "A1"))
        .then_expect(vec![stored_event()]);
    assert_eq!(state.status(), Some(SampleStatus::InStorage));
    assert_eq!(
        Sample::unique_values(&stored_event()),
        vec![position_claim(box_id(), pos("A1"))]
    );
}

#[test]
fn only_a_validated_sample_out_of_storage_is_stored() {
    given::<Sample>(vec![registered()])
        .when(store(box_facts(box_id(), TemperatureZone::Minus80), "A1"))
        .then_reject(SampleRejection::CannotStore(SampleStatus::Registered));
    given::<Sample>(stored())
        .when(store(box_facts(box_id(), TemperatureZone::Minus80), "B1"))
        .then_reject(SampleRejection::CannotStore(SampleStatus::InStorage));
    given::<Sample>(vec![])
        .when(store(box_facts(box_id(), TemperatureZone::Minus80), "A1"))
        .then_reject(SampleRejection::NotRegistered);
}

#[test]
fn a_sample_goes_only_into_a_box_of_its_zone_a_real_position_and_a_box_in_service() {
    given::<Sample>(validated())
        .when(store(box_facts(box_id(), TemperatureZone::Minus20), "A1"))
        .then_reject(SampleRejection::WrongZone {
            sample_zone: TemperatureZone::Minus80,
            box_code: UnitCode::parse("BOX-1").expect("code"),
            box_zone: TemperatureZone::Minus20,
        });
    given::<Sample>(validated())
        .when(store(box_facts(box_id(), TemperatureZone::Minus80), "J1"))
        .then_reject(SampleRejection::NoSuchPosition {
            box_code: UnitCode::parse("BOX-1").expect("code"),
            grid: Grid::parse("9x9").expect("grid"),
            position: pos("J1"),
        });
    let sealed = BoxFacts {
        decommissioned: true,
        ..box_facts(box_id(), TemperatureZone::Minus80)
    };
    given::<Sample>(validated())
        .when(store(sealed, "A1"))
        .then_reject(SampleRejection::BoxDecommissioned(
            UnitCode::parse("BOX-1").expect("code"),
        ));
}

#[test]
fn a_move_frees_the_old_position_in_the_same_event_that_takes_the_new() {
    let moved = SampleEvent::SampleMoved {
        from_box_id: box_id(),
        from_position: pos("A1"),
        box_id: other_box_id(),
        box_code: UnitCode::parse("BOX-2").expect("code"),
        position: pos("C3"),
    };
    let state = given::<Sample>(stored())
        .when(SampleCommand::Move {
            target: box_facts(other_box_id(), TemperatureZone::Minus80),
            position: pos("C3"),
        })
        .then_expect(vec![moved.clone()]);
    assert_eq!(
        state.registered.and_then(|s| s.location),
        Some((other_box_id(), pos("C3")))
    );
    assert_eq!(
        Sample::unique_values(&moved),
        vec![position_claim(other_box_id(), pos("C3"))]
    );
    assert_eq!(
        Sample::released_values(&moved),
        vec![position_claim(box_id(), pos("A1"))]
    );
}

#[test]
fn only_a_stored_sample_moves_and_never_onto_itself() {
    given::<Sample>(validated())
        .when(SampleCommand::Move {
            target: box_facts(box_id(), TemperatureZone::Minus80),
            position: pos("A2"),
        })
        .then_reject(SampleRejection::NotInStorage(SampleStatus::Validated));
    given::<Sample>(stored())
        .when(SampleCommand::Move {
            target: box_facts(box_id(), TemperatureZone::Minus80),
            position: pos("A1"),
        })
        .then_reject(SampleRejection::AlreadyThere {
            box_code: UnitCode::parse("BOX-1").expect("code"),
            position: pos("A1"),
        });
}

#[test]
fn removing_from_storage_frees_the_position() {
    let removed = SampleEvent::SampleRemovedFromStorage {
        box_id: box_id(),
        position: pos("A1"),
        notes: None,
    };
    let state = given::<Sample>(stored())
        .when(SampleCommand::RemoveFromStorage { notes: None })
        .then_expect(vec![removed.clone()]);
    assert_eq!(state.status(), Some(SampleStatus::Validated));
    assert_eq!(
        Sample::released_values(&removed),
        vec![position_claim(box_id(), pos("A1"))]
    );
    given::<Sample>(validated())
        .when(SampleCommand::RemoveFromStorage { notes: None })
        .then_reject(SampleRejection::NotInStorage(SampleStatus::Validated));
}

#[test]
fn checking_out_a_stored_sample_frees_its_position_and_records_the_holder() {
    let state = given::<Sample>(stored())
        .when(SampleCommand::CheckOut {
            holder_id: holder(),
            holder: note("Ben Okafor"),
            notes: None,
        })
        .then_expect(vec![checked_out()[4].clone()]);
    let sample = state.registered.expect("sample");
    assert_eq!(sample.status, SampleStatus::CheckedOut);
    assert_eq!(sample.location, None);
    assert_eq!(sample.holder, Some((holder(), note("Ben Okafor"))));
    assert_eq!(
        Sample::released_values(&checked_out()[4]),
        vec![position_claim(box_id(), pos("A1"))]
    );
    // From the bench (not stored): nothing to free.
    let from_bench = SampleEvent::SampleCheckedOut {
        holder_id: holder(),
        holder: note("Ben Okafor"),
        notes: None,
        from_box_id: None,
        from_position: None,
    };
    given::<Sample>(validated())
        .when(SampleCommand::CheckOut {
            holder_id: holder(),
            holder: note("Ben Okafor"),
            notes: None,
        })
        .then_expect(vec![from_bench.clone()]);
    assert!(Sample::released_values(&from_bench).is_empty());
}

#[test]
fn only_a_sample_that_passed_qc_is_checked_out_and_only_a_checked_out_one_returned() {
    given::<Sample>(vec![registered()])
        .when(SampleCommand::CheckOut {
            holder_id: holder(),
            holder: note("Ben"),
            notes: None,
        })
        .then_reject(SampleRejection::CannotCheckOut(SampleStatus::Registered));
    given::<Sample>(validated())
        .when(SampleCommand::Return { notes: None })
        .then_reject(SampleRejection::NotCheckedOut(SampleStatus::Validated));
    let state = given::<Sample>(checked_out())
        .when(SampleCommand::Return { notes: None })
        .then_expect(vec![SampleEvent::SampleReturned {
            holder_id: holder(),
            holder: note("Ben Okafor"),
            notes: None,
        }]);
    let sample = state.registered.expect("sample");
    assert_eq!(sample.status, SampleStatus::Validated);
    assert_eq!(sample.holder, None);
}

fn aliquot(n: u128, barcode: &str, volume: &str) -> NewAliquot {
    NewAliquot {
        sample_id: SampleId::from_uuid(uuid::Uuid::from_u128(n)),
        barcode: Barcode::parse(barcode).expect("barcode"),
        volume_ul: VolumeUl::parse(volume).expect("volume"),
    }
}

fn child(a: &NewAliquot) -> SampleEvent {
    SampleEvent::AliquotCreated {
        sample_id: a.sample_id,
        parent_id: id(),
        parent_barcode: details().barcode,
        barcode: a.barcode.clone(),
        sample_type: SampleType::Plasma,
        volume_ul: a.volume_ul,
        temperature_zone: TemperatureZone::Minus80,
        patient_ref: details().patient,
    }
}

#[test]
fn aliquots_take_their_volume_from_a_stored_parent_which_stays_put() {
    let taken = vec![aliquot(1, "ALQ-1", "100"), aliquot(2, "ALQ-2", "50.5")];
    let state = given::<Sample>(stored())
        .when(SampleCommand::Aliquot {
            aliquots: taken.clone(),
        })
        .then_expect(vec![
            SampleEvent::SampleAliquoted {
                aliquots: taken.clone(),
                remaining_volume_ul: Volume::parse("99.5").expect("volume"),
            },
            child(&taken[0]),
            child(&taken[1]),
        ]);
    let parent = state.registered.expect("parent");
    assert_eq!(parent.volume_left, Volume::parse("99.5").expect("volume"));
    assert_eq!(
        parent.location,
        Some((box_id(), pos("A1"))),
        "the parent stays in its position"
    );
    assert_eq!(parent.status, SampleStatus::InStorage);
    // The children's first events go to their own streams, and claim their barcodes.
    assert_eq!(
        Sample::belongs_to(&child(&taken[0])),
        Some(uuid::Uuid::from_u128(1))
    );
    assert_eq!(Sample::belongs_to(&stored_event()), None);
    assert_eq!(
        Sample::unique_values(&child(&taken[1])),
        vec![("barcode", "ALQ-2".to_owned())]
    );
    // A child starts validated, with its parent.
    let child_state = Sample::default().fold([child(&taken[0])].iter());
    let c = child_state.registered.expect("child");
    assert_eq!(c.status, SampleStatus::Validated);
    assert_eq!(c.parent, Some(id()));
    assert_eq!(c.volume_left, Volume::parse("100").expect("volume"));
}

#[test]
fn the_whole_volume_may_be_taken_but_not_a_nanolitre_more() {
    let all = given::<Sample>(validated())
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(1, "ALQ-1", "200"), aliquot(2, "ALQ-2", "50")],
        })
        .then_expect(vec![
            SampleEvent::SampleAliquoted {
                aliquots: vec![aliquot(1, "ALQ-1", "200"), aliquot(2, "ALQ-2", "50")],
                remaining_volume_ul: Volume::default(),
            },
            child(&aliquot(1, "ALQ-1", "200")),
            child(&aliquot(2, "ALQ-2", "50")),
        ]);
    assert_eq!(all.registered.map(|s| s.volume_left.nanolitres()), Some(0));
    given::<Sample>(validated())
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(1, "ALQ-1", "250.001")],
        })
        .then_reject(SampleRejection::NotEnoughVolume {
            wanted: Volume::parse("250.001").expect("volume"),
            available: Volume::parse("250").expect("volume"),
        });
}

#[test]
fn a_second_aliquot_command_sees_what_the_first_left() {
    let mut history = validated();
    history.push(SampleEvent::SampleAliquoted {
        aliquots: vec![aliquot(1, "ALQ-1", "200")],
        remaining_volume_ul: Volume::parse("50").expect("volume"),
    });
    given::<Sample>(history)
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(2, "ALQ-2", "60")],
        })
        .then_reject(SampleRejection::NotEnoughVolume {
            wanted: Volume::parse("60").expect("volume"),
            available: Volume::parse("50").expect("volume"),
        });
}

#[test]
fn aliquot_commands_are_refused_when_the_input_or_status_is_wrong() {
    given::<Sample>(vec![registered()])
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(1, "ALQ-1", "1")],
        })
        .then_reject(SampleRejection::CannotAliquot(SampleStatus::Registered));
    given::<Sample>(validated())
        .when(SampleCommand::Aliquot { aliquots: vec![] })
        .then_reject(SampleRejection::AliquotCount(0));
    let too_many: Vec<NewAliquot> = (0..=MAX_ALIQUOTS as u128)
        .map(|i| aliquot(i + 1, &format!("ALQ-{i}"), "0.001"))
        .collect();
    given::<Sample>(validated())
        .when(SampleCommand::Aliquot { aliquots: too_many })
        .then_reject(SampleRejection::AliquotCount(MAX_ALIQUOTS + 1));
    given::<Sample>(validated())
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(1, "ALQ-1", "1"), aliquot(2, "ALQ-1", "1")],
        })
        .then_reject(SampleRejection::DuplicateAliquotBarcode(
            Barcode::parse("ALQ-1").expect("barcode"),
        ));
    given::<Sample>(validated())
        .when(SampleCommand::Aliquot {
            aliquots: vec![aliquot(1, "LAB-TEST-0001", "1")],
        })
        .then_reject(SampleRejection::DuplicateAliquotBarcode(details().barcode));
}

#[test]
fn disposing_of_a_stored_sample_frees_its_position_and_is_signed() {
    let disposed = SampleEvent::SampleDisposed {
        reason: note("thawed"),
        from_box_id: Some(box_id()),
        from_position: Some(pos("A1")),
        signature: Some(signature()),
    };
    let state = given::<Sample>(stored())
        .when(SampleCommand::Dispose {
            reason: note("thawed"),
            signature: signature(),
        })
        .then_expect(vec![disposed.clone()]);
    assert_eq!(state.status(), Some(SampleStatus::Disposed));
    assert_eq!(
        Sample::released_values(&disposed),
        vec![position_claim(box_id(), pos("A1"))]
    );
    let mut history = stored();
    history.push(disposed);
    given::<Sample>(history)
        .when(SampleCommand::Dispose {
            reason: note("again"),
            signature: signature(),
        })
        .then_reject(SampleRejection::AlreadyDisposed);
    given::<Sample>(checked_out())
        .when(SampleCommand::Dispose {
            reason: note("x"),
            signature: signature(),
        })
        .then_reject(SampleRejection::DisposeCheckedOut("Ben Okafor".into()));
}

#[test]
fn a_mistaken_qc_decision_is_corrected_by_a_signed_event() {
    let failed = SampleEvent::SampleQcCorrected {
        passed: false,
        reason: note("wrong tube read"),
        signature: Some(signature()),
    };
    let state = given::<Sample>(validated())
        .when(SampleCommand::CorrectQc {
            passed: false,
            reason: note("wrong tube read"),
            signature: signature(),
        })
        .then_expect(vec![failed.clone()]);
    assert_eq!(state.status(), Some(SampleStatus::Rejected));
    let mut history = validated();
    history.push(failed);
    let state = given::<Sample>(history)
        .when(SampleCommand::CorrectQc {
            passed: true,
            reason: note("re-read: fine"),
            signature: signature(),
        })
        .then_expect(vec![SampleEvent::SampleQcCorrected {
            passed: true,
            reason: note("re-read: fine"),
            signature: Some(signature()),
        }]);
    assert_eq!(state.status(), Some(SampleStatus::Validated));
}

#[test]
fn a_qc_correction_must_change_something_on_a_sample_out_of_storage_that_was_received() {
    given::<Sample>(validated())
        .when(SampleCommand::CorrectQc {
            passed: true,
            reason: note("x"),
            signature: signature(),
        })
        .then_reject(SampleRejection::CorrectionChangesNothing);
    given::<Sample>(stored())
        .when(SampleCommand::CorrectQc {
            passed: false,
            reason: note("x"),
            signature: signature(),
        })
        .then_reject(SampleRejection::CannotCorrect(SampleStatus::InStorage));
    let refused_at_reception = vec![
        registered(),
        SampleEvent::SampleRejected {
            reason: note("leaked"),
            signature: Some(signature()),
        },
    ];
    given::<Sample>(refused_at_reception)
        .when(SampleCommand::CorrectQc {
            passed: true,
            reason: note("x"),
            signature: signature(),
        })
        .then_reject(SampleRejection::NeverReceived);
}
