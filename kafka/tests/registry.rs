//! The schema registry over HTTP, against a fresh PostgreSQL database, as Confluent
//! clients call it.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::registry_client::Registry;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Tube","namespace":"org.example","fields":[{fields}]}}"#)
}

#[tokio::test]
async fn register_look_up_and_fetch_schemas_like_confluent() -> TestResult {
    let r = Registry::start().await?;
    let v1 = record(r#"{"name":"barcode","type":"string"}"#);
    let (status, body) = r.register("tubes-value", &v1).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_i64().ok_or("no id")?;

    // Same schema again (even formatted differently): same id, no new version.
    let spaced = v1.replace(',', ", ");
    assert_eq!(r.register("tubes-value", &spaced).await?.1["id"], id);
    // The same schema under another subject keeps its global id.
    assert_eq!(r.register("other-value", &v1).await?.1["id"], id);

    let v2 =
        record(r#"{"name":"barcode","type":"string"},{"name":"volume","type":"long","default":0}"#);
    let (_, body) = r.register("tubes-value", &v2).await?;
    let id2 = body["id"].as_i64().ok_or("no id")?;
    assert_ne!(id, id2);

    let (_, versions) = r
        .call(reqwest::Method::GET, "/subjects/tubes-value/versions", None)
        .await?;
    assert_eq!(versions, json!([1, 2]));
    let (_, latest) = r
        .call(
            reqwest::Method::GET,
            "/subjects/tubes-value/versions/latest",
            None,
        )
        .await?;
    assert_eq!(
        (latest["version"].clone(), latest["id"].clone()),
        (json!(2), json!(id2))
    );
    let (_, first) = r
        .call(
            reqwest::Method::GET,
            "/subjects/tubes-value/versions/1",
            None,
        )
        .await?;
    assert_eq!(first["schema"], json!(v1));
    let (_, found) = r
        .call(
            reqwest::Method::POST,
            "/subjects/tubes-value",
            Some(json!({ "schema": v1 })),
        )
        .await?;
    assert_eq!(
        (found["version"].clone(), found["id"].clone()),
        (json!(1), json!(id))
    );
    let (_, by_id) = r
        .call(reqwest::Method::GET, &format!("/schemas/ids/{id2}"), None)
        .await?;
    assert_eq!(by_id["schema"], json!(v2));
    let (_, subjects) = r.call(reqwest::Method::GET, "/subjects", None).await?;
    assert_eq!(subjects, json!(["other-value", "tubes-value"]));
    Ok(())
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_with_409_and_nothing_is_registered() -> TestResult {
    let r = Registry::start().await?;
    let v1 = record(r#"{"name":"barcode","type":"string"}"#);
    r.register("tubes-value", &v1).await?;

    // A new required field breaks BACKWARD (the default): readers of v2 cannot read v1 data.
    let breaking = record(r#"{"name":"barcode","type":"string"},{"name":"zone","type":"string"}"#);
    let (_, check) = r
        .call(
            reqwest::Method::POST,
            "/compatibility/subjects/tubes-value/versions/latest?verbose=true",
            Some(json!({ "schema": breaking })),
        )
        .await?;
    assert_eq!(check["is_compatible"], false, "{check}");
    assert!(
        check["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "{check}"
    );

    let (status, error) = r.register("tubes-value", &breaking).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error_code"], 40901);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("incompatible"),
        "{error}"
    );
    let (_, versions) = r
        .call(reqwest::Method::GET, "/subjects/tubes-value/versions", None)
        .await?;
    assert_eq!(versions, json!([1]), "nothing registered");
    let (status, _) = r
        .call(
            reqwest::Method::POST,
            "/subjects/tubes-value",
            Some(json!({ "schema": breaking })),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // With the subject set to NONE the same change is accepted.
    let (_, set) = r
        .call(
            reqwest::Method::PUT,
            "/config/tubes-value",
            Some(json!({ "compatibility": "NONE" })),
        )
        .await?;
    assert_eq!(set["compatibility"], "NONE");
    let (status, _) = r.register("tubes-value", &breaking).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn compatibility_levels_are_configured_globally_and_per_subject() -> TestResult {
    let r = Registry::start().await?;
    let (_, global) = r.call(reqwest::Method::GET, "/config", None).await?;
    assert_eq!(global["compatibilityLevel"], "BACKWARD");
    let (status, body) = r
        .call(reqwest::Method::GET, "/config/tubes-value", None)
        .await?;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40408))
    );
    let (_, body) = r
        .call(
            reqwest::Method::GET,
            "/config/tubes-value?defaultToGlobal=true",
            None,
        )
        .await?;
    assert_eq!(body["compatibilityLevel"], "BACKWARD");

    r.call(
        reqwest::Method::PUT,
        "/config",
        Some(json!({ "compatibility": "FULL" })),
    )
    .await?;
    let (_, global) = r.call(reqwest::Method::GET, "/config", None).await?;
    assert_eq!(global["compatibilityLevel"], "FULL");

    // FULL refuses removing a field that has no default (old readers need it).
    let v1 = record(r#"{"name":"barcode","type":"string"},{"name":"zone","type":"string"}"#);
    let v2 = record(r#"{"name":"barcode","type":"string"}"#);
    r.register("tubes-value", &v1).await?;
    assert_eq!(
        r.register("tubes-value", &v2).await?.0,
        StatusCode::CONFLICT
    );
    r.call(
        reqwest::Method::PUT,
        "/config/tubes-value",
        Some(json!({ "compatibility": "BACKWARD" })),
    )
    .await?;
    assert_eq!(r.register("tubes-value", &v2).await?.0, StatusCode::OK);

    let (status, body) = r
        .call(
            reqwest::Method::PUT,
            "/config",
            Some(json!({ "compatibility": "SOMETIMES" })),
        )
        .await?;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42203))
    );
    Ok(())
}

#[tokio::test]
async fn errors_carry_confluent_codes() -> TestResult {
    let r = Registry::start().await?;
    let expect = |(status, body): (u16, Value), want_status: u16, want_code: i64| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error_code"], want_code, "{body}");
        assert!(body["message"].is_string());
    };
    expect(
        r.send(reqwest::Method::GET, "/subjects/nope/versions", None)
            .await?,
        404,
        40401,
    );
    expect(
        r.send(reqwest::Method::GET, "/subjects/nope/versions/latest", None)
            .await?,
        404,
        40401,
    );
    expect(
        r.send(reqwest::Method::GET, "/schemas/ids/999", None)
            .await?,
        404,
        40403,
    );
    expect(
        r.register("tubes-value", "{\"type\": \"recordd\"}").await?,
        422,
        42201,
    );
    expect(r.register("tubes-value", "not json").await?, 422, 42201);
    r.register("tubes-value", &record(r#"{"name":"a","type":"string"}"#))
        .await?;
    expect(
        r.send(
            reqwest::Method::GET,
            "/subjects/tubes-value/versions/7",
            None,
        )
        .await?,
        404,
        40402,
    );
    expect(
        r.send(
            reqwest::Method::GET,
            "/subjects/tubes-value/versions/zero",
            None,
        )
        .await?,
        422,
        42202,
    );

    // A soft-deleted subject's schema is still found by id, with or without ?deleted=true.
    let (_, latest) = r
        .call(
            reqwest::Method::GET,
            "/subjects/tubes-value/versions/latest",
            None,
        )
        .await?;
    let id = latest["id"].as_i64().ok_or("no id")?;
    let (status, deleted) = r
        .call(reqwest::Method::DELETE, "/subjects/tubes-value", None)
        .await?;
    assert_eq!((status, deleted), (StatusCode::OK, json!([1])));
    let (status, _) = r
        .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = r
        .call(
            reqwest::Method::GET,
            &format!("/schemas/ids/{id}?deleted=true"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

/// Confluent keeps a soft-deleted subject's schemas readable by id: messages already
/// written with that id must stay decodable by their consumers.
#[tokio::test]
async fn a_soft_deleted_subjects_schema_stays_readable_by_id() -> TestResult {
    let r = Registry::start().await?;
    let schema = record(r#"{"name":"barcode","type":"string"}"#);
    let (status, body) = r.register("old-tubes-value", &schema).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_i64().ok_or("no id")?;

    let (status, deleted) = r
        .call(reqwest::Method::DELETE, "/subjects/old-tubes-value", None)
        .await?;
    assert_eq!((status, deleted), (StatusCode::OK, json!([1])));
    // The subject is gone from the listing...
    let (_, subjects) = r.call(reqwest::Method::GET, "/subjects", None).await?;
    assert_eq!(subjects, json!([]));

    // ...but the id still answers with the schema, as for a consumer decoding an old message.
    let (status, body) = r
        .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let served: Value = serde_json::from_str(body["schema"].as_str().ok_or("no schema")?)?;
    let registered: Value = serde_json::from_str(&schema)?;
    assert_eq!(served, registered);
    Ok(())
}
