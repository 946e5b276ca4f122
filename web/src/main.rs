//! The `tracseq` binary.
//!
//! - `tracseq [serve]` runs the platform (UI, API, projections).
//! - `tracseq schema-registry` runs the Confluent-compatible schema registry used by
//!   local runs and tests (`SCHEMA_REGISTRY_LISTEN`, default 127.0.0.1:8081).
//! - `tracseq relay` runs only an outbox relay (several may run at once).
//! - `tracseq topics` creates the platform's topics on `KAFKA_BROKERS` (3 partitions each).
//! - `tracseq user create|reset-password|list` and `tracseq token create` administer
//!   accounts from the command line (the first administrator is made this way).
//! - `tracseq rebase-log` re-bases the event log's order after a logical move of the
//!   database to a new cluster (see the README's operations section).

use std::process::ExitCode;
use web::{Application, Settings, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tracseq: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(settings).await,
        Some("schema-registry") => schema_registry(settings).await,
        Some("topics") => create_topics(settings).await,
        Some("relay") => relay(settings).await,
        Some("rebase-log") => rebase_log(settings).await,
        Some("user" | "token") => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            web::cli::run(&settings, &args).await
        }
        Some(other) => {
            eprintln!(
                "tracseq: unknown command '{other}'; usage: tracseq [serve | schema-registry | topics | relay | rebase-log | user | token]"
            );
            ExitCode::from(2)
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let app = match Application::build(settings.clone()).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        url = %format!("http://{}:{}", settings.listen.ip(), app.port()),
        database = ?settings.database_url,
        "TracSeq is serving"
    );
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn schema_registry(settings: Settings) -> ExitCode {
    match web::startup::run_schema_registry(&settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "schema registry failed");
            ExitCode::FAILURE
        }
    }
}

async fn create_topics(settings: Settings) -> ExitCode {
    let brokers = settings
        .kafka_brokers
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let topics = match web::pipeline::catalog() {
        Ok(catalog) => web::pipeline::topic_names(&catalog),
        Err(error) => {
            tracing::error!(%error, "the event catalogue is invalid");
            return ExitCode::FAILURE;
        }
    };
    let topic_settings = web::pipeline::topic_settings(&settings);
    match kafka::topics::ensure_topics_with(&brokers, &topics, topic_settings).await {
        Ok(()) => {
            tracing::info!(%brokers, ?topics, "topics are in place");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, %brokers, "topics could not be created");
            ExitCode::FAILURE
        }
    }
}

async fn relay(settings: Settings) -> ExitCode {
    match web::startup::run_relay(&settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "relay failed");
            ExitCode::FAILURE
        }
    }
}

async fn rebase_log(settings: Settings) -> ExitCode {
    match web::startup::rebase_log(&settings).await {
        Ok(rebased) => {
            println!(
                "log re-based: offset {} -> {}, newest stored {}, next {}",
                rebased.old_offset, rebased.new_offset, rebased.newest_stored, rebased.next_log_id
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "re-base failed");
            ExitCode::FAILURE
        }
    }
}
