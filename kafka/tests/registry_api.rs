//! The registry's REST API, case by case as Confluent's and Karapace's own test suites
//! exercise it, over HTTP against a fresh PostgreSQL database.
//!
//! Each group names the upstream file and test it was ported from:
//! - Confluent `core/src/test/java/io/confluent/kafka/schemaregistry/rest/RestApiTest.java`,
//!   `RestApiCompatibilityTest.java` and `RestApiTransitiveCompatibilityTest.java`
//!   (github.com/confluentinc/schema-registry);
//! - Karapace `tests/integration/test_schema.py` (github.com/Aiven-Open/karapace).
//!
//! Confluent's `RestApiTest` runs with the global level NONE (its random test schemas are
//! not compatible with each other); the ports of it do the same. Where Confluent and
//! Karapace disagree, these follow Confluent, and say so.

mod support;

use serde_json::{Value, json};
use support::registry_client::{Answer, Registry};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Asserts a Confluent error answer: HTTP status and `error_code`, with a message.
#[track_caller]
fn error(answer: Answer, status: u16, code: i64) {
    let (got, body) = answer;
    assert_eq!(
        (got, body["error_code"].as_i64()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["message"].is_string(), "{body}");
}

#[track_caller]
fn is_ok(answer: &Answer) -> &Value {
    assert_eq!(answer.0, 200, "{}", answer.1);
    &answer.1
}

/// Confluent's test schemas: one record, one string field with a distinct name; any two
/// are incompatible under BACKWARD (a new field without default).
fn schema(n: usize) -> String {
    format!(r#"{{"type":"record","name":"myrecord","fields":[{{"type":"string","name":"f{n}"}}]}}"#)
}

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"myrecord","fields":[{fields}]}}"#)
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiTest.java: registration, listing, fetching
// ---------------------------------------------------------------------------------------

/// RestApiTest.testBasic (without contexts, pagination and guids, which this registry
/// does not have).
#[tokio::test]
async fn basic_register_list_and_reregister() -> TestResult {
    let r = Registry::start_none().await?;
    error(r.get("/subjects/testTopic1/versions").await?, 404, 40401);
    assert_eq!(is_ok(&r.get("/subjects").await?), &json!([]));
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(r.id("testTopic1", &schema(n)).await?);
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(r.id("testTopic1", &schema(n)).await?, *id, "re-registering");
    }
    for n in 10..12 {
        r.id("testTopic2", &schema(n)).await?;
    }
    assert_eq!(
        is_ok(&r.get("/subjects/testTopic1/versions").await?),
        &json!([1, 2, 3, 4])
    );
    assert_eq!(
        is_ok(&r.get("/subjects/testTopic2/versions").await?),
        &json!([1, 2])
    );
    assert_eq!(
        is_ok(&r.get("/subjects").await?),
        &json!(["testTopic1", "testTopic2"])
    );
    let latest = is_ok(&r.get("/schemas?latestOnly=true").await?).clone();
    let versions: Vec<_> = latest
        .as_array()
        .ok_or("a list")?
        .iter()
        .map(|s| (s["subject"].clone(), s["version"].clone()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!("testTopic1"), json!(4)),
            (json!("testTopic2"), json!(2))
        ]
    );
    Ok(())
}

/// RestApiTest.testRegisterSameSchemaOnDifferentSubject; Karapace
/// test_schema_versions_multiple_subjects_same_schema.
#[tokio::test]
async fn the_same_schema_under_other_subjects_keeps_its_id() -> TestResult {
    let r = Registry::start_none().await?;
    let id = r.id("subject1", &schema(1)).await?;
    assert_eq!(r.id("subject2", &schema(1)).await?, id);
    assert_eq!(r.id("subject3", &schema(1)).await?, id);
    let other = r.id("subject4", &schema(2)).await?;
    assert_ne!(other, id);
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id}/versions")).await?),
        &json!([
            {"subject": "subject1", "version": 1},
            {"subject": "subject2", "version": 1},
            {"subject": "subject3", "version": 1},
        ])
    );
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{other}/versions")).await?),
        &json!([{"subject": "subject4", "version": 1}])
    );
    assert_eq!(
        is_ok(&r.get("/subjects").await?),
        &json!(["subject1", "subject2", "subject3", "subject4"])
    );
    Ok(())
}

/// RestApiTest.testRegisterInvalidSchemaBadType, testBad; RestApiCompatibilityTest
/// (non-Avro string); Karapace test_schema_missing_schema_body_ok, test_schema_missing_body.
/// Karapace answers a body without `schema` with error_code 422; Confluent's request
/// validation gives 42201 for a missing schema, which is followed here.
#[tokio::test]
async fn invalid_schemas_are_refused_with_42201_and_register_nothing() -> TestResult {
    let r = Registry::start_none().await?;
    let bad_type =
        r#"{"type":"record","name":"myrecord","fields":[{"type":"str","name":"field1"}]}"#;
    error(r.register("testSubject", bad_type).await?, 422, 42201);
    error(
        r.register("testSubject", "non-avro schema string").await?,
        422,
        42201,
    );
    error(r.register("testSubject", "").await?, 422, 42201);
    error(
        r.post("/subjects/testSubject/versions", json!({})).await?,
        422,
        42201,
    );
    // Only AVRO is supported: other types and references are refused clearly.
    let (status, body) = r
        .post(
            "/subjects/testSubject/versions",
            json!({ "schema": "{}", "schemaType": "JSON" }),
        )
        .await?;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AVRO"),
        "{body}"
    );
    error(
        r.post(
            "/subjects/testSubject/versions",
            json!({ "schema": schema(1), "references": [{"name": "bad", "subject": "bad", "version": 100}] }),
        )
        .await?,
        422,
        42201,
    );
    assert_eq!(is_ok(&r.get("/subjects").await?), &json!([]));
    Ok(())
}

