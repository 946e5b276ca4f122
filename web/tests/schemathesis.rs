//! The JSON API against its own OpenAPI description, fuzzed by schemathesis: every
//! operation the spec lists, with generated valid and invalid input, must never answer
//! with a 5xx (bad input is a 4xx with a message), and no refused request may append an
//! event.
//!
//! schemathesis (PyPI, pinned in `deploy-phase7.sh`, `ensure_schemathesis`) is found by
//! the `SCHEMATHESIS` variable or on `PATH`; without it this test fails and says how to
//! install it.
//!
//! "Refused requests appended nothing" is checked through the command ids: every event
//! records the id of the command that produced it (`metadata.command_id`), and every
//! command that succeeds answers 2xx with that id (`command_id`). So each event appended
//! during the run must carry a command id that some 2xx response of the run announced; an
//! event written by a request that was then refused (4xx/5xx) would carry an id nobody
//! was told about. (The responses come from schemathesis' HAR report.) Counting events
//! against 2xx responses would not be sound: one command may append several events and a
//! replayed Idempotency-Key appends none.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use support::{TestApp, TestResult};

const INSTALL: &str = "schemathesis is not installed: run `./deploy-phase7.sh test`, which installs it, or `python3 -m pip install --user --break-system-packages schemathesis==4.32.5` \
     (or `./deploy-phase7.sh test`, which installs it), or set SCHEMATHESIS to its path";

fn schemathesis() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // `pip install --user` puts scripts here, often not on PATH.
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join("schemathesis"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| INSTALL.to_owned())
}

async fn appended_command_ids(app: &TestApp, after: i64) -> TestResult<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT position, coalesce(metadata->>'command_id', '') FROM events \
         WHERE position > $1 ORDER BY position",
    )
    .bind(after)
    .fetch_all(&app.pool)
    .await?)
}

