//! Fresh, migrated PostgreSQL databases for tests and benchmarks.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

/// The server tests run against: `DATABASE_URL`'s server, or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a database with a unique name, applies the migrations, and returns a pool of
/// `max_connections` to it.
pub async fn fresh_database(max_connections: u32) -> Result<(PgPool, String), sqlx::Error> {
    let base = PgConnectOptions::from_str(&server_url())?;
    let name = format!("tracseq_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&base.clone().database("postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let options = base.database(&name).disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await?;
    crate::MIGRATOR.run(&pool).await?;
    Ok((pool, name))
}
