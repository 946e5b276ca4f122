//! The application under test: a `tracseq serve` on a free port over a fresh database,
//! an administrator account, and clients that do not follow redirects (tests see the
//! 303s themselves).
//!
//! `TestApp::client` sends a lab manager's API token on every request, so tests of
//! other things need not log in; tests of the login, sessions, CSRF and roles use
//! [`TestApp::login`] and [`TestApp::token`] for the principal they need.

#![allow(dead_code)]

use lab::accounts::{Accounts, Actor, NewUser, Principal, PrincipalKind, Role};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::redirect::Policy;
use sqlx::PgPool;
use web::{Application, Settings};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every test account's password.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    /// Authenticated by a lab manager's API token (the highest role a token can have).
    pub client: reqwest::Client,
    pub accounts: Accounts,
    pub admin: Principal,
}

/// A browser-like client logged in with a session cookie, and its CSRF token.
pub struct Session {
    pub client: reqwest::Client,
    pub csrf: String,
    pub base: String,
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &self.csrf));
        self.client.post(self.url(path)).form(&all).send().await
    }

    pub async fn get(&self, path: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.client.get(self.url(path)).send().await
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The value of the first hidden `csrf_token` field in `html`.
pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// The administrator every test database gets (`admin`, [`PASSWORD`]) and the secret of
/// a lab manager's API token made by them (the highest role a token can have).
pub async fn seed_admin(accounts: &Accounts) -> TestResult<(Principal, String)> {
    let user = accounts
        .create_user(
            &NewUser {
                username: "admin".into(),
                display_name: "Ada Admin".into(),
                role: "admin".into(),
                password: PASSWORD.into(),
            },
            Actor::CLI,
        )
        .await?;
    let admin = Principal {
        id: user.id,
        name: user.display_name,
        role: Role::Admin,
        kind: PrincipalKind::User,
    };
    let token = accounts
        .create_token("test suite", "lab_manager", &admin, None)
        .await?;
    Ok((admin, token.secret))
}

impl TestApp {
    pub async fn spawn() -> TestResult<Self> {
        Self::spawn_with(&[]).await
    }

    /// With settings beyond the defaults, as (variable, value).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestResult<Self> {
        let (pool, _) = event_sourcing::testkit::fresh_database(10).await?;
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let settings = Settings::from_lookup(|name| match name {
            "TRACSEQ_LISTEN" => Some("127.0.0.1:0".into()),
            other => extra
                .iter()
                .find(|(k, _)| k == other)
                .map(|(_, v)| v.clone()),
        })?;
        let app = Application::with_pool(pool.clone(), &settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let accounts = Accounts::new(pool.clone(), settings.account_policy());
        let (admin, token) = seed_admin(&accounts).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .cookie_store(true)
            .default_headers(headers)
            .build()?;
        Ok(Self {
            base,
            pool,
            client,
            accounts,
            admin,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
    }

    /// An account with `role`, username `username`, password [`PASSWORD`].
    pub async fn user(&self, username: &str, role: Role) -> TestResult<Principal> {
        let name = format!("{} ({})", username, role.as_str());
        let user = self
            .accounts
            .create_user(
                &NewUser {
                    username: username.into(),
                    display_name: name,
                    role: role.as_str().into(),
                    password: PASSWORD.into(),
                },
                Actor::CLI,
            )
            .await?;
        Ok(Principal {
            id: user.id,
            name: user.display_name,
            role,
            kind: PrincipalKind::User,
        })
    }

    /// A fresh API token with `role`.
    pub async fn token(&self, name: &str, role: Role) -> TestResult<String> {
        Ok(self
            .accounts
            .create_token(name, role.as_str(), &self.admin, None)
            .await?
            .secret)
    }

    /// A client that sends `token` as its bearer token.
    pub fn bearer_client(token: &str) -> TestResult<reqwest::Client> {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        Ok(reqwest::Client::builder()
            .redirect(Policy::none())
            .default_headers(headers)
            .build()?)
    }

    /// Logs in through the login form; the session's CSRF token is read off a page.
    pub async fn login(&self, username: &str, password: &str) -> TestResult<Session> {
        let client = plain_client();
        let response = client
            .post(self.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/account"),
            ])
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::SEE_OTHER {
            return Err(format!(
                "login as {username} answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            )
            .into());
        }
        let page = client
            .get(self.url("/account"))
            .send()
            .await?
            .text()
            .await?;
        let csrf = csrf_in(&page).ok_or("no csrf_token on the account page")?;
        Ok(Session {
            client,
            csrf,
            base: self.base.clone(),
        })
    }

    /// A new account with `role`, logged in.
    pub async fn session(&self, username: &str, role: Role) -> TestResult<Session> {
        self.user(username, role).await?;
        self.login(username, PASSWORD).await
    }
}
