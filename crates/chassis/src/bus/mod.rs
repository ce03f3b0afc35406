//! The event bus: topics split into partitions by key, consumer groups with committed
//! offsets, at-least-once delivery (DESIGN.md section 4).
//!
//! [`EventBus`] is what services use; [`embedded::EmbeddedLog`] is the single-machine
//! backend, a durable log in one SQLite file shared by every service and process;
//! [`kafka::KafkaBus`] is the backend for services that run apart.

pub mod embedded;
pub mod kafka;

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use contracts::Envelope;

use crate::config::{BusLocation, Durability};

/// An event on its way to a topic; its key is the envelope's `subject`.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub topic: String,
    pub envelope: Envelope,
}

/// An event read from a partition.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub envelope: Envelope,
}

/// How far a consumer group is behind in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub lag: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event log storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("stored event at {topic}/{partition}@{offset} is unreadable: {source}")]
    Corrupt {
        topic: String,
        partition: u32,
        offset: i64,
        source: serde_json::Error,
    },
    #[error("appending to the event log failed: {0}")]
    Append(String),
    #[error("the event log is shut down")]
    Closed,
    #[error("{0}")]
    Failing(String),
    #[error("event bus settings: {0}")]
    Settings(String),
    #[error("cannot reach Kafka at {brokers}: {reason}")]
    Unreachable { brokers: String, reason: String },
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// What the bus is, as spans name it (`messaging.system`).
    fn system(&self) -> &'static str;

    /// Appends the events durably, in order per key; returns once they are stored.
    async fn publish(&self, events: Vec<OutgoingEvent>) -> Result<(), BusError>;

    /// Joins `group` as member `member` (stable across restarts of the same process role)
    /// and reads `topics` from the group's committed offsets.
    async fn subscribe(
        &self,
        group: &str,
        member: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Checks the bus can be reached, for readiness.
    async fn ping(&self) -> Result<(), BusError>;

    /// Events on `topics` that `group` has not committed yet; asks without joining the
    /// group (operator tools).
    async fn group_backlog(&self, group: &str, topics: &[&str]) -> Result<i64, BusError>;

    /// Every event on `topic` still kept, from the oldest (operator tools).
    async fn read_topic(&self, topic: &str) -> Result<Vec<Envelope>, BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` records after the committed offsets of the partitions this member
    /// holds, waiting at most `wait` for the first. Records not committed are read again.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError>;

    /// Marks `records` as done for the group.
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError>;

    /// Events not yet committed, per partition held.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError>;

    /// Leaves the group, handing its partitions to other members at once.
    async fn close(&mut self) -> Result<(), BusError>;
}

/// How long a start waits for the Kafka cluster to answer.
const KAFKA_START_DEADLINE: Duration = Duration::from_secs(5);

/// The bus `location` names: the embedded log in `data_dir`, or a Kafka cluster. Topics
/// it creates get `partitions` partitions.
pub async fn connect(
    location: &BusLocation,
    data_dir: &Path,
    durability: Durability,
    partitions: u32,
    session_timeout: Duration,
) -> Result<Arc<dyn EventBus>, BusError> {
    Ok(match location {
        BusLocation::Embedded => Arc::new(
            embedded::EmbeddedLog::open(&data_dir.join("bus.db"), durability, partitions).await?,
        ),
        BusLocation::Kafka { brokers, namespace } => {
            let bus = kafka::KafkaBus::connect(brokers, namespace, partitions)?
                .with_session_timeout(session_timeout);
            // librdkafka would retry an absent cluster for ever in the background: a
            // start that cannot reach it is refused now, with the cause.
            bus.metadata(KAFKA_START_DEADLINE).await?;
            Arc::new(bus)
        }
    })
}

/// Partition of `key`: FNV-1a, stable across processes and releases, unlike std's hasher.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn a_key_always_lands_on_the_same_partition() {
        assert_eq!(partition_for("order-1", 4), partition_for("order-1", 4));
        assert!((0..1000).all(|i| partition_for(&format!("k{i}"), 4) < 4));
    }

    #[test]
    fn keys_spread_over_the_partitions() {
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[partition_for(&uuid::Uuid::now_v7().to_string(), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