/// The `command_id` of every 2xx response in a HAR file.
fn announced_command_ids(har: &Value) -> (BTreeSet<String>, usize, usize) {
    let mut ids = BTreeSet::new();
    let entries = har["log"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut successes = 0;
    for entry in &entries {
        let status = entry["response"]["status"].as_u64().unwrap_or_default();
        if !(200..300).contains(&status) {
            continue;
        }
        successes += 1;
        let text = entry["response"]["content"]["text"]
            .as_str()
            .unwrap_or_default();
        if let Ok(body) = serde_json::from_str::<Value>(text)
            && let Some(id) = body["command_id"].as_str()
        {
            ids.insert(id.to_owned());
        }
    }
    (ids, entries.len(), successes)
}

/// Test cases per operation and phase: 30, or `SCHEMATHESIS_MAX_EXAMPLES` for a deeper
/// run.
fn max_examples() -> String {
    std::env::var("SCHEMATHESIS_MAX_EXAMPLES")
        .ok()
        .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        .unwrap_or_else(|| "30".to_owned())
}

/// One schemathesis run sending `headers` (how it authenticates), `filter` choosing the
/// operations; the path of its HAR report (every request and response).
fn run(
    program: &PathBuf,
    base: &str,
    headers: &[String],
    dir: &std::path::Path,
    name: &str,
    filter: &[&str],
) -> TestResult<PathBuf> {
    let har = dir.join(format!("{name}.har"));
    let started = Instant::now();
    let output = Command::new(program)
        .args(["run", &format!("{base}/api/openapi.json")])
        .args(["--checks", "not_a_server_error"])
        .args(headers.iter().flat_map(|h| ["--header", h.as_str()]))
        .args(filter)
        .args(["--max-examples", &max_examples()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--report", "har"])
        .arg("--report-har-path")
        .arg(&har)
        .arg("--report-dir")
        .arg(dir)
        .arg("--no-color")
        .current_dir(dir)
        .output()
        .map_err(|e| format!("could not run {}: {e}; {INSTALL}", program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "schemathesis ({name}) took {:.1} s\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    if !output.status.success() {
        return Err(format!(
            "schemathesis ({name}) found problems (exit {:?}); report: {}\n{stdout}\n{stderr}",
            output.status.code(),
            har.display()
        )
        .into());
    }
    Ok(har)
}

/// The administrator's session cookie (`name=value`) and its CSRF token, by logging in.
async fn admin_session(app: &TestApp) -> TestResult<(String, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = client
        .post(app.url("/login"))
        .form(&[("username", "admin"), ("password", support::PASSWORD)])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("tracseq_session="))
        .and_then(|v| v.split(';').next())
        .ok_or("no session cookie")?
        .to_owned();
    let page = client
        .get(app.url("/account"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?
        .text()
        .await?;
    let csrf = support::csrf_in(&page).ok_or("no CSRF token on the account page")?;
    Ok((cookie, csrf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_never_answers_a_server_error_and_refusals_append_nothing() -> TestResult {
    let program = schemathesis()
        .map_err(|message| -> Box<dyn std::error::Error + Send + Sync> { message.into() })?;
    // Fuzzed signatures try passwords from 127.0.0.1; the administrator's login after
    // them must not find the address locked.
    let app = TestApp::spawn_with(&[("TRACSEQ_LOGIN_ADDRESS_FAILURES", "100000")]).await?;
    // The highest role a token can have: everything but administration.
    let token = app
        .token("schemathesis", lab::accounts::Role::LabManager)
        .await?;

    // A couple of samples so that lists and histories are not empty.
    for barcode in ["ST-0001", "ST-0002"] {
        let response = app
            .client
            .post(app.url("/api/samples"))
            .json(&json!({
                "barcode": barcode, "sample_type": "DNA", "volume_ul": 10,
                "temperature_zone": "MINUS_80"
            }))
            .send()
            .await?;
        assert_eq!(response.status(), 201, "{}", response.text().await?);
    }
    let before: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&app.pool)
        .await?;

    let dir = std::env::temp_dir().join(format!("tracseq-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let everything_else = tokio::task::block_in_place(|| {
        run(
            &program,
            &app.base,
            &[format!("Authorization: Bearer {token}")],
            &dir,
            "main",
            &[],
        )
    })?;
    // Administration needs a person: the token operations are fuzzed again by an
    // administrator's browser session (its cookie and CSRF token), which revoking tokens
    // cannot end.
    let (cookie, csrf) = admin_session(&app).await?;
    let revoking = tokio::task::block_in_place(|| {
        run(
            &program,
            &app.base,
            &[format!("Cookie: {cookie}"), format!("X-CSRF-Token: {csrf}")],
            &dir,
            "admin",
            &["--include-path-regex", "^/api/tokens"],
        )
    })?;
    println!(
        "schemathesis took {:.1} s in all",
        started.elapsed().as_secs_f64()
    );

    let mut announced = BTreeSet::new();
    let (mut requests, mut successes) = (0, 0);
    for har in [&everything_else, &revoking] {
        let har: Value = serde_json::from_slice(&std::fs::read(har)?)?;
        let (ids, sent, succeeded) = announced_command_ids(&har);
        announced.extend(ids);
        requests += sent;
        successes += succeeded;
    }
    assert!(requests > 100, "schemathesis sent only {requests} requests");
    assert!(
        !announced.is_empty(),
        "no command succeeded: the run exercised only refusals ({successes} 2xx of {requests})"
    );
    let appended = appended_command_ids(&app, before).await?;
    let unannounced: Vec<_> = appended
        .iter()
        .filter(|(_, id)| !announced.contains(id))
        .collect();
    println!(
        "{requests} requests, {successes} answered 2xx, {} commands announced, {} events appended",
        announced.len(),
        appended.len()
    );
    assert!(
        unannounced.is_empty(),
        "events appended by requests that were not answered with success (position, command id): {unannounced:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
