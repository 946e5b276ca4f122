//! The HTTP edge through the real router, a real listener and a real database.

mod support;

use lab::accounts::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, TestResult};

/// `body` with the electronic signature a QC decision needs when the admin's API token
/// sends it: the signing person's username, their password, and what it means.
fn signed(mut body: Value) -> Value {
    body["signer"] = json!("admin");
    body["password"] = json!(support::PASSWORD);
    body["meaning"] = json!("approved");
    body
}

impl TestApp {
    /// Registers through the API, asking for the sample as it then stands.
    async fn api_register(&self, body: Value) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(self.url("/api/samples"))
            .header("Prefer", "return=representation")
            .json(&body)
            .send()
            .await
    }

    async fn html(&self, path: &str) -> Result<(StatusCode, String), reqwest::Error> {
        let response = self.client.get(self.url(path)).send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn registering_in_the_form_leads_to_the_detail_page_showing_the_event() -> TestResult {
    let app = TestApp::spawn().await?;
    let ana_id = app.user("ana", Role::Technician).await?;
    let ana = app.login("ana", support::PASSWORD).await?;
    let form = ana.get("/samples/new").await?;
    assert_eq!(form.status(), StatusCode::OK);
    let form = form.text().await?;
    assert!(form.contains("name=\"barcode\""), "{form}");
    assert!(form.contains("Signed in as"), "{form}");
    assert!(
        !form.contains("name=\"operator\""),
        "no operator field: {form}"
    );

    let response = ana
        .form(
            "/samples",
            &[
                ("barcode", "tube-0001"),
                ("sample_type", "SERUM"),
                ("volume_ul", "120.5"),
                ("temperature_zone", "MINUS_20"),
                ("patient", "MRN-77"),
                ("command_id", &uuid::Uuid::now_v7().to_string()),
            ],
        )
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let detail = location(&response);
    assert!(detail.starts_with("/samples/"), "{detail}");

    let (status, page) = app.html(&detail).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("TUBE-0001"), "barcode shown: {page}");
    assert!(
        page.contains("data-event-type=\"SampleRegistered\""),
        "timeline has the event"
    );
    // Read by another principal (the admin's token), so the name comes from the event.
    assert!(
        page.contains("ana (technician)"),
        "who did it is shown: {page}"
    );
    assert!(page.contains("120.5 µL"));
    // The event records the logged-in account, by name and by id.
    let (user, user_id): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT metadata->>'user', metadata->>'user_id' FROM events \
         WHERE event_type = 'SampleRegistered'",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(user.as_deref(), Some("ana (technician)"));
    assert_eq!(user_id, Some(ana_id.id.to_string()));
    Ok(())
}

