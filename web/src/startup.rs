//! Building and running the application: database, migrations, event store, projection,
//! router and listener.

use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::routes;
use event_sourcing::{
    EventStore, MIGRATOR, ProgressBoard, Projection, ProjectionHandle, ProjectionRunner,
    StoreConfig,
};
use kafka::consumer::DeadLetters;
use kafka::metrics::PipelineMetrics;
use kafka::registry::{RegistryServer, RegistryStore};
use lab::CommandMetrics;
use lab::samples::{SampleService, SamplesProjection};
use lab::storage::{StorageProjection, StorageService};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot listen on the configured address: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Store(#[from] event_sourcing::StoreError),
}

/// Where the read tables get their events from.
#[derive(Clone)]
pub enum ReadSide {
    /// Projections follow the event log in this process (no Kafka configured).
    InProcess(Arc<Vec<ProjectionHandle>>),
    /// Projections are Kafka consumers, fed through the outbox relay.
    Kafka {
        pipeline: Arc<Pipeline>,
        dead_letters: Arc<AllDeadLetters>,
    },
}

impl ReadSide {
    pub fn is_running(&self) -> bool {
        match self {
            Self::InProcess(handles) => handles.iter().all(ProjectionHandle::is_running),
            Self::Kafka { pipeline, .. } => pipeline.is_running(),
        }
    }

    pub fn dead_letters(&self) -> Option<&AllDeadLetters> {
        match self {
            Self::Kafka { dead_letters, .. } => Some(dead_letters),
            Self::InProcess(_) => None,
        }
    }
}

/// The dead letters of every consumer, as one list for operators. Ids are unique
/// across consumers (one table), so an id names one consumer's letter.
pub struct AllDeadLetters {
    pub samples: DeadLetters<SamplesProjection>,
    pub storage: DeadLetters<StorageProjection>,
}

impl AllDeadLetters {
    /// Newest first over every consumer.
    pub async fn list(
        &self,
        event_type: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<kafka::consumer::DeadLetter>, sqlx::Error> {
        let mut all = self.samples.list(event_type, status, limit).await?;
        all.extend(self.storage.list(event_type, status, limit).await?);
        all.sort_by_key(|d| std::cmp::Reverse(d.id));
        all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(all)
    }

    /// Applies dead letter `id` again, whichever consumer it belongs to.
    pub async fn reprocess(
        &self,
        id: i64,
    ) -> Result<Option<kafka::consumer::Reprocessed>, sqlx::Error> {
        match self.samples.reprocess(id).await? {
            Some(done) => Ok(Some(done)),
            None => self.storage.reprocess(id).await,
        }
    }

    /// Every pending dead letter, each consumer's oldest first.
    pub async fn reprocess_all(&self) -> Result<Vec<kafka::consumer::Reprocessed>, sqlx::Error> {
        let mut all = self.samples.reprocess_all().await?;
        all.extend(self.storage.reprocess_all().await?);
        Ok(all)
    }
}

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub samples: SampleService,
    pub storage: StorageService,
    pub read_side: ReadSide,
    pub metrics: PipelineMetrics,
    /// Every consumer and projection, for readiness.
    pub board: ProgressBoard,
    /// How long failing without progress counts as stuck.
    pub stuck_after: Duration,
    /// Accounts, sessions and API tokens.
    pub accounts: lab::accounts::Accounts,
    /// Whether session cookies are marked `Secure`.
    pub secure_cookies: crate::config::SecureCookies,
}

/// A built application, bound to its port but not yet serving. Its background jobs
/// (retention) stop when it stops serving or is dropped.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    port: u16,
    stop_jobs: tokio::sync::watch::Sender<bool>,
}

