//! The Kafka backend (rdkafka), for a shop whose services run apart (DESIGN.md section 4):
//! an idempotent producer (`acks=all`) keyed by the aggregate id, the envelope's metadata
//! and `traceparent` also as Kafka headers, one consumer group per service, offsets
//! committed only when the consumer says its effects are stored, and topics created with
//! the configured partition count when missing (brokers here do not auto-create them).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use contracts::Envelope;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::{ClientContext, DefaultClientContext},
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};

use super::{BusError, EventBus, OutgoingEvent, PartitionLag, Record, Subscription};

/// How long a broker call may take before the bus reports it failed.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing consumer waits for its last offsets to be confirmed.
const FINAL_COMMIT: Duration = Duration::from_secs(5);

pub struct KafkaBus {
    /// The brokers and how to reach them (TLS, SASL): what every client starts from.
    connection: ClientConfig,
    /// Prefix of every topic and group name on the cluster; empty for none.
    namespace: String,
    partitions: i32,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// How long the group waits for a silent member before it moves its partitions.
    session_timeout: Duration,
    /// Topics known to exist, so each is created at most once per process.
    known_topics: Mutex<HashSet<String>>,
}

fn failed(error: KafkaError) -> BusError {
    BusError::Append(error.to_string())
}

/// Environment variables that reach librdkafka: `MALL_KAFKA_` and a connection setting
/// with `_` for `.` (`MALL_KAFKA_SASL_USERNAME` sets `sasl.username`), so that a managed
/// cluster's TLS and SASL settings can come from a secret.
const SETTING_VARIABLE_PREFIX: &str = "MALL_KAFKA_";
/// The settings those variables may set: how to reach the cluster, nothing of how the bus
/// uses it (acks, idempotence, offsets stay as the bus needs them).
const CONNECTION_SETTINGS: [&str; 5] = [
    "security.protocol",
    "sasl.",
    "ssl.",
    "enable.ssl.",
    "enable.sasl.",
];