/// RestApiTest.testRegisterBadDefault: a default that does not match its field's type is
/// an invalid schema, for the compatibility check and for registration.
#[tokio::test]
async fn a_default_of_the_wrong_type_is_an_invalid_schema() -> TestResult {
    let r = Registry::start_none().await?;
    let bad = record(r#"{"type":"string","default":null,"name":"f"}"#);
    error(
        r.compatible("testSubject", Some("latest"), &bad).await?,
        422,
        42201,
    );
    error(r.register("testSubject", &bad).await?, 422, 42201);
    Ok(())
}

/// RestApiTest.testRegisterInvalidSubject; Karapace test_subject_allowed_chars.
#[tokio::test]
async fn subjects_with_control_characters_are_refused_with_42208() -> TestResult {
    let r = Registry::start_none().await?;
    error(
        r.register("%0Dbad%0Asubject%09", &schema(1)).await?,
        422,
        42208,
    );
    error(r.register("nul%00", &schema(1)).await?, 422, 42208);
    // Quotes, braces, colons, slashes (encoded) are fine, as in Karapace's test.
    for suffix in ["%22", "%7B", ":", "%7D", "'", "%2F"] {
        r.id(&format!("allowed{suffix}"), &schema(1)).await?;
    }
    assert_eq!(
        is_ok(&r.get("/subjects").await?).as_array().map(Vec::len),
        Some(6)
    );
    Ok(())
}

/// RestApiTest.testGetSchemaNonExistingId, testListVersionsNonExistingSubject,
/// testGetVersionNonExistentSubject, testGetNonExistingVersion, testGetInvalidVersion,
/// testGetLatestVersionNonExistentSubject; Karapace test_schema_non_existing_id,
/// test_schema_subject_invalid_id.
#[tokio::test]
async fn missing_ids_subjects_and_versions_have_their_codes() -> TestResult {
    let r = Registry::start_none().await?;
    error(r.get("/schemas/ids/100").await?, 404, 40403);
    // Karapace test_schema_non_invalid_id: a non-number id matches no resource.
    let (status, body) = r.get("/schemas/ids/invalid").await?;
    assert_eq!(
        (status, body["error_code"].clone(), body["message"].clone()),
        (404, json!(404), json!("HTTP 404 Not Found"))
    );
    error(r.get("/no/such/endpoint").await?, 404, 404);
    error(r.get("/subjects/Invalid/versions").await?, 404, 40401);
    error(
        r.get("/subjects/non-existing-subject/versions/1").await?,
        404,
        40401,
    );
    error(
        r.get("/subjects/non_existent_subject/versions/latest")
            .await?,
        404,
        40401,
    );
    r.id("test", &schema(1)).await?;
    let (status, body) = r.get("/subjects/test/versions/200").await?;
    assert_eq!(
        (status, body["message"].clone()),
        (404, json!("Version 200 not found."))
    );
    error(r.get("/subjects/test/versions/200").await?, 404, 40402);
    let (status, body) = r.get("/subjects/test/versions/0").await?;
    assert_eq!(
        (status, body["error_code"].clone(), body["message"].clone()),
        (
            422,
            json!(42202),
            json!(
                "The specified version '0' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            )
        )
    );
    Ok(())
}

/// RestApiTest.testGetVersion, testGetOnlySchemaById, testGetLatestVersionSchemaOnly,
/// testGetVersionSchemaOnly; Karapace test_schema_repost, test_schema_list_endpoint.
#[tokio::test]
async fn versions_and_raw_schemas_are_served() -> TestResult {
    let r = Registry::start_none().await?;
    let id1 = r.id("test", &schema(1)).await?;
    let id2 = r.id("test", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions/1").await?)["schema"],
        json!(schema(1))
    );
    let latest = is_ok(&r.get("/subjects/test/versions/latest").await?).clone();
    assert_eq!(
        latest,
        json!({"subject": "test", "id": id2, "version": 2, "schema": schema(2)})
    );
    let raw = |path: String| {
        let http = r.http.clone();
        let url = format!("{}{path}", r.base);
        async move { http.get(url).send().await?.text().await }
    };
    assert_eq!(raw(format!("/schemas/ids/{id1}/schema")).await?, schema(1));
    assert_eq!(
        raw("/subjects/test/versions/latest/schema".into()).await?,
        schema(2)
    );
    assert_eq!(
        raw("/subjects/test/versions/1/schema".into()).await?,
        schema(1)
    );
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions/1/referencedby").await?),
        &json!([])
    );
    error(
        r.get("/subjects/test/versions/9/referencedby").await?,
        404,
        40402,
    );
    let all = is_ok(&r.get("/schemas").await?).clone();
    assert_eq!(
        all,
        json!([
            {"subject": "test", "id": id1, "version": 1, "schema": schema(1)},
            {"subject": "test", "id": id2, "version": 2, "schema": schema(2)},
        ])
    );
    assert_eq!(
        is_ok(&r.get("/schemas?subjectPrefix=nope").await?),
        &json!([])
    );
    Ok(())
}

/// RestApiTest.testGetSchemaTypes. Deliberate difference: Confluent answers AVRO, JSON and
/// PROTOBUF; this registry supports AVRO only, and says so.
#[tokio::test]
async fn schema_types_are_avro_only() -> TestResult {
    let r = Registry::start().await?;
    assert_eq!(is_ok(&r.get("/schemas/types").await?), &json!(["AVRO"]));
    Ok(())
}

/// RestApiTest.testCanonicalization.
#[tokio::test]
async fn whitespace_does_not_make_another_schema() -> TestResult {
    let r = Registry::start_none().await?;
    let spaced = r#"{   "type":   "string"}"#;
    let id = r.id("test", spaced).await?;
    assert_eq!(r.id("test", spaced).await?, id);
    assert_eq!(
        is_ok(&r.lookup("test", spaced, false).await?)["id"],
        json!(id)
    );
    Ok(())
}

/// RestApiTest.testLookUpSchemaUnderNonExistentSubject,
/// testLookUpNonExistentSchemaUnderSubject; Karapace test_schema_subject_post_invalid.
#[tokio::test]
async fn lookups_of_missing_subjects_and_schemas() -> TestResult {
    let r = Registry::start_none().await?;
    let (status, body) = r.lookup("non-existent-subject", &schema(1), false).await?;
    assert_eq!(
        (status, body["error_code"].clone(), body["message"].clone()),
        (
            404,
            json!(40401),
            json!("Subject 'non-existent-subject' not found.")
        )
    );
    r.id("test", &schema(1)).await?;
    error(r.lookup("test", &schema(2), false).await?, 404, 40403);
    error(
        r.lookup("test", r#"{"type": "invalid_type"}"#, false)
            .await?,
        422,
        42201,
    );
    Ok(())
}

/// RestApiTest.testGetSubjectsAssociatedWithSchemaId,
/// testGetSubjectsAssociatedWithNotFoundSchemaId, testGetVersionsAssociatedWithSchemaId.
#[tokio::test]
async fn subjects_and_versions_of_a_schema_id() -> TestResult {
    let r = Registry::start_none().await?;
    error(r.get("/schemas/ids/1/subjects").await?, 404, 40403);
    error(r.get("/schemas/ids/1/versions").await?, 404, 40403);
    let id = r.id("testTopic1", &schema(1)).await?;
    assert_eq!(r.id("testTopic2", &schema(1)).await?, id);
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id}/subjects")).await?),
        &json!(["testTopic1", "testTopic2"])
    );
    assert_eq!(
        is_ok(&r.delete("/subjects/testTopic2/versions/1").await?),
        &json!(1)
    );
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id}/subjects")).await?),
        &json!(["testTopic1"])
    );
    assert_eq!(
        is_ok(
            &r.get(&format!("/schemas/ids/{id}/subjects?deleted=true"))
                .await?
        ),
        &json!(["testTopic1", "testTopic2"])
    );
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id}/versions")).await?),
        &json!([{"subject": "testTopic1", "version": 1}])
    );
    assert_eq!(
        is_ok(
            &r.get(&format!("/schemas/ids/{id}/versions?deleted=true"))
                .await?
        ),
        &json!([
            {"subject": "testTopic1", "version": 1},
            {"subject": "testTopic2", "version": 1},
        ])
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiTest.java: compatibility checks and configuration
// ---------------------------------------------------------------------------------------

/// RestApiTest.testCompatibleSchemaLookupBySubject, testIncompatibleSchemaLookupBySubject,
/// testCompatibilityNonExistentSubject, testCompatibilityNonExistentVersion,
/// testCompatibilityInvalidVersion.
#[tokio::test]
async fn compatibility_checks_change_nothing_and_have_their_codes() -> TestResult {
    let r = Registry::start_none().await?;
    // A subject without versions is compatible with anything.
    for version in [Some("latest"), None] {
        let body = is_ok(
            &r.compatible("non-existent-subject", version, &schema(1))
                .await?,
        )
        .clone();
        assert_eq!(body["is_compatible"], true, "{body}");
    }
    r.id("test", &schema(1)).await?;
    for n in 0..5 {
        is_ok(&r.compatible("test", Some("latest"), &schema(n)).await?);
    }
    assert_eq!(is_ok(&r.get("/subjects/test/versions").await?), &json!([1]));
    error(
        r.compatible("test", Some("100"), &schema(1)).await?,
        404,
        40402,
    );
    error(
        r.compatible("test", Some("earliest"), &schema(1)).await?,
        422,
        42202,
    );

    is_ok(
        &r.put("/config/full", json!({"compatibility": "FULL"}))
            .await?,
    );
    r.id("full", &record(r#"{"type":"string","name":"f"}"#))
        .await?;
    let body = is_ok(
        &r.compatible("full", Some("1"), &record(r#"{"type":"int","name":"f"}"#))
            .await?,
    )
    .clone();
    assert_eq!(body["is_compatible"], false, "{body}");
    assert!(
        body["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "verbose answers say why: {body}"
    );
    Ok(())
}

/// RestApiTest.testIncompatibleSchemaBySubject: with FORWARD_TRANSITIVE, a schema
/// compatible with the latest version but not an older one passes the check against
/// `latest`, fails the check against all versions (no version in the path), and is refused
/// with 409 saying why.
#[tokio::test]
async fn a_check_without_a_version_covers_every_version_the_level_names() -> TestResult {
    let r = Registry::start_none().await?;
    let s1 = record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f2"}"#);
    let s2 = record(r#"{"type":"string","name":"f1"}"#);
    let s3 = record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f3"}"#);
    r.id("testSubject", &s1).await?;
    r.id("testSubject", &s2).await?;
    is_ok(
        &r.put(
            "/config/testSubject",
            json!({"compatibility": "FORWARD_TRANSITIVE"}),
        )
        .await?,
    );
    let latest = is_ok(&r.compatible("testSubject", Some("latest"), &s3).await?).clone();
    assert_eq!(latest["is_compatible"], true, "{latest}");
    let all = is_ok(&r.compatible("testSubject", None, &s3).await?).clone();
    assert_eq!(all["is_compatible"], false, "{all}");
    let (status, body) = r.register("testSubject", &s3).await?;
    assert_eq!(
        (status, body["error_code"].clone()),
        (409, json!(40901)),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("version 1"), "{message}");
    assert!(
        message.contains("compatibility: 'FORWARD_TRANSITIVE'"),
        "{message}"
    );
    Ok(())
}

/// RestApiTest.testConfigDefaults, testNonExistentSubjectConfigChange,
/// testSubjectConfigChange, testGlobalConfigChange, testGetConfigNonExistentSubject;
/// Karapace test_missing_subject_compatibility, test_get_config_unknown_subject.
#[tokio::test]
async fn levels_are_set_read_and_deleted() -> TestResult {
    let r = Registry::start().await?;
    assert_eq!(
        is_ok(&r.get("/config").await?)["compatibilityLevel"],
        "BACKWARD"
    );
    error(r.get("/config/non-existent-subject").await?, 404, 40408);
    error(r.delete("/config/non-existent-subject").await?, 404, 40408);

    is_ok(&r.put("/config", json!({"compatibility": "NONE"})).await?);
    assert_eq!(
        is_ok(
            &r.put("/config/testSubject", json!({"compatibility": "FORWARD"}))
                .await?
        ),
        &json!({"compatibility": "FORWARD"})
    );
    assert_eq!(
        is_ok(&r.get("/config").await?)["compatibilityLevel"],
        "NONE"
    );
    assert_eq!(
        is_ok(&r.get("/config/testSubject").await?)["compatibilityLevel"],
        "FORWARD"
    );
    assert_eq!(
        is_ok(&r.delete("/config/testSubject").await?),
        &json!({"compatibilityLevel": "FORWARD"})
    );
    error(r.get("/config/testSubject").await?, 404, 40408);
    assert_eq!(
        is_ok(&r.get("/config/testSubject?defaultToGlobal=true").await?)["compatibilityLevel"],
        "NONE"
    );

    // Deleting the global level puts the default back (BACKWARD here, Confluent's default).
    assert_eq!(
        is_ok(&r.delete("/config").await?),
        &json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        is_ok(&r.get("/config").await?)["compatibilityLevel"],
        "BACKWARD"
    );
    error(
        r.put("/config", json!({"compatibility": "SOMETIMES"}))
            .await?,
        422,
        42203,
    );

    // Karapace test_missing_subject_compatibility: a registered subject has no level of
    // its own until one is set.
    r.id("plain", r#"{"type": "string"}"#).await?;
    error(r.get("/config/plain").await?, 404, 40408);
    error(
        r.get("/config/plain?defaultToGlobal=false").await?,
        404,
        40408,
    );
    is_ok(&r.get("/config/plain?defaultToGlobal=true").await?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiTest.java and Karapace test_schema.py: deletes
// ---------------------------------------------------------------------------------------

/// RestApiTest.testDeleteSchemaVersionBasic.
#[tokio::test]
async fn deleting_versions_hides_them_and_numbering_continues() -> TestResult {
    let r = Registry::start_none().await?;
    let id1 = r.id("test", &schema(1)).await?;
    r.id("test", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/2").await?),
        &json!(2)
    );
    assert_eq!(is_ok(&r.get("/subjects/test/versions").await?), &json!([1]));
    let deleted = is_ok(&r.get("/subjects/test/versions/2?deleted=true").await?).clone();
    assert_eq!(
        (deleted["version"].clone(), deleted["deleted"].clone()),
        (json!(2), json!(true))
    );
    error(r.get("/subjects/test/versions/2").await?, 404, 40402);
    error(r.lookup("test", &schema(2), false).await?, 404, 40403);
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/latest").await?),
        &json!(1)
    );
    error(r.get("/subjects/test/versions").await?, 404, 40401);
    // Registering again (twice) adds one version after the deleted ones, with the old id.
    for _ in 0..2 {
        assert_eq!(r.id("test", &schema(1)).await?, id1);
        assert_eq!(is_ok(&r.get("/subjects/test/versions").await?), &json!([3]));
    }
    Ok(())
}

/// RestApiTest.testDeleteSchemaVersionPermanent; Karapace test_schema_hard_delete_version.
#[tokio::test]
async fn a_version_is_permanently_deleted_only_after_a_soft_delete() -> TestResult {
    let r = Registry::start_none().await?;
    r.id("test", &schema(1)).await?;
    r.id("test", &schema(2)).await?;
    let (status, body) = r.delete("/subjects/test/versions/2?permanent=true").await?;
    assert_eq!(
        (status, body["error_code"].clone(), body["message"].clone()),
        (
            404,
            json!(40407),
            json!(
                "Subject 'test' Version 2 was not deleted first before being permanently deleted"
            )
        )
    );
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/2").await?),
        &json!(2)
    );
    assert_eq!(is_ok(&r.get("/subjects/test/versions").await?), &json!([1]));
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions?deleted=true").await?),
        &json!([1, 2])
    );
    error(r.delete("/subjects/test/versions/2").await?, 404, 40406);
    error(r.get("/subjects/test/versions/2").await?, 404, 40402);
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions/2?deleted=true").await?)["version"],
        json!(2)
    );
    error(r.lookup("test", &schema(2), false).await?, 404, 40403);
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/2?permanent=true").await?),
        &json!(2)
    );
    error(
        r.get("/subjects/test/versions/2?deleted=true").await?,
        404,
        40402,
    );
    error(
        r.delete("/subjects/test/versions/2?permanent=true").await?,
        404,
        40402,
    );
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/latest").await?),
        &json!(1)
    );
    error(r.get("/subjects/test/versions").await?, 404, 40401);
    // After the permanent delete of version 2, the next version is 2 again.
    for _ in 0..2 {
        r.id("test", &schema(1)).await?;
        assert_eq!(is_ok(&r.get("/subjects/test/versions").await?), &json!([2]));
    }
    Ok(())
}

/// RestApiTest.testDeleteSchemaVersionInvalidSubject, testDeleteInvalidVersion,
/// testDeleteLatestVersion, testGetLatestVersionDeleteOlder; Karapace
/// test_schema_delete_latest_version, test_schema_versions_deleting.
#[tokio::test]
async fn deleting_latest_and_missing_versions() -> TestResult {
    let r = Registry::start_none().await?;
    error(r.delete("/subjects/test/versions/1").await?, 404, 40401);
    let id1 = r.id("test", &schema(1)).await?;
    error(r.delete("/subjects/test/versions/2").await?, 404, 40402);
    error(r.delete("/subjects/test/versions/zero").await?, 422, 42202);
    let id2 = r.id("test", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/latest").await?),
        &json!(2)
    );
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions/latest").await?)["schema"],
        json!(schema(1))
    );
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id2}/versions")).await?),
        &json!([])
    );
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/latest").await?),
        &json!(1)
    );
    error(r.get("/subjects/test/versions/latest").await?, 404, 40401);
    assert_eq!(
        is_ok(&r.get(&format!("/schemas/ids/{id1}/versions")).await?),
        &json!([])
    );
    let id3 = r.id("test", &schema(3)).await?;
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions/latest").await?)["id"],
        json!(id3)
    );

    // testGetLatestVersionDeleteOlder: deleting an older version leaves latest alone.
    r.id("older", &schema(1)).await?;
    r.id("older", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/older/versions/1").await?),
        &json!(1)
    );
    assert_eq!(
        is_ok(&r.get("/subjects/older/versions/latest").await?)["schema"],
        json!(schema(2))
    );
    Ok(())
}

