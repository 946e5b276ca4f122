//! A small fuzzer for every state-changing form and JSON command: long, empty, unicode,
//! control characters, HTML and SQL fragments, negative and huge numbers, malformed ids.
//! The forms are posted by a person logged in through the login form, with the session
//! cookie and its CSRF token (so the real CSRF path is exercised, and forged tokens are
//! tried too); the JSON commands are sent with an API token.
//!
//! Every answer must be below 500 and say something; a refused request (4xx) must append
//! no event; and whatever a page shows back (a re-shown form, an error, the timeline after
//! a success) must be HTML-escaped. The inputs are a fixed list plus a seeded generator,
//! so a failure repeats exactly; every problem is collected and reported together.

mod support;

use lab::accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Session, TestResult};
use uuid::Uuid;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct TestApp {
    app: support::TestApp,
    /// The administrator, logged in through the login form: forms are posted with its
    /// session cookie and CSRF token.
    session: Session,
    /// Everything that broke a rule, reported at the end.
    findings: Vec<String>,
    /// Requests sent, to show the run was not vacuous.
    sent: usize,
    /// How many hostile inputs were echoed back (escaped) in a page.
    echoed: usize,
    /// How often each status was answered.
    statuses: std::collections::BTreeMap<u16, usize>,
    serial: u64,
}

impl TestApp {
    async fn spawn() -> Result<Self, AnyError> {
        let app = support::TestApp::spawn().await?;
        let session = app.login("admin", support::PASSWORD).await?;
        Ok(Self {
            app,
            session,
            findings: Vec::new(),
            sent: 0,
            echoed: 0,
            statuses: std::collections::BTreeMap::new(),
            serial: 0,
        })
    }

    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// The API client (an administrator's token).
    fn api(&self) -> &reqwest::Client {
        &self.app.client
    }

    /// A form posted by the logged-in administrator.
    fn form(&self, path: &str, fields: &[(&str, String)]) -> reqwest::RequestBuilder {
        form(&self.session, path, fields)
    }

    fn next(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    async fn events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.app.pool)
            .await
    }

    /// Sends `request` and checks the rules. Returns the status and, for a redirect after
    /// success, where it leads.
    async fn check(
        &mut self,
        what: &str,
        input: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Option<String>), AnyError> {
        let before = self.events().await?;
        let response = request.send().await?;
        self.sent += 1;
        let status = response.status();
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        // Read as bytes: a path of the site may hold UTF-8 (the login form's `next`).
        let location = response
            .headers()
            .get("location")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let html = is_html(&response);
        let body = response.text().await?;
        let after = self.events().await?;
        let what = format!("{what} [input {:?}]", shorten(input));
        if status.is_server_error() {
            self.findings
                .push(format!("{what}: {status}: {}", shorten(&body)));
        }
        if status.is_client_error() || status.is_server_error() {
            if after != before {
                self.findings.push(format!(
                    "{what}: refused with {status} but appended {} event(s)",
                    after - before
                ));
            }
            if body.trim().is_empty() {
                self.findings
                    .push(format!("{what}: {status} without a message"));
            }
        }
        if html {
            self.check_escaped(&what, input, &body);
        }
        Ok((status, location))
    }

    /// Follows a success to the page it leads to, which shows what was entered.
    async fn follow(&mut self, what: &str, input: &str, location: &str) -> Result<(), AnyError> {
        let response = self.session.client.get(self.url(location)).send().await?;
        self.sent += 1;
        let status = response.status();
        let body = response.text().await?;
        if status != StatusCode::OK {
            self.findings.push(format!(
                "{what} [input {:?}]: the page after success ({location}) is {status}",
                shorten(input)
            ));
        }
        self.check_escaped(&format!("{what} → {location}"), input, &body);
        Ok(())
    }

    fn check_escaped(&mut self, what: &str, input: &str, body: &str) {
        if body.to_ascii_lowercase().contains("<script") {
            self.findings
                .push(format!("{what}: a <script> tag in the page"));
        }
        let shown = input.trim();
        // Long enough that the page could not contain it by chance (`<t` is in `<title>`).
        let markup = shown.contains('<') && shown.chars().count() >= 6;
        if markup && body.contains(shown) {
            self.findings
                .push(format!("{what}: the input is shown unescaped"));
        }
        if markup && body.contains(&escape(shown)) {
            self.echoed += 1;
        }
    }

    /// A sample made through the API and read back, so its page exists; received when asked.
    async fn sample(&mut self, received: bool) -> Result<Uuid, AnyError> {
        let n = self.next();
        let created: Value = self
            .api()
            .post(self.url("/api/samples"))
            .header("Prefer", "return=representation")
            .json(&json!({"barcode": format!("FZS-{n}"), "sample_type": "dna", "volume_ul": 10, "temperature_zone": "-80"}))
            .send()
            .await?
            .json()
            .await?;
        let id: Uuid = created["sample_id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("no sample id in {created}: {e}"))?;
        if received {
            let response = self
                .api()
                .post(self.url(&format!("/api/samples/{id}/receive")))
                .header("Prefer", "return=representation")
                .json(&json!({}))
                .send()
                .await?;
            if response.status() != StatusCode::OK {
                return Err(format!("receive answered {}", response.status()).into());
            }
        }
        Ok(id)
    }

    /// How many answers had `status`: a run where nothing succeeded proves nothing about
    /// the inputs that should.
    fn answered(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or_default()
    }

    fn report(&self) -> TestResult {
        eprintln!(
            "{} requests (by status {:?}), {} hostile inputs seen escaped in a page, {} problem(s)",
            self.sent,
            self.statuses,
            self.echoed,
            self.findings.len()
        );
        if self.findings.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = self.findings.iter().take(40).map(String::as_str).collect();
        Err(format!(
            "{} problem(s) in {} requests:\n{}",
            self.findings.len(),
            self.sent,
            shown.join("\n")
        )
        .into())
    }
}