/// The librdkafka settings of the `MALL_KAFKA_*` variables among `variables`.
fn connection_settings(
    variables: impl Iterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, BusError> {
    variables
        .filter_map(|(name, value)| {
            let setting = name
                .strip_prefix(SETTING_VARIABLE_PREFIX)?
                .to_lowercase()
                .replace('_', ".");
            Some(
                if CONNECTION_SETTINGS
                    .iter()
                    .any(|allowed| setting.starts_with(allowed))
                {
                    Ok((setting, value))
                } else {
                    Err(BusError::Settings(format!(
                        "{name} would set {setting}; only security.protocol, sasl.* and ssl.* \
                     can be set from the environment"
                    )))
                },
            )
        })
        .collect()
}

impl KafkaBus {
    /// A bus on the brokers of `brokers` (`host:port,...`), its topics and groups named
    /// `<namespace>.<name>` (just `<name>` when the namespace is empty); topics it creates
    /// get `partitions` partitions.
    /// Connection settings come from the `MALL_KAFKA_*` variables (see
    /// [`SETTING_VARIABLE_PREFIX`]).
    pub fn connect(brokers: &str, namespace: &str, partitions: u32) -> Result<Self, BusError> {
        let mut connection = ClientConfig::new();
        connection.set("bootstrap.servers", brokers);
        for (setting, value) in connection_settings(std::env::vars())? {
            connection.set(setting, value);
        }
        let producer = connection
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "1")
            .create()
            .map_err(failed)?;
        let admin = connection.create().map_err(failed)?;
        Ok(KafkaBus {
            connection,
            namespace: namespace.to_owned(),
            // Static members can afford a long session (KIP-345): a broker unreachable for
            // tens of seconds does not cost the group a rebalance.
            session_timeout: Duration::from_secs(45),
            partitions: partitions as i32,
            producer,
            admin,
            known_topics: Mutex::new(HashSet::new()),
        })
    }

    /// Asks the cluster for its metadata, waiting at most `timeout`: whether it answers.
    pub async fn metadata(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(drop)
        })
        .await
        .map_err(|error| BusError::Append(error.to_string()))?;
        fetched.map_err(|error| BusError::Unreachable {
            brokers: self
                .connection
                .get("bootstrap.servers")
                .unwrap_or_default()
                .to_owned(),
            reason: error.to_string(),
        })
    }

    /// A bus whose consumers' sessions last `timeout` (45 s by default).
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// The cluster's name for the shop's topic or group `name`.
    fn named(&self, name: &str) -> String {
        cluster_name(&self.namespace, name)
    }

    /// A consumer that never joins `group` (it only reads its offsets, or assigns itself
    /// partitions), for operator reads.
    fn inspector(&self, group: &str) -> Result<BaseConsumer, BusError> {
        self.connection
            .clone()
            .set("group.id", self.named(group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(failed)
    }

    /// Every partition of `topics` (cluster names) that exists.
    fn partitions(
        consumer: &BaseConsumer,
        topics: &[String],
    ) -> Result<TopicPartitionList, BusError> {
        let metadata = consumer
            .fetch_metadata(None, BROKER_TIMEOUT)
            .map_err(failed)?;
        let mut list = TopicPartitionList::new();
        for topic in metadata.topics() {
            if topics.iter().any(|t| t == topic.name()) {
                for partition in topic.partitions() {
                    list.add_partition(topic.name(), partition.id());
                }
            }
        }
        Ok(list)
    }

    /// Which of `topics` (cluster names) exist with partitions, asked topic by topic: the
    /// all-topics listing is not what every broker implements fully.
    async fn existing(&self, topics: &[&str]) -> Result<HashSet<String>, BusError> {
        let producer = self.producer.clone();
        let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut existing = HashSet::new();
            for topic in topics {
                let metadata = producer
                    .client()
                    .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
                    .map_err(failed)?;
                if metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                {
                    existing.insert(topic);
                }
            }
            Ok(existing)
        })
        .await
        .map_err(|error| BusError::Append(error.to_string()))?
    }

    async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let mut topics: Vec<String> = topics.iter().map(|topic| self.named(topic)).collect();
        // A batch names a topic once per event; a CreateTopics naming one twice is invalid.
        topics.sort();
        topics.dedup();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let missing: Vec<&str> = {
            let known = self.known_topics.lock().expect("topic cache lock poisoned");
            topics
                .iter()
                .copied()
                .filter(|topic| !known.contains(*topic))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let existing = self.existing(&missing).await?;
        let (present, missing): (Vec<&str>, Vec<&str>) = missing
            .into_iter()
            .partition(|topic| existing.contains(*topic));
        self.known_topics
            .lock()
            .expect("topic cache lock poisoned")
            .extend(present.into_iter().map(str::to_owned));
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic> = missing
            .iter()
            .map(|topic| NewTopic::new(topic, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
        let results = match self.admin.create_topics(&new_topics, &options).await {
            Ok(results) => results,
            // Another process may have created them in between, and some brokers (tansu)
            // then answer with a response librdkafka cannot read: believe the metadata.
            Err(error) if self.existing(&missing).await?.len() == missing.len() => {
                tracing::debug!(%error, "topics exist after a failed create");
                Vec::new()
            }
            Err(error) => {
                return Err(BusError::Append(format!(
                    "creating topics {missing:?}: {error}"
                )));
            }
        };
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Append(format!("creating topic {topic}: {code}")));
                }
            }
        }
        let mut known = self.known_topics.lock().expect("topic cache lock poisoned");
        known.extend(missing.into_iter().map(str::to_owned));
        Ok(())
    }
}

fn cluster_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

/// The shop's name of cluster topic `topic`: [`cluster_name`] undone.
fn shop_name(namespace: &str, topic: &str) -> String {
    topic
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(topic)
        .to_owned()
}

/// The envelope's metadata as Kafka headers, so brokers' tools and other consumers can
/// route and trace without parsing the payload.
fn headers(envelope: &Envelope) -> OwnedHeaders {
    let id = envelope.id.to_string();
    let correlation = envelope.correlation_id.to_string();
    let version = envelope.schema_version.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(header("ce_id", &id))
        .insert(header("ce_type", &envelope.event_type))
        .insert(header("ce_source", &envelope.source))
        .insert(header("ce_subject", &envelope.subject))
        .insert(header("schema_version", &version))
        .insert(header("correlation_id", &correlation));
    if let Some(traceparent) = &envelope.traceparent {
        headers = headers.insert(header("traceparent", traceparent));
    }
    headers
}

