//! The registry's token, over HTTP against a fresh PostgreSQL database: with none
//! configured the registry is open as before; with one, every request that changes what
//! the registry holds (registering, config, mode, deletes) needs `Authorization: Bearer
//! <token>`, a refused one changes nothing, and reads stay open.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::registry_client::Registry;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "a-long-random-registry-token-0123456789";

const V1: &str = r#"{"type":"record","name":"Tube","namespace":"org.example","fields":[{"name":"barcode","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Tube","namespace":"org.example","fields":[{"name":"barcode","type":"string"},{"name":"volume","type":"long","default":0}]}"#;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every request that changes the registry, as (method, path, body); run in this order
/// with the token, each succeeds on a registry holding `tubes-value` version 1.
fn mutations() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/subjects/tubes-value/versions",
            Some(json!({ "schema": V2 })),
        ),
        (
            Method::PUT,
            "/config",
            Some(json!({ "compatibility": "NONE" })),
        ),
        (Method::DELETE, "/config", None),
        (
            Method::PUT,
            "/config/tubes-value",
            Some(json!({ "compatibility": "FULL" })),
        ),
        (Method::DELETE, "/config/tubes-value", None),
        (Method::PUT, "/mode", Some(json!({ "mode": "READONLY" }))),
        (Method::PUT, "/mode", Some(json!({ "mode": "READWRITE" }))),
        (
            Method::PUT,
            "/mode/tubes-value",
            Some(json!({ "mode": "READONLY" })),
        ),
        (Method::DELETE, "/mode/tubes-value", None),
        (Method::DELETE, "/subjects/tubes-value/versions/2", None),
        (Method::DELETE, "/subjects/tubes-value", None),
    ]
}

/// What the mutations could change, read back without a token.
async fn state(registry: &Registry) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let mut seen = serde_json::Map::new();
    for path in [
        "/config",
        "/config/tubes-value?defaultToGlobal=true",
        "/mode",
        "/mode/tubes-value?defaultToGlobal=true",
        "/subjects?deleted=true",
        "/subjects/tubes-value/versions?deleted=true",
        "/subjects/tubes-value/versions",
    ] {
        let (status, body) = registry.get(path).await?;
        seen.insert(path.to_owned(), json!({ "status": status, "body": body }));
    }
    Ok(Value::Object(seen))
}

#[tokio::test]
async fn without_a_token_configured_the_registry_is_open_as_before() -> TestResult {
    let registry = Registry::start().await?;
    let (status, body) = registry
        .send_as(
            Method::POST,
            "/subjects/tubes-value/versions",
            Some(json!({ "schema": V1 })),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    for (method, path, body) in mutations() {
        let (status, answer) = registry.send_as(method.clone(), path, body, None).await?;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    Ok(())
}

#[tokio::test]
async fn changes_without_the_token_are_refused_and_change_nothing() -> TestResult {
    let registry = Registry::start_with_token(TOKEN).await?;
    let (status, body) = registry
        .send_as(
            Method::POST,
            "/subjects/tubes-value/versions",
            Some(json!({ "schema": V1 })),
            Some(&bearer(TOKEN)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let before = state(&registry).await?;
    assert_eq!(before["/config"]["body"]["compatibilityLevel"], "BACKWARD");

    let wrong = bearer("a-long-random-registry-token-0123456780");
    let shorter = bearer(&TOKEN[..TOKEN.len() - 1]);
    let refused_headers: [Option<&str>; 7] = [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some(&wrong),
        Some(&shorter),
        // The token, but not as a bearer token.
        Some(TOKEN),
    ];
    for (method, path, body) in mutations() {
        for authorization in refused_headers {
            let (status, answer) = registry
                .send_as(method.clone(), path, body.clone(), authorization)
                .await?;
            assert_eq!(
                status, 401,
                "{method} {path} with {authorization:?}: {answer}"
            );
            assert_eq!(answer["error_code"], 40101, "{method} {path}: {answer}");
            assert!(
                answer["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{answer}"
            );
            assert!(
                !answer.to_string().contains(TOKEN),
                "the answer echoes the token: {answer}"
            );
        }
    }
    assert_eq!(
        state(&registry).await?,
        before,
        "a refused request changed the registry"
    );

    // With the token, each is accepted; the scheme's case does not matter.
    for (i, (method, path, body)) in mutations().into_iter().enumerate() {
        let header = if i % 2 == 0 {
            bearer(TOKEN)
        } else {
            format!("bearer {TOKEN}")
        };
        let (status, answer) = registry
            .send_as(method.clone(), path, body, Some(&header))
            .await?;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    let (_, subjects) = registry.get("/subjects").await?;
    assert_eq!(
        subjects,
        json!([]),
        "the subject was deleted with the token"
    );
    Ok(())
}

#[tokio::test]
async fn reads_lookups_and_compatibility_checks_stay_open() -> TestResult {
    let registry = Registry::start_with_token(TOKEN).await?;
    let (status, body) = registry
        .send_as(
            Method::POST,
            "/subjects/tubes-value/versions",
            Some(json!({ "schema": V1 })),
            Some(&bearer(TOKEN)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_i64().ok_or("no id")?;
    for path in [
        "/".to_owned(),
        "/subjects".to_owned(),
        "/subjects/tubes-value/versions".to_owned(),
        "/subjects/tubes-value/versions/1".to_owned(),
        "/subjects/tubes-value/versions/latest/schema".to_owned(),
        format!("/schemas/ids/{id}"),
        format!("/schemas/ids/{id}/versions"),
        "/schemas".to_owned(),
        "/schemas/types".to_owned(),
        "/config".to_owned(),
        "/mode".to_owned(),
    ] {
        let (status, answer) = registry.get(&path).await?;
        assert_eq!(status, 200, "GET {path}: {answer}");
    }
    let (status, answer) = registry
        .send_as(
            Method::POST,
            "/subjects/tubes-value",
            Some(json!({ "schema": V1 })),
            None,
        )
        .await?;
    assert_eq!((status, &answer["id"]), (200, &json!(id)), "{answer}");
    let (status, answer) = registry
        .send_as(
            Method::POST,
            "/compatibility/subjects/tubes-value/versions/latest",
            Some(json!({ "schema": V2 })),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["is_compatible"], true);
    Ok(())
}

#[tokio::test]
async fn the_platforms_codec_registers_with_the_token_and_is_refused_without_it() -> TestResult {
    let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
    let url = kafka::testkit::registry_with_token(pool, TOKEN).await?;
    let catalog = kafka::testkit::sample_catalog()?;

    let without = kafka::wire::WireCodec::new(&url, catalog.clone());
    let error = without
        .register_all()
        .await
        .err()
        .ok_or("registered without the token")?;
    assert!(error.to_string().contains("401"), "{error}");

    let wrong = kafka::wire::WireCodec::with_token(&url, Some("not-the-token"), catalog.clone())?;
    let error = wrong
        .register_all()
        .await
        .err()
        .ok_or("registered with a wrong token")?;
    assert!(error.to_string().contains("401"), "{error}");

    let with = kafka::wire::WireCodec::with_token(&url, Some(TOKEN), catalog.clone())?;
    let ids = with.register_all().await?;
    assert!(!ids.is_empty());
    Ok(())
}
