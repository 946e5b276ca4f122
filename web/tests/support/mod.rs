//! The application under test: a `tracseq serve` on a free port over a fresh database,
//! and a client that does not follow redirects (tests see the 303s themselves).

#![allow(dead_code)]

use reqwest::redirect::Policy;
use sqlx::PgPool;
use web::{Application, Settings};

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::spawn_with(&[]).await
    }

    /// With settings beyond the defaults, as (variable, value).
    pub async fn spawn_with(
        extra: &[(&str, &str)],
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
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
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .cookie_store(true)
            .build()?;
        Ok(Self { base, pool, client })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
    }
}