fn header<'a>(key: &'a str, value: &'a String) -> Header<'a, &'a String> {
    Header {
        key,
        value: Some(value),
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn system(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, events: Vec<OutgoingEvent>) -> Result<(), BusError> {
        let topics: Vec<&str> = events.iter().map(|event| event.topic.as_str()).collect();
        self.ensure_topics(&topics).await?;
        let sends = events.iter().map(|event| {
            let payload =
                serde_json::to_string(&event.envelope).expect("envelopes always serialise");
            let topic = self.named(&event.topic);
            let record = FutureRecord::to(&topic)
                .key(&event.envelope.subject)
                .payload(&payload)
                .headers(headers(&event.envelope));
            let sent = self
                .producer
                .send_result(record)
                .map_err(|(error, _)| error);
            async move {
                match sent {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((error, _))) => Err(failed(error)),
                        Err(_) => Err(BusError::Append("the producer was dropped".into())),
                    },
                    Err(error) => Err(failed(error)),
                }
            }
        });
        // The idempotent producer keeps each partition's order however many are in flight.
        futures::future::try_join_all(sends).await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        member: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_topics(topics).await?;
        let membership = Arc::new(Mutex::new(Membership::default()));
        let consumer: StreamConsumer<Rebalances> = self
            .connection
            .clone()
            .set("group.id", self.named(group))
            .set("client.id", member)
            // Static membership: a restarted process takes its partitions back at once
            // instead of waiting for the session of its killed predecessor to time out.
            .set("group.instance.id", self.named(member))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            // A tenth of the session: librdkafka's fixed 3 s would be half of the shortest
            // session allowed (6 s), one late heartbeat from losing the member.
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 10).to_string(),
            )
            // A saga hop waits for a fetch: answer as soon as one event is there, and keep
            // the prefetch small (librdkafka's default queue is 64 MB per consumer).
            .set("fetch.wait.max.ms", "10")
            .set("queued.max.messages.kbytes", "4096")
            .create_with_context(Rebalances {
                group: group.to_owned(),
                membership: membership.clone(),
            })
            .map_err(failed)?;
        let topics: Vec<String> = topics.iter().map(|topic| self.named(topic)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(failed)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
            namespace: self.namespace.clone(),
            unacknowledged: HashMap::new(),
            membership,
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.metadata(BROKER_TIMEOUT).await
    }

    async fn group_backlog(&self, group: &str, topics: &[&str]) -> Result<i64, BusError> {
        let consumer = self.inspector(group)?;
        let topics: Vec<String> = topics.iter().map(|topic| self.named(topic)).collect();
        tokio::task::spawn_blocking(move || {
            let partitions = Self::partitions(&consumer, &topics)?;
            let committed = consumer
                .committed_offsets(partitions, BROKER_TIMEOUT)
                .map_err(failed)?;
            let mut behind = 0;
            for element in committed.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), BROKER_TIMEOUT)
                    .map_err(failed)?;
                let done = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => low,
                };
                behind += (high - done).max(0);
            }
            Ok(behind)
        })
        .await
        .map_err(|error| BusError::Append(error.to_string()))?
    }

    async fn read_topic(&self, topic: &str) -> Result<Vec<Envelope>, BusError> {
        // librdkafka wants a group even for assigned partitions; this one commits nothing.
        let consumer = self.inspector(&format!("reader-{}", uuid::Uuid::now_v7()))?;
        let topic = self.named(topic);
        tokio::task::spawn_blocking(move || {
            let mut partitions = Self::partitions(&consumer, std::slice::from_ref(&topic))?;
            // Every partition is read to its end-of-partition event, empty or not: skipping
            // those whose watermarks said empty left a partition's only event unread on
            // tansu (`mall admin check` then found a product with no stock ever added).
            let mut unread: HashSet<i32> = partitions
                .elements()
                .iter()
                .map(|element| element.partition())
                .collect();
            partitions
                .set_all_offsets(Offset::Beginning)
                .map_err(failed)?;
            consumer.assign(&partitions).map_err(failed)?;
            let mut envelopes = Vec::new();
            let started = std::time::Instant::now();
            while !unread.is_empty() {
                if started.elapsed() > BROKER_TIMEOUT {
                    return Err(BusError::Append(format!("reading {topic} timed out")));
                }
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        unread.remove(&partition);
                    }
                    Some(Err(error)) => return Err(failed(error)),
                    Some(Ok(message)) => {
                        let payload = message.payload().unwrap_or_default();
                        envelopes.push(serde_json::from_slice(payload).map_err(|source| {
                            BusError::Corrupt {
                                topic: topic.clone(),
                                partition: message.partition() as u32,
                                offset: message.offset(),
                                source,
                            }
                        })?);
                    }
                }
            }
            Ok(envelopes)
        })
        .await
        .map_err(|error| BusError::Append(error.to_string()))?
    }
}

