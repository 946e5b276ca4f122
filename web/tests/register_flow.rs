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
