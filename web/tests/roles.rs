//! Every role against every route, as an API token and as a logged-in session: what the
//! role allows is not refused, what it does not is a 403 (401 or the login page when
//! nobody is logged in) that appends nothing.
//!
//! The cases come from the router's own table (`web::routes::access_rules`), so a new
//! route is tried here as soon as it exists, and a route this test has no request for
//! fails it until one is added.

mod support;

use lab::accounts::{Permission, Role};
use reqwest::StatusCode;
use serde_json::json;
use support::{Session, TestApp, TestResult};
use web::routes::RouteRule;
use web::routes::auth::Access;

/// What a request to a route sends.
enum Body {
    None,
    Form(Vec<(&'static str, String)>),
    Json(serde_json::Value),
}

struct Fixture {
    sample: String,
    user: String,
    token: String,
    /// A freezer, for the storage routes.
    unit: String,
}

/// The concrete request this test sends to `rule`: its path with real ids, and a body
/// that an allowed principal could send.
fn request_for(rule: &RouteRule, f: &Fixture) -> Option<(String, Body)> {
    let path = rule
        .path
        .replace(
            "{id}",
            match rule.path {
                p if p.starts_with("/admin/users") => &f.user,
                p if p.contains("tokens") => &f.token,
                p if p.contains("dead-letters") => "1",
                p if p.starts_with("/api/storage/units/") || p.starts_with("/storage/") => &f.unit,
                _ => &f.sample,
            },
        )
        .replace("{position}", "1")
        .replace("{excursion_id}", "00000000-0000-0000-0000-000000000001")
        .replace("{*file}", "index.html");
    let form = |fields: &[(&'static str, &str)]| {
        Body::Form(fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    };
    let body = match (rule.method.as_str(), rule.path) {
        ("GET", _) => Body::None,
        ("POST", "/login") => form(&[("username", "nobody"), ("password", "wrong password")]),
        ("POST", "/logout") => form(&[]),
        ("POST", "/account/password") => form(&[
            ("current_password", "not the password"),
            ("new_password", "another long password"),
            ("confirm_password", "another long password"),
        ]),
        ("POST", "/samples") => form(&[
            ("sample_type", "DNA"),
            ("volume_ul", "10"),
            ("temperature_zone", "MINUS_80"),
        ]),
        ("POST", "/samples/{id}/receive") => form(&[("notes", "arrived")]),
        ("POST", "/samples/{id}/validate") => form(&[("meaning", "approved")]),
        ("POST", "/samples/{id}/reject") => {
            form(&[("reason", "haemolysed"), ("meaning", "approved")])
        }
        ("POST", "/api/samples") => Body::Json(json!({
            "sample_type": "DNA", "volume_ul": 10, "temperature_zone": "MINUS_80"
        })),
        ("POST", "/api/samples/{id}/receive") => Body::Json(json!({})),
        ("POST", "/api/samples/{id}/validate") => Body::Json(json!({ "meaning": "approved" })),
        ("POST", "/api/samples/{id}/reject") => {
            Body::Json(json!({ "reason": "haemolysed", "meaning": "approved" }))
        }
        ("POST", "/api/samples/{id}/store" | "/api/samples/{id}/move") => {
            Body::Json(json!({ "box": "ROLE-BOX A1" }))
        }
        (
            "POST",
            "/api/samples/{id}/remove" | "/api/samples/{id}/check-out" | "/api/samples/{id}/return",
        ) => Body::Json(json!({ "notes": "n", "holder": "target.user" })),
        ("POST", "/api/samples/{id}/aliquot") => {
            Body::Json(json!({ "aliquots": [{ "volume_ul": "1" }] }))
        }
        ("POST", "/api/samples/{id}/dispose") => {
            Body::Json(json!({ "reason": "spilled", "meaning": "performed" }))
        }
        ("POST", "/api/samples/{id}/correct-qc") => {
            Body::Json(json!({ "passed": false, "reason": "misread", "meaning": "approved" }))
        }
        ("POST", "/api/storage/units") => Body::Json(json!({
            "kind": "freezer", "code": "ROLE-NEW", "temperature_zone": "-20", "slots": "2"
        })),
        ("POST", "/api/storage/units/{id}/rename") => Body::Json(json!({ "name": "Renamed" })),
        ("POST", "/api/storage/units/{id}/move") => {
            Body::Json(json!({ "parent": "ROLE-FRZ", "slot": "2" }))
        }
        ("POST", "/api/storage/units/{id}/decommission") => {
            Body::Json(json!({ "reason": "retired" }))
        }
        ("POST", "/api/storage/units/{id}/temperature") => {
            Body::Json(json!({ "celsius": "-80.5" }))
        }
        ("POST", "/api/storage/units/{id}/excursions/{excursion_id}/resolve") => {
            Body::Json(json!({ "note": "checked" }))
        }
        ("POST", "/samples/{id}/store" | "/samples/{id}/move") => form(&[("box", "ROLE-BOX A1")]),
        ("POST", "/samples/{id}/remove" | "/samples/{id}/check-out" | "/samples/{id}/return") => {
            form(&[("notes", "n")])
        }
        ("POST", "/samples/{id}/aliquot") => form(&[("volume_1", "1")]),
        ("POST", "/samples/{id}/dispose") => {
            form(&[("reason", "spilled"), ("meaning", "performed")])
        }
        ("POST", "/samples/{id}/correct-qc") => form(&[
            ("decision", "failed"),
            ("reason", "misread"),
            ("meaning", "approved"),
        ]),
        ("POST", "/storage/units") => form(&[
            ("kind", "freezer"),
            ("code", "ROLE-PAGE"),
            ("temperature_zone", "-20"),
            ("slots", "2"),
        ]),
        ("POST", "/storage/{id}/place") => form(&[("sample", "NO-SUCH-TUBE"), ("position", "A1")]),
        ("POST", "/storage/{id}/temperature") => form(&[("celsius", "-80")]),
        ("POST", "/storage/{id}/rename") => form(&[("name", "Renamed by page")]),
        ("POST", "/storage/{id}/move") => form(&[("parent", "ROLE-FRZ"), ("slot", "3")]),
        ("POST", "/storage/{id}/decommission") => form(&[("reason", "retired")]),
        ("POST", "/storage/{id}/excursions/{excursion_id}/resolve") => form(&[("note", "ok")]),
        ("POST", "/store") => form(&[("tube", "NO-SUCH-TUBE"), ("box", "ROLE-BOX A1")]),
        ("POST", "/dead-letters/reprocess" | "/dead-letters/{id}/reprocess") => form(&[]),
        (
            "POST",
            "/api/dead-letters/reprocess"
            | "/api/dead-letters/{id}/reprocess"
            | "/api/outbox/parked/retry"
            | "/api/outbox/parked/{position}/retry",
        ) => Body::None,
        ("POST", "/admin/users") => form(&[
            ("username", "new.person"),
            ("display_name", "New Person"),
            ("role", "viewer"),
            ("password", "a long enough password"),
        ]),
        ("POST", "/admin/users/{id}/role") => form(&[("role", "viewer")]),
        ("POST", "/admin/users/{id}/enable" | "/admin/users/{id}/disable") => form(&[]),
        ("POST", "/admin/users/{id}/password") => {
            form(&[("new_password", "a reset long password")])
        }
        ("POST", "/admin/tokens") => form(&[("name", "robot"), ("role", "viewer")]),
        ("POST", "/admin/tokens/{id}/revoke") => form(&[]),
        ("POST", "/api/tokens") => Body::Json(json!({ "name": "robot", "role": "viewer" })),
        ("POST", "/api/tokens/{id}/revoke") => Body::None,
        _ => return None,
    };
    Some((path, body))
}

/// Who is asking.
enum Caller<'a> {
    Nobody(&'a reqwest::Client),
    Token(&'a reqwest::Client),
    Session(&'a Session),
}

async fn send(
    app: &TestApp,
    caller: &Caller<'_>,
    rule: &RouteRule,
    path: &str,
    body: &Body,
) -> TestResult<(StatusCode, bool)> {
    let (client, csrf) = match caller {
        Caller::Nobody(c) | Caller::Token(c) => (*c, None),
        Caller::Session(s) => (&s.client, Some(s.csrf.as_str())),
    };
    let mut request = client.request(rule.method.clone(), app.url(path));
    request = match body {
        Body::None => match csrf {
            Some(csrf) => request.header("x-csrf-token", csrf),
            None => request,
        },
        Body::Form(fields) => {
            let mut fields: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(csrf) = csrf {
                fields.push(("csrf_token", csrf));
            }
            request.form(&fields)
        }
        Body::Json(value) => {
            let request = request.json(value);
            match csrf {
                Some(csrf) => request.header("x-csrf-token", csrf),
                None => request,
            }
        }
    };
    let response = request.send().await?;
    let to_login = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("/login"));
    Ok((response.status(), to_login))
}

/// Everything a refused request must leave as it was: events, accounts, tokens, the
/// outbox and dead letters (a digest of each table).
async fn state(app: &TestApp) -> TestResult<Vec<String>> {
    let mut digests = Vec::new();
    for table in ["events", "users", "api_tokens", "outbox", "dead_letters"] {
        let digest: Option<String> = sqlx::query_scalar(&format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        ))
        .fetch_one(&app.pool)
        .await?;
        digests.push(format!("{table}:{}", digest.unwrap_or_default()));
    }
    Ok(digests)
}

fn allows(role: Option<Role>, access: Access) -> bool {
    match (role, access) {
        (_, Access::Public) => true,
        (None, _) => false,
        (Some(_), Access::LoggedIn) => true,
        (Some(role), Access::Needs(permission)) => role.allows(permission),
    }
}

#[tokio::test]
async fn every_role_against_every_route() -> TestResult {
    let _ = Permission::Read;
    let app = TestApp::spawn().await?;
    let registered = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({ "sample_type": "DNA", "volume_ul": 10, "temperature_zone": "MINUS_80" }))
        .send()
        .await?;
    let sample: serde_json::Value = registered.json().await?;
    let freezer: serde_json::Value = app
        .client
        .post(app.url("/api/storage/units"))
        .json(&json!({ "kind": "freezer", "code": "ROLE-FRZ", "temperature_zone": "-80", "slots": "4" }))
        .send()
        .await?
        .json()
        .await?;
    let target = app.user("target.user", Role::Technician).await?;
    let target_token = app
        .accounts
        .create_token("target", "viewer", &app.admin, None)
        .await?;
    let fixture = Fixture {
        sample: sample["sample_id"]
            .as_str()
            .ok_or("no sample id")?
            .to_owned(),
        user: target.id.to_string(),
        token: target_token.token.id.to_string(),
        unit: freezer["unit_id"].as_str().ok_or("no unit id")?.to_owned(),
    };

    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut callers: Vec<(String, Option<Role>, Caller)> = Vec::new();
    let mut token_clients = Vec::new();
    let mut sessions = Vec::new();
    for role in Role::ALL {
        // A token's role is at most lab manager.
        if *role != Role::Admin {
            token_clients.push((
                *role,
                TestApp::bearer_client(&app.token(role.as_str(), *role).await?)?,
            ));
        }
        sessions.push((
            *role,
            app.session(&format!("{}.person", role.as_str()), *role)
                .await?,
        ));
    }
    callers.push(("nobody".into(), None, Caller::Nobody(&anonymous)));
    for (role, client) in &token_clients {
        callers.push((
            format!("{} token", role.as_str()),
            Some(*role),
            Caller::Token(client),
        ));
    }
    for (role, session) in &sessions {
        callers.push((
            format!("{} session", role.as_str()),
            Some(*role),
            Caller::Session(session),
        ));
    }

    let rules = web::routes::access_rules();
    assert!(
        rules.len() > 40,
        "the route table has {} routes",
        rules.len()
    );
    let mut failures = Vec::new();
    for rule in &rules {
        let Some((path, body)) = request_for(rule, &fixture) else {
            failures.push(format!(
                "{} {} has no case in this test: add one to request_for",
                rule.method, rule.path
            ));
            continue;
        };
        for (who, role, caller) in &callers {
            // Logging out would end the session the later routes use: log out a second
            // session of the same person instead.
            let spare;
            let caller = match (caller, rule.path) {
                (Caller::Session(_), "/logout") => {
                    let username = format!("{}.person", role.map_or("", |r| r.as_str()));
                    spare = app.login(&username, support::PASSWORD).await?;
                    &Caller::Session(&spare)
                }
                _ => caller,
            };
            let before = state(&app).await?;
            let (status, to_login) = send(&app, caller, rule, &path, &body).await?;
            let after = state(&app).await?;
            let allowed = allows(*role, rule.access);
            // Some things need a person even where the role allows them: a token cannot
            // change a password or create another token (a 403 that says so).
            let person_only =
                matches!(caller, Caller::Token(_)) && rule.path == "/account/password";
            let ok = if person_only && allowed && rule.method == reqwest::Method::POST {
                status == StatusCode::FORBIDDEN && after == before
            } else if rule.access == Access::Public {
                status != StatusCode::FORBIDDEN && !status.is_server_error()
            } else if allowed {
                let sent_to_login = to_login && rule.path != "/logout";
                let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
                !(sent_to_login || refused || status.is_server_error())
            } else {
                let refused = match role {
                    Some(_) => status == StatusCode::FORBIDDEN,
                    None => matches!(status, StatusCode::UNAUTHORIZED | StatusCode::SEE_OTHER),
                };
                refused && after == before
            };
            if !ok {
                failures.push(format!(
                    "{} {} as {who}: {status} (allowed: {allowed}; state changed: {})",
                    rule.method,
                    path,
                    before != after
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
