use super::*;
use crate::testing::given;

fn uid(n: u128) -> UnitId {
    UnitId::from_uuid(Uuid::from_u128(n))
}

fn code(s: &str) -> UnitCode {
    UnitCode::parse(s).expect("code")
}

fn name(s: &str) -> UnitName {
    UnitName::parse(s).expect("name")
}

fn note(s: &str) -> Note {
    Note::parse(s).expect("note")
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .expect("time")
        .to_utc()
}

fn freezer_created() -> StorageEvent {
    StorageEvent::FreezerCreated {
        unit_id: uid(1),
        code: code("FRZ-1"),
        name: name("Freezer 1"),
        temperature_zone: TemperatureZone::Minus80,
        slots: 4,
    }
}

fn freezer() -> ParentFacts {
    ParentFacts {
        id: uid(1),
        kind: UnitKind::Freezer,
        code: code("FRZ-1"),
        zone: TemperatureZone::Minus80,
        slots: 4,
        decommissioned: false,
    }
}

fn rack(id: u128, zone: TemperatureZone) -> ParentFacts {
    ParentFacts {
        id: uid(id),
        kind: UnitKind::Rack,
        code: code(&format!("RCK-{id}")),
        zone,
        slots: 10,
        decommissioned: false,
    }
}

fn box_created() -> StorageEvent {
    StorageEvent::BoxCreated {
        unit_id: uid(3),
        code: code("BOX-3"),
        name: name("BOX-3"),
        temperature_zone: TemperatureZone::Minus80,
        parent_id: uid(2),
        slot: 1,
        rows: 9,
        columns: 9,
    }
}

#[test]
fn a_freezer_is_created_with_its_slots_and_claims_its_code() {
    let events = vec![freezer_created()];
    given::<StorageUnit>(vec![])
        .when(StorageCommand::CreateFreezer {
            id: uid(1),
            code: code("FRZ-1"),
            name: name("Freezer 1"),
            zone: TemperatureZone::Minus80,
            slots: 4,
        })
        .then_expect(events.clone());
    assert_eq!(
        StorageUnit::unique_values(&events[0]),
        vec![(CODE_SCOPE, "FRZ-1".to_owned())]
    );
}

#[test]
fn a_unit_is_created_once() {
    given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::CreateFreezer {
            id: uid(1),
            code: code("FRZ-1"),
            name: name("Freezer 1"),
            zone: TemperatureZone::Minus80,
            slots: 4,
        })
        .then_reject(StorageRejection::AlreadyExists);
}

#[test]
fn a_freezer_has_one_to_two_hundred_slots() {
    for slots in [0, MAX_SLOTS + 1] {
        given::<StorageUnit>(vec![])
            .when(StorageCommand::CreateFreezer {
                id: uid(1),
                code: code("FRZ-1"),
                name: name("Freezer 1"),
                zone: TemperatureZone::Minus80,
                slots,
            })
            .then_reject(StorageRejection::SlotCount { slots });
    }
}

#[test]
fn a_rack_takes_its_freezers_zone_and_claims_its_slot() {
    let state = given::<StorageUnit>(vec![])
        .when(StorageCommand::CreateRack {
            id: uid(2),
            code: code("RCK-2"),
            name: name("Rack 2"),
            parent: freezer(),
            slot: 3,
            slots: 10,
        })
        .then_expect(vec![StorageEvent::RackCreated {
            unit_id: uid(2),
            code: code("RCK-2"),
            name: name("Rack 2"),
            temperature_zone: TemperatureZone::Minus80,
            parent_id: uid(1),
            slot: 3,
            slots: 10,
        }]);
    let unit = state.unit.expect("rack");
    assert_eq!(unit.location, Some((uid(1), 3)));
    assert_eq!(unit.zone, TemperatureZone::Minus80);
}

#[test]
fn a_rack_goes_only_into_a_freezer_slot_that_exists_and_is_in_service() {
    let create = |parent: ParentFacts, slot| StorageCommand::CreateRack {
        id: uid(2),
        code: code("RCK-2"),
        name: name("Rack 2"),
        parent,
        slot,
        slots: 10,
    };
    given::<StorageUnit>(vec![])
        .when(create(rack(9, TemperatureZone::Minus80), 1))
        .then_reject(StorageRejection::WrongParent {
            child: UnitKind::Rack,
            expected: UnitKind::Freezer,
            got: UnitKind::Rack,
        });
    given::<StorageUnit>(vec![])
        .when(create(freezer(), 5))
        .then_reject(StorageRejection::NoSuchSlot {
            parent: code("FRZ-1"),
            slot: 5,
            slots: 4,
        });
    given::<StorageUnit>(vec![])
        .when(create(freezer(), 0))
        .then_reject(StorageRejection::NoSuchSlot {
            parent: code("FRZ-1"),
            slot: 0,
            slots: 4,
        });
    let sealed = ParentFacts {
        decommissioned: true,
        ..freezer()
    };
    given::<StorageUnit>(vec![])
        .when(create(sealed, 1))
        .then_reject(StorageRejection::ParentDecommissioned(code("FRZ-1")));
}