#[tokio::test]
async fn the_lifecycle_through_the_pages_records_who_did_what() -> TestResult {
    let app = TestApp::spawn().await?;
    let created = app
        .api_register(json!({"barcode": "LC-1", "sample_type": "dna", "volume_ul": 40, "temperature_zone": "-80"}))
        .await?;
    let id = created.json::<Value>().await?["sample_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Different people, each logged in: the events say who did what.
    let bo = app.session("bo", Role::Technician).await?;
    let cy = app.session("cy", Role::LabManager).await?;
    let command_id = || uuid::Uuid::now_v7().to_string();
    let r = bo
        .form(
            &format!("/samples/{id}/receive"),
            &[("notes", "on dry ice"), ("command_id", &command_id())],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = cy
        .form(
            &format!("/samples/{id}/validate"),
            &[
                ("notes", "A260/280 1.9"),
                ("password", support::PASSWORD),
                ("meaning", "approved"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The page the action leads to shows it (read here by yet another principal).
    let (_, page) = app.html(&location(&r)).await?;
    assert!(page.contains("id=\"status\">QC passed<"), "{page}");
    for (event, detail, who) in [
        ("SampleReceived", "on dry ice", "bo (technician)"),
        ("SampleValidated", "A260/280 1.9", "cy (lab_manager)"),
    ] {
        assert!(
            page.contains(&format!("data-event-type=\"{event}\"")),
            "{event} in timeline"
        );
        assert!(page.contains(detail) && page.contains(who), "{who}: {page}");
    }
    let recorded: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_type, metadata->>'user' FROM events ORDER BY position")
            .fetch_all(&app.pool)
            .await?;
    let recorded: Vec<(&str, Option<&str>)> = recorded
        .iter()
        .map(|(t, u)| (t.as_str(), u.as_deref()))
        .collect();
    assert_eq!(
        recorded[1..],
        [
            ("SampleReceived", Some("bo (technician)")),
            ("SampleValidated", Some("cy (lab_manager)")),
        ]
    );

    // Rejecting a validated sample is refused on the page, and nothing is appended.
    let before = app.events().await?;
    let r = cy
        .form(
            &format!("/samples/{id}/reject"),
            &[
                ("reason", "late"),
                ("password", support::PASSWORD),
                ("meaning", "approved"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = r.text().await?;
    assert!(
        body.contains("only a registered or received sample can be rejected"),
        "{body}"
    );
    assert_eq!(app.events().await?, before);

    // A QC decision without an electronic signature is refused and says what is missing.
    for (fields, message) in [
        (
            vec![("reason", "x"), ("password", support::PASSWORD)],
            "choose what your signature means",
        ),
        (
            vec![("reason", "x"), ("meaning", "approved")],
            "re-enter your password",
        ),
    ] {
        let r = cy.form(&format!("/samples/{id}/reject"), &fields).await?;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = r.text().await?;
        // Pages say it as a sentence.
        assert!(body.to_lowercase().contains(message), "{message}: {body}");
    }
    assert_eq!(app.events().await?, before);
    Ok(())
}

#[tokio::test]
async fn invalid_input_is_a_400_naming_the_field_and_appends_nothing() -> TestResult {
    let app = TestApp::spawn().await?;
    let cases = [
        (
            json!({"barcode": "bad barcode!", "sample_type": "blood", "volume_ul": 10, "temperature_zone": "4"}),
            "barcode",
            "barcode may contain only",
        ),
        (
            json!({"sample_type": "blood", "volume_ul": -5, "temperature_zone": "4"}),
            "volume_ul",
            "greater than zero",
        ),
        (
            json!({"sample_type": "lava", "volume_ul": 10, "temperature_zone": "4"}),
            "sample_type",
            "unknown sample type 'lava'",
        ),
        (
            json!({"sample_type": "blood", "volume_ul": "1e3", "temperature_zone": "4"}),
            "volume_ul",
            "not a number of microlitres",
        ),
        (
            json!({"sample_type": "blood", "volume_ul": 10}),
            "temperature_zone",
            "temperature zone is required",
        ),
    ];
    for (body, field, message) in cases {
        let response = app.api_register(body.clone()).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await?;
        assert_eq!(error["fields"][0]["field"], field, "{error}");
        assert!(
            error["error"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{error}"
        );
    }

    // Not JSON at all, or a field of the wrong type.
    let r = app
        .client
        .post(app.url("/api/samples"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .api_register(json!({"sample_type": 7, "volume_ul": 1, "temperature_zone": "4"}))
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("sample_type"));

    // The form keeps what was typed and puts each message beside its field.
    let r = app
        .client
        .post(app.url("/samples"))
        .form(&[
            ("barcode", "has space"),
            ("sample_type", "BLOOD"),
            ("volume_ul", "-1"),
            ("temperature_zone", "PLUS_4"),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await?;
    assert!(page.contains("id=\"barcode-error\""), "{page}");
    assert!(page.contains("id=\"volume_ul-error\""));
    assert!(page.contains("value=\"has space\""), "typed barcode kept");
    assert!(page.contains("value=\"-1\""), "typed volume kept");

    assert_eq!(app.events().await?, 0, "a rejected command appends nothing");
    Ok(())
}

#[tokio::test]
async fn validating_a_rejected_sample_is_a_409_and_appends_nothing() -> TestResult {
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(
            json!({"sample_type": "urine", "volume_ul": "5000", "temperature_zone": "rt"}),
        )
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        created["sample"]["barcode"]
            .as_str()
            .unwrap_or_default()
            .starts_with("LAB-URINE-"),
        "{created}"
    );

    let post = |path: String, body: Value| {
        app.client
            .post(app.url(&path))
            .header("Prefer", "return=representation")
            .json(&body)
            .send()
    };
    let r = post(
        format!("/api/samples/{id}/reject"),
        signed(json!({"reason": "leaking tube"})),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let rejected: Value = r.json().await?;
    assert_eq!(
        rejected["sample"]["status"], "rejected",
        "read-your-writes: {rejected}"
    );

    let before = app.events().await?;
    let r = post(format!("/api/samples/{id}/validate"), signed(json!({}))).await?;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let error: Value = r.json().await?;
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sample is rejected"),
        "{error}"
    );
    assert_eq!(app.events().await?, before);

    // A rejection needs a reason.
    let r = post(format!("/api/samples/{id}/reject"), signed(json!({}))).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.events().await?, before);

    // A QC decision sent with an API token needs a person's signature, naming the field.
    for (body, field) in [
        (json!({"reason": "x"}), "signer"),
        (
            json!({"reason": "x", "signer": "admin", "password": support::PASSWORD}),
            "meaning",
        ),
        (
            json!({"reason": "x", "signer": "admin", "meaning": "approved"}),
            "password",
        ),
    ] {
        let r = post(format!("/api/samples/{id}/reject"), body.clone()).await?;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = r.json().await?;
        assert_eq!(error["fields"][0]["field"], field, "{body}: {error}");
    }
    assert_eq!(app.events().await?, before);
    Ok(())
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_outcome() -> TestResult {
    let app = TestApp::spawn().await?;
    let register = || {
        app.client
            .post(app.url("/api/samples"))
            .header("Idempotency-Key", "scan-42")
            .header("Prefer", "return=representation")
            .json(&json!({"sample_type": "saliva", "volume_ul": 2000, "temperature_zone": "4"}))
            .send()
    };
    let first = register().await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await?;
    let again = register().await?;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = again.json().await?;
    assert_eq!(again["sample_id"], first["sample_id"]);
    assert_eq!(again["version"], first["version"]);
    assert_eq!(again["sample"]["barcode"], first["sample"]["barcode"]);
    assert_eq!(app.events().await?, 1);

    let id = first["sample_id"].as_str().unwrap_or_default();
    let receive = || {
        app.client
            .post(app.url(&format!("/api/samples/{id}/receive")))
            .header("Idempotency-Key", "rcv-1")
            .send()
    };
    let r1: Value = receive().await?.json().await?;
    let r2 = receive().await?;
    assert_eq!(
        r2.status(),
        StatusCode::OK,
        "a repeat is not refused as 'already received'"
    );
    let r2: Value = r2.json().await?;
    assert_eq!(
        (r1["version"].clone(), r2["replayed"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(r2["version"], 2);
    assert_eq!(app.events().await?, 2);

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        "cqrs_commands_total{command=\"RegisterSample\",outcome=\"ok\"} 1",
        "cqrs_commands_total{command=\"RegisterSample\",outcome=\"duplicate\"} 1",
        "cqrs_commands_total{command=\"ReceiveSample\",outcome=\"duplicate\"} 1",
        "cqrs_idempotency_checks_total{result=\"repeated\"} 2",
    ] {
        assert!(
            metrics.contains(line),
            "{line} missing from /metrics:\n{metrics}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_stale_expected_version_is_a_409() -> TestResult {
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(json!({"sample_type": "rna", "volume_ul": 20, "temperature_zone": "-80"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().unwrap_or_default();
    let url = app.url(&format!("/api/samples/{id}/receive"));
    let r = app
        .client
        .post(&url)
        .json(&json!({"expected_version": 1}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .post(&url)
        .json(&json!({"expected_version": 1}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await?.contains("changed by someone else"));
    Ok(())
}

#[tokio::test]
async fn searching_lists_by_prefix_and_an_exact_scan_jumps_to_the_sample() -> TestResult {
    let app = TestApp::spawn().await?;
    for barcode in ["SCAN-001", "SCAN-002", "OTHER-1"] {
        let r = app
            .api_register(json!({"barcode": barcode, "sample_type": "blood", "volume_ul": 1, "temperature_zone": "4"}))
            .await?;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app
        .client
        .get(app.url("/samples?q=scan-002"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/samples/"));

    let (_, page) = app.html("/samples?q=scan").await?;
    assert!(page.contains("SCAN-001") && page.contains("SCAN-002") && !page.contains("OTHER-1"));
    assert!(
        page.contains("autofocus"),
        "the search box takes the scanner's input"
    );

    let list: Value = app
        .client
        .get(app.url("/api/samples?q=SCAN&per_page=1"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (
            list["total"].clone(),
            list["items"].as_array().map(Vec::len)
        ),
        (json!(2), Some(1))
    );

    let r = app
        .client
        .get(app.url("/api/samples?status=lost"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A barcode already registered is refused.
    let r = app
        .api_register(json!({"barcode": "scan-001", "sample_type": "blood", "volume_ul": 1, "temperature_zone": "4"}))
        .await?;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await?.contains("already registered"));
    Ok(())
}

#[tokio::test]
async fn unknown_things_are_404_and_health_reports_ready() -> TestResult {
    let app = TestApp::spawn().await?;
    for path in [
        "/samples/not-a-uuid",
        "/api/samples/00000000-0000-0000-0000-000000000000",
        "/nowhere",
    ] {
        let r = app.client.get(app.url(path)).send().await?;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = app
        .client
        .post(app.url("/api/samples/00000000-0000-0000-0000-000000000000/receive"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An action that does not exist is no route at all.
    let r = app
        .client
        .post(app.url("/api/samples/00000000-0000-0000-0000-000000000000/explode"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let live = app.client.get(app.url("/health/live")).send().await?;
    assert_eq!(live.status(), StatusCode::OK);
    let ready: Value = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["checks"]["postgresql"], "ok", "{ready}");
    Ok(())
}

#[tokio::test]
async fn readiness_names_a_projection_stuck_on_a_poison_event() -> TestResult {
    let app = TestApp::spawn_with(&[("TRACSEQ_STUCK_AFTER_S", "1")]).await?;
    let ready = app.client.get(app.url("/health/ready")).send().await?;
    assert_eq!(ready.status(), StatusCode::OK);
    // An event the samples projection can never apply (its payload does not decode),
    // written behind the store's back.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
         schema_version, payload, metadata) VALUES ('Sample', gen_random_uuid(), 1, \
         gen_random_uuid(), 'SampleRegistered', 2, '{\"barcode\": 7}', \
         '{\"user\": \"x\", \"command_id\": \"00000000-0000-0000-0000-000000000000\", \
         \"correlation_id\": \"00000000-0000-0000-0000-000000000000\", \
         \"causation_id\": \"00000000-0000-0000-0000-000000000000\"}')",
    )
    .execute(&app.pool)
    .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body: Value = loop {
        let response = app.client.get(app.url("/health/ready")).send().await?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response.json().await?;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readiness stayed green with a stuck projection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(body["checks"]["projections"], "failing", "{body}");
    assert_eq!(body["stuck"][0]["name"], "samples", "{body}");
    assert!(
        body["stuck"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("SampleRegistered")),
        "says why: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn operators_list_parked_outbox_events_and_requeue_them() -> TestResult {
    let app = TestApp::spawn().await?;
    let created = app
        .api_register(json!({"barcode": "PARK-1", "sample_type": "dna", "volume_ul": "5", "temperature_zone": "-20"}))
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    sqlx::query("UPDATE outbox SET parked_at = now(), park_reason = 'field x: not in schema'")
        .execute(&app.pool)
        .await?;
    let parked: Value = app
        .client
        .get(app.url("/api/outbox/parked"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(parked[0]["event_type"], "SampleRegistered", "{parked}");
    assert_eq!(parked[0]["reason"], "field x: not in schema");
    let position = parked[0]["position"].as_i64().ok_or("no position")?;
    let missing = app
        .client
        .post(app.url(&format!("/api/outbox/parked/{}/retry", position + 1000)))
        .send()
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let retried: Value = app
        .client
        .post(app.url(&format!("/api/outbox/parked/{position}/retry")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(retried["requeued"], 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_a_422_and_appends_nothing() -> TestResult
{
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(json!({"barcode": "KEY-1", "sample_type": "dna", "volume_ul": 5, "temperature_zone": "-20"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    // Keys are per sender: the admin's token, and another principal's token.
    let ben = TestApp::bearer_client(&app.token("ben", Role::LabManager).await?)?;
    let post = |path: String, key: &'static str, client: &reqwest::Client, body: Value| {
        let request = client
            .post(app.url(&path))
            .header("Idempotency-Key", key)
            .json(&body);
        async move { request.send().await }
    };
    let received = post(
        format!("/api/samples/{id}/receive"),
        "k-7",
        &app.client,
        json!({}),
    )
    .await?;
    assert_eq!(received.status(), StatusCode::OK);
    let before = app.events().await?;
    // The same key for another action, and for the same action with other input.
    for (path, body) in [
        (
            format!("/api/samples/{id}/reject"),
            signed(json!({"reason": "leaked"})),
        ),
        (
            format!("/api/samples/{id}/receive"),
            json!({"notes": "other"}),
        ),
    ] {
        let reused = post(path, "k-7", &app.client, body).await?;
        assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = reused.json().await?;
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("used for a different request")),
            "{body}"
        );
    }
    assert_eq!(app.events().await?, before, "nothing appended");
    // Another sender's key is another key.
    let other = post(
        format!("/api/samples/{id}/reject"),
        "k-7",
        &ben,
        signed(json!({"reason": "leaked"})),
    )
    .await?;
    assert_eq!(other.status(), StatusCode::OK);
    // The first request repeated is still answered with its first outcome.
    let again = post(
        format!("/api/samples/{id}/receive"),
        "k-7",
        &app.client,
        json!({}),
    )
    .await?;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await?;
    assert_eq!(
        (again["version"].clone(), again["replayed"].clone()),
        (json!(2), json!(true))
    );
    Ok(())
}

#[tokio::test]
async fn a_repeated_rejected_command_is_rejected_the_same_way() -> TestResult {
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(json!({"barcode": "REJ-1", "sample_type": "dna", "volume_ul": 5, "temperature_zone": "-20"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    let validate = || {
        app.client
            .post(app.url(&format!("/api/samples/{id}/validate")))
            .header("Idempotency-Key", "v-1")
            .json(&signed(json!({})))
            .send()
    };
    let first = validate().await?;
    assert_eq!(first.status(), StatusCode::CONFLICT, "not received yet");
    let receive = app
        .client
        .post(app.url(&format!("/api/samples/{id}/receive")))
        .send()
        .await?;
    assert_eq!(receive.status(), StatusCode::OK);
    let before = app.events().await?;
    // Now the sample could be validated, but this key's request was refused: its repeat
    // is refused the same way, not carried out.
    let again = validate().await?;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(
        again
            .text()
            .await?
            .contains("only a received sample can be validated")
    );
    assert_eq!(app.events().await?, before);
    Ok(())
}

#[tokio::test]
async fn each_action_form_on_the_sample_page_works_in_any_order() -> TestResult {
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(json!({"barcode": "FORM-1", "sample_type": "dna", "volume_ul": 5, "temperature_zone": "-20"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    // The page is loaded once; its forms are then submitted one after the other.
    let bo = app.session("bo", Role::LabManager).await?;
    let page = bo.get(&format!("/samples/{id}")).await?.text().await?;
    let ids: Vec<String> = page
        .split("name=\"command_id\" value=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 3, "receive, reject and dispose forms: {page}");
    assert_ne!(ids[0], ids[1], "each form is its own command");
    let submit = |action: &'static str, command_id: String| {
        let (bo, id) = (&bo, id.clone());
        async move {
            bo.form(
                &format!("/samples/{id}/{action}"),
                &[
                    ("reason", "haemolysed"),
                    ("password", support::PASSWORD),
                    ("meaning", "reviewed"),
                    ("command_id", command_id.as_str()),
                ],
            )
            .await
        }
    };
    let received = submit("receive", ids[0].clone()).await?;
    assert_eq!(received.status(), StatusCode::SEE_OTHER);
    let rejected = submit("reject", ids[1].clone()).await?;
    assert_eq!(rejected.status(), StatusCode::SEE_OTHER);
    let (_, page) = app.html(&location(&rejected)).await?;
    assert!(page.contains("id=\"status\">QC failed<"), "{page}");
    assert_eq!(app.events().await?, 3);
    // Submitting a form twice (a double click, a browser resubmit) is one command.
    let twice = submit("reject", ids[1].clone()).await?;
    assert_eq!(twice.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.events().await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_command_answers_with_a_consistency_token_and_reads_can_wait_for_it() -> TestResult {
    let app = TestApp::spawn().await?;
    let created = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({"barcode": "TOKEN-1", "sample_type": "dna", "volume_ul": 5, "temperature_zone": "-20"}))
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let token = created
        .headers()
        .get("consistency-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let created: Value = created.json().await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    assert_eq!(token, format!("{id}@1"));
    assert_eq!(created["consistency_token"], token.as_str());
    assert!(
        created.get("sample").is_none(),
        "no read-model wait unless asked: {created}"
    );
    let received: Value = app
        .client
        .post(app.url(&format!("/api/samples/{id}/receive")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(received["version"], 2);
    let sample: Value = app
        .client
        .get(app.url(&format!("/api/samples/{id}?min_version=2")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (sample["status"].clone(), sample["version"].clone()),
        (json!("received"), json!(2))
    );
    // The page a form leads to names the version it must show.
    let cy = app.session("cy", Role::LabManager).await?;
    let response = cy
        .form(
            &format!("/samples/{id}/validate"),
            &[
                ("password", support::PASSWORD),
                ("meaning", "approved"),
                ("command_id", &uuid::Uuid::now_v7().to_string()),
            ],
        )
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = location(&response);
    assert_eq!(to, format!("/samples/{id}?v=3&done=1"));
    let (_, page) = app.html(&to).await?;
    assert!(page.contains("id=\"status\">QC passed<"), "{page}");
    Ok(())
}

#[tokio::test]
async fn metrics_show_the_oldest_open_transaction_without_a_relay() -> TestResult {
    // In-process mode runs no relay; the gauge must still be read on each scrape, since
    // an old transaction holds the in-process projection back just as much.
    let app = TestApp::spawn().await?;
    let mut holder = app.pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await?;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    holder.rollback().await?;
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cqrs_oldest_transaction_age_seconds "))
        .ok_or_else(|| format!("no oldest-transaction gauge in /metrics:\n{metrics}"))?
        .trim()
        .parse()?;
    assert!(
        age > 0.0,
        "an open transaction holds an xid, yet the age is {age}"
    );
    Ok(())
}

const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

fn assert_security_headers(what: &str, response: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            response.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name} ({} {:?})",
            response.status(),
            response.headers()
        );
    }
}

/// Sends `head` and a chunked `body` over a raw connection (no Content-Length, so only
/// reading the body can find it too large) and returns the whole answer.
async fn raw_chunked(app: &TestApp, head: &str, body: Vec<u8>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address = app.base.trim_start_matches("http://").to_owned();
    let head = head.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
        write!(
            stream,
            "{head}\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )?;
        for chunk in body.chunks(4096) {
            write!(stream, "{:x}\r\n", chunk.len())?;
            stream.write_all(chunk)?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        let mut answer = Vec::new();
        // The server may answer and close before reading everything: keep what came.
        let _ = stream.read_to_end(&mut answer);
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })
    .await?
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_pages_have_no_inline_style() -> TestResult
{
    let app = TestApp::spawn().await?;
    let created: Value = app
        .api_register(json!({"barcode": "HDR-1", "sample_type": "dna", "volume_ul": 4, "temperature_zone": "-80", "collected_by": "<b>Dr Who</b>"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().unwrap_or_default().to_owned();
    let nil = uuid::Uuid::nil();

    // Pages, including error pages: headers, no inline style or script, the stylesheet.
    let pages = [
        "/samples".to_owned(),
        "/samples?q=HDR".to_owned(),
        "/samples?q=NOTHING-LIKE-IT".to_owned(),
        "/samples/new".to_owned(),
        format!("/samples/{id}"),
        format!("/samples/{nil}"),
        "/samples/not-an-id".to_owned(),
        "/dead-letters".to_owned(),
        "/no/such/page".to_owned(),
    ];
    let mut stylesheet = None;
    for path in &pages {
        let response = app.client.get(app.url(path)).send().await?;
        assert_security_headers(path, &response);
        let page = response.text().await?;
        assert!(
            !page.contains("style="),
            "{path} keeps an inline style: {page}"
        );
        assert!(
            !page.contains("<style"),
            "{path} keeps a <style> block: {page}"
        );
        assert!(!page.contains("<script"), "{path} has a script: {page}");
        let link = page
            .split("<link rel=\"stylesheet\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        assert!(link.starts_with("/static/app.css?v="), "{path}: {page}");
        stylesheet = Some(link);
    }
    // Templates not rendered above (the dead-letter page needs Kafka) are checked as
    // written.
    let mut templates = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates"
    ))];
    let mut checked = 0;
    while let Some(path) = templates.pop() {
        if path.is_dir() {
            templates.extend(
                std::fs::read_dir(&path)?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<Result<Vec<_>, _>>()?,
            );
            continue;
        }
        let text = std::fs::read_to_string(&path)?.to_ascii_lowercase();
        for forbidden in ["style=", "<style", "<script", " onclick=", " onload="] {
            assert!(
                !text.contains(forbidden),
                "{} has {forbidden}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 6, "{checked} templates");

    // A form re-shown with errors, and a refused action, are pages too.
    let response = app
        .client
        .post(app.url("/samples"))
        .form(&[("barcode", "bad barcode")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_security_headers("register with errors", &response);
    assert!(!response.text().await?.contains("style="));
    let cy = app.session("cy", Role::LabManager).await?;
    let response = cy
        .form(
            &format!("/samples/{id}/validate"),
            &[("password", support::PASSWORD), ("meaning", "approved")],
        )
        .await?;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_security_headers("refused action", &response);
    assert!(!response.text().await?.contains("style="));
    // A successful form post (a redirect).
    let response = app
        .client
        .post(app.url(&format!("/samples/{id}/receive")))
        .form(&[("notes", "")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_security_headers("redirect", &response);

    // The stylesheet itself: CSS, cached for long, and it carries what the pages need.
    let stylesheet = stylesheet.unwrap_or_default();
    let response = app.client.get(app.url(&stylesheet)).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers("stylesheet", &response);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/css"));
    assert!(header("cache-control").contains("max-age=31536000"));
    let css = response.text().await?;
    for rule in [".banner.bad", ".spaced", ".gap-above", "dl.facts"] {
        assert!(css.contains(rule), "stylesheet lacks {rule}");
    }

    // The API, health, metrics, and the framework's own refusals.
    let api_calls = [
        app.client.get(app.url("/api/samples")),
        app.client.get(app.url(&format!("/api/samples/{id}"))),
        app.client.get(app.url(&format!("/api/samples/{nil}"))),
        app.client.get(app.url("/api/samples?status=molten")),
        app.client
            .post(app.url("/api/samples"))
            .header("content-type", "application/json")
            .body("{not json"),
        app.client.get(app.url("/health/live")),
        app.client.get(app.url("/health/ready")),
        app.client.get(app.url("/health/startup")),
        app.client.get(app.url("/metrics")),
        app.client.delete(app.url("/api/samples")),
        app.client.put(app.url("/samples")),
    ];
    for call in api_calls {
        let response = call.send().await?;
        let what = format!("{} {}", response.url().path(), response.status());
        assert_security_headers(&what, &response);
        if response.status().is_client_error() {
            assert!(
                !response.text().await?.trim().is_empty(),
                "{what}: no message"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_with_a_message_and_changes_nothing() -> TestResult {
    let app = TestApp::spawn_with(&[("TRACSEQ_BODY_LIMIT_BYTES", "4096")]).await?;
    let created: Value = app
        .api_register(json!({"sample_type": "dna", "volume_ul": 4, "temperature_zone": "-80"}))
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().unwrap_or_default().to_owned();
    let before = app.events().await?;
    let long = "x".repeat(5000);
    // The raw requests below authenticate with a token of their own.
    let token = app.token("raw", Role::LabManager).await?;

    // With a Content-Length: refused before the body is read.
    let r = app
        .client
        .post(app.url("/samples"))
        .form(&[("sample_type", "DNA"), ("patient", &long)])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers("form 413", &r);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let page = r.text().await?;
    assert!(page.contains("larger than the 4 KiB"), "{page}");
    let r = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({"sample_type": "dna", "volume_ul": 4, "temperature_zone": "-80", "patient_ref": long}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers("api 413", &r);
    let body: Value = r.json().await?;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than the 4 KiB"),
        "{body}"
    );

    // Chunked, so only reading finds it too large: form, JSON and raw-bytes handlers.
    for (head, body) in [
        (
            "POST /samples HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
                .to_owned(),
            format!("sample_type=DNA&volume_ul=1&temperature_zone=MINUS_80&patient={long}"),
        ),
        (
            "POST /api/samples HTTP/1.1\r\nContent-Type: application/json".to_owned(),
            json!({"sample_type": "dna", "volume_ul": 4, "temperature_zone": "-80", "patient_ref": long})
                .to_string(),
        ),
        (
            format!("POST /api/samples/{id}/receive HTTP/1.1\r\nContent-Type: application/json"),
            json!({ "notes": long }).to_string(),
        ),
        (
            format!(
                "POST /samples/{id}/receive HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
            ),
            format!("notes={long}"),
        ),
    ] {
        let head = format!("{head}\r\nAuthorization: Bearer {token}");
        let answer = raw_chunked(&app, &head, body.into_bytes()).await?;
        assert!(answer.starts_with("HTTP/1.1 413"), "{head}: {answer}");
        assert!(answer.contains("larger than the 4 KiB"), "{head}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"),
            "{head}: {answer}"
        );
    }
    assert_eq!(app.events().await?, before, "nothing appended");

    // A body within the limit is fine.
    let r = app
        .client
        .post(app.url(&format!("/api/samples/{id}/receive")))
        .json(&json!({ "notes": "y".repeat(500) }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_request_running_over_the_timeout_is_a_503_with_a_message() -> TestResult {
    // A page asked to wait for a version that never comes waits the read-your-writes
    // time (10 s), far past the 500 ms request timeout.
    let app = TestApp::spawn_with(&[
        ("TRACSEQ_REQUEST_TIMEOUT_MS", "500"),
        ("TRACSEQ_READ_YOUR_WRITES_MS", "10000"),
    ])
    .await?;
    let r = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({"sample_type": "dna", "volume_ul": 4, "temperature_zone": "-80"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await?["sample_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let started = std::time::Instant::now();
    let r = app
        .client
        .get(app.url(&format!("/samples/{id}?v=99")))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers("timed-out page", &r);
    let page = r.text().await?;
    assert!(
        page.contains("did not finish this request within 0.5 s"),
        "{page}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let r = app
        .client
        .get(app.url(&format!("/api/samples/{id}?min_version=99")))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers("timed-out API call", &r);
    let body: Value = r.json().await?;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did not finish"),
        "{body}"
    );
    Ok(())
}
