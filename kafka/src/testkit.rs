//! Test infrastructure for the pipeline's tests and benchmarks: a Kafka-protocol broker
//! of the test's own (so it can be frozen), the schema registry, a fresh database with an
//! event store, and a day of lab work to publish.

use crate::registry::{RegistryServer, RegistryStore};
use cqrs::sample::{
    Barcode, Note, Sample, SampleCommand, SampleDetails, SampleId, SampleType, TemperatureZone,
    VolumeUl,
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

/// The catalogue of the platform's own aggregates.
pub fn sample_catalog() -> Result<std::sync::Arc<crate::avro::EventCatalog>, BoxError> {
    Ok(std::sync::Arc::new(
        crate::avro::EventCatalog::new().with::<Sample>()?,
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

/// Registers, receives and validates (or rejects, every third) `count` samples; returns
/// how many events that appended.
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
        let last = if i % 3 == 0 {
            SampleCommand::Reject {
                reason: Note::parse("haemolysed")?,
            }
        } else {
            SampleCommand::Validate {
                notes: Some(Note::parse("QC ok")?),
            }
        };
        store
            .execute::<Sample>(id, last, &ctx(), ExpectedVersion::Any)
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
