//! The storage pages through the real router: units made through the forms, a tube
//! stored by scanning, seen in its box's grid, moved by clicking a free cell, checked
//! out, returned and disposed of with an electronic signature.

mod support;

use lab::accounts::Role;
use reqwest::StatusCode;
use support::{Session, TestApp, TestResult};

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn command_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Creates a unit through the storage page's form; its page's id.
async fn create_unit(s: &Session, fields: &[(&str, &str)]) -> TestResult<String> {
    let mut all = fields.to_vec();
    let id = command_id();
    all.push(("command_id", &id));
    let r = s.form("/storage/units", &all).await?;
    let status = r.status();
    let to = location(&r);
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", r.text().await?);
    let unit = to
        .strip_prefix("/storage/")
        .and_then(|rest| rest.split('?').next())
        .ok_or_else(|| format!("created unit leads to {to}"))?
        .to_owned();
    Ok(unit)
}

/// The `<td>` of `position` in a box page's grid.
fn cell<'a>(page: &'a str, position: &str) -> &'a str {
    let marker = format!("data-position=\"{position}\"");
    let Some(at) = page.find(&marker) else {
        return "";
    };
    let start = page[..at].rfind("<td").unwrap_or(at);
    let end = page[at..].find("</td>").map_or(page.len(), |e| at + e);
    &page[start..end]
}

async fn text(s: &Session, path: &str) -> TestResult<(StatusCode, String)> {
    let r = s.get(path).await?;
    Ok((r.status(), r.text().await?))
}