/// RestApiTest.testDeleteWithLookup.
#[tokio::test]
async fn lookups_find_soft_deleted_versions_only_when_asked() -> TestResult {
    let r = Registry::start_none().await?;
    r.id("test", &schema(1)).await?;
    r.id("test", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/test/versions/1").await?),
        &json!(1)
    );
    error(r.lookup("test", &schema(1), false).await?, 404, 40403);
    assert_eq!(
        is_ok(&r.lookup("test", &schema(1), true).await?)["version"],
        json!(1)
    );
    r.id("test", &schema(1)).await?;
    for deleted in [true, false] {
        assert_eq!(
            is_ok(&r.lookup("test", &schema(1), deleted).await?)["version"],
            json!(3)
        );
    }
    Ok(())
}

/// RestApiTest.testIncompatibleSchemaLookupBySubjectAfterDelete: a soft-deleted version
/// no longer takes part in compatibility checks.
#[tokio::test]
async fn soft_deleted_versions_leave_the_compatibility_check() -> TestResult {
    let r = Registry::start_none().await?;
    let s1 = record(r#"{"type":"string","name":"f1"}"#);
    let wrong =
        record(r#"{"type":"string","name":"f1"},{"type":"string","name":"g","default":"d"}"#);
    let correct = record(r#"{"type":"string","name":"f1"},{"type":"int","name":"g","default":0}"#);
    is_ok(
        &r.put("/config/testSubject", json!({"compatibility": "BACKWARD"}))
            .await?,
    );
    r.id("testSubject", &s1).await?;
    assert_eq!(
        is_ok(&r.compatible("testSubject", Some("latest"), &wrong).await?)["is_compatible"],
        true
    );
    r.id("testSubject", &wrong).await?;
    assert_eq!(
        is_ok(
            &r.compatible("testSubject", Some("latest"), &correct)
                .await?
        )["is_compatible"],
        false
    );
    error(r.register("testSubject", &correct).await?, 409, 40901);
    r.delete("/subjects/testSubject/versions/latest").await?;
    assert_eq!(
        is_ok(
            &r.compatible("testSubject", Some("latest"), &correct)
                .await?
        )["is_compatible"],
        true
    );
    r.id("testSubject", &correct).await?;
    assert_eq!(
        is_ok(&r.lookup("testSubject", &correct, false).await?)["version"],
        json!(3)
    );
    Ok(())
}

/// RestApiTest.testSubjectCompatibilityAfterDeletingAllVersions,
/// testSubjectCompatibilityAfterDeletingSubject, as Confluent behaves since its 2025 change
/// (schema-registry #3810): a soft-deleted subject keeps its own level for when it is
/// registered again; only a subject permanently gone loses it. The global level stays.
#[tokio::test]
async fn a_subject_loses_its_level_only_when_permanently_gone() -> TestResult {
    let r = Registry::start_none().await?;
    let s1 = record(r#"{"type":"string","name":"f1"}"#);
    let s2 = record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f2","default":"d"}"#);
    is_ok(&r.put("/config", json!({"compatibility": "FULL"})).await?);
    for subject in ["versions", "whole"] {
        is_ok(
            &r.put(
                &format!("/config/{subject}"),
                json!({"compatibility": "BACKWARD"}),
            )
            .await?,
        );
        r.id(subject, &s1).await?;
        r.id(subject, &s2).await?;
    }
    let level = |answer: Answer| answer.1["compatibilityLevel"].clone();
    r.delete("/subjects/versions/versions/1").await?;
    r.delete("/subjects/versions/versions/2").await?;
    assert_eq!(level(r.get("/config/versions").await?), "BACKWARD");
    r.delete("/subjects/versions/versions/1?permanent=true")
        .await?;
    assert_eq!(level(r.get("/config/versions").await?), "BACKWARD");
    r.delete("/subjects/versions/versions/2?permanent=true")
        .await?;
    error(r.get("/config/versions").await?, 404, 40408);
    r.delete("/subjects/whole").await?;
    assert_eq!(level(r.get("/config/whole").await?), "BACKWARD");
    r.delete("/subjects/whole?permanent=true").await?;
    error(r.get("/config/whole").await?, 404, 40408);
    assert_eq!(level(r.get("/config").await?), "FULL");
    Ok(())
}

/// RestApiTest.testListSubjects, testListSoftDeletedSubjectsAndSchemas.
#[tokio::test]
async fn listings_with_deleted_and_deleted_only() -> TestResult {
    let r = Registry::start_none().await?;
    r.id("test1", &schema(1)).await?;
    r.id("test1", &schema(2)).await?;
    r.id("test2", &schema(3)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/test1/versions/1").await?),
        &json!(1)
    );
    assert_eq!(
        is_ok(&r.delete("/subjects/test2/versions/1").await?),
        &json!(1)
    );
    assert_eq!(
        is_ok(&r.get("/subjects/test1/versions").await?),
        &json!([2])
    );
    assert_eq!(
        is_ok(&r.get("/subjects/test1/versions?deleted=true").await?),
        &json!([1, 2])
    );
    assert_eq!(
        is_ok(&r.get("/subjects/test1/versions?deletedOnly=true").await?),
        &json!([1])
    );
    assert_eq!(is_ok(&r.get("/subjects").await?), &json!(["test1"]));
    assert_eq!(
        is_ok(&r.get("/subjects?deleted=true").await?),
        &json!(["test1", "test2"])
    );
    assert_eq!(
        is_ok(&r.get("/subjects?deletedOnly=true").await?),
        &json!(["test2"])
    );
    // Booleans are read as Confluent reads them: Python's client sends `True`/`False`.
    assert_eq!(
        is_ok(&r.get("/subjects?deleted=True").await?),
        &json!(["test1", "test2"])
    );
    assert_eq!(
        is_ok(&r.get("/subjects?deleted=False").await?),
        &json!(["test1"])
    );
    assert_eq!(
        is_ok(&r.get("/subjects?subjectPrefix=test2&deleted=true").await?),
        &json!(["test2"])
    );
    // testListSubjects: a permanently deleted subject is gone from every listing.
    assert_eq!(
        is_ok(&r.delete("/subjects/test2?permanent=true").await?),
        &json!([1])
    );
    assert_eq!(
        is_ok(&r.get("/subjects?deleted=true").await?),
        &json!(["test1"])
    );
    Ok(())
}

/// RestApiCompatibilityTest.testGetSchemasDeletedProperty.
#[tokio::test]
async fn schema_listings_mark_soft_deleted_versions() -> TestResult {
    let r = Registry::start().await?;
    r.id("testSubject", &record(r#"{"type":"string","name":"f1"}"#))
        .await?;
    r.delete("/subjects/testSubject/versions/1").await?;
    let listed = is_ok(
        &r.get("/schemas?subjectPrefix=testSubject&deleted=true")
            .await?,
    )
    .clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["deleted"], true);
    assert_eq!(
        is_ok(&r.get("/schemas?subjectPrefix=testSubject").await?),
        &json!([])
    );
    Ok(())
}

/// RestApiTest.testDeleteSubjectBasic, testDeleteSubjectException,
/// testDeleteNonExistentSubject, testDeleteSubjectPermanent; Karapace
/// test_schema_hard_delete_and_recreate.
#[tokio::test]
async fn a_subject_is_permanently_deleted_only_after_a_soft_delete() -> TestResult {
    let r = Registry::start_none().await?;
    error(r.delete("/subjects/never-registered").await?, 404, 40401);
    error(
        r.delete("/subjects/never-registered?permanent=true")
            .await?,
        404,
        40401,
    );
    let id1 = r.id("test", &schema(1)).await?;
    r.id("test", &schema(2)).await?;
    let (status, body) = r.delete("/subjects/test?permanent=true").await?;
    assert_eq!(
        (status, body["error_code"].clone(), body["message"].clone()),
        (
            404,
            json!(40405),
            json!("Subject 'test' was not deleted first before being permanently deleted")
        )
    );
    assert_eq!(is_ok(&r.delete("/subjects/test").await?), &json!([1, 2]));
    error(r.get("/subjects/test/versions/latest").await?, 404, 40401);
    error(r.delete("/subjects/test").await?, 404, 40404);
    for (n, version) in [(1, 1), (2, 2)] {
        assert_eq!(
            is_ok(&r.lookup("test", &schema(n), true).await?)["version"],
            json!(version)
        );
    }
    // The soft-deleted subject's schemas are still readable by id.
    is_ok(&r.get(&format!("/schemas/ids/{id1}")).await?);
    assert_eq!(
        is_ok(&r.delete("/subjects/test?permanent=true").await?),
        &json!([1, 2])
    );
    for deleted in [false, true] {
        error(r.lookup("test", &schema(1), deleted).await?, 404, 40401);
    }
    error(r.delete("/subjects/test").await?, 404, 40401);
    error(r.delete("/subjects/test/versions/1").await?, 404, 40401);
    error(r.get("/subjects/test/versions").await?, 404, 40401);
    // Confluent: with no version left, the id answers 40403...
    error(r.get(&format!("/schemas/ids/{id1}")).await?, 404, 40403);
    // ...and Karapace: registering the same schema again gives the same id.
    assert_eq!(r.id("test", &schema(1)).await?, id1);
    assert_eq!(is_ok(&r.get("/subjects").await?), &json!(["test"]));
    Ok(())
}

/// RestApiTest.testDeleteSubjectAndRegister.
#[tokio::test]
async fn registering_after_a_subject_delete_continues_the_numbering() -> TestResult {
    let r = Registry::start_none().await?;
    let id1 = r.id("test", &schema(1)).await?;
    let id2 = r.id("test", &schema(2)).await?;
    r.delete("/subjects/test").await?;
    assert_eq!(r.id("test", &schema(1)).await?, id1);
    assert_eq!(r.id("test", &schema(2)).await?, id2);
    assert_eq!(
        is_ok(&r.get("/subjects/test/versions").await?),
        &json!([3, 4])
    );
    error(r.get("/subjects/test/versions/1").await?, 404, 40402);
    Ok(())
}

/// The guarantee consumers rely on (issue 7): a soft-deleted version's schema id keeps
/// answering, with the schema, as long as the version exists soft-deleted.
#[tokio::test]
async fn a_soft_deleted_versions_schema_stays_readable_by_id() -> TestResult {
    let r = Registry::start_none().await?;
    let id = r.id("old-tubes-value", &schema(1)).await?;
    r.id("old-tubes-value", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/subjects/old-tubes-value/versions/1").await?),
        &json!(1)
    );
    for path in [
        format!("/schemas/ids/{id}"),
        format!("/schemas/ids/{id}?deleted=true"),
    ] {
        assert_eq!(is_ok(&r.get(&path).await?)["schema"], json!(schema(1)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiTest.java: modes
// ---------------------------------------------------------------------------------------

/// RestApiTest.testGlobalMode, plus READONLY refusing registrations and deletes, IMPORT
/// carrying ids, and 42204 for an unknown mode.
#[tokio::test]
async fn modes_are_set_per_subject_and_globally() -> TestResult {
    let r = Registry::start_none().await?;
    assert_eq!(is_ok(&r.get("/mode").await?), &json!({"mode": "READWRITE"}));
    r.id("testSubject", &schema(1)).await?;
    error(r.get("/mode/testSubject").await?, 404, 40409);
    error(r.delete("/mode/testSubject").await?, 404, 40409);
    assert_eq!(
        is_ok(&r.get("/mode/testSubject?defaultToGlobal=true").await?),
        &json!({"mode": "READWRITE"})
    );
    is_ok(&r.put("/mode", json!({"mode": "READONLY"})).await?);
    error(r.register("testSubject2", &schema(1)).await?, 422, 42205);
    error(
        r.delete("/subjects/testSubject/versions/1").await?,
        422,
        42205,
    );
    assert_eq!(
        is_ok(
            &r.put("/mode/testSubject", json!({"mode": "READWRITE"}))
                .await?
        ),
        &json!({"mode": "READWRITE"})
    );
    assert_eq!(
        is_ok(&r.get("/mode/testSubject").await?),
        &json!({"mode": "READWRITE"})
    );
    r.id("testSubject", &schema(2)).await?;
    assert_eq!(
        is_ok(&r.delete("/mode/testSubject").await?),
        &json!({"mode": "READWRITE"})
    );
    assert_eq!(
        is_ok(&r.get("/mode/testSubject?defaultToGlobal=true").await?),
        &json!({"mode": "READONLY"})
    );
    // READONLY_OVERRIDE wins over a subject's own mode.
    is_ok(
        &r.put("/mode/testSubject", json!({"mode": "READWRITE"}))
            .await?,
    );
    is_ok(&r.put("/mode", json!({"mode": "READONLY_OVERRIDE"})).await?);
    assert_eq!(
        is_ok(&r.get("/mode/testSubject?defaultToGlobal=true").await?),
        &json!({"mode": "READONLY_OVERRIDE"})
    );
    error(r.register("testSubject", &schema(3)).await?, 422, 42205);
    error(
        r.put("/mode", json!({"mode": "SOMETIMES"})).await?,
        422,
        42204,
    );

    // IMPORT: refused where schemas exist (unless forced); then ids and versions come
    // from the request, and outside IMPORT an explicit id is refused.
    is_ok(&r.put("/mode", json!({"mode": "READWRITE"})).await?);
    error(
        r.post(
            "/subjects/imported/versions",
            json!({"schema": schema(7), "id": 100, "version": 5}),
        )
        .await?,
        422,
        42205,
    );
    error(r.put("/mode", json!({"mode": "IMPORT"})).await?, 422, 42205);
    is_ok(&r.put("/mode/imported", json!({"mode": "IMPORT"})).await?);
    assert_eq!(
        is_ok(
            &r.post(
                "/subjects/imported/versions",
                json!({"schema": schema(7), "id": 100, "version": 5}),
            )
            .await?
        ),
        &json!({"id": 100})
    );
    error(
        r.post(
            "/subjects/imported/versions",
            json!({"schema": schema(8), "id": 100, "version": 6}),
        )
        .await?,
        422,
        42207,
    );
    assert_eq!(
        is_ok(&r.get("/subjects/imported/versions/latest").await?),
        &json!({"subject": "imported", "id": 100, "version": 5, "schema": schema(7)})
    );
    is_ok(&r.delete("/mode/imported").await?);
    // Ids assigned afterwards continue after the imported one.
    assert!(r.id("after-import", &schema(9)).await? > 100);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiCompatibilityTest.java
// ---------------------------------------------------------------------------------------

/// RestApiCompatibilityTest.testCompatibility, testCompatibilityLevelChangeToNone,
/// testCompatibilityLevelChangeToBackward.
#[tokio::test]
async fn registrations_follow_the_global_level_as_it_changes() -> TestResult {
    let r = Registry::start().await?;
    let s1 = record(r#"{"type":"string","name":"f1"}"#);
    let required = record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f2"}"#);
    let id1 = r.id("testSubject", &s1).await?;
    assert_eq!(
        is_ok(&r.get("/config").await?),
        &json!({"compatibilityLevel": "BACKWARD"})
    );
    let (status, body) = r.register("testSubject", &required).await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("f2"),
        "the 409 says which field: {body}"
    );
    error(
        r.register("testSubject", "non-avro schema string").await?,
        422,
        42201,
    );

    // FORWARD: the required field is fine (old readers ignore it)...
    assert_eq!(
        is_ok(
            &r.put("/config", json!({"compatibility": "FORWARD"}))
                .await?
        ),
        &json!({"compatibility": "FORWARD"})
    );
    let id2 = r.id("testSubject", &required).await?;
    assert_ne!(id1, id2);
    // ...back at BACKWARD, a schema adding a field without a default is refused,
    let forward_only = record(
        r#"{"type":"string","name":"f1"},{"type":"string","name":"f2"},{"type":"string","name":"f3"}"#,
    );
    is_ok(
        &r.put("/config", json!({"compatibility": "BACKWARD"}))
            .await?,
    );
    error(r.register("testSubject", &forward_only).await?, 409, 40901);
    // and one adding a field with a default is accepted.
    let backward = record(
        r#"{"type":"string","name":"f1"},{"type":"string","name":"f2"},{"type":"string","name":"f3","default":"x"}"#,
    );
    r.id("testSubject", &backward).await?;

    // testCompatibilityLevelChangeToNone.
    let other = record(r#"{"type":"int","name":"f1"}"#);
    error(r.register("testSubject", &other).await?, 409, 40901);
    is_ok(&r.put("/config", json!({"compatibility": "NONE"})).await?);
    r.id("testSubject", &other).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Confluent RestApiTransitiveCompatibilityTest.java (global level BACKWARD_TRANSITIVE)
// ---------------------------------------------------------------------------------------

fn transitive_schemas() -> (String, String, String) {
    (
        record(r#"{"type":"string","name":"f1"}"#),
        record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f2","default":"foo"}"#),
        record(r#"{"type":"string","name":"f1"},{"type":"string","name":"f2"}"#),
    )
}

/// RestApiTransitiveCompatibilityTest.testCompatibility: removing the default of a field
/// added earlier is refused, because version 1's data has no such field.
#[tokio::test]
async fn transitive_removing_a_default_added_earlier_is_refused() -> TestResult {
    let r = Registry::start().await?;
    is_ok(
        &r.put("/config", json!({"compatibility": "BACKWARD_TRANSITIVE"}))
            .await?,
    );
    let (base, with_default, without_default) = transitive_schemas();
    assert_eq!(r.id("testSubject", &base).await?, 1);
    assert_eq!(r.id("testSubject", &with_default).await?, 2);
    assert_eq!(r.register("testSubject", &without_default).await?.0, 409);
    Ok(())
}

/// RestApiTransitiveCompatibilityTest.validateTransitiveEffect: on its own, removing a
/// default is compatible.
#[tokio::test]
async fn transitive_removing_a_default_alone_is_compatible() -> TestResult {
    let r = Registry::start().await?;
    is_ok(
        &r.put("/config", json!({"compatibility": "BACKWARD_TRANSITIVE"}))
            .await?,
    );
    let (_, with_default, without_default) = transitive_schemas();
    assert_eq!(r.id("testSubject", &with_default).await?, 1);
    assert_eq!(r.id("testSubject", &without_default).await?, 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Karapace test_schema.py: test_http_headers (content negotiation, as Confluent's Jersey
// resources do it)
// ---------------------------------------------------------------------------------------

/// Karapace test_http_headers. Deliberate difference: a body in a charset other than UTF-8
/// (Karapace's utf-16 case) is not decoded.
#[tokio::test]
async fn content_negotiation_follows_accept_and_content_type() -> TestResult {
    let r = Registry::start().await?;
    const V1: &str = "application/vnd.schemaregistry.v1+json";
    let (status, kind, _) = r
        .get_with("/subjects", &[("accept", "application/json")])
        .await?;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let (status, kind, _) = r.get_with("/subjects", &[]).await?;
    assert_eq!((status, kind.as_str()), (200, V1));
    for accept in [
        "application/vnd.schemaregistry.v2+json",
        "text/*",
        "application/octet-stream",
    ] {
        let (status, _, body) = r.get_with("/subjects", &[("accept", accept)]).await?;
        assert_eq!(status, 406, "{accept}");
        assert_eq!(body["message"], "HTTP 406 Not Acceptable");
    }
    for accept in [
        "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
        "application/*",
        "*/does_not_matter",
        "*",
        "*/*",
    ] {
        let (status, kind, _) = r.get_with("/subjects", &[("accept", accept)]).await?;
        assert_eq!((status, kind.as_str()), (200, V1), "{accept}");
    }
    let (status, kind, _) = r
        .get_with(
            "/subjects",
            &[(
                "accept",
                "application/vnd.schemaregistry.v2+json; q=0.1, application/vnd.schemaregistry+json; q=0.9",
            )],
        )
        .await?;
    assert_eq!(
        (status, kind.as_str()),
        (200, "application/vnd.schemaregistry+json")
    );

    let put = |content_type: &'static str| {
        let request = r
            .http
            .put(format!("{}/config", r.base))
            .body(json!({"compatibility": "FULL"}).to_string());
        let request = if content_type.is_empty() {
            request
        } else {
            request.header("content-type", content_type)
        };
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok::<_, reqwest::Error>((status, kind))
        }
    };
    assert_eq!(put("text/html").await?, (415, V1.to_owned()));
    for accepted in [
        "application/octet-stream",
        "application/json",
        "application/vnd.schemaregistry+json",
        "application/vnd.schemaregistry.v1+json; charset=utf-8",
        "",
    ] {
        assert_eq!(put(accepted).await?, (200, V1.to_owned()), "{accepted:?}");
    }
    Ok(())
}

// ---- Identity: the full text counts (issue 7 item 1), and `?normalize=true` -----------

/// A schema that differs only in a default, doc, alias, logical type or custom property
/// is another schema: a new id and a new version, after a compatibility check. Confluent
/// answers the same (its identity is the whole schema, not Avro's parsing canonical form).
#[tokio::test]
async fn schemas_differing_only_in_what_the_canonical_form_drops_get_their_own_ids() -> TestResult {
    let r = Registry::start_none().await?;
    let base = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}"#;
    let variants = [
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":2}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","doc":"d","fields":[{"name":"a","type":"int","default":1}]}"#,
        r#"{"type":"record","name":"R","aliases":["Q"],"fields":[{"name":"a","type":"int","default":1}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"int","logicalType":"date"},"default":1}]}"#,
        r#"{"type":"record","name":"R","owner":"lab","fields":[{"name":"a","type":"int","default":1}]}"#,
    ];
    let (status, first) = r
        .post("/subjects/ident-value/versions", json!({ "schema": base }))
        .await?;
    assert_eq!(status, 200, "{first}");
    let mut ids = vec![first["id"].clone()];
    for variant in variants {
        let (status, body) = r
            .post(
                "/subjects/ident-value/versions",
                json!({ "schema": variant }),
            )
            .await?;
        assert_eq!(status, 200, "{variant}: {body}");
        assert!(
            !ids.contains(&body["id"]),
            "{variant} was taken for an earlier schema"
        );
        ids.push(body["id"].clone());
    }
    // Formatting alone is the same schema.
    let spaced = r#"{ "type" : "record", "name" : "R",
        "fields" : [ { "name" : "a", "type" : "int", "default" : 1 } ] }"#;
    let (status, body) = r
        .post(
            "/subjects/ident-value/versions",
            json!({ "schema": spaced }),
        )
        .await?;
    assert_eq!((status, &body["id"]), (200, &ids[0]), "{body}");
    let (_, versions) = r.get("/subjects/ident-value/versions").await?;
    assert_eq!(versions, json!([1, 2, 3, 4, 5, 6, 7]));
    Ok(())
}

/// Removing a default is checked, not waved through as "the same schema": under
/// BACKWARD_TRANSITIVE, a field that lost its default cannot read the first version's data
/// (which lacks it). Confluent answers 409; with the old identity the third schema was
/// taken for the second and answered 200.
#[tokio::test]
async fn removing_a_default_is_checked_against_the_level() -> TestResult {
    let r = Registry::start().await?;
    let (status, _) = r
        .put(
            "/config/nodefault-value",
            json!({ "compatibility": "BACKWARD_TRANSITIVE" }),
        )
        .await?;
    assert_eq!(status, 200);
    let first = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let with = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}"#;
    let without = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#;
    for schema in [first, with] {
        let (status, body) = r
            .post(
                "/subjects/nodefault-value/versions",
                json!({ "schema": schema }),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = r
        .post(
            "/subjects/nodefault-value/versions",
            json!({ "schema": without }),
        )
        .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], 40901, "{body}");
    Ok(())
}

/// `?normalize=true` registers and looks up the normalised form, so two spellings of one
/// schema share an id; without it they stay apart.
#[tokio::test]
async fn normalize_makes_spellings_of_one_schema_one_schema() -> TestResult {
    let r = Registry::start_none().await?;
    let long = r#"{"type":"record","name":"N","fields":[{"name":"a","type":{"type":"string"}}]}"#;
    let short = r#"{"type":"record","name":"N","fields":[{"name":"a","type":"string"}]}"#;
    let (_, first) = r
        .post(
            "/subjects/norm-value/versions?normalize=true",
            json!({ "schema": long }),
        )
        .await?;
    let (_, again) = r
        .post(
            "/subjects/norm-value/versions?normalize=true",
            json!({ "schema": short }),
        )
        .await?;
    assert_eq!(first["id"], again["id"], "{first} {again}");
    let (status, found) = r
        .post(
            "/subjects/norm-value?normalize=true",
            json!({ "schema": long }),
        )
        .await?;
    assert_eq!((status, &found["id"]), (200, &first["id"]), "{found}");
    let (status, plain_long) = r
        .post("/subjects/other-value/versions", json!({ "schema": long }))
        .await?;
    assert_eq!(status, 200);
    let (_, plain_short) = r
        .post("/subjects/other-value/versions", json!({ "schema": short }))
        .await?;
    assert_ne!(
        plain_long["id"], plain_short["id"],
        "without normalize the spellings differ"
    );
    Ok(())
}

/// Schemas stored before the identity changed are found again by their text after the
/// registry restarts: same id, no new version.
#[tokio::test]
async fn schemas_stored_under_the_old_identity_keep_their_ids() -> TestResult {
    let (pool, _) = event_sourcing::testkit::fresh_database(3).await?;
    let text = r#"{"type":"record","name":"Old","fields":[{"name":"a","type":"int","default":7}]}"#;
    let old_form = apache_avro::Schema::parse_str(text)?.canonical_form();
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO schema_registry_schemas (canonical, schema, identity_form) \
         VALUES ($1, $2, 1) RETURNING id",
    )
    .bind(&old_form)
    .bind(text)
    .fetch_one(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO schema_registry_versions (subject, version, schema_id) VALUES ('old-value', 1, $1)",
    )
    .bind(id)
    .execute(&pool)
    .await?;
    let r = Registry::at(kafka::testkit::registry(pool).await?);
    let (status, body) = r
        .post("/subjects/old-value/versions", json!({ "schema": text }))
        .await?;
    assert_eq!(
        (status, body["id"].as_i64()),
        (200, Some(i64::from(id))),
        "{body}"
    );
    let (_, versions) = r.get("/subjects/old-value/versions").await?;
    assert_eq!(versions, json!([1]));
    Ok(())
}

// ---- Review cases: races, empty deleted views, unknown subjects, import bounds ----------

/// One new schema registered under several subjects at the same moment: every
/// registration answers 200 with one and the same id (a registration that waited for
/// another's insert used to find no row and answer 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_new_schema_registered_under_many_subjects_at_once_gets_one_id() -> TestResult {
    let r = std::sync::Arc::new(Registry::start_none().await?);
    for n in 0..30 {
        let text = schema(1000 + n);
        let mut racing = Vec::new();
        for subject in 0..6 {
            let (r, text) = (std::sync::Arc::clone(&r), text.clone());
            racing.push(tokio::spawn(async move {
                r.register(&format!("race-{n}-{subject}"), &text).await
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for registration in racing {
            let (status, body) = registration.await??;
            assert_eq!(status, 200, "{body}");
            ids.insert(body["id"].clone());
        }
        assert_eq!(ids.len(), 1, "one schema, one id: {ids:?}");
    }
    Ok(())
}

/// `deletedOnly` on a live subject with nothing deleted is an empty list (Confluent);
/// on an unknown subject, 40401. A lookup under an unknown subject is a 404 whatever the
/// body (Confluent checks the subject first).
#[tokio::test]
async fn empty_deleted_views_and_unknown_subjects() -> TestResult {
    let r = Registry::start_none().await?;
    r.id("live", &schema(1)).await?;
    let (status, body) = r.get("/subjects/live/versions?deletedOnly=true").await?;
    assert_eq!((status, body), (200, json!([])));
    error(
        r.get("/subjects/nobody/versions?deletedOnly=true").await?,
        404,
        40401,
    );
    error(r.post("/subjects/nobody", json!({})).await?, 404, 40401);
    Ok(())
}

/// IMPORT mode refuses ids and versions so high that counting up after them would
/// overflow (each later registration would fail with a 500).
#[tokio::test]
async fn imported_ids_and_versions_leave_room_to_count_up() -> TestResult {
    let r = Registry::start_none().await?;
    is_ok(&r.put("/mode/imp", json!({"mode": "IMPORT"})).await?);
    for body in [
        json!({"schema": schema(1), "id": i32::MAX, "version": 1}),
        json!({"schema": schema(1), "id": 5, "version": i32::MAX}),
    ] {
        error(r.post("/subjects/imp/versions", body).await?, 422, 42205);
    }
    is_ok(
        &r.post(
            "/subjects/imp/versions",
            json!({"schema": schema(1), "id": 5, "version": 7}),
        )
        .await?,
    );
    Ok(())
}