/// A form posted with `session`'s cookie, and its CSRF token unless `fields` has one.
fn form(session: &Session, path: &str, fields: &[(&str, String)]) -> reqwest::RequestBuilder {
    let mut all = fields.to_vec();
    if !all.iter().any(|(name, _)| *name == "csrf_token") {
        all.push(("csrf_token", session.csrf.clone()));
    }
    session.client.post(session.url(path)).form(&all)
}

fn is_html(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 80 {
        format!(
            "{}… ({} chars)",
            text.chars().take(60).collect::<String>(),
            text.chars().count()
        )
    } else {
        text.to_owned()
    }
}

/// How a page shows text (askama's HTML escaping).
fn escape(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Every byte but the unreserved ones percent-encoded, for a path segment or query value;
/// cut to 2,000 characters first, as a URL is limited to 64 KiB.
fn segment(raw: &str) -> String {
    let raw: String = raw.chars().take(2_000).collect();
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The fixed list: each kind of hostile value at least once.
fn fixed_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        " ",
        "\t\n",
        // Unicode: right-to-left, an override, emoji, combining marks, zero-width, BOM.
        "שלום עולם",
        "مرحبا",
        "\u{202E}gnp.exe\u{202C}",
        "🧪🧬💉👩🏽‍🔬",
        "e\u{301}\u{301}\u{301}\u{301}",
        "Z\u{337}\u{322}\u{349}a\u{338}\u{34d}l\u{335}g\u{336}o",
        "\u{200b}\u{200d}\u{feff}",
        "ＬＡＢ－００１",
        "\u{fffd}",
        // Control characters.
        "\0",
        "a\0b",
        "\r\n\r\n",
        "\u{1b}[31mred",
        "\u{7f}",
        "\u{85}\u{2028}\u{2029}",
        // Markup.
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "' onmouseover='alert(1)",
        "</textarea><script>alert(1)</script>",
        "<svg/onload=alert(1)>",
        "javascript:alert(1)",
        "&amp;&lt;&#x3c;",
        "{{ 7*7 }}{% if true %}",
        // SQL.
        "' OR '1'='1",
        "'; DROP TABLE events; --",
        "1; SELECT pg_sleep(10)",
        "\\'\\\"\\\\",
        "%00%27%22",
        // Numbers.
        "0",
        "-0",
        "-1",
        "-0.001",
        "0.0001",
        "1e3",
        "1e308",
        "1e309",
        "NaN",
        "inf",
        "-inf",
        "1,5",
        "１２",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999999999999",
        "1000000",
        "1000000.001",
        // Ids.
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "0189abcd-0000-7000-8000-00000000000g",
        "{0189abcd-0000-7000-8000-000000000000}",
        "urn:uuid:0189abcd-0000-7000-8000-000000000000",
        "../../etc/passwd",
        // Dates.
        "2026-02-30T09:30",
        "9999-12-31T23:59",
        "0000-01-01T00:00:00Z",
        "-200000-01-01T00:00:00Z",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    values.push("a".repeat(10_000));
    values.push("é".repeat(10_000));
    values.push("<b>".repeat(3_000));
    values.push("9".repeat(10_000));
    values
}

/// SplitMix64: small, seeded, the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A string of pieces drawn from hostile alphabets and fragments.
    fn hostile(&mut self) -> String {
        const FRAGMENTS: [&str; 12] = [
            "<", ">", "\"", "'", "&", "<script>", "--", ";", "%", "\\", "{{", "/*",
        ];
        let length = match self.below(10) {
            0 => 0,
            1 => 200 + self.below(5_000),
            _ => 1 + self.below(40),
        };
        let mut text = String::new();
        for _ in 0..length {
            let c = match self.below(8) {
                0 => char::from_u32(self.below(0x20) as u32),
                1 => Some(
                    FRAGMENTS[self.below(FRAGMENTS.len())]
                        .chars()
                        .next()
                        .unwrap_or('<'),
                ),
                2 => char::from_u32(0x0590 + self.below(0x100) as u32),
                3 => char::from_u32(0x0300 + self.below(0x70) as u32),
                4 => char::from_u32(0x1f300 + self.below(0x300) as u32),
                5 => char::from_u32(self.below(0x11_0000) as u32),
                6 => Some((b'0' + self.below(10) as u8) as char),
                _ => Some((b' ' + self.below(95) as u8) as char),
            };
            if self.below(20) == 0 {
                text.push_str(FRAGMENTS[self.below(FRAGMENTS.len())]);
            }
            text.extend(c);
        }
        text
    }
}

