//! The shop on the Kafka backend: every service's events through a Kafka broker, by
//! default rdkafka's in-process mock cluster (it speaks the Kafka protocol on a real port),
//! or a real broker named by `MALL_TEST_KAFKA_BROKERS`.

use contracts::topics;
use rdkafka::mocking::MockCluster;
use serde_json::json;

use crate::helpers::{NO_RATE_LIMITS, Shop};

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

/// On the broker `MALL_TEST_KAFKA_BROKERS` names (a fresh one: the shop's groups start
/// from its offsets), else on the mock cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_and_its_compensation_run_over_kafka() {
    let mut mock = None;
    let brokers = std::env::var("MALL_TEST_KAFKA_BROKERS")
        .unwrap_or_else(|_| mock.insert(mock_cluster()).bootstrap_servers());
    let bus = format!("kafka://{brokers}");
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
}
