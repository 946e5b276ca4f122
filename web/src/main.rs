//! The `tracseq` binary: `tracseq [serve]` runs the platform.

use web::{Application, Settings, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tracseq: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {}
        Some(other) => {
            eprintln!("tracseq: unknown command '{other}'; usage: tracseq [serve]");
            return std::process::ExitCode::from(2);
        }
    }
    let app = match Application::build(settings.clone()).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(
        url = %format!("http://{}:{}", settings.listen.ip(), app.port()),
        database = ?settings.database_url,
        "TracSeq is serving"
    );
    match app.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}