/// A partition, by its cluster topic name.
type PartitionKey = (String, i32);

/// What a member of a consumer group holds and has done, shared with the rebalance
/// callbacks (librdkafka runs them inside `recv`, never while a batch is handled).
#[derive(Default)]
struct Membership {
    /// The partitions assigned to this member now.
    assigned: HashSet<PartitionKey>,
    /// The next offset of each partition whose events are handled and stored: committed
    /// as they are done, once more before the partition goes to another member, and
    /// synchronously at close.
    done: HashMap<PartitionKey, i64>,
}

/// Hands partitions over cleanly: before they go, what is done in them is committed and
/// they are forgotten, so the next owner starts right after the last stored effect and
/// this member handles nothing more of them. (An event handled by both around a rebalance
/// is still applied once: the inbox shares the service's database.)
struct Rebalances {
    group: String,
    membership: Arc<Mutex<Membership>>,
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut membership = self.membership.lock().expect("membership lock poisoned");
        let mut offsets = TopicPartitionList::new();
        for element in revoked.elements() {
            let key = (element.topic().to_owned(), element.partition());
            membership.assigned.remove(&key);
            if let Some(offset) = membership.done.remove(&key) {
                let _ = offsets.add_partition_offset(&key.0, key.1, Offset::Offset(offset));
            }
        }
        // Asynchronous, sent before this member rejoins: a synchronous commit here, with
        // the group mid-rebalance on tansu, never returned and held the whole group up.
        if offsets.count() > 0
            && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
        {
            // The next owner reads those events again; its inbox recognises them.
            tracing::warn!(%error, group = self.group, "cannot commit the offsets of revoked partitions");
        }
        tracing::info!(
            group = self.group,
            partitions = revoked.count(),
            "partitions revoked"
        );
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut membership = self.membership.lock().expect("membership lock poisoned");
            membership.assigned.extend(
                assigned
                    .elements()
                    .iter()
                    .map(|element| (element.topic().to_owned(), element.partition())),
            );
            tracing::info!(
                group = self.group,
                partitions = assigned.count(),
                "partitions assigned"
            );
        }
    }
}

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer<Rebalances>>,
    namespace: String,
    /// The first offset of each partition handed out and not committed since: where to
    /// read again, as the embedded log does, when the consumer gives up on a batch.
    unacknowledged: HashMap<PartitionKey, i64>,
    membership: Arc<Mutex<Membership>>,
}