fn values() -> Vec<String> {
    let mut values = fixed_values();
    let mut rng = Rng(0x007a_c5e9_2026);
    values.extend((0..40).map(|_| rng.hostile()));
    values
}

const REGISTER_FIELDS: [&str; 8] = [
    "barcode",
    "sample_type",
    "volume_ul",
    "temperature_zone",
    "patient",
    "collected_at",
    "collected_by",
    "command_id",
];

fn valid_registration(n: u64) -> Vec<(&'static str, String)> {
    vec![
        ("barcode", format!("FZ-{n}")),
        ("sample_type", "DNA".into()),
        ("volume_ul", "10".into()),
        ("temperature_zone", "MINUS_80".into()),
        ("patient", "MRN-1".into()),
        ("collected_at", String::new()),
        ("collected_by", String::new()),
        ("command_id", Uuid::now_v7().to_string()),
    ]
}

#[tokio::test]
async fn the_registration_form_survives_hostile_input() -> TestResult {
    let mut app = TestApp::spawn().await?;
    let values = values();
    for field in REGISTER_FIELDS {
        for value in &values {
            let n = app.next();
            let mut form = valid_registration(n);
            for (name, slot) in &mut form {
                if *name == field {
                    *slot = value.clone();
                }
            }
            let what = format!("POST /samples {field}");
            let request = app.form("/samples", &form);
            let (status, location) = app.check(&what, value, request).await?;
            if status == StatusCode::SEE_OTHER
                && let Some(location) = location
            {
                app.follow(&what, value, &location).await?;
            }
        }
    }
    // Forms with every field hostile at once.
    let mut rng = Rng(42);
    for _ in 0..120 {
        let form: Vec<(&str, String)> = REGISTER_FIELDS
            .iter()
            .map(|field| (*field, rng.hostile()))
            .collect();
        let input = form
            .iter()
            .map(|(_, v)| v.as_str())
            .find(|v| v.contains('<'))
            .unwrap_or_default()
            .to_owned();
        let request = app.form("/samples", &form);
        let (status, location) = app
            .check("POST /samples (all hostile)", &input, request)
            .await?;
        if status == StatusCode::SEE_OTHER
            && let Some(location) = location
        {
            app.follow("POST /samples (all hostile)", &input, &location)
                .await?;
        }
    }
    // Bodies a browser would not send: with the CSRF token (first, last, or twice), and
    // without it.
    let csrf = format!("csrf_token={}", app.session.csrf);
    for body in [
        "".to_owned(),
        csrf.clone(),
        format!("barcode=a&barcode=b&{csrf}"),
        format!("unknown=1&{csrf}"),
        format!("{csrf}&barcode=%zz&patient=%"),
        format!("barcode=%FF%FE%00&{csrf}"),
        format!("=&&=&barcode&{csrf}"),
        format!("{csrf}&{csrf}&barcode=X"),
        format!("{csrf}&csrf_token=forged&barcode=X"),
        format!("patient={}&{csrf}", "%3Cscript%3E".repeat(1000)),
        "barcode=%zz&patient=%".to_owned(),
        "patient=".to_owned() + &"%3Cscript%3E".repeat(1000),
    ] {
        let request = app
            .session
            .client
            .post(app.url("/samples"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        app.check("POST /samples raw body", &body, request).await?;
    }
    for csrf_header in [Some(app.session.csrf.clone()), None] {
        let mut request = app
            .session
            .client
            .post(app.url("/samples"))
            .header("content-type", "application/json")
            .body("{\"barcode\": \"X\"}");
        if let Some(token) = csrf_header {
            request = request.header("x-csrf-token", token);
        }
        app.check("POST /samples as JSON", "", request).await?;
    }

    // The check is not vacuous: the form re-shows markup that was typed, escaped.
    assert!(app.echoed > 20, "only {} escaped echoes seen", app.echoed);
    assert!(app.sent > 900, "{} requests", app.sent);
    assert!(
        app.answered(303) > 100,
        "too few successes: {:?}",
        app.statuses
    );
    app.report()
}

#[tokio::test]
async fn the_action_forms_survive_hostile_input() -> TestResult {
    let mut app = TestApp::spawn().await?;
    // Wrong signature passwords are throttled per person: the signature's password is
    // fuzzed by a lab manager of its own, so the administrator can still sign after.
    let signer = app.app.session("quinn", Role::LabManager).await?;
    let values = values();
    let mut registered = None;
    let mut received = None;
    let fields = [
        "notes",
        "reason",
        "expected_version",
        "command_id",
        "meaning",
        "csrf_token",
        "password",
    ];
    for (i, field) in fields.iter().enumerate() {
        for (j, value) in values.iter().enumerate() {
            // The text fields go to the actions that record them (and show them in the
            // timeline); the others to each action in turn.
            let action = match *field {
                "notes" => ["receive", "validate"][j % 2],
                "reason" => "reject",
                _ => ["receive", "validate", "reject"][(i + j) % 3],
            };
            let current = if action == "validate" {
                received
            } else {
                registered
            };
            let id = match current {
                Some(id) => id,
                None => {
                    let id = app.sample(action == "validate").await?;
                    if action == "validate" {
                        received = Some(id);
                    } else {
                        registered = Some(id);
                    }
                    id
                }
            };
            let mut form = vec![
                ("notes", String::new()),
                ("reason", "damaged tube".to_owned()),
                ("expected_version", String::new()),
                ("command_id", Uuid::now_v7().to_string()),
                ("password", support::PASSWORD.to_owned()),
                ("meaning", "approved".to_owned()),
                ("csrf_token", app.session.csrf.clone()),
            ];
            let by = if *field == "password" {
                form.retain(|(name, _)| *name != "csrf_token");
                &signer
            } else {
                &app.session
            };
            for (name, slot) in &mut form {
                if name == field {
                    *slot = value.clone();
                }
            }
            let what = format!("POST /samples/{{id}}/{action} {field}");
            let request = self::form(by, &format!("/samples/{id}/{action}"), &form);
            let (status, location) = app.check(&what, value, request).await?;
            if *field == "csrf_token" && !status.is_client_error() {
                app.findings
                    .push(format!("{what} [a forged CSRF token]: answered {status}"));
            }
            if status == StatusCode::SEE_OTHER {
                if action == "validate" {
                    received = None;
                } else {
                    registered = None;
                }
                if let Some(location) = location {
                    app.follow(&what, value, &location).await?;
                }
            }
        }
    }
    // Hostile ids and actions in the path.
    let id = app.sample(false).await?;
    for value in &values {
        let request = app.form(
            &format!("/samples/{}/receive", segment(value)),
            &[("notes", "fuzz".to_owned())],
        );
        app.check("POST /samples/{hostile id}/receive", value, request)
            .await?;
        let request = app.form(
            &format!("/samples/{id}/{}", segment(value)),
            &[("notes", "fuzz".to_owned())],
        );
        app.check("POST /samples/{id}/{hostile action}", value, request)
            .await?;
        let request = app.form(&format!("/dead-letters/{}/reprocess", segment(value)), &[]);
        app.check("POST /dead-letters/{hostile}/reprocess", value, request)
            .await?;
    }
    // Only the notes and the reason are shown back (in the timeline, after a success):
    // each markup value typed into them must be seen there, escaped.
    assert!(app.echoed >= 8, "only {} escaped echoes seen", app.echoed);
    assert!(
        app.answered(303) > 100,
        "too few successes: {:?}",
        app.statuses
    );
    assert!(
        app.answered(403) > 50,
        "forged CSRF tokens were not refused: {:?}",
        app.statuses
    );
    app.report()
}

#[tokio::test]
async fn the_json_commands_survive_hostile_input() -> TestResult {
    let mut app = TestApp::spawn().await?;
    let values = values();
    let base = |n: u64| json!({"barcode": format!("FZJ-{n}"), "sample_type": "dna", "volume_ul": 10, "temperature_zone": "-80"});
    let mut typed: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    typed.extend([
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(5e-324),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(12.3456),
        json!([]),
        json!(["10"]),
        json!({}),
        json!({"$gt": ""}),
    ]);
    for field in [
        "barcode",
        "sample_type",
        "volume_ul",
        "temperature_zone",
        "patient",
        "collected_at",
        "collected_by",
        "unknown_field",
    ] {
        for value in &typed {
            let n = app.next();
            let mut body = base(n);
            body[field] = value.clone();
            let input = value.as_str().unwrap_or_default().to_owned();
            let request = app.api().post(app.url("/api/samples")).json(&body);
            app.check(&format!("POST /api/samples {field}"), &input, request)
                .await?;
        }
    }
    // Headers: the idempotency key, and the trace the command joins.
    for header in [
        "idempotency-key",
        "x-correlation-id",
        "traceparent",
        "tracestate",
    ] {
        for value in &values {
            let Ok(header_value) = reqwest::header::HeaderValue::from_str(value) else {
                continue;
            };
            let n = app.next();
            let request = app
                .api()
                .post(app.url("/api/samples"))
                .header(header, header_value)
                .json(&base(n));
            app.check(&format!("POST /api/samples {header}"), value, request)
                .await?;
        }
    }
    // Numbers JSON itself cannot hold in a double or a u64, and bodies that are not objects.
    let mut raw_bodies: Vec<Vec<u8>> = [
        r#"{"sample_type":"dna","temperature_zone":"-80","volume_ul":184467440737095516160000}"#,
        r#"{"sample_type":"dna","temperature_zone":"-80","volume_ul":1e400}"#,
        r#"{"sample_type":"dna","temperature_zone":"-80","volume_ul":-1e400}"#,
        r#"{"sample_type":"dna","sample_type":"rna","temperature_zone":"-80","volume_ul":1}"#,
        "",
        "{",
        "[]",
        "null",
        "1",
        "\"x\"",
        "\u{feff}{}",
        "{\"barcode\": \"\\ud800\"}",
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    raw_bodies.push(b"{\"barcode\": \"\xff\xfe\"}".to_vec());
    raw_bodies.push("[".repeat(10_000).into_bytes());
    raw_bodies.push(format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes());
    for body in &raw_bodies {
        let request = app
            .api()
            .post(app.url("/api/samples"))
            .header("content-type", "application/json")
            .body(body.clone());
        let input = String::from_utf8_lossy(body).into_owned();
        app.check("POST /api/samples raw body", &input, request)
            .await?;
    }

    // Actions: the text, the expected version, the body, the path.
    let mut registered = None;
    for key in ["notes", "reason", "expected_version"] {
        for (j, value) in typed.iter().enumerate() {
            let action = ["receive", "reject"][j % 2];
            let id = match registered {
                Some(id) => id,
                None => {
                    let id = app.sample(false).await?;
                    registered = Some(id);
                    id
                }
            };
            let mut body = json!({ key: value });
            if action == "reject" {
                // A QC decision sent with an API token is signed by a person.
                body["signer"] = json!("admin");
                body["password"] = json!(support::PASSWORD);
                body["meaning"] = json!("approved");
            }
            let request = app
                .api()
                .post(app.url(&format!("/api/samples/{id}/{action}")))
                .json(&body);
            let input = value.as_str().unwrap_or_default().to_owned();
            let (status, _) = app
                .check(
                    &format!("POST /api/samples/{{id}}/{action} {key}"),
                    &input,
                    request,
                )
                .await?;
            if status.is_success() {
                registered = None;
            }
        }
    }
    let id = app.sample(false).await?;
    for body in &raw_bodies {
        let request = app
            .api()
            .post(app.url(&format!("/api/samples/{id}/reject")))
            .header("content-type", "application/json")
            .body(body.clone());
        let input = String::from_utf8_lossy(body).into_owned();
        app.check("POST /api/samples/{id}/reject raw body", &input, request)
            .await?;
    }
    for value in &values {
        for (method, path) in [
            (
                Method::POST,
                format!("/api/samples/{}/receive", segment(value)),
            ),
            (
                Method::POST,
                format!("/api/samples/{id}/{}", segment(value)),
            ),
            (
                Method::POST,
                format!("/api/dead-letters/{}/reprocess", segment(value)),
            ),
            (
                Method::POST,
                format!("/api/outbox/parked/{}/retry", segment(value)),
            ),
            (Method::GET, format!("/api/samples/{}", segment(value))),
            (
                Method::GET,
                format!(
                    "/api/samples?q={}&status={}&page={}&per_page={}",
                    segment(value),
                    segment(value),
                    segment(value),
                    segment(value)
                ),
            ),
            (
                Method::GET,
                format!(
                    "/samples?q={}&status={}&page={}",
                    segment(value),
                    segment(value),
                    segment(value)
                ),
            ),
        ] {
            let request = app.api().request(method, app.url(&path)).json(&json!({}));
            app.check(&path, value, request).await?;
        }
    }
    // Last, the electronic signature of a QC decision: wrong signers and passwords are
    // throttled like logins (per account and per address), so nothing after this may
    // need a signature.
    let mut received = None;
    for key in ["meaning", "signer", "password"] {
        for value in &typed {
            let id = match received {
                Some(id) => id,
                None => {
                    let id = app.sample(true).await?;
                    received = Some(id);
                    id
                }
            };
            let mut body =
                json!({"signer": "admin", "password": support::PASSWORD, "meaning": "approved"});
            body[key] = value.clone();
            let request = app
                .api()
                .post(app.url(&format!("/api/samples/{id}/validate")))
                .json(&body);
            let input = value.as_str().unwrap_or_default().to_owned();
            let (status, _) = app
                .check(
                    &format!("POST /api/samples/{{id}}/validate {key}"),
                    &input,
                    request,
                )
                .await?;
            if status.is_success() {
                received = None;
            }
        }
    }
    assert!(app.sent > 1500, "{} requests", app.sent);
    assert!(
        app.answered(201) > 100,
        "too few successes: {:?}",
        app.statuses
    );
    app.report()
}

/// The forms of one's own account, of the administrator, and the login form.
#[tokio::test]
async fn the_account_admin_and_login_forms_survive_hostile_input() -> TestResult {
    let mut app = TestApp::spawn().await?;
    let values = values();
    // Every session this test needs is opened now: fuzzing the login form below trips
    // the login throttle (per account and per address), after which no one logs in.
    let pat = app.app.session("pat", Role::Technician).await?;

    // Creating an account.
    let user_fields = ["username", "display_name", "role", "password"];
    for field in user_fields {
        for value in &values {
            let n = app.next();
            let mut form = vec![
                ("username", format!("fuzz{n}")),
                ("display_name", format!("Fuzz {n}")),
                ("role", "technician".to_owned()),
                ("password", format!("Fuzzed password {n} ok")),
            ];
            for (name, slot) in &mut form {
                if *name == field {
                    *slot = value.clone();
                }
            }
            let request = app.form("/admin/users", &form);
            app.check(&format!("POST /admin/users {field}"), value, request)
                .await?;
        }
    }
    // Creating an API token.
    for field in ["name", "role"] {
        for value in &values {
            let n = app.next();
            let mut form = vec![
                ("name", format!("fuzz token {n}")),
                ("role", "viewer".to_owned()),
            ];
            for (name, slot) in &mut form {
                if *name == field {
                    *slot = value.clone();
                }
            }
            let request = app.form("/admin/tokens", &form);
            app.check(&format!("POST /admin/tokens {field}"), value, request)
                .await?;
        }
    }
    // Changing one's password (never successfully: that would end the session). The
    // two new passwords differ unless the current one is what is fuzzed.
    let new_password = "a new password for pat".to_owned();
    for field in ["new_password", "confirm_password", "current_password"] {
        for value in &values {
            let mut form = vec![
                ("current_password", support::PASSWORD.to_owned()),
                ("new_password", new_password.clone()),
                ("confirm_password", new_password.clone()),
            ];
            for (name, slot) in &mut form {
                if *name == field {
                    *slot = value.clone();
                }
            }
            let request = self::form(&pat, "/account/password", &form);
            let what = format!("POST /account/password {field}");
            let (status, _) = app.check(&what, value, request).await?;
            if !status.is_client_error() {
                app.findings.push(format!(
                    "{what} [input {:?}]: answered {status}",
                    shorten(value)
                ));
            }
        }
    }
    // Logging in, with a client of its own (no session, so no CSRF token): first where
    // to go next with the right password (each a success), then wrong usernames and
    // passwords, which end in the throttle's 429.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login_url = app.url("/login");
    let login = |fields: &[(&str, String)]| browser.post(&login_url).form(fields);
    for value in &values {
        for next in [value.clone(), format!("/{value}")] {
            let request = login(&[
                ("username", "admin".to_owned()),
                ("password", support::PASSWORD.to_owned()),
                ("next", next.clone()),
            ]);
            let (status, location) = app.check("POST /login next", &next, request).await?;
            let location = location.unwrap_or_default();
            if status == StatusCode::SEE_OTHER
                && (!location.starts_with('/') || location.starts_with("//"))
            {
                app.findings.push(format!(
                    "POST /login next [input {:?}]: leads off the site, to {location:?}",
                    shorten(&next)
                ));
            }
        }
    }
    for field in ["username", "password"] {
        for value in &values {
            let mut form = vec![
                ("username", "admin".to_owned()),
                ("password", support::PASSWORD.to_owned()),
                ("next", "/samples".to_owned()),
            ];
            for (name, slot) in &mut form {
                if *name == field {
                    *slot = value.clone();
                }
            }
            let request = login(&form);
            app.check(&format!("POST /login {field}"), value, request)
                .await?;
        }
    }
    let mut rng = Rng(7);
    for _ in 0..40 {
        let form: Vec<(&str, String)> = ["username", "password", "next"]
            .into_iter()
            .map(|field| (field, rng.hostile()))
            .collect();
        let input = form
            .iter()
            .map(|(_, v)| v.as_str())
            .find(|v| v.contains('<'))
            .unwrap_or_default()
            .to_owned();
        let request = login(&form);
        app.check("POST /login (all hostile)", &input, request)
            .await?;
    }

    assert!(app.echoed > 10, "only {} escaped echoes seen", app.echoed);
    assert!(
        app.answered(429) > 0,
        "the login throttle never answered: {:?}",
        app.statuses
    );
    assert!(
        app.answered(201) + app.answered(303) > 100,
        "too few successes: {:?}",
        app.statuses
    );
    app.report()
}
