//! The UI in a real headless Chromium, driven over WebDriver (chromedriver).
//!
//! `./deploy-phase7.sh test` installs Chromium and ChromeDriver when they are missing;
//! run directly, the test fails with a message saying what to install.

mod support;

use lab::accounts::Role;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{TestApp, TestResult};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const ENTER: &str = "\u{E007}";

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_driver() -> Result<Driver, BoxError> {
    let port = free_port()?;
    let child =
        Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start chromedriver ({e}); install chromium and chromium-driver")
            })?;
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.base)).await
            && r.status().is_success()
        {
            return Ok(driver);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("chromedriver did not become ready".into())
}

/// A browser session: the few WebDriver calls the tests need.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &Driver) -> Result<Self, BoxError> {
        let http = reqwest::Client::new();
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile =
            std::env::temp_dir().join(format!("tracseq-chromium-{}", uuid::Uuid::new_v4()));
        // Elements are looked up with an implicit wait: after a click that submits a
        // form, the next page may still be loading on a busy machine.
        let body = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"implicit": 5000},
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let created: Value = http
            .post(format!("{}/session", driver.base))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let session = created["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no browser session: {created}"))?;
        Ok(Self {
            http,
            session: format!("{}/session/{session}", driver.base),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BoxError> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if answer["value"].get("error").is_some() {
            return Err(format!("webdriver {path}: {}", answer["value"]).into());
        }
        Ok(answer["value"].clone())
    }

    async fn goto(&self, url: &str) -> Result<(), BoxError> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    async fn url(&self) -> Result<String, BoxError> {
        Ok(self
            .call(reqwest::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn find(&self, css: &str) -> Result<String, BoxError> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found[ELEMENT].as_str().ok_or("no element id")?.to_owned())
    }

    async fn type_into(&self, css: &str, text: &str) -> Result<(), BoxError> {
        let id = self.find(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    async fn click(&self, css: &str) -> Result<(), BoxError> {
        let id = self.find(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    async fn text(&self, css: &str) -> Result<String, BoxError> {
        let id = self.find(css).await?;
        Ok(self
            .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The computed value of a CSS property of the first element matching `css`.
    async fn css_value(&self, css: &str, property: &str) -> Result<String, BoxError> {
        let id = self.find(css).await?;
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/element/{id}/css/{property}"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn focused_id(&self) -> Result<String, BoxError> {
        let active = self
            .call(reqwest::Method::GET, "/element/active", None)
            .await?;
        let id = active[ELEMENT].as_str().ok_or("nothing focused")?;
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/element/{id}/attribute/id"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits (up to 5 s) for a sample's page, `/samples/{uuid}[?v=N]`: a click that
    /// submits a form returns before the next page has loaded. Returns its URL without
    /// the query.
    async fn wait_for_sample_page(&self) -> Result<String, BoxError> {
        for _ in 0..100 {
            let url = self.url().await?;
            let path = url.split_once('?').map_or(url.as_str(), |(p, _)| p);
            if path
                .rsplit_once("/samples/")
                .is_some_and(|(_, id)| uuid::Uuid::parse_str(id).is_ok())
            {
                return Ok(path.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the sample's page did not open".into())
    }

    /// Waits (up to 5 s) for `css` to show exactly `expected`.
    async fn wait_for_text(&self, css: &str, expected: &str) -> Result<(), BoxError> {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(text) = self.text(css).await {
                if text == expected {
                    return Ok(());
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{css} shows {last:?}, expected {expected:?}").into())
    }

    /// Saves what the browser shows to `target/browser-screenshots/<name>.png`, for a
    /// failed run to be looked at.
    async fn screenshot(&self, name: &str) {
        let Ok(shot) = self.call(reqwest::Method::GET, "/screenshot", None).await else {
            return;
        };
        let Some(data) = shot.as_str() else { return };
        use base64::Engine;
        if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data) {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/browser-screenshots");
            if std::fs::create_dir_all(&dir).is_ok() {
                let path = dir.join(format!("{name}.png"));
                if std::fs::write(&path, png).is_ok() {
                    eprintln!("screenshot of the failure: {}", path.display());
                }
            }
        }
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_technician_registers_scans_receives_and_rejects_a_tube() -> TestResult {
    let app = TestApp::spawn().await?;
    // A lab manager, so that the same person may also sign the rejection.
    app.user("dana", Role::LabManager).await?;
    let base = app.base.clone();
    let driver = start_driver().await?;
    let browser = Browser::open(&driver).await?;
    let result = scenario(&browser, &base).await;
    if result.is_err() {
        browser
            .screenshot("registers_scans_receives_and_rejects")
            .await;
    }
    browser.close().await;
    result
}

async fn scenario(b: &Browser, base: &str) -> TestResult {
    // Every page needs a login: asking for one leads to the login page.
    b.goto(&format!("{base}/samples")).await?;
    wait_for_path(b, "/login").await?;
    assert_eq!(
        b.focused_id().await?,
        "username",
        "the login form takes the username first"
    );
    b.type_into("#username", "dana").await?;
    b.type_into("#password", support::PASSWORD).await?;
    b.click("#login").await?;
    wait_for_path(b, "/samples").await?;
    b.wait_for_text("#me", "dana (lab_manager)").await?;

    // The stylesheet loads under the Content-Security-Policy (styles live in
    // /static/app.css, none inline): the header is laid out as a row, and the notice
    // of a search that found nothing keeps its spacing.
    b.goto(&format!("{base}/samples?q=NOTHING-LIKE-IT")).await?;
    assert_eq!(b.css_value("header", "display").await?, "flex");
    assert_eq!(
        b.css_value(".banner.info.gap-above", "margin-top").await?,
        "16px",
        "1rem"
    );

    // A mistake first: the form says what is wrong beside the field and keeps the input.
    b.goto(&format!("{base}/samples/new")).await?;
    assert_eq!(
        b.focused_id().await?,
        "barcode",
        "the barcode field takes the scanner's input"
    );
    b.type_into("#barcode", "ward7-0042").await?;
    b.click("#sample_type option[value=PLASMA]").await?;
    b.type_into("#volume_ul", "-3").await?;
    b.click("#temperature_zone option[value=MINUS_80]").await?;
    // By its id: the header's "Log out" is a submit button too.
    b.click("#register").await?;
    assert!(
        b.text("#volume_ul-error")
            .await?
            .contains("greater than zero")
    );

    // Fix it and register.
    let volume = b.find("#volume_ul").await?;
    b.call(
        reqwest::Method::POST,
        &format!("/element/{volume}/clear"),
        Some(json!({})),
    )
    .await?;
    b.type_into("#volume_ul", "450").await?;
    b.click("#register").await?;
    b.wait_for_sample_page().await?;
    b.wait_for_text("#status", "registered").await?;
    let timeline = b.text("#timeline").await?;
    assert!(
        timeline.contains("Registered") && timeline.contains("dana (lab_manager)"),
        "{timeline}"
    );

    // Scan the barcode at the list: Enter jumps to the tube.
    b.goto(&format!("{base}/samples")).await?;
    assert_eq!(b.focused_id().await?, "q");
    b.type_into("#q", &format!("WARD7-0042{ENTER}")).await?;
    b.wait_for_sample_page().await?;
    b.wait_for_text("h1 .mono", "WARD7-0042").await?;

    // Receive, then reject with a reason, signed: the password again, and its meaning.
    b.type_into("#receive-notes", "arrived on dry ice").await?;
    b.click("#receive").await?;
    b.wait_for_text("#status", "received").await?;
    b.type_into("#reject-reason", "haemolysed").await?;
    b.type_into("#reject-password", support::PASSWORD).await?;
    b.click("#reject-meaning option[value=reviewed]").await?;
    b.click("#reject").await?;
    b.wait_for_text("#status", "QC failed").await?;
    let timeline = b.text("#timeline").await?;
    for expected in [
        "Received",
        "arrived on dry ice",
        "Rejected (QC failed)",
        "haemolysed",
        "dana (lab_manager)",
        "Signed by dana (lab_manager) (reviewed)",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }
    assert!(
        b.find("#validate").await.is_err(),
        "a rejected sample offers no validation"
    );
    Ok(())
}

/// Waits (up to 5 s) for the browser to show `path` (the query aside).
async fn wait_for_path(b: &Browser, path: &str) -> Result<(), BoxError> {
    let mut last = String::new();
    for _ in 0..100 {
        last = b.url().await?;
        let shown = last
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("/", |(_, p)| p);
        let shown = shown.split_once('?').map_or(shown, |(p, _)| p);
        if shown.trim_start_matches('/') == path.trim_start_matches('/') {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the browser is at {last}, not {path}").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tube_is_stored_by_scanning_moved_in_the_grid_checked_out_aliquoted_and_disposed()
-> TestResult {
    let app = TestApp::spawn().await?;
    app.user("eli", Role::LabManager).await?;
    // The storage, through the API: a −80 °C freezer, a rack and a 9×9 box.
    for body in [
        json!({"kind": "freezer", "code": "FRZ-B", "temperature_zone": "-80", "slots": "2"}),
        json!({"kind": "rack", "code": "RCK-B", "parent": "FRZ-B", "slot": "1", "slots": "4"}),
        json!({"kind": "box", "code": "BOX-B1", "parent": "RCK-B", "slot": "1", "grid": "9x9"}),
    ] {
        let r = app
            .client
            .post(app.url("/api/storage/units"))
            .json(&body)
            .send()
            .await?;
        assert!(r.status().is_success(), "{body}: {}", r.text().await?);
    }
    let mut box_id = String::new();
    for _ in 0..250 {
        let v: Value = app
            .client
            .get(app.url("/api/storage/units/BOX-B1"))
            .send()
            .await?
            .json()
            .await
            .unwrap_or(Value::Null);
        if let Some(id) = v["unit"]["unit_id"].as_str() {
            box_id = id.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!box_id.is_empty(), "the box shows on the read side");
    let base = app.base.clone();
    let driver = start_driver().await?;
    let browser = Browser::open(&driver).await?;
    let result = storage_story(&browser, &base, &box_id).await;
    if result.is_err() {
        browser
            .screenshot("stored_moved_checked_out_aliquoted_disposed")
            .await;
    }
    browser.close().await;
    result
}

async fn storage_story(b: &Browser, base: &str, box_id: &str) -> TestResult {
    b.goto(&format!("{base}/login")).await?;
    b.type_into("#username", "eli").await?;
    b.type_into("#password", support::PASSWORD).await?;
    b.click("#login").await?;
    wait_for_path(b, "/").await?;

    // Register, receive and validate a tube.
    b.goto(&format!("{base}/samples/new")).await?;
    b.type_into("#barcode", "STORY-1").await?;
    b.click("#sample_type option[value=PLASMA]").await?;
    b.type_into("#volume_ul", "300").await?;
    b.click("#temperature_zone option[value=MINUS_80]").await?;
    b.click("#register").await?;
    let sample_page = b.wait_for_sample_page().await?;
    b.wait_for_text("#status", "registered").await?;
    b.click("#receive").await?;
    b.wait_for_text("#status", "received").await?;
    b.type_into("#validate-password", support::PASSWORD).await?;
    b.click("#validate-meaning option[value=performed]").await?;
    b.click("#validate").await?;
    b.wait_for_text("#status", "QC passed").await?;

    // Store it by scanning: the tube, Enter, then the box and position, Enter.
    b.goto(&format!("{base}/store")).await?;
    assert_eq!(
        b.focused_id().await?,
        "tube-code",
        "the tube is scanned first"
    );
    b.type_into("#tube-code", &format!("story-1{ENTER}"))
        .await?;
    b.wait_for_text("#tube .mono", "STORY-1").await?;
    assert_eq!(b.focused_id().await?, "box", "then the box");
    b.type_into("#box", &format!("BOX-B1 C3{ENTER}")).await?;
    b.wait_for_text("#done", "Stored STORY-1 in BOX-B1 C3. Scan the next tube.")
        .await?;
    assert_eq!(
        b.focused_id().await?,
        "tube-code",
        "ready for the next tube"
    );

    // The grid shows it; clicking a free cell with the tube scanned moves it there.
    b.goto(&format!("{base}/storage/{box_id}")).await?;
    b.wait_for_text("td[data-position=C3] a", "STORY-1").await?;
    b.type_into("#sample", "STORY-1").await?;
    b.click("td[data-position=D4] button").await?;
    b.wait_for_text("#done", "Moved STORY-1 in BOX-B1 D4")
        .await?;
    b.wait_for_text("td[data-position=D4] a", "STORY-1").await?;
    assert!(
        b.find("td[data-position=C3] button").await.is_ok(),
        "C3 is free again"
    );

    // Check it out and return it.
    b.goto(&sample_page).await?;
    b.wait_for_text("#status", "in storage").await?;
    assert!(b.text("#where").await?.contains("BOX-B1"), "where it is");
    b.click("#check-out").await?;
    b.wait_for_text("#status", "checked out").await?;
    assert!(
        b.text("#where")
            .await?
            .contains("checked out to eli (lab_manager)")
    );
    b.click("#return").await?;
    b.wait_for_text("#status", "QC passed").await?;

    // Two aliquots, one with a scanned barcode, one generated.
    b.type_into("#barcode_1", "STORY-1-A").await?;
    b.type_into("#volume_1", "50").await?;
    b.type_into("#volume_2", "25.5").await?;
    b.click("#aliquot").await?;
    b.wait_for_text("#done", "Done: Aliquoted (STORY-1-A (50 µL), LAB-PLASMA-")
        .await
        .or_else(|_| Ok::<(), BoxError>(()))?;
    let mut aliquots = String::new();
    for _ in 0..100 {
        aliquots = b.text("#aliquots").await.unwrap_or_default();
        if aliquots.contains("STORY-1-A") && aliquots.contains("LAB-PLASMA-") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.goto(&sample_page).await?;
    }
    assert!(
        aliquots.contains("STORY-1-A") && aliquots.contains("LAB-PLASMA-"),
        "{aliquots}"
    );
    assert!(
        b.text("dl.facts").await?.contains("224.5 µL"),
        "the parent's volume went down"
    );

    // Dispose of one aliquot, signed.
    // Scanning a barcode at the list opens that tube.
    b.goto(&format!("{base}/samples")).await?;
    b.type_into("#q", &format!("STORY-1-A{ENTER}")).await?;
    b.wait_for_text("h1 .mono", "STORY-1-A").await?;
    assert!(
        b.text("dl.facts").await?.contains("STORY-1"),
        "its parent is shown"
    );
    b.type_into("#dispose-reason", "used for extraction")
        .await?;
    b.type_into("#dispose-password", support::PASSWORD).await?;
    b.click("#dispose-meaning option[value=performed]").await?;
    b.click("#dispose").await?;
    b.wait_for_text("#status", "disposed").await?;

    // The whole story on the parent's timeline.
    b.goto(&sample_page).await?;
    let timeline = b.text("#timeline").await?;
    for expected in [
        "Stored",
        "BOX-B1 C3",
        "Moved",
        "BOX-B1 D4",
        "Checked out",
        "Returned",
        "Aliquoted",
        "STORY-1-A (50 µL)",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }
    Ok(())
}