impl KafkaSubscription {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().expect("membership lock poisoned")
    }

    fn rewind(&mut self) -> Result<(), BusError> {
        let assigned = self.membership().assigned.clone();
        for ((topic, partition), offset) in self.unacknowledged.drain() {
            // A partition gone to another member is read there, from its last commit.
            if !assigned.contains(&(topic.clone(), partition)) {
                continue;
            }
            self.consumer
                .seek(&topic, partition, Offset::Offset(offset), BROKER_TIMEOUT)
                .map_err(failed)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Result<Record, BusError> {
        let topic = shop_name(&self.namespace, message.topic());
        let payload = message.payload().unwrap_or_default();
        let envelope = serde_json::from_slice(payload).map_err(|source| BusError::Corrupt {
            topic: topic.clone(),
            partition: message.partition() as u32,
            offset: message.offset(),
            source,
        })?;
        self.unacknowledged
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert(message.offset());
        Ok(Record {
            topic,
            partition: message.partition() as u32,
            offset: message.offset(),
            envelope,
        })
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        self.rewind()?;
        let consumer = self.consumer.clone();
        let mut records = Vec::new();
        let Ok(first) = tokio::time::timeout(wait, consumer.recv()).await else {
            return Ok(records);
        };
        records.push(self.record(&first.map_err(failed)?)?);
        while records.len() < max {
            match tokio::time::timeout(Duration::from_millis(1), consumer.recv()).await {
                Ok(message) => records.push(self.record(&message.map_err(failed)?)?),
                Err(_) => break,
            }
        }
        // Fetched before a rebalance moved their partition: the new owner has them.
        let assigned = self.membership().assigned.clone();
        let namespace = self.namespace.clone();
        let held = |topic: &str, partition: u32| {
            assigned.contains(&(cluster_name(&namespace, topic), partition as i32))
        };
        records.retain(|record| held(&record.topic, record.partition));
        self.unacknowledged
            .retain(|(topic, partition), _| assigned.contains(&(topic.clone(), *partition)));
        Ok(records)
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let mut next: HashMap<PartitionKey, i64> = HashMap::new();
        for record in records {
            let offset = next
                .entry((
                    cluster_name(&self.namespace, &record.topic),
                    record.partition as i32,
                ))
                .or_default();
            *offset = (*offset).max(record.offset + 1);
        }
        for (key, offset) in &next {
            if self
                .unacknowledged
                .get(key)
                .is_some_and(|first| first < offset)
            {
                self.unacknowledged.remove(key);
            }
        }
        let mut membership = self.membership.lock().expect("membership lock poisoned");
        // A partition another member holds now is its to commit: the broker would take a
        // commit from any member of the group, and move its position back.
        next.retain(|key, _| membership.assigned.contains(key));
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(failed)?;
        }
        // Asynchronous: a synchronous commit sent while the coordinator was unreachable
        // never returned once it was back (seen with a frozen broker), and would hang the
        // consumer and its shutdown with it. A commit that fails is not retried: those
        // events come again, and the inbox recognises them.
        if offsets.count() > 0 {
            self.consumer
                .commit(&offsets, CommitMode::Async)
                .map_err(failed)?;
        }
        membership.done.extend(next);
        Ok(())
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        let consumer = self.consumer.clone();
        let namespace = self.namespace.clone();
        tokio::task::spawn_blocking(move || {
            let committed = consumer.committed(BROKER_TIMEOUT).map_err(failed)?;
            let mut lags = Vec::new();
            for element in committed.elements() {
                let (_, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), BROKER_TIMEOUT)
                    .map_err(failed)?;
                let done = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => 0,
                };
                lags.push(PartitionLag {
                    topic: shop_name(&namespace, element.topic()),
                    partition: element.partition() as u32,
                    lag: (high - done).max(0),
                });
            }
            Ok(lags)
        })
        .await
        .map_err(|error| BusError::Append(error.to_string()))?
    }

    /// Confirms the last offsets with a synchronous commit, waiting at most
    /// [`FINAL_COMMIT`]: with the broker unreachable, shutdown goes on and the events after
    /// the last confirmed commit come again at the next start.
    async fn close(&mut self) -> Result<(), BusError> {
        let mut offsets = TopicPartitionList::new();
        let done: Vec<_> = self.membership().done.drain().collect();
        for ((topic, partition), offset) in done {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(failed)?;
        }
        let outcome = if offsets.count() > 0 {
            let consumer = self.consumer.clone();
            let commit =
                tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync));
            match tokio::time::timeout(FINAL_COMMIT, commit).await {
                Ok(Ok(committed)) => committed.map_err(failed),
                Ok(Err(error)) => Err(BusError::Append(error.to_string())),
                Err(_) => Err(BusError::Append(format!(
                    "the final offset commit took longer than {FINAL_COMMIT:?}"
                ))),
            }
        } else {
            Ok(())
        };
        self.consumer.unsubscribe();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use contracts::{Envelope, events::OrderConfirmed};
    use rdkafka::{
        ClientConfig, Message,
        consumer::{Consumer, StreamConsumer},
        message::Headers,
        mocking::MockCluster,
    };
    use uuid::Uuid;

    use super::KafkaBus;
    use crate::bus::{EventBus, OutgoingEvent, Record, Subscription};

    fn event(topic: &str) -> OutgoingEvent {
        let id = Uuid::now_v7();
        OutgoingEvent {
            topic: topic.into(),
            envelope: Envelope::new("order", id, &OrderConfirmed { order_id: id }, id)
                .with_traceparent(Some(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                )),
        }
    }

    /// Reads until `count` records came (the first group join takes a moment).
    async fn read(subscription: &mut dyn Subscription, count: usize) -> Vec<Record> {
        let started = Instant::now();
        let mut records = Vec::new();
        while records.len() < count {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "got {}",
                records.len()
            );
            records.extend(
                subscription
                    .next_batch(100, Duration::from_secs(1))
                    .await
                    .unwrap(),
            );
        }
        records
    }

    #[test]
    fn connection_settings_come_from_mall_kafka_variables_and_nothing_else_does() {
        let variables = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let settings = super::connection_settings(variables(&[
            ("MALL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("MALL_KAFKA_SASL_MECHANISMS", "PLAIN"),
            ("MALL_KAFKA_SSL_CA_LOCATION", "/etc/ca.pem"),
            ("MALL_DB", "postgres://db"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        assert_eq!(
            settings,
            [
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.mechanisms".to_owned(), "PLAIN".to_owned()),
                ("ssl.ca.location".to_owned(), "/etc/ca.pem".to_owned()),
            ]
        );
        let refused = super::connection_settings(variables(&[("MALL_KAFKA_ACKS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("MALL_KAFKA_ACKS would set acks"),
            "{refused}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_go_out_keyed_with_headers_and_come_back_until_committed() {
        let cluster = MockCluster::new(1).unwrap();
        // The mock broker answers no CreateTopics: the topic exists as on a real cluster.
        cluster.create_topic("order.order.v1", 2, 1).unwrap();
        let bus = KafkaBus::connect(&cluster.bootstrap_servers(), "", 2).unwrap();
        bus.ping().await.unwrap();
        let sent: Vec<_> = (0..5).map(|_| event("order.order.v1")).collect();
        bus.publish(sent.clone()).await.unwrap();

        let mut subscription = bus
            .subscribe("product", "product-0", &["order.order.v1"])
            .await
            .unwrap();
        let first = read(subscription.as_mut(), 5).await;
        let mut ids: Vec<_> = first.iter().map(|r| r.envelope.id).collect();
        ids.sort();
        // At least once: a rebalance while the group forms (seen on a loaded machine) hands
        // a partition over again from its committed offset, so an event may come twice.
        ids.dedup();
        let mut expected: Vec<_> = sent.iter().map(|e| e.envelope.id).collect();
        expected.sort();
        assert_eq!(ids, expected);

        // Not committed: the same records come again.
        let again = read(subscription.as_mut(), 5).await;
        assert_eq!(again.len(), 5);
        subscription.commit(&again).await.unwrap();
        let after_commit = subscription
            .next_batch(100, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(after_commit.is_empty(), "{after_commit:?}");
        assert!(
            subscription
                .lag()
                .await
                .unwrap()
                .iter()
                .all(|lag| lag.lag == 0)
        );
        subscription.close().await.unwrap();

        // A plain Kafka consumer sees the aggregate id as key and the metadata as headers.
        let plain: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "inspector")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        plain.subscribe(&["order.order.v1"]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(30), plain.recv())
            .await
            .unwrap()
            .unwrap();
        let envelope: Envelope = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(message.key().unwrap(), envelope.subject.as_bytes());
        let headers = message.headers().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(header("ce_type").as_deref(), Some("OrderConfirmed"));
        assert_eq!(header("ce_id"), Some(envelope.id.to_string()));
        assert_eq!(header("traceparent"), envelope.traceparent);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_member_of_the_group_starts_after_the_committed_offsets() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("payment.payment.v1", 1, 1).unwrap();
        // On the mock cluster the returning member got the partition only once the first
        // one's session had ended (seen): keep that session short here.
        let bus = KafkaBus::connect(&cluster.bootstrap_servers(), "", 1)
            .unwrap()
            .with_session_timeout(Duration::from_secs(6));
        bus.publish((0..3).map(|_| event("payment.payment.v1")).collect())
            .await
            .unwrap();
        let mut first = bus
            .subscribe("order", "order-0", &["payment.payment.v1"])
            .await
            .unwrap();
        let records = read(first.as_mut(), 3).await;
        first.commit(&records[..2]).await.unwrap();
        first.close().await.unwrap();
        drop(first);

        // The same member back, as after a restart: it takes its partition at once.
        let mut second = bus
            .subscribe("order", "order-0", &["payment.payment.v1"])
            .await
            .unwrap();
        let rest = read(second.as_mut(), 1).await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].envelope.id, records[2].envelope.id);
    }
}
