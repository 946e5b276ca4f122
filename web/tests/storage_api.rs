//! Storage and the sample lifecycle through the JSON API: a real router, listener and
//! database. A tube goes from registration into a box, moves, leaves with a person, comes
//! back, is aliquoted and disposed of; every refusal is a 4xx that says why and appends
//! nothing.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, TestResult};

fn signed(mut body: Value) -> Value {
    body["signer"] = json!("admin");
    body["password"] = json!(support::PASSWORD);
    body["meaning"] = json!("performed");
    body
}

impl TestApp {
    async fn post_json(&self, path: &str, body: Value) -> TestResult<(StatusCode, Value)> {
        let response = self.client.post(self.url(path)).json(&body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    async fn get_json(&self, path: &str) -> TestResult<(StatusCode, Value)> {
        let response = self.client.get(self.url(path)).send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn ok(&self, path: &str, body: Value) -> TestResult<Value> {
        let (status, value) = self.post_json(path, body).await?;
        assert!(status.is_success(), "{path}: {status} {value}");
        Ok(value)
    }

    /// A −80 °C freezer › rack › two 9×9 boxes.
    async fn lab_storage(&self) -> TestResult<()> {
        self.ok(
            "/api/storage/units",
            json!({"kind": "freezer", "code": "FRZ-1", "name": "Freezer 1, room 2.14", "temperature_zone": "-80", "slots": "4"}),
        )
        .await?;
        self.ok(
            "/api/storage/units",
            json!({"kind": "rack", "code": "RCK-1", "parent": "FRZ-1", "slot": "1", "slots": "10"}),
        )
        .await?;
        for (code, slot) in [("BOX-1", "1"), ("BOX-2", "2")] {
            self.ok(
                "/api/storage/units",
                json!({"kind": "box", "code": code, "parent": "RCK-1", "slot": slot, "grid": "9x9"}),
            )
            .await?;
        }
        Ok(())
    }

    /// A validated −80 °C plasma tube of 500 µL; its id.
    async fn validated(&self, barcode: &str) -> TestResult<String> {
        let registered = self
            .ok(
                "/api/samples",
                json!({"barcode": barcode, "sample_type": "PLASMA", "volume_ul": 500, "temperature_zone": "MINUS_80"}),
            )
            .await?;
        let id = registered["sample_id"].as_str().ok_or("id")?.to_owned();
        self.ok(&format!("/api/samples/{id}/receive"), json!({}))
            .await?;
        self.ok(&format!("/api/samples/{id}/validate"), signed(json!({})))
            .await?;
        Ok(id)
    }

    /// The unit once the read side shows it satisfying `ready` (the storage tables
    /// follow the log asynchronously): polls the observed state, up to 10 s.
    async fn unit_when(&self, unit: &str, ready: impl Fn(&Value) -> bool) -> TestResult<Value> {
        for _ in 0..500 {
            let (status, value) = self.get_json(&format!("/api/storage/units/{unit}")).await?;
            if status == StatusCode::OK && ready(&value) {
                return Ok(value);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(format!("unit {unit} never reached the expected state").into())
    }

    async fn excursions_when(&self, ready: impl Fn(&[Value]) -> bool) -> TestResult<Vec<Value>> {
        for _ in 0..500 {
            let (_, value) = self.get_json("/api/storage/excursions").await?;
            let list = value.as_array().cloned().unwrap_or_default();
            if ready(&list) {
                return Ok(list);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err("the excursions never reached the expected state".into())
    }

    async fn sample(&self, id: &str, version: u64) -> TestResult<Value> {
        let (status, value) = self
            .get_json(&format!("/api/samples/{id}?min_version={version}"))
            .await?;
        assert_eq!(status, StatusCode::OK, "{value}");
        Ok(value)
    }
}

#[tokio::test]
async fn a_tube_is_stored_moved_checked_out_returned_aliquoted_and_disposed() -> TestResult {
    let app = TestApp::spawn().await?;
    app.lab_storage().await?;
    let id = app.validated("TUBE-0001").await?;

    let stored = app
        .ok(
            &format!("/api/samples/{id}/store"),
            json!({"box": "BOX-1 A1"}),
        )
        .await?;
    let row = app
        .sample(&id, stored["version"].as_u64().ok_or("v")?)
        .await?;
    assert_eq!(row["status"], "in_storage");
    assert_eq!(row["position"], "A1");

    // The box shows its occupant; the rack and freezer count it.
    let rack = app
        .unit_when("RCK-1", |u| u["unit"]["capacity"] == 162)
        .await?;
    assert_eq!(rack["unit"]["occupied"], 1);
    let boxed = app
        .unit_when("BOX-1", |u| !u["path"].as_array().is_none_or(Vec::is_empty))
        .await?;
    assert_eq!(boxed["occupants"][0]["barcode"], "TUBE-0001");
    assert_eq!(boxed["path"][0]["code"], "FRZ-1");

    let moved = app
        .ok(
            &format!("/api/samples/{id}/move"),
            json!({"box": "BOX-2", "position": "i9"}),
        )
        .await?;
    let row = app
        .sample(&id, moved["version"].as_u64().ok_or("v")?)
        .await?;
    assert_eq!(row["position"], "I9");
    let (_, first) = app.get_json("/api/storage/units/BOX-1").await?;
    assert_eq!(first["unit"]["occupied"], 0, "the old box is emptied");

    let out = app
        .ok(
            &format!("/api/samples/{id}/check-out"),
            json!({"notes": "for extraction", "holder": "admin"}),
        )
        .await?;
    let row = app.sample(&id, out["version"].as_u64().ok_or("v")?).await?;
    assert_eq!(row["status"], "checked_out");
    assert_eq!(row["holder"], "Ada Admin");
    assert!(row["box_id"].is_null(), "checking out frees the position");

    app.ok(&format!("/api/samples/{id}/return"), json!({}))
        .await?;
    let aliquoted = app
        .ok(
            &format!("/api/samples/{id}/aliquot"),
            json!({"aliquots": [{"barcode": "TUBE-0001-A", "volume_ul": "100"}, {"volume_ul": "50.5"}]}),
        )
        .await?;
    let row = app
        .sample(&id, aliquoted["version"].as_u64().ok_or("v")?)
        .await?;
    assert_eq!(row["volume_ul"], "349.5");

    let disposed = app
        .ok(
            &format!("/api/samples/{id}/dispose"),
            signed(json!({"reason": "used up"})),
        )
        .await?;
    let row = app
        .sample(&id, disposed["version"].as_u64().ok_or("v")?)
        .await?;
    assert_eq!(row["status"], "disposed");

    let (_, events) = app.get_json(&format!("/api/samples/{id}/events")).await?;
    let whats: Vec<&str> = events
        .as_array()
        .ok_or("events")?
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert_eq!(
        whats,
        [
            "Registered",
            "Received",
            "Validated (QC passed)",
            "Stored",
            "Moved",
            "Checked out",
            "Returned",
            "Aliquoted",
            "Disposed"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn refused_placements_are_4xx_in_lab_words_and_append_nothing() -> TestResult {
    let app = TestApp::spawn().await?;
    app.lab_storage().await?;
    let first = app.validated("TUBE-0100").await?;
    let second = app.validated("TUBE-0101").await?;
    app.ok(
        &format!("/api/samples/{first}/store"),
        json!({"box": "BOX-1", "position": "B2"}),
    )
    .await?;
    let cases = [
        (
            json!({"box": "BOX-1", "position": "B2"}),
            StatusCode::CONFLICT,
            "already taken by TUBE-0100",
        ),
        (
            json!({"box": "BOX-1", "position": "J1"}),
            StatusCode::CONFLICT,
            "has no position J1",
        ),
        (
            json!({"box": "BOX-1", "position": "2B"}),
            StatusCode::BAD_REQUEST,
            "not a box position",
        ),
        (
            json!({"box": "NOPE-9", "position": "A1"}),
            StatusCode::BAD_REQUEST,
            "no box has the barcode",
        ),
        (
            json!({"box": "RCK-1", "position": "A1"}),
            StatusCode::BAD_REQUEST,
            "is a rack, not a box",
        ),
        (
            json!({"box": "BOX-1"}),
            StatusCode::BAD_REQUEST,
            "which position",
        ),
        (
            json!({"box": "BOX-1", "position": "A1", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ];
    for (body, status, says) in cases {
        let before = app.events().await?;
        let (got, value) = app
            .post_json(&format!("/api/samples/{second}/store"), body.clone())
            .await?;
        assert_eq!(got, status, "{body}: {value}");
        assert!(value.to_string().contains(says), "{body}: {value}");
        assert_eq!(app.events().await?, before, "{body}: nothing appended");
    }
    // A −20 °C tube does not go into a −80 °C box.
    let warm = app
        .ok(
            "/api/samples",
            json!({"barcode": "TUBE-0200", "sample_type": "SERUM", "volume_ul": 100, "temperature_zone": "-20"}),
        )
        .await?;
    let warm = warm["sample_id"].as_str().ok_or("id")?.to_owned();
    app.ok(&format!("/api/samples/{warm}/receive"), json!({}))
        .await?;
    app.ok(&format!("/api/samples/{warm}/validate"), signed(json!({})))
        .await?;
    let (status, value) = app
        .post_json(
            &format!("/api/samples/{warm}/store"),
            json!({"box": "BOX-1 C3"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap_or_default()
            .contains("must be kept at −20 °C"),
        "{value}"
    );
    // A registered tube (not QC passed) is not stored.
    let fresh = app
        .ok(
            "/api/samples",
            json!({"sample_type": "DNA", "volume_ul": 10, "temperature_zone": "-80"}),
        )
        .await?;
    let (status, value) = app
        .post_json(
            &format!(
                "/api/samples/{}/store",
                fresh["sample_id"].as_str().ok_or("id")?
            ),
            json!({"box": "BOX-1 C3"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap_or_default()
            .contains("only a sample that passed QC"),
        "{value}"
    );
    // Disposal without a signature is refused before anything is appended.
    let before = app.events().await?;
    let (status, value) = app
        .post_json(
            &format!("/api/samples/{first}/dispose"),
            json!({"reason": "x"}),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert_eq!(app.events().await?, before);
    Ok(())
}

#[tokio::test]
async fn units_are_decommissioned_only_when_empty_and_excursions_are_raised_and_resolved()
-> TestResult {
    let app = TestApp::spawn().await?;
    app.lab_storage().await?;
    let id = app.validated("TUBE-0300").await?;
    app.ok(
        &format!("/api/samples/{id}/store"),
        json!({"box": "BOX-1 A1"}),
    )
    .await?;
    let boxed = app.unit_when("BOX-1", |_| true).await?;
    let box_id = boxed["unit"]["unit_id"]
        .as_str()
        .ok_or("box id")?
        .to_owned();
    let (status, value) = app
        .post_json(
            &format!("/api/storage/units/{box_id}/decommission"),
            json!({"reason": "lid cracked"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap_or_default()
            .contains("still holds samples"),
        "{value}"
    );
    app.ok(&format!("/api/samples/{id}/remove"), json!({}))
        .await?;
    app.ok(
        &format!("/api/storage/units/{box_id}/decommission"),
        json!({"reason": "lid cracked"}),
    )
    .await?;
    let (status, value) = app
        .post_json(
            &format!("/api/samples/{id}/store"),
            json!({"box": "BOX-1 A2"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap_or_default()
            .contains("decommissioned"),
        "{value}"
    );

    let freezer = app.unit_when("FRZ-1", |_| true).await?;
    let freezer_id = freezer["unit"]["unit_id"]
        .as_str()
        .ok_or("freezer id")?
        .to_owned();
    app.ok(
        &format!("/api/storage/units/{freezer_id}/temperature"),
        json!({"celsius": "-79.5"}),
    )
    .await?;
    app.ok(
        &format!("/api/storage/units/{freezer_id}/temperature"),
        json!({"celsius": "-52"}),
    )
    .await?;
    let open = app.excursions_when(|list| !list.is_empty()).await?;
    assert_eq!(open.len(), 1, "one excursion for the warm reading");
    assert_eq!(open[0]["celsius"], "-52.0");
    let excursion = open[0]["excursion_id"].as_str().ok_or("excursion id")?;
    let (status, _) = app
        .post_json(
            &format!("/api/storage/units/{freezer_id}/excursions/{excursion}/resolve"),
            json!({}),
        )
        .await?;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a resolution says what was done"
    );
    app.ok(
        &format!("/api/storage/units/{freezer_id}/excursions/{excursion}/resolve"),
        json!({"note": "door left ajar; closed, samples checked"}),
    )
    .await?;
    app.excursions_when(<[Value]>::is_empty).await?;
    Ok(())
}

#[tokio::test]
async fn the_dashboard_counts_by_status_and_shows_alerts_full_boxes_and_activity() -> TestResult {
    let app = TestApp::spawn().await?;
    app.lab_storage().await?;
    // A 1×2 box: one tube fills half, two fill it.
    app.ok(
        "/api/storage/units",
        json!({"kind": "box", "code": "TINY-1", "parent": "RCK-1", "slot": "3", "grid": "1x2"}),
    )
    .await?;
    let a = app.validated("DASH-0001").await?;
    let b = app.validated("DASH-0002").await?;
    app.ok("/api/samples", json!({"barcode": "DASH-0003", "sample_type": "DNA", "volume_ul": 5, "temperature_zone": "-80"}))
        .await?;
    app.ok(
        &format!("/api/samples/{a}/store"),
        json!({"box": "TINY-1 A1"}),
    )
    .await?;
    let last = app
        .ok(
            &format!("/api/samples/{b}/store"),
            json!({"box": "TINY-1 A2"}),
        )
        .await?;
    app.sample(&b, last["version"].as_u64().ok_or("v")?).await?;
    let freezer = app.unit_when("FRZ-1", |_| true).await?;
    let freezer_id = freezer["unit"]["unit_id"].as_str().ok_or("id")?.to_owned();
    app.ok(
        &format!("/api/storage/units/{freezer_id}/temperature"),
        json!({"celsius": "-41"}),
    )
    .await?;
    app.excursions_when(|l| !l.is_empty()).await?;
    app.unit_when("TINY-1", |u| u["unit"]["occupied"] == 2)
        .await?;

    let html = app.client.get(app.url("/")).send().await?.text().await?;
    let tile = |status: &str, n: u32| {
        format!(
            "href=\"/samples?status={status}\" data-status=\"{status}\"><span class=\"figure\">{n}</span>"
        )
    };
    assert!(html.contains(&tile("in_storage", 2)), "two stored: {html}");
    assert!(html.contains(&tile("registered", 1)), "one registered");
    assert!(
        html.contains(&tile("validated", 0)),
        "none left merely validated"
    );
    assert!(html.contains("<span class=\"figure\">3</span><span class=\"label\">samples</span>"));
    assert!(html.contains("-41.0 °C"), "the open alert");
    assert!(
        html.contains(">TINY-1</a>") && html.contains("2 / 2 (100 %)"),
        "the full box"
    );
    assert!(
        html.contains("Sample stored") && html.contains("DASH-0002"),
        "recent activity"
    );
    assert!(html.contains("None waiting."), "no dead letters");
    Ok(())
}

#[tokio::test]
async fn the_sample_list_filters_by_type_zone_location_patient_and_day() -> TestResult {
    let app = TestApp::spawn().await?;
    app.lab_storage().await?;
    let stored = app.validated("LIST-0001").await?;
    let last = app
        .ok(
            &format!("/api/samples/{stored}/store"),
            json!({"box": "BOX-2 B1"}),
        )
        .await?;
    app.sample(&stored, last["version"].as_u64().ok_or("v")?)
        .await?;
    let other = app
        .ok(
            "/api/samples",
            json!({"barcode": "LIST-0002", "sample_type": "DNA", "volume_ul": 5, "temperature_zone": "-20", "patient_ref": "MRN-7"}),
        )
        .await?;
    app.sample(other["sample_id"].as_str().ok_or("id")?, 1)
        .await?;
    let barcodes = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["barcode"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (query, expected) in [
        ("type=dna", vec!["LIST-0002"]),
        ("zone=-80", vec!["LIST-0001"]),
        ("location=BOX-2", vec!["LIST-0001"]),
        ("location=FRZ-1", vec!["LIST-0001"]),
        ("location=BOX-1", vec![]),
        ("patient_ref=MRN-7", vec!["LIST-0002"]),
        ("status=in_storage", vec!["LIST-0001"]),
        ("from=2000-01-01&to=2000-01-02", vec![]),
    ] {
        let (status, value) = app.get_json(&format!("/api/samples?{query}")).await?;
        assert_eq!(status, StatusCode::OK, "{query}: {value}");
        assert_eq!(barcodes(&value), expected, "{query}");
    }
    let (status, value) = app
        .get_json("/api/samples?location=NOWHERE&zone=lava")
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = value["fields"]
        .as_array()
        .ok_or("fields")?
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["zone", "location"], "{value}");

    // A scanned barcode that matches nothing: the box is emptied for the next scan and
    // registering that barcode is offered.
    let html = app
        .client
        .get(app.url("/samples?q=nope-123"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains("id=\"q\" name=\"q\" type=\"search\" value=\"\""),
        "search box cleared"
    );
    assert!(
        html.contains("/samples/new?barcode=NOPE-123"),
        "register it offered"
    );
    let form = app
        .client
        .get(app.url("/samples/new?barcode=NOPE-123"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        form.contains("value=\"NOPE-123\""),
        "the register form is prefilled"
    );
    Ok(())
}
