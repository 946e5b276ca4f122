//! The API's description and docs page: served to the logged in only, the docs page
//! with the one looser Content-Security-Policy Swagger UI needs, everything else keeping
//! the strict one.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION};
use support::{TestApp, TestResult};
use web::routes::edge::CONTENT_SECURITY_POLICY as STRICT;
use web::routes::openapi::DOCS_CONTENT_SECURITY_POLICY as DOCS;

#[tokio::test]
async fn the_spec_and_the_docs_need_a_login_and_only_the_docs_may_run_scripts() -> TestResult {
    let app = TestApp::spawn().await?;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let refused = anonymous.get(app.url("/api/openapi.json")).send().await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let to_login = anonymous
        .get(app.url("/api/docs"))
        .header("accept", "text/html")
        .send()
        .await?;
    assert_eq!(to_login.status(), StatusCode::SEE_OTHER);
    let location = to_login.headers()[LOCATION].to_str()?.to_owned();
    assert!(location.starts_with("/login?next="), "{location}");

    let spec = app.client.get(app.url("/api/openapi.json")).send().await?;
    assert_eq!(spec.status(), StatusCode::OK);
    assert_eq!(spec.headers()[CONTENT_SECURITY_POLICY], STRICT);
    let spec: serde_json::Value = spec.json().await?;
    assert_eq!(spec["info"]["title"], "TracSeq API");
    assert!(spec["paths"]["/api/samples"]["post"].is_object());

    let docs = app.client.get(app.url("/api/docs")).send().await?;
    assert_eq!(docs.status(), StatusCode::SEE_OTHER);
    assert_eq!(docs.headers()[LOCATION], "/api/docs/index.html");
    let index = app
        .client
        .get(app.url("/api/docs/index.html"))
        .send()
        .await?;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()[CONTENT_SECURITY_POLICY], DOCS);
    let html = index.text().await?;
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let init = app
        .client
        .get(app.url("/api/docs/swagger-initializer.js"))
        .send()
        .await?;
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await?.contains("/api/openapi.json"));
    let missing = app.client.get(app.url("/api/docs/nope.js")).send().await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Everything else keeps the strict policy.
    let samples = app.client.get(app.url("/api/samples")).send().await?;
    assert_eq!(samples.headers()[CONTENT_SECURITY_POLICY], STRICT);
    Ok(())
}
