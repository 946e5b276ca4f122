//! Test infrastructure for the pipeline's tests and benchmarks: a Kafka-protocol broker
//! of the test's own (so it can be frozen), the schema registry, a fresh database with an
//! event store, and a day of lab work to publish.

use crate::registry::{RegistryServer, RegistryStore};
use cqrs::sample::{
    Barcode, Note, Sample, SampleCommand, SampleDetails, SampleId, SampleType, Signature,
    SignatureMeaning, TemperatureZone, VolumeUl,
};
use event_sourcing::{CommandContext, EventStore, ExpectedVersion, StoreConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A broker process on a free port, killed when dropped. Memory storage: a restart would
/// empty it, so outages are simulated by freezing it (SIGSTOP) instead.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub async fn start() -> Result<Self, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(std::env::var("TANSU").unwrap_or_else(|_| "tansu".into()))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start the tansu broker ({e}); ./deploy-phase7.sh test installs it")
            })?;
        let broker = Self {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            if Instant::now() > deadline {
                return Err("the broker did not start listening".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::topics::ensure_topics(&broker.address, crate::topics::ALL, 3).await?;
        Ok(broker)
    }

    fn signal(&self, signal: &str) -> Result<(), BoxError> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} failed").into())
        }
    }

    /// Freezes the broker: connections stay open but nothing answers.
    pub fn freeze(&self) -> Result<(), BoxError> {
        self.signal("-STOP")
    }

    pub fn thaw(&self) -> Result<(), BoxError> {
        self.signal("-CONT")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry on a free port over the given database; returns its URL.
pub async fn registry(pool: sqlx::PgPool) -> Result<String, BoxError> {
    let server = RegistryServer::bind(RegistryStore::new(pool), ([127, 0, 0, 1], 0).into()).await?;
    let url = format!("http://{}", server.local_addr()?);
    tokio::spawn(server.serve(std::future::pending()));
    Ok(url)
}

/// A registry on a free port over the given database that requires `token` on the
/// requests that change it; returns its URL.
pub async fn registry_with_token(pool: sqlx::PgPool, token: &str) -> Result<String, BoxError> {
    let server = RegistryServer::bind(RegistryStore::new(pool), ([127, 0, 0, 1], 0).into())
        .await?
        .require_token(crate::registry::RegistryToken::new(token));
    let url = format!("http://{}", server.local_addr()?);
    tokio::spawn(server.serve(std::future::pending()));
    Ok(url)
}

/// The catalogue of the platform's own aggregates.
pub fn sample_catalog() -> Result<std::sync::Arc<crate::avro::EventCatalog>, BoxError> {
    Ok(std::sync::Arc::new(
        crate::avro::EventCatalog::new()
            .with::<Sample>()?
            .with::<cqrs::storage::StorageUnit>()?,
    ))
}

/// A codec over the registry at `url` for `catalog`, with every schema registered.
pub async fn codec(
    url: &str,
    catalog: std::sync::Arc<crate::avro::EventCatalog>,
) -> Result<std::sync::Arc<crate::wire::WireCodec>, BoxError> {
    let codec = crate::wire::WireCodec::new(url, catalog);
    codec.register_all().await?;
    Ok(std::sync::Arc::new(codec))
}

/// Registration details for a test tube.
pub fn details(barcode: &str) -> Result<SampleDetails, BoxError> {
    Ok(SampleDetails {
        barcode: Barcode::parse(barcode)?,
        sample_type: SampleType::Plasma,
        volume: VolumeUl::parse("250")?,
        temperature_zone: TemperatureZone::Minus80,
        patient: None,
        collected_at: None,
        collected_by: None,
    })
}

pub async fn store() -> Result<EventStore, BoxError> {
    let (pool, _) = event_sourcing::testkit::fresh_database(20).await?;
    Ok(EventStore::new(pool, StoreConfig::default()))
}

/// The account that signs the QC decisions of [`lab_day`].
pub const QC_ACCOUNT: Uuid = Uuid::from_u128(0x0a11_ce00_0000_4000_8000_0000_0000_0001);

/// Registers, receives and validates (or rejects, every third) `count` samples; returns
/// how many events that appended. Registration and reception are by a technician without
/// an account (as recorded before accounts existed); the QC decisions are by
/// [`QC_ACCOUNT`], electronically signed.
pub async fn lab_day(store: &EventStore, count: usize, tag: &str) -> Result<usize, BoxError> {
    let mut events = 0;
    for i in 0..count {
        let id = Uuid::now_v7();
        let ctx = || CommandContext::new("tech");
        let details = SampleDetails {
            barcode: Barcode::parse(&format!("{tag}-{i:05}"))?,
            sample_type: SampleType::ALL[i % SampleType::ALL.len()],
            volume: VolumeUl::parse(&format!("{}.25", 10 + i))?,
            temperature_zone: TemperatureZone::ALL[i % TemperatureZone::ALL.len()],
            patient: None,
            collected_at: None,
            collected_by: None,
        };
        let register = SampleCommand::Register {
            id: SampleId::from_uuid(id),
            details,
        };
        store
            .execute::<Sample>(id, register, &ctx(), ExpectedVersion::Exactly(0))
            .await?;
        store
            .execute::<Sample>(
                id,
                SampleCommand::Receive { notes: None },
                &ctx(),
                ExpectedVersion::Any,
            )
            .await?;
        let signature = Signature::new(
            QC_ACCOUNT,
            "Ana Müller",
            SignatureMeaning::ALL[i % SignatureMeaning::ALL.len()],
            chrono::Utc::now(),
        );
        let last = if i % 3 == 0 {
            SampleCommand::Reject {
                reason: Note::parse("haemolysed")?,
                signature,
            }
        } else {
            SampleCommand::Validate {
                notes: Some(Note::parse("QC ok")?),
                signature,
            }
        };
        let qc = CommandContext::for_user(QC_ACCOUNT, "Ana Müller");
        store
            .execute::<Sample>(id, last, &qc, ExpectedVersion::Any)
            .await?;
        events += 3;
    }
    Ok(events)
}

/// A message as read back from a topic.
pub struct TopicMessage {
    pub partition: i32,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Every message on `topic` from the beginning:
/// at least `expected` (or until `timeout`), then whatever else arrives until the topic has
/// been quiet for a second (redeliveries make more messages than events).
pub fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<TopicMessage>, BoxError> {
    let consumer: BaseConsumer = crate::topics::client_config(brokers)
        .set("group.id", format!("test-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline
        && (out.len() < expected || quiet_since.elapsed() < Duration::from_secs(1))
    {
        let polled = consumer.poll(Duration::from_millis(200));
        if polled.is_some() {
            quiet_since = Instant::now();
        }
        if let Some(message) = polled {
            let m = message?;
            let headers = m
                .headers()
                .map(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_owned(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(TopicMessage {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    Ok(out)
}

/// The schema registry on a fixed address that a test can stop and start again, to
/// simulate an outage (stopping closes its connections, so clients really lose it).
pub struct StoppableRegistry {
    pool: sqlx::PgPool,
    address: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl StoppableRegistry {
    pub async fn start(pool: sqlx::PgPool) -> Result<Self, BoxError> {
        let server =
            RegistryServer::bind(RegistryStore::new(pool.clone()), ([127, 0, 0, 1], 0).into())
                .await?;
        let address = server.local_addr()?;
        let mut registry = Self {
            pool,
            address,
            shutdown: None,
            task: None,
        };
        registry.serve(server);
        Ok(registry)
    }

    fn serve(&mut self, server: RegistryServer) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(server.serve(async move {
            let _ = rx.await;
        })));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops answering: the listener closes and so do idle connections.
    pub async fn stop(&mut self) -> Result<(), BoxError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await???;
        }
        Ok(())
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) -> Result<(), BoxError> {
        let server =
            RegistryServer::bind(RegistryStore::new(self.pool.clone()), self.address).await?;
        self.serve(server);
        Ok(())
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, its own port),
/// so that a test can really stop and start it without disturbing tests running beside
/// it. Run as root, the server runs as the `postgres` user, as PostgreSQL requires.
pub struct PrivatePostgres {
    dir: std::path::PathBuf,
    pub port: u16,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    pub fn start() -> Result<Self, BoxError> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("tracseq-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = Command::new("id").arg("-u").output()?.stdout == b"0\n";
        let pg = Self {
            dir,
            port,
            bin,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", &pg.dir.display().to_string()])
                .status()?;
            if !status.success() {
                return Err("cannot hand the data folder to the postgres user".into());
            }
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
            ],
        )?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), BoxError> {
        let program = self.bin.join(program).display().to_string();
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &program])
                .args(args)
                .output()?
        } else {
            Command::new(&program).args(args).output()?
        };
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into())
        }
    }

    /// The server's URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (fast shutdown: running transactions are rolled back and
    /// connections cut, as in a crash or a restart for maintenance).
    pub fn stop(&self) -> Result<(), BoxError> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    pub fn start_again(&self) -> Result<(), BoxError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
    }

    /// A fresh, migrated database on this server and a pool that recovers after restarts.
    pub async fn database(&self, max_connections: u32) -> Result<sqlx::PgPool, BoxError> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query("CREATE DATABASE tracseq")
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_millis(500))
            .connect(&self.url("tracseq"))
            .await?;
        event_sourcing::MIGRATOR.run(&pool).await?;
        Ok(pool)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