#[test]
fn a_box_is_a_grid_in_a_rack_slot() {
    let state = given::<StorageUnit>(vec![])
        .when(StorageCommand::CreateBox {
            id: uid(3),
            code: code("BOX-3"),
            name: name("BOX-3"),
            parent: rack(2, TemperatureZone::Minus80),
            slot: 1,
            grid: Grid::parse("9x9").expect("grid"),
        })
        .then_expect(vec![box_created()]);
    let unit = state.unit.expect("box");
    assert_eq!(unit.grid.map(Grid::capacity), Some(81));
    assert!(unit.as_box().is_some());
    assert_eq!(
        StorageUnit::unique_values(&box_created()),
        vec![(CODE_SCOPE, "BOX-3".to_owned()), slot_claim(uid(2), 1)]
    );
}

#[test]
fn a_box_does_not_go_into_a_freezer() {
    given::<StorageUnit>(vec![])
        .when(StorageCommand::CreateBox {
            id: uid(3),
            code: code("BOX-3"),
            name: name("BOX-3"),
            parent: freezer(),
            slot: 1,
            grid: Grid::parse("9x9").expect("grid"),
        })
        .then_reject(StorageRejection::WrongParent {
            child: UnitKind::Box,
            expected: UnitKind::Rack,
            got: UnitKind::Freezer,
        });
}

#[test]
fn renaming_records_the_new_name_and_the_same_name_changes_nothing() {
    let state = given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::Rename {
            name: name("Freezer A"),
        })
        .then_expect(vec![StorageEvent::UnitRenamed {
            name: name("Freezer A"),
        }]);
    assert_eq!(state.unit.map(|u| u.name), Some(name("Freezer A")));
    given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::Rename {
            name: name("Freezer 1"),
        })
        .then_expect(vec![]);
    given::<StorageUnit>(vec![])
        .when(StorageCommand::Rename { name: name("x") })
        .then_reject(StorageRejection::NotFound);
}

#[test]
fn a_box_moves_to_a_rack_of_its_zone_releasing_its_old_slot() {
    let moved = StorageEvent::UnitMoved {
        from_parent_id: uid(2),
        from_slot: 1,
        parent_id: uid(4),
        slot: 7,
    };
    let state = given::<StorageUnit>(vec![box_created()])
        .when(StorageCommand::Move {
            to: rack(4, TemperatureZone::Minus80),
            slot: 7,
        })
        .then_expect(vec![moved.clone()]);
    assert_eq!(state.unit.and_then(|u| u.location), Some((uid(4), 7)));
    assert_eq!(
        StorageUnit::unique_values(&moved),
        vec![slot_claim(uid(4), 7)]
    );
    assert_eq!(
        StorageUnit::released_values(&moved),
        vec![slot_claim(uid(2), 1)]
    );
}

#[test]
fn a_box_does_not_move_to_another_zone_or_where_it_is() {
    given::<StorageUnit>(vec![box_created()])
        .when(StorageCommand::Move {
            to: rack(4, TemperatureZone::Minus20),
            slot: 1,
        })
        .then_reject(StorageRejection::ZoneMismatch {
            child: UnitKind::Box,
            zone: TemperatureZone::Minus80,
            parent: code("RCK-4"),
            parent_zone: TemperatureZone::Minus20,
        });
    given::<StorageUnit>(vec![box_created()])
        .when(StorageCommand::Move {
            to: rack(2, TemperatureZone::Minus80),
            slot: 1,
        })
        .then_reject(StorageRejection::AlreadyThere {
            parent: code("RCK-2"),
            slot: 1,
        });
}

#[test]
fn freezers_do_not_move() {
    given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::Move {
            to: freezer(),
            slot: 1,
        })
        .then_reject(StorageRejection::FreezersDoNotMove);
}

