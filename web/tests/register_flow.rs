//! Registering tube after tube from the form, as a technician with a scanner does: the
//! next tube keeps type and temperature; a form submitted again after Back and an edit
//! says it was already used, keeps what was typed and registers nothing.

mod support;

use lab::accounts::Role;
use reqwest::StatusCode;
use support::{TestApp, TestResult};

fn command_id_in(html: &str) -> Option<String> {
    let marker = "name=\"command_id\" value=\"";
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn register_and_next_keeps_type_and_zone_and_a_replayed_form_says_so() -> TestResult {
    let app = TestApp::spawn().await?;
    let tech = app.session("tess", Role::Technician).await?;
    let form = tech.get("/samples/new").await?.text().await?;
    let first_id = command_id_in(&form).ok_or("no command id")?;

    let next = tech
        .form(
            "/samples",
            &[
                ("command_id", &first_id),
                ("barcode", "NEXT-0001"),
                ("sample_type", "PLASMA"),
                ("volume_ul", "250"),
                ("temperature_zone", "MINUS_80"),
                ("then", "next"),
            ],
        )
        .await?;
    assert_eq!(next.status(), StatusCode::OK);
    let next = next.text().await?;
    assert!(
        next.contains("id=\"registered\"") && next.contains("NEXT-0001"),
        "{next}"
    );
    assert!(next.contains("value=\"PLASMA\" selected"), "type kept");
    assert!(next.contains("value=\"MINUS_80\" selected"), "zone kept");
    assert!(
        next.contains("id=\"barcode\" name=\"barcode\" value=\"\""),
        "barcode empty for the next scan"
    );
    let second_id = command_id_in(&next).ok_or("no command id")?;
    assert_ne!(second_id, first_id, "a fresh form for the next tube");

    // Back to the first form, another barcode typed, submitted again: the same form id.
    let before = app.events().await?;
    let replayed = tech
        .form(
            "/samples",
            &[
                ("command_id", &first_id),
                ("barcode", "NEXT-0002"),
                ("sample_type", "PLASMA"),
                ("volume_ul", "250"),
                ("temperature_zone", "MINUS_80"),
            ],
        )
        .await?;
    assert_eq!(replayed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let replayed = replayed.text().await?;
    assert!(replayed.contains("id=\"already-used\""), "{replayed}");
    assert!(
        replayed.contains("value=\"NEXT-0002\""),
        "what was typed is kept"
    );
    let fresh = command_id_in(&replayed).ok_or("no command id")?;
    assert_ne!(fresh, first_id, "a fresh form id to register it for real");
    assert_eq!(app.events().await?, before, "nothing registered");

    let done = tech
        .form(
            "/samples",
            &[
                ("command_id", &fresh),
                ("barcode", "NEXT-0002"),
                ("sample_type", "PLASMA"),
                ("volume_ul", "250"),
                ("temperature_zone", "MINUS_80"),
            ],
        )
        .await?;
    assert_eq!(
        done.status(),
        StatusCode::SEE_OTHER,
        "registered, on to its page"
    );
    Ok(())
}

#[tokio::test]
async fn typed_times_are_the_labs_wall_clock_and_pages_show_it() -> TestResult {
    let app = TestApp::spawn_with(&[("TRACSEQ_TIME_ZONE", "Europe/Berlin")]).await?;
    let tech = app.session("tess", Role::Technician).await?;
    let form = tech.get("/samples/new").await?.text().await?;
    assert!(
        form.contains("lab time, Europe/Berlin"),
        "the form says which clock"
    );
    let command_id = command_id_in(&form).ok_or("no command id")?;
    let done = tech
        .form(
            "/samples",
            &[
                ("command_id", &command_id),
                ("barcode", "TZ-0001"),
                ("sample_type", "SERUM"),
                ("volume_ul", "100"),
                ("temperature_zone", "MINUS_20"),
                ("collected_at", "2026-11-20T09:30"),
            ],
        )
        .await?;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let stored: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT (payload->>'collected_at')::timestamptz FROM events WHERE event_type = 'SampleRegistered'",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(
        stored.to_rfc3339(),
        "2026-11-20T08:30:00+00:00",
        "09:30 in Berlin is 08:30 UTC"
    );
    // A wall-clock time the zone skips is refused, not guessed.
    let form = tech.get("/samples/new").await?.text().await?;
    let skipped = tech
        .form(
            "/samples",
            &[
                ("command_id", &command_id_in(&form).ok_or("no command id")?),
                ("sample_type", "SERUM"),
                ("volume_ul", "100"),
                ("temperature_zone", "MINUS_20"),
                ("collected_at", "2026-03-29T02:30"),
            ],
        )
        .await?;
    assert_eq!(skipped.status(), StatusCode::BAD_REQUEST);
    assert!(
        skipped
            .text()
            .await?
            .contains("does not exist in Europe/Berlin")
    );
    // The list follows the log asynchronously: look until the tube is on it.
    let mut list = String::new();
    for _ in 0..500 {
        list = tech.get("/samples?status=registered").await?.text().await?;
        if list.contains("TZ-0001") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(list.contains(" CET · "), "the list shows lab time: {list}");
    Ok(())
}
