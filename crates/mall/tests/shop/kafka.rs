//! The shop on the Kafka backend: every service's events through a Kafka broker, by
//! default rdkafka's in-process mock cluster (it speaks the Kafka protocol on a real port),
//! or a real broker named by `MALL_TEST_KAFKA_BROKERS`.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use contracts::{Envelope, events, topics};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    mocking::MockCluster,
};
use serde_json::{Value, json};

use crate::helpers::{NO_RATE_LIMITS, Needs, Shop, skipped, test_kafka_brokers};

/// Rdkafka's mock cluster with the shop's topics, which it cannot create itself (it
/// answers no CreateTopics; a real cluster gets them from the bus).
fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    let groups = ["product", "order", "payment", "delivery", "mypage"];
    for topic in [
        topics::CUSTOMER,
        topics::ORDER,
        topics::RESERVATION,
        topics::PAYMENT,
        topics::DELIVERY,
        topics::PRODUCT,
    ] {
        cluster.create_topic(topic, 4, 1).unwrap();
        for group in groups {
            cluster
                .create_topic(&topics::dead_letter(topic, group), 1, 1)
                .unwrap();
        }
    }
    cluster
}

/// Every record of the cluster's topics named `<namespace>.*`, read by a plain Kafka
/// consumer from the start: (topic, key, headers, payload).
type RawRecord = (String, Option<String>, Vec<(String, String)>, Vec<u8>);

fn read_namespace(brokers: &str, namespace: &str) -> Vec<RawRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Assigned partitions, never joined or committed: the group only satisfies librdkafka.
        .set("group.id", format!("{namespace}.plain-reader"))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    // The end of each partition when we start: read up to there.
    let mut unread = std::collections::HashMap::new();
    for topic in metadata.topics() {
        if !topic.name().starts_with(&format!("{namespace}.")) {
            continue;
        }
        for partition in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10))
                .unwrap();
            if high > low {
                unread.insert((topic.name().to_owned(), partition.id()), high);
            }
            partitions
                .add_partition_offset(topic.name(), partition.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&partitions).unwrap();
    let mut records = Vec::new();
    let started = std::time::Instant::now();
    while !unread.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "unread: {unread:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(error)) => panic!("{error}"),
            Some(Ok(message)) => {
                let place = (message.topic().to_owned(), message.partition());
                if unread
                    .get(&place)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    unread.remove(&place);
                }
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| {
                                let value =
                                    h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                (h.key.to_owned(), value.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push((
                    message.topic().to_owned(),
                    message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
    records
}

fn checked_in_schema(name: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contracts/schemas")
        .join(format!("{name}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// What a Kafka consumer that knows nothing of the shop sees on each topic: the aggregate
/// id as key, the envelope's metadata as headers, and a payload that matches the
/// checked-in schemas.
fn check_records_as_a_plain_consumer(records: &[RawRecord], namespace: &str) {
    let envelope_schema = checked_in_schema("Envelope");
    let mut types = HashSet::new();
    for (topic, key, headers, payload) in records {
        let value: Value = serde_json::from_slice(payload).unwrap();
        if let Err(error) = envelope_schema.validate(&value) {
            panic!("{topic}: {value} is not an envelope: {error}");
        }
        let envelope: Envelope = serde_json::from_value(value).unwrap();
        let data_schema = checked_in_schema(&envelope.event_type);
        if let Err(error) = data_schema.validate(&envelope.data) {
            panic!(
                "{topic}: {} does not match its schema: {error}",
                envelope.data
            );
        }
        assert_eq!(key.as_deref(), Some(envelope.subject.as_str()), "{topic}");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header("ce_id"), Some(envelope.id.to_string().as_str()));
        assert_eq!(header("ce_type"), Some(envelope.event_type.as_str()));
        assert_eq!(header("ce_source"), Some(envelope.source.as_str()));
        assert_eq!(header("ce_subject"), Some(envelope.subject.as_str()));
        assert_eq!(
            header("correlation_id"),
            Some(envelope.correlation_id.to_string().as_str())
        );
        assert_eq!(header("traceparent"), envelope.traceparent.as_deref());
        let catalogue = events::catalogue();
        let spec = catalogue
            .iter()
            .find(|spec| spec.name == envelope.event_type)
            .unwrap_or_else(|| panic!("{} is not in the catalogue", envelope.event_type));
        assert_eq!(topic, &format!("{namespace}.{}", spec.topic));
        types.insert(envelope.event_type);
    }
    for expected in [
        "OrderPlaced",
        "StockReserved",
        "PaymentAuthorized",
        "OrderRejected",
    ] {
        assert!(types.contains(expected), "no {expected} among {types:?}");
    }
}

/// On the broker `MALL_TEST_KAFKA_BROKERS` names, else on the mock cluster; in a
/// namespace of its own, so other shops on the broker do not meet it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_and_its_compensation_run_over_kafka() {
    let mut mock = None;
    let (brokers, namespace) = match test_kafka_brokers() {
        Some(brokers) => (brokers, format!("k{}", uuid::Uuid::now_v7().simple())),
        None => (
            mock.insert(mock_cluster()).bootstrap_servers(),
            String::new(),
        ),
    };
    let bus = format!("kafka://{brokers}/{namespace}");
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_BUS", &bus));
    let shop = Shop::start_with(&env).await;

    let product = shop.add_product(3_000, 5).await;
    let confirmed = shop.place_order(&product, 2).await;
    assert_eq!(shop.final_order(&confirmed).await["status"], "DELIVERING");
    let cancelled = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&cancelled).await["status"], "DELIVERING");
    let cancel = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{cancelled}/cancel"),
            &json!({}),
        )
        .await;
    assert!(cancel.status().is_success());
    let rejected = shop.place_order(&product, 10).await;
    assert_eq!(shop.final_order(&rejected).await["status"], "REJECTED");

    let started = std::time::Instant::now();
    while shop.stock_of(&product).await != 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "stock never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bus_file = shop.data_dir().join("bus.db");
    assert!(!bus_file.exists(), "no embedded log when the bus is Kafka");
    if namespace.is_empty() {
        skipped(
            Needs::KafkaBroker,
            "the records' check as a plain consumer needs a real broker \
             (MALL_TEST_KAFKA_BROKERS); the mock cluster ran the saga",
        );
    } else {
        let shop_namespace = namespace.clone();
        let records = tokio::task::spawn_blocking(move || read_namespace(&brokers, &namespace))
            .await
            .unwrap();
        check_records_as_a_plain_consumer(&records, &shop_namespace);
    }
}