#[test]
fn decommissioning_a_box_seals_every_position_and_frees_its_slot() {
    let sealed = StorageEvent::UnitDecommissioned {
        reason: note("lid cracked"),
        kind: UnitKind::Box,
        parent_id: Some(uid(2)),
        slot: Some(1),
        slots: None,
        rows: Some(9),
        columns: Some(9),
    };
    let state = given::<StorageUnit>(vec![box_created()])
        .when(StorageCommand::Decommission {
            reason: note("lid cracked"),
        })
        .then_expect(vec![sealed.clone()]);
    assert!(state.unit.as_ref().is_some_and(|u| u.decommissioned));
    let claims = StorageUnit::unique_values_of(uid(3).as_uuid(), &sealed);
    assert_eq!(claims.len(), 81);
    assert!(claims.contains(&position_claim(uid(3), Position::parse("A1").expect("pos"))));
    assert!(claims.contains(&position_claim(uid(3), Position::parse("I9").expect("pos"))));
    assert_eq!(
        StorageUnit::released_values(&sealed),
        vec![slot_claim(uid(2), 1)]
    );
    assert!(
        StorageUnit::unique_values(&sealed).is_empty(),
        "sealing needs the unit's id"
    );
}

#[test]
fn decommissioning_a_freezer_seals_every_slot() {
    let sealed = StorageEvent::UnitDecommissioned {
        reason: note("retired"),
        kind: UnitKind::Freezer,
        parent_id: None,
        slot: None,
        slots: Some(4),
        rows: None,
        columns: None,
    };
    given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::Decommission {
            reason: note("retired"),
        })
        .then_expect(vec![sealed.clone()]);
    assert_eq!(
        StorageUnit::unique_values_of(uid(1).as_uuid(), &sealed),
        (1..=4).map(|s| slot_claim(uid(1), s)).collect::<Vec<_>>()
    );
    assert!(StorageUnit::released_values(&sealed).is_empty());
}

#[test]
fn a_decommissioned_unit_no_longer_changes() {
    let history = vec![
        freezer_created(),
        StorageEvent::UnitDecommissioned {
            reason: note("retired"),
            kind: UnitKind::Freezer,
            parent_id: None,
            slot: None,
            slots: Some(4),
            rows: None,
            columns: None,
        },
    ];
    for command in [
        StorageCommand::Decommission {
            reason: note("again"),
        },
        StorageCommand::Rename { name: name("New") },
        StorageCommand::RecordTemperature {
            celsius: Celsius::parse("-80").expect("c"),
            measured_at: at(),
            excursion_id: Uuid::from_u128(9),
        },
    ] {
        given::<StorageUnit>(history.clone())
            .when(command)
            .then_reject(StorageRejection::Decommissioned(code("FRZ-1")));
    }
}

#[test]
fn a_reading_in_range_is_recorded_and_raises_nothing() {
    let celsius = Celsius::parse("-79.5").expect("c");
    given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::RecordTemperature {
            celsius,
            measured_at: at(),
            excursion_id: Uuid::from_u128(9),
        })
        .then_expect(vec![StorageEvent::TemperatureRecorded {
            celsius,
            measured_at: at(),
        }]);
}

#[test]
fn an_out_of_range_reading_raises_one_excursion_until_it_is_resolved() {
    let warm = Celsius::parse("-52").expect("c");
    let raised = StorageEvent::TemperatureExcursionRaised {
        excursion_id: Uuid::from_u128(9),
        celsius: warm,
        allowed_min: Celsius::from_tenths(-900),
        allowed_max: Celsius::from_tenths(-600),
        measured_at: at(),
    };
    let recorded = StorageEvent::TemperatureRecorded {
        celsius: warm,
        measured_at: at(),
    };
    let state = given::<StorageUnit>(vec![freezer_created()])
        .when(StorageCommand::RecordTemperature {
            celsius: warm,
            measured_at: at(),
            excursion_id: Uuid::from_u128(9),
        })
        .then_expect(vec![recorded.clone(), raised.clone()]);
    assert_eq!(
        state.unit.and_then(|u| u.open_excursion),
        Some(Uuid::from_u128(9))
    );
    // Still warm: recorded, no second excursion while the first is open.
    let history = vec![freezer_created(), recorded.clone(), raised.clone()];
    given::<StorageUnit>(history.clone())
        .when(StorageCommand::RecordTemperature {
            celsius: warm,
            measured_at: at(),
            excursion_id: Uuid::from_u128(10),
        })
        .then_expect(vec![recorded.clone()]);
    let state = given::<StorageUnit>(history.clone())
        .when(StorageCommand::ResolveExcursion {
            excursion_id: Uuid::from_u128(9),
            note: note("door closed"),
        })
        .then_expect(vec![StorageEvent::TemperatureExcursionResolved {
            excursion_id: Uuid::from_u128(9),
            note: note("door closed"),
        }]);
    assert_eq!(state.unit.and_then(|u| u.open_excursion), None);
    given::<StorageUnit>(history)
        .when(StorageCommand::ResolveExcursion {
            excursion_id: Uuid::from_u128(10),
            note: note("x"),
        })
        .then_reject(StorageRejection::NoSuchExcursion(Uuid::from_u128(10)));
}
