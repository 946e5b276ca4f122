//! Logging in and out, sessions (expiry, fixation), login throttling, CSRF, API tokens
//! (scope, revocation, last use), who is recorded in events, and electronic signatures.

mod support;

use lab::accounts::Role;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};
use support::{PASSWORD, TestApp, TestResult};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap_or_default()
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tracseq_session=") || v.starts_with("__Host-tracseq_session="))
        .map(str::to_owned)
}

async fn register_form(session: &support::Session, barcode: &str) -> TestResult<reqwest::Response> {
    Ok(session
        .form(
            "/samples",
            &[
                ("barcode", barcode),
                ("sample_type", "DNA"),
                ("volume_ul", "10"),
                ("temperature_zone", "MINUS_80"),
            ],
        )
        .await?)
}

#[tokio::test]
async fn pages_and_api_need_a_login_and_logout_ends_the_session() -> TestResult {
    let app = TestApp::spawn().await?;
    let client = no_redirects();
    let page = client.get(app.url("/samples?q=x")).send().await?;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/login?next=%2Fsamples")
    );
    let api = client.get(app.url("/api/samples")).send().await?;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(api.headers().contains_key("www-authenticate"));
    let body: Value = api.json().await?;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Bearer"),
        "{body}"
    );

    app.user("ana", Role::Technician).await?;
    let wrong = client
        .post(app.url("/login"))
        .form(&[
            ("username", "ana"),
            ("password", "not her password"),
            ("next", "/samples"),
        ])
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&wrong).is_none());
    let text = wrong.text().await?;
    assert!(text.contains("Wrong username or password"), "{text}");
    assert!(text.contains("value=\"ana\""), "the username is kept");

    let right = client
        .post(app.url("/login"))
        .form(&[
            ("username", "ana"),
            ("password", PASSWORD),
            ("next", "/samples/new"),
        ])
        .send()
        .await?;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        right.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/samples/new")
    );
    let cookie = session_cookie(&right).ok_or("no session cookie")?;
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP gets no Secure: {cookie}"
    );
    let page = client.get(app.url("/samples")).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await?;
    assert!(
        html.contains("Signed in as"),
        "every page shows who is logged in"
    );
    assert!(html.contains("ana (technician)"));
    let csrf = support::csrf_in(&html).ok_or("no csrf token")?;

    let out = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(sessions, 0, "logout deletes the session on the server");
    // The old cookie value, replayed, is worthless.
    let value = cookie.split(';').next().unwrap_or_default().to_owned();
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(app.url("/samples"))
        .header("cookie", value)
        .send()
        .await?;
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn login_issues_a_new_session_id_whatever_cookie_came_with_it() -> TestResult {
    let app = TestApp::spawn().await?;
    app.user("bo", Role::Viewer).await?;
    let planted =
        "tracseq_session=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let login = |cookie: Option<&'static str>| {
        let mut request = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
            .post(app.url("/login"))
            .form(&[("username", "bo"), ("password", PASSWORD)]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let first = session_cookie(&login(Some(planted)).await?).ok_or("no cookie")?;
    let second = session_cookie(&login(None).await?).ok_or("no cookie")?;
    assert!(!first.starts_with(planted), "the planted id is not adopted");
    assert_ne!(first, second, "each login gets its own id");
    // The planted id does not become a session.
    let attacker = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(app.url("/samples"))
        .header("cookie", planted)
        .send()
        .await?;
    assert_eq!(attacker.status(), StatusCode::SEE_OTHER);
    // A live session planted in the victim's browser (the attacker's own) is not handed
    // to the victim: the login gets a new id, and the planted one ends.
    app.user("mallory", Role::Viewer).await?;
    let bare = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    };
    let mallory = bare()
        .post(app.url("/login"))
        .form(&[("username", "mallory"), ("password", PASSWORD)])
        .send()
        .await?;
    let live = session_cookie(&mallory).ok_or("no cookie")?;
    let live = live.split(';').next().unwrap_or_default().to_owned();
    let victim = bare()
        .post(app.url("/login"))
        .header("cookie", &live)
        .form(&[("username", "bo"), ("password", PASSWORD)])
        .send()
        .await?;
    let victims = session_cookie(&victim).ok_or("no cookie")?;
    assert!(!victims.starts_with(&live), "the victim got a new id");
    let planted_after = bare()
        .get(app.url("/samples"))
        .header("cookie", &live)
        .send()
        .await?;
    assert_eq!(
        planted_after.status(),
        StatusCode::SEE_OTHER,
        "the planted session ended at the victim's login"
    );
    // Only a hash of the id is stored.
    let raw = first
        .trim_start_matches("tracseq_session=")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE encode(id_hash, 'hex') = $1")
            .bind(&raw)
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(stored, 0, "the cookie value itself is not in the table");
    Ok(())
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_their_absolute_end() -> TestResult {
    let app = TestApp::spawn().await?;
    let idle = app.session("idle.user", Role::Viewer).await?;
    let old = app.session("old.user", Role::Viewer).await?;
    assert_eq!(idle.get("/samples").await?.status(), StatusCode::OK);
    assert_eq!(old.get("/samples").await?.status(), StatusCode::OK);
    // Thirty-one minutes without a request (the default idle timeout is 30).
    sqlx::query(
        "UPDATE sessions SET last_seen_at = clock_timestamp() - interval '31 minutes' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'idle.user')",
    )
    .execute(&app.pool)
    .await?;
    // Past the absolute end, however active.
    sqlx::query(
        "UPDATE sessions SET expires_at = clock_timestamp() - interval '1 second' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'old.user')",
    )
    .execute(&app.pool)
    .await?;
    for session in [&idle, &old] {
        let response = session.get("/samples").await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(location.starts_with("/login"), "{location}");
    }
    // The retention job's pruning deletes exactly the two expired sessions.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.pool)
        .await?;
    let (pruned, _) = app.accounts.prune().await?;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!((pruned, before - after), (2, 2));
    Ok(())
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_with_a_message() -> TestResult {
    let app = TestApp::spawn().await?;
    app.user("cy", Role::Technician).await?;
    app.user("di", Role::Technician).await?;
    let client = no_redirects();
    let attempt = |username: &'static str, password: &'static str| {
        client
            .post(app.url("/login"))
            .form(&[("username", username), ("password", password)])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("cy", "wrong password!").await?.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked now, even with the right password.
    let locked = attempt("cy", PASSWORD).await?;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = locked
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or("no Retry-After")?;
    assert!((1..=900).contains(&wait), "{wait}");
    let text = locked.text().await?;
    assert!(
        text.contains("Too many failed attempts for this account"),
        "{text}"
    );
    // Another account from the same address is not locked.
    assert_eq!(
        attempt("di", PASSWORD).await?.status(),
        StatusCode::SEE_OTHER
    );
    // The failures are logged in the audit trail, without the password.
    let audit: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action, detail FROM account_audit WHERE subject = 'cy' ORDER BY id")
            .fetch_all(&app.pool)
            .await?;
    assert_eq!(
        audit.iter().filter(|(a, _)| a == "login.failure").count(),
        5
    );
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_audit WHERE concat_ws('|', subject, detail) LIKE '%wrong password!%'",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(leaked, 0, "no attempted password is in the audit trail");
    Ok(())
}

#[tokio::test]
async fn a_form_without_the_right_csrf_token_or_from_another_site_is_refused() -> TestResult {
    let app = TestApp::spawn().await?;
    let session = app.session("eve.tech", Role::Technician).await?;
    let fields = [
        ("barcode", "LAB-CSRF-1"),
        ("sample_type", "DNA"),
        ("volume_ul", "10"),
        ("temperature_zone", "MINUS_80"),
    ];
    let before = app.events().await?;
    let missing = session
        .client
        .post(session.url("/samples"))
        .form(&fields)
        .send()
        .await?;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(missing.text().await?.contains("security token"));
    let mut wrong = fields.to_vec();
    wrong.push(("csrf_token", "0000"));
    let wrong = session
        .client
        .post(session.url("/samples"))
        .form(&wrong)
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let mut right = fields.to_vec();
    right.push(("csrf_token", session.csrf.as_str()));
    let cross = session
        .client
        .post(session.url("/samples"))
        .header("sec-fetch-site", "cross-site")
        .form(&right)
        .send()
        .await?;
    assert_eq!(
        cross.status(),
        StatusCode::FORBIDDEN,
        "right token, other site"
    );
    let other_origin = session
        .client
        .post(session.url("/samples"))
        .header("origin", "https://evil.example")
        .form(&right)
        .send()
        .await?;
    assert_eq!(other_origin.status(), StatusCode::FORBIDDEN);
    // JSON with the session cookie needs the header.
    let json_missing = session
        .client
        .post(session.url("/api/samples"))
        .json(&json!({ "sample_type": "DNA", "volume_ul": 1, "temperature_zone": "MINUS_80" }))
        .send()
        .await?;
    assert_eq!(json_missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.events().await?,
        before,
        "no refused request appended anything"
    );

    let accepted = register_form(&session, "LAB-CSRF-1").await?;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    let json_ok = session
        .client
        .post(session.url("/api/samples"))
        .header("x-csrf-token", &session.csrf)
        .json(&json!({ "sample_type": "DNA", "volume_ul": 1, "temperature_zone": "MINUS_80" }))
        .send()
        .await?;
    assert_eq!(json_ok.status(), StatusCode::CREATED);
    // A bearer token needs no CSRF token: browsers never send one on their own.
    let token = TestApp::bearer_client(&app.token("robot", Role::Technician).await?)?;
    let by_token = token
        .post(app.url("/samples"))
        .form(&[
            ("sample_type", "DNA"),
            ("volume_ul", "10"),
            ("temperature_zone", "MINUS_80"),
        ])
        .send()
        .await?;
    assert_eq!(by_token.status(), StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn tokens_act_within_their_role_until_revoked_and_show_their_last_use() -> TestResult {
    let app = TestApp::spawn().await?;
    let viewer = TestApp::bearer_client(&app.token("dashboard", Role::Viewer).await?)?;
    let tech_secret = app.token("hamilton star", Role::Technician).await?;
    let tech = TestApp::bearer_client(&tech_secret)?;
    let body = json!({ "sample_type": "DNA", "volume_ul": 10, "temperature_zone": "MINUS_80" });

    assert_eq!(
        viewer.get(app.url("/api/samples")).send().await?.status(),
        StatusCode::OK
    );
    let before = app.events().await?;
    let refused = viewer
        .post(app.url("/api/samples"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let text: Value = refused.json().await?;
    assert!(
        text["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Viewer"),
        "{text}"
    );
    assert_eq!(app.events().await?, before);

    let created = tech
        .post(app.url("/api/samples"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await?;
    let id = created["sample_id"].as_str().ok_or("no id")?;
    // A technician's token cannot take a QC decision.
    let qc = tech
        .post(app.url(&format!("/api/samples/{id}/reject")))
        .json(&json!({ "reason": "x" }))
        .send()
        .await?;
    assert_eq!(qc.status(), StatusCode::FORBIDDEN);

    // Administration needs a person: the test suite's own (lab manager) token is refused.
    assert_eq!(
        app.client
            .get(app.url("/api/tokens"))
            .send()
            .await?
            .status(),
        StatusCode::FORBIDDEN
    );
    let admin = app.login("admin", PASSWORD).await?;
    let listed: Vec<Value> = admin
        .client
        .get(admin.url("/api/tokens"))
        .send()
        .await?
        .json()
        .await?;
    let entry = listed
        .iter()
        .find(|t| t["name"] == "hamilton star")
        .ok_or("token not listed")?;
    assert!(
        entry["last_used_at"].is_string(),
        "last use is shown: {entry}"
    );
    assert!(entry.get("secret").is_none() && entry.get("token_hash").is_none());
    let token_id = entry["id"].as_str().ok_or("no token id")?;
    let revoked = admin
        .client
        .post(admin.url(&format!("/api/tokens/{token_id}/revoke")))
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await?;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after = tech.get(app.url("/api/samples")).send().await?;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'",
    )
    .bind(&tech_secret)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(stored, 0, "only the hash is stored");
    Ok(())
}

#[tokio::test]
async fn events_carry_the_logged_in_users_id_and_name() -> TestResult {
    let app = TestApp::spawn().await?;
    let tech = app.user("fay", Role::Technician).await?;
    let session = app.login("fay", PASSWORD).await?;
    assert_eq!(
        register_form(&session, "LAB-WHO-1").await?.status(),
        StatusCode::SEE_OTHER
    );
    let (user_id, user): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT metadata->>'user_id', metadata->>'user' FROM events ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(user_id, Some(tech.id.to_string()));
    assert_eq!(user.as_deref(), Some(tech.name.as_str()));
    // An X-User header names no one any more.
    let forged = app
        .client
        .post(app.url("/api/samples"))
        .header("x-user", "Someone Else")
        .json(&json!({ "sample_type": "DNA", "volume_ul": 1, "temperature_zone": "MINUS_80" }))
        .send()
        .await?;
    assert_eq!(forged.status(), StatusCode::CREATED);
    let user: Option<String> =
        sqlx::query_scalar("SELECT metadata->>'user' FROM events ORDER BY position DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(user.as_deref(), Some("API token 'test suite'"));
    Ok(())
}

#[tokio::test]
async fn qc_decisions_need_an_electronic_signature_shown_on_the_timeline() -> TestResult {
    let app = TestApp::spawn().await?;
    let manager = app.user("gil", Role::LabManager).await?;
    let session = app.login("gil", PASSWORD).await?;
    let created: Value = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({ "sample_type": "DNA", "volume_ul": 10, "temperature_zone": "MINUS_80" }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    session.form(&format!("/samples/{id}/receive"), &[]).await?;
    let before = app.events().await?;
    let unsigned = session
        .form(
            &format!("/samples/{id}/validate"),
            &[("meaning", "approved")],
        )
        .await?;
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    let wrong = session
        .form(
            &format!("/samples/{id}/validate"),
            &[("meaning", "approved"), ("password", "not my password")],
        )
        .await?;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(wrong.text().await?.contains("not your password"));
    // An API token cannot sign for itself.
    let token = app
        .client
        .post(app.url(&format!("/api/samples/{id}/validate")))
        .json(&json!({ "meaning": "approved", "password": PASSWORD }))
        .send()
        .await?;
    assert_eq!(token.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.events().await?,
        before,
        "no unsigned decision was recorded"
    );

    let signed = session
        .form(
            &format!("/samples/{id}/validate"),
            &[
                ("meaning", "reviewed"),
                ("password", PASSWORD),
                ("notes", "QC ok"),
            ],
        )
        .await?;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'SampleValidated'")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(payload["signed_by_id"], json!(manager.id.to_string()));
    assert_eq!(payload["signed_by"], json!(manager.name));
    assert_eq!(payload["signature_meaning"], json!("reviewed"));
    assert!(payload["signed_at"].is_string(), "{payload}");
    let page = session.get(&format!("/samples/{id}")).await?.text().await?;
    assert!(
        page.contains("reviewed"),
        "the timeline shows the signature's meaning"
    );
    assert!(
        page.contains(&format!("Signed by {}", manager.name)),
        "the timeline shows the signer"
    );
    Ok(())
}

#[tokio::test]
async fn disabling_an_account_ends_its_sessions_and_the_last_admin_stays() -> TestResult {
    let app = TestApp::spawn().await?;
    let hal = app.user("hal", Role::Technician).await?;
    let hal_session = app.login("hal", PASSWORD).await?;
    let admin = app.login("admin", PASSWORD).await?;
    let disabled = admin
        .form(&format!("/admin/users/{}/disable", hal.id), &[])
        .await?;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(
        hal_session.get("/samples").await?.status(),
        StatusCode::SEE_OTHER
    );
    let again = no_redirects()
        .post(app.url("/login"))
        .form(&[("username", "hal"), ("password", PASSWORD)])
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    // Refused like a wrong password: a disabled account's right password is not confirmed.
    assert!(again.text().await?.contains("Wrong username or password"));
    // The only administrator cannot demote or disable themselves.
    let demote = admin
        .form(
            &format!("/admin/users/{}/role", app.admin.id),
            &[("role", "viewer")],
        )
        .await?;
    assert_eq!(demote.status(), StatusCode::CONFLICT);
    assert!(demote.text().await?.contains("last enabled administrator"));
    Ok(())
}

#[tokio::test]
async fn behind_https_the_session_cookie_is_secure() -> TestResult {
    let app = TestApp::spawn().await?;
    app.user("ida", Role::Viewer).await?;
    let response = no_redirects()
        .post(app.url("/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("username", "ida"), ("password", PASSWORD)])
        .send()
        .await?;
    let cookie = session_cookie(&response).ok_or("no cookie")?;
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.starts_with("__Host-tracseq_session="),
        "no sibling subdomain can plant it: {cookie}"
    );
    Ok(())
}

#[tokio::test]
async fn parallel_wrong_logins_cannot_outrun_the_limit() -> TestResult {
    let app = TestApp::spawn().await?;
    app.user("jo", Role::Technician).await?;
    let attempts = (0..20).map(|_| {
        no_redirects()
            .post(app.url("/login"))
            .form(&[("username", "jo"), ("password", "wrong password!!")])
            .send()
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.map(|r| r.status()))
        .collect::<Result<_, _>>()?;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + throttled, 20, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    // An administrator's reset unlocks the account.
    let admin = app.login("admin", PASSWORD).await?;
    let jo = app.accounts.user_by_name("jo").await?.ok_or("no jo")?;
    let reset = admin
        .form(
            &format!("/admin/users/{}/password", jo.id),
            &[("new_password", "a brand new password")],
        )
        .await?;
    assert_eq!(reset.status(), StatusCode::OK);
    app.login("jo", "a brand new password").await?;
    Ok(())
}

#[tokio::test]
async fn only_integrations_sign_for_someone_else_and_only_with_their_password() -> TestResult {
    let app = TestApp::spawn().await?;
    let manager = app.user("kim", Role::LabManager).await?;
    app.user("lee", Role::Technician).await?;
    let session = app.login("kim", PASSWORD).await?;
    let created: Value = app
        .client
        .post(app.url("/api/samples"))
        .json(&json!({ "sample_type": "DNA", "volume_ul": 10, "temperature_zone": "MINUS_80" }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["sample_id"].as_str().ok_or("no id")?.to_owned();
    let validate = format!("/api/samples/{id}/validate");
    app.client
        .post(app.url(&format!("/api/samples/{id}/receive")))
        .send()
        .await?;
    let before = app.events().await?;
    // A person logged in cannot sign in a colleague's name, even with their password.
    let as_colleague = session
        .client
        .post(session.url(&validate))
        .header("x-csrf-token", &session.csrf)
        .json(&json!({ "signer": "admin", "password": PASSWORD, "meaning": "approved" }))
        .send()
        .await?;
    assert_eq!(as_colleague.status(), StatusCode::BAD_REQUEST);
    // An integration must present a signer allowed to take QC decisions...
    let technician = app
        .client
        .post(app.url(&validate))
        .json(&json!({ "signer": "lee", "password": PASSWORD, "meaning": "approved" }))
        .send()
        .await?;
    assert_eq!(technician.status(), StatusCode::FORBIDDEN);
    // ...with that person's password.
    let wrong = app
        .client
        .post(app.url(&validate))
        .json(&json!({ "signer": "kim", "password": "not kim's password", "meaning": "approved" }))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.events().await?,
        before,
        "no refused signature was recorded"
    );
    let signed = app
        .client
        .post(app.url(&validate))
        .json(&json!({ "signer": "kim", "password": PASSWORD, "meaning": "approved" }))
        .send()
        .await?;
    assert_eq!(signed.status(), StatusCode::OK);
    let (payload, user_id): (Value, Option<String>) = sqlx::query_as(
        "SELECT payload, metadata->>'user_id' FROM events WHERE event_type = 'SampleValidated'",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(payload["signed_by_id"], json!(manager.id.to_string()));
    let token_id: String =
        sqlx::query_scalar("SELECT id::text FROM api_tokens WHERE name = 'test suite'")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(
        user_id,
        Some(token_id),
        "the integration issued it; kim signed it"
    );
    Ok(())
}

#[tokio::test]
async fn no_token_can_be_an_administrator() -> TestResult {
    let app = TestApp::spawn().await?;
    let admin = app.login("admin", PASSWORD).await?;
    let refused = admin
        .client
        .post(admin.url("/api/tokens"))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({ "name": "root", "role": "admin" }))
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE role = 'admin'")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(tokens, 0);
    Ok(())
}