#[tokio::test]
async fn a_tube_goes_from_the_scanner_into_a_box_and_out_of_the_lab() -> TestResult {
    let app = TestApp::spawn().await?;
    let cy = app.session("cy", Role::LabManager).await?;

    // The hierarchy, made through the storage page.
    let (status, index) = text(&cy, "/storage").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(index.contains("action=\"/storage/units\""), "{index}");
    let freezer = create_unit(
        &cy,
        &[
            ("kind", "freezer"),
            ("code", "FRZ-1"),
            ("name", "Minus eighty one"),
            ("temperature_zone", "-80"),
            ("slots", "4"),
        ],
    )
    .await?;
    let rack = create_unit(
        &cy,
        &[
            ("kind", "rack"),
            ("code", "RACK-1"),
            ("parent", "FRZ-1"),
            ("slot", "1"),
            ("slots", "4"),
        ],
    )
    .await?;
    let boxed = create_unit(
        &cy,
        &[
            ("kind", "box"),
            ("code", "BOX-1"),
            ("parent", "RACK-1"),
            ("slot", "1"),
            ("grid", "3x3"),
        ],
    )
    .await?;

    // A refused unit keeps what was typed and says why beside the field.
    let r = cy
        .form(
            "/storage/units",
            &[
                ("kind", "box"),
                ("code", "BOX-2"),
                ("parent", "RACK-1"),
                ("slot", "2"),
                ("grid", "nine by nine"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await?;
    assert!(body.contains("value=\"BOX-2\""), "typed kept: {body}");
    assert!(
        body.contains("field-error"),
        "problem beside the field: {body}"
    );

    let (_, index) = text(&cy, "/storage").await?;
    let (f, r, b) = (
        index.find(&format!("href=\"/storage/{freezer}\"")),
        index.find(&format!(
            "class=\"nested rack\">\n    <td class=\"mono nowrap\">› <a href=\"/storage/{rack}\""
        )),
        index.find(&format!("› › <a href=\"/storage/{boxed}\"")),
    );
    assert!(
        f.is_some() && f < r && r < b,
        "a tree, freezer › rack › box: {index}"
    );
    assert!(index.contains("FRZ-1"), "{index}");
    assert!(
        index.contains("RACK-1") && index.contains("BOX-1"),
        "{index}"
    );
    let (status, page) = text(&cy, &format!("/storage/{boxed}")).await?;
    assert_eq!(status, StatusCode::OK);
    for step in [&freezer, &rack] {
        assert!(
            page.contains(&format!("href=\"/storage/{step}\"")),
            "breadcrumb links {step}: {page}"
        );
    }
    assert!(
        cell(&page, "C3").contains("value=\"C3\""),
        "a 3x3 grid of free cells: {page}"
    );

    // A sample, registered, received and validated with a signature.
    let r = cy
        .form(
            "/samples",
            &[
                ("barcode", "LAB-0001"),
                ("sample_type", "DNA"),
                ("volume_ul", "100"),
                ("temperature_zone", "-80"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);
    let sample_page = location(&r);
    let sample = sample_page
        .strip_prefix("/samples/")
        .and_then(|rest| rest.split('?').next())
        .ok_or("registration leads to the sample")?
        .to_owned();
    let r = cy
        .form(
            &format!("/samples/{sample}/receive"),
            &[("command_id", &command_id())],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);
    let r = cy
        .form(
            &format!("/samples/{sample}/validate"),
            &[
                ("password", support::PASSWORD),
                ("meaning", "approved"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);

    // The scanner page: the tube, then the box and position.
    let (status, store) = text(&cy, "/store").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(store.contains("autofocus"), "{store}");
    let r = cy
        .form(
            "/store",
            &[
                ("tube", "lab-0001"),
                ("box", "BOX-1"),
                ("position", "A1"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await?;
    assert!(body.contains("Stored LAB-0001 in BOX-1 A1"), "{body}");

    // A refusal says why and keeps what was scanned.
    let r = cy
        .form(
            "/store",
            &[
                ("tube", "LAB-0001"),
                ("box", "BOX-1"),
                ("position", "Z9"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert!(r.status().is_client_error(), "{}", r.status());
    let body = r.text().await?;
    assert!(body.contains("id=\"message\""), "{body}");
    assert!(body.contains("value=\"LAB-0001\""), "tube kept: {body}");
    assert!(body.contains("value=\"Z9\""), "position kept: {body}");

    // The box's grid shows it, linked to the sample, with its type and status.
    let (_, page) = text(&cy, &format!("/storage/{boxed}")).await?;
    let a1 = cell(&page, "A1");
    assert!(a1.contains("LAB-0001"), "{page}");
    assert!(a1.contains(&format!("href=\"/samples/{sample}\"")), "{a1}");
    assert!(a1.contains("title="), "{a1}");
    assert!(cell(&page, "B2").contains("value=\"B2\""), "B2 is free");

    // Clicking a free cell with the tube scanned moves it there.
    let r = cy
        .form(
            &format!("/storage/{boxed}/place"),
            &[
                ("sample", "LAB-0001"),
                ("position", "B2"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await?;
    assert!(page.contains("Moved LAB-0001 in BOX-1 B2"), "{page}");
    assert!(cell(&page, "B2").contains("LAB-0001"), "{page}");
    assert!(!cell(&page, "A1").contains("LAB-0001"), "{page}");

    // An occupied cell is refused in lab words, with the scan kept.
    let r = cy
        .form(
            &format!("/storage/{boxed}/place"),
            &[
                ("sample", "LAB-0001"),
                ("position", "B2"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert!(r.status().is_client_error(), "{}", r.status());
    let page = r.text().await?;
    assert!(page.contains("id=\"message\""), "{page}");
    assert!(page.contains("value=\"LAB-0001\""), "{page}");

    // The sample page says where it is, linked along the path.
    let (_, page) = text(&cy, &format!("/samples/{sample}")).await?;
    assert!(
        page.contains(&format!("href=\"/storage/{boxed}\"")),
        "{page}"
    );
    assert!(page.contains(">B2</strong>"), "{page}");

    // Checked out (to oneself), then returned.
    let r = cy
        .form(
            &format!("/samples/{sample}/check-out"),
            &[("notes", "PCR"), ("command_id", &command_id())],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);
    let (_, page) = text(&cy, &location(&r)).await?;
    assert!(
        page.contains("Checked out to cy"),
        "said in lab words: {page}"
    );
    assert!(page.contains("checked out to <strong>cy"), "{page}");
    let r = cy
        .form(
            &format!("/samples/{sample}/return"),
            &[("command_id", &command_id())],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);

    // Disposal needs a signature: without one it is refused and the reason is kept.
    let r = cy
        .form(
            &format!("/samples/{sample}/dispose"),
            &[("reason", "used up"), ("command_id", &command_id())],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await?;
    assert!(body.contains("value=\"used up\""), "{body}");
    assert!(
        body.contains("id=\"dispose-refused\""),
        "beside the form: {body}"
    );
    let r = cy
        .form(
            &format!("/samples/{sample}/dispose"),
            &[
                ("reason", "used up"),
                ("password", support::PASSWORD),
                ("meaning", "approved"),
                ("command_id", &command_id()),
            ],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await?);
    let (_, page) = text(&cy, &location(&r)).await?;
    assert!(
        page.contains("data-event-type=\"SampleDisposed\""),
        "{page}"
    );
    assert!(!page.contains("id=\"dispose-form\""), "{page}");

    // The box no longer holds it.
    let (_, page) = text(&cy, &format!("/storage/{boxed}")).await?;
    assert!(!page.contains("LAB-0001"), "{page}");
    Ok(())
}