impl Application {
    /// Connects to the database (creating it when missing), migrates it, and binds.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = connect(&settings).await?;
        Self::with_pool(pool, &settings).await
    }

    /// Builds on an existing pool (tests give each run its own database).
    pub async fn with_pool(pool: PgPool, settings: &Settings) -> Result<Self, StartupError> {
        MIGRATOR.run(&pool).await?;
        let (stop_jobs, jobs_stop) = tokio::sync::watch::channel(false);
        crate::retention::spawn(pool.clone(), settings, jobs_stop);
        let accounts = lab::accounts::Accounts::new(pool.clone(), settings.account_policy());
        let store = EventStore::new(
            pool,
            StoreConfig {
                snapshot_every: settings.snapshot_every,
                ..StoreConfig::default()
            },
        );
        let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
        let board = ProgressBoard::default();
        let read_side = match &settings.kafka_brokers {
            Some(brokers) => {
                let catalog = Arc::new(
                    crate::pipeline::catalog()
                        .map_err(|e| crate::pipeline::PipelineError::from(e.to_string()))?,
                );
                let mut pipeline = Pipeline::start(
                    store.pool().clone(),
                    brokers,
                    settings,
                    metrics.clone(),
                    catalog,
                    board.clone(),
                )
                .await?;
                let dead_letters = pipeline.consume(SamplesProjection)?;
                let storage_dead_letters = pipeline.consume(StorageProjection)?;
                tracing::info!(%brokers, registry = %settings.schema_registry_url, "events flow through Kafka");
                ReadSide::Kafka {
                    pipeline: Arc::new(pipeline),
                    dead_letters: Arc::new(AllDeadLetters {
                        samples: dead_letters,
                        storage: storage_dead_letters,
                    }),
                }
            }
            None => {
                tracing::warn!(
                    "KAFKA_BROKERS is not set: projections follow the event log in-process and nothing is published"
                );
                ReadSide::InProcess(Arc::new(vec![
                    ProjectionRunner::new(store.clone(), SamplesProjection)
                        .progress(board.register(SamplesProjection::NAME))
                        .spawn(),
                    ProjectionRunner::new(store.clone(), StorageProjection)
                        .progress(board.register(StorageProjection::NAME))
                        .spawn(),
                ]))
            }
        };
        let command_metrics = CommandMetrics::new(&metrics.registry)?;
        let storage = StorageService::new(store.clone(), command_metrics.clone());
        let samples = SampleService::new(
            store,
            Duration::from_millis(settings.read_your_writes_ms),
            command_metrics,
        )
        .with_time_zone(settings.time_zone);
        let router = routes::router(
            AppState {
                samples,
                storage,
                read_side,
                metrics,
                board,
                stuck_after: Duration::from_secs(settings.stuck_after_s.max(1)),
                accounts,
                secure_cookies: settings.secure_cookies,
            },
            routes::edge::Limits::from_settings(settings),
        );
        let listener = TcpListener::bind(settings.listen).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            router,
            port,
            stop_jobs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // The peer's address reaches handlers (login throttling, the audit trail).
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await;
        let _ = self.stop_jobs.send(true);
        served
    }
}

/// Runs the schema registry until Ctrl-C or SIGTERM, its state in the platform's database.
pub async fn run_schema_registry(settings: &Settings) -> Result<(), StartupError> {
    let pool = connect(settings).await?;
    MIGRATOR.run(&pool).await?;
    let server = RegistryServer::bind(RegistryStore::new(pool), settings.schema_registry_listen)
        .await?
        .require_token(settings.schema_registry_token.clone());
    tracing::info!(
        url = %format!("http://{}", server.local_addr()?),
        token_required = settings.schema_registry_token.is_some(),
        "schema registry is serving"
    );
    server.serve(shutdown_signal()).await?;
    Ok(())
}

/// The accounts of the platform's database (for `tracseq user` and `tracseq token`).
pub async fn accounts(settings: &Settings) -> Result<lab::accounts::Accounts, StartupError> {
    let pool = connect(settings).await?;
    MIGRATOR.run(&pool).await?;
    Ok(lab::accounts::Accounts::new(
        pool,
        settings.account_policy(),
    ))
}

/// Re-bases the event log's order (after a logical move of the database).
pub async fn rebase_log(settings: &Settings) -> Result<event_sourcing::Rebased, StartupError> {
    let pool = connect(settings).await?;
    MIGRATOR.run(&pool).await?;
    Ok(event_sourcing::rebase_log_xid(&pool).await?)
}

/// Runs an outbox relay on its own until Ctrl-C or SIGTERM.
pub async fn run_relay(settings: &Settings) -> Result<(), StartupError> {
    let brokers = settings
        .kafka_brokers
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let pool = connect(settings).await?;
    MIGRATOR.run(&pool).await?;
    let metrics = PipelineMetrics::new(prometheus::Registry::new())?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(%brokers, "outbox relay running");
    crate::pipeline::run_relay(pool, &brokers, settings, metrics, stop).await?;
    Ok(())
}

async fn connect(settings: &Settings) -> Result<PgPool, StartupError> {
    let options = PgConnectOptions::from_str(settings.database_url.expose())?;
    create_database_if_missing(&options).await?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    match PgConnection::connect_with(options).await {
        Ok(conn) => conn.close().await,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            tracing::info!(database = %name, "creating database");
            let mut admin =
                PgConnection::connect_with(&options.clone().database("postgres")).await?;
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            sqlx::query(&format!("CREATE DATABASE {quoted}"))
                .execute(&mut admin)
                .await?;
            admin.close().await
        }
        Err(e) => Err(e),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
