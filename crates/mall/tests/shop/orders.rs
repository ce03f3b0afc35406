use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use chassis::bus::{OutgoingEvent, partition_for};
use contracts::{Envelope, topics};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{NO_RATE_LIMITS, Shop, assert_problem, count};

#[tokio::test]
async fn an_order_for_available_stock_is_confirmed_and_the_stock_goes_down() {
    let shop = Shop::start().await;
    let product = shop.add_product(12_000, 10).await;

    let order_id = shop.place_order(&product, 3).await;
    let order = shop.final_order(&order_id).await;

    assert_eq!(order["status"], "DELIVERING");
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["amount"], 36_000);
    assert_eq!(order["product_id"], product.as_str());
    assert_eq!(shop.stock_of(&product).await, 7);
}

#[tokio::test]
async fn an_order_above_the_stock_is_rejected_with_the_reason_and_the_stock_is_unchanged() {
    let shop = Shop::start().await;
    let product = shop.add_product(5_000, 2).await;

    let order_id = shop.place_order(&product, 3).await;
    let order = shop.final_order(&order_id).await;

    assert_eq!(order["status"], "REJECTED");
    assert_eq!(
        order["reason"],
        "insufficient stock: 2 available, 3 requested"
    );
    assert_eq!(shop.stock_of(&product).await, 2);
}

#[tokio::test]
async fn fifty_concurrent_orders_for_the_last_ten_units_confirm_exactly_ten() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;

    let order_ids = join_all((0..50).map(|_| shop.place_order(&product, 1))).await;
    let orders = join_all(order_ids.iter().map(|id| shop.final_order(id))).await;

    let with_status = |status: &str| orders.iter().filter(|o| o["status"] == status).count();
    assert_eq!(with_status("DELIVERING"), 10);
    assert_eq!(with_status("REJECTED"), 40);
    assert_eq!(shop.stock_of(&product).await, 0);
    let db = shop.db("product").await;
    assert_eq!(count(&db, "SELECT MIN(available) FROM products").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM reservations").await, 10);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_gives_one_order() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;

    let first = shop.order_request(&product, 2, Some("checkout-42")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second = shop.order_request(&product, 2, Some("checkout-42")).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);

    let order_id = first["order_id"].as_str().unwrap();
    assert_eq!(shop.final_order(order_id).await["status"], "DELIVERING");
    assert_eq!(shop.stock_of(&product).await, 8);
    let orders = shop.db("order").await;
    assert_eq!(
        count(&orders, "SELECT COUNT(DISTINCT order_id) FROM order_events").await,
        1
    );

    let other_body = shop.order_request(&product, 3, Some("checkout-42")).await;
    assert_problem(
        other_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "different request",
    )
    .await;
    assert_eq!(
        count(&orders, "SELECT COUNT(DISTINCT order_id) FROM order_events").await,
        1
    );
}

/// The envelope of the first event of `event_type` about `subject` in `topic`.
async fn find_event(shop: &Shop, topic: &str, event_type: &str, subject: &str) -> Envelope {
    shop.events_on(topic)
        .await
        .into_iter()
        .find(|e| e.event_type == event_type && e.subject == subject)
        .unwrap_or_else(|| panic!("no {event_type} about {subject} in {topic}"))
}

async fn wait_for_metric(shop: &Shop, port_offset: u16, labels: &[&str], at_least: f64) {
    let started = Instant::now();
    while shop
        .metric_or_zero(port_offset, "mall_events_consumed_total", labels)
        .await
        < at_least
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{labels:?} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_event_delivered_twice_changes_nothing_the_second_time() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;
    let order_id = shop.place_order(&product, 4).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");

    let placed = find_event(&shop, topics::ORDER, "OrderPlaced", &order_id).await;
    let reserved = find_event(&shop, topics::RESERVATION, "StockReserved", &order_id).await;
    shop.bus()
        .await
        .publish(vec![
            OutgoingEvent {
                topic: topics::ORDER.into(),
                envelope: placed,
            },
            OutgoingEvent {
                topic: topics::RESERVATION.into(),
                envelope: reserved,
            },
        ])
        .await
        .unwrap();

    let duplicate = "outcome=\"duplicate\"";
    wait_for_metric(
        &shop,
        3,
        &["group=\"product\"", "order.order.v1", duplicate],
        1.0,
    )
    .await;
    wait_for_metric(
        &shop,
        4,
        &["group=\"payment\"", "product.reservation.v1", duplicate],
        1.0,
    )
    .await;
    assert_eq!(shop.stock_of(&product).await, 6);
    let history: Value = shop
        .get_as(&shop.token, &format!("/api/orders/{order_id}/history"))
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderConfirmed", "DeliveryStarted"]);
    assert_eq!(
        shop.events_on(topics::RESERVATION).await.len(),
        2,
        "one StockReserved answer and the duplicate we published, no second answer"
    );
    assert_eq!(
        shop.events_on(topics::PAYMENT).await.len(),
        1,
        "one charge, none for the duplicate StockReserved"
    );
}

#[tokio::test]
async fn history_lists_every_event_with_what_it_changed() {
    let shop = Shop::start().await;
    let product = shop.add_product(2_500, 5).await;
    let order_id = shop.place_order(&product, 2).await;
    shop.final_order(&order_id).await;

    let history: Value = shop
        .get_as(&shop.token, &format!("/api/orders/{order_id}/history"))
        .await
        .json()
        .await
        .unwrap();
    let events = history["items"].as_array().unwrap();
    assert_eq!(events[0]["type"], "OrderPlaced");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["data"]["amount"], 5_000);
    let placed_changes = events[0]["changes"].as_array().unwrap();
    assert!(
        placed_changes
            .iter()
            .any(|c| c["field"] == "status" && c["from"].is_null() && c["to"] == "PENDING")
    );
    assert_eq!(events[1]["type"], "OrderConfirmed");
    assert_eq!(
        events[1]["changes"],
        serde_json::json!([{"field": "status", "from": "PENDING", "to": "CONFIRMED"}])
    );
}

#[tokio::test]
async fn the_trace_of_a_request_travels_into_the_events_it_causes_and_their_answers() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 5).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = shop
        .client
        .post(format!("{}/api/orders", shop.url))
        .bearer_auth(&shop.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"product_id": product, "quantity": 1, "address": "Seoul"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        response.headers()["traceparent"]
            .to_str()
            .unwrap()
            .contains(trace_id)
    );
    let order_id = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.final_order(&order_id).await;

    for (topic, event_type) in [
        (topics::ORDER, "OrderPlaced"),
        (topics::RESERVATION, "StockReserved"),
        (topics::PAYMENT, "PaymentAuthorized"),
        (topics::ORDER, "OrderConfirmed"),
        (topics::DELIVERY, "DeliveryStarted"),
    ] {
        let event = find_event(&shop, topic, event_type, &order_id).await;
        let traceparent = event.traceparent.unwrap_or_default();
        assert!(
            traceparent.contains(trace_id),
            "{event_type} carries {traceparent:?}"
        );
        assert_eq!(event.correlation_id.to_string(), order_id);
    }
}

#[tokio::test]
async fn every_service_reports_health_and_metrics() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 5).await;
    let order_id = shop.place_order(&product, 1).await;
    shop.final_order(&order_id).await;

    for offset in 0..=6 {
        for (path, status) in [("/health/live", "live"), ("/health/ready", "ready")] {
            let url = format!("http://127.0.0.1:{}{path}", shop.base_port + offset);
            let answer = shop.client.get(&url).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{url}");
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["status"], status, "{url}");
        }
    }
    assert!(
        shop.metric(
            1,
            "mall_http_requests_total",
            &["route=\"/orders\"", "status=\"202\""]
        )
        .await
            >= 1.0
    );
    assert!(
        shop.metric(
            1,
            "mall_http_request_duration_seconds_count",
            &["route=\"/orders\""]
        )
        .await
            >= 1.0
    );
    assert!(
        shop.metric(1, "mall_events_published_total", &["order.order.v1"])
            .await
            >= 2.0
    );
    assert!(
        shop.metric(3, "mall_events_consumed_total", &["outcome=\"handled\""])
            .await
            >= 2.0
    );
    let text = shop
        .client
        .get(format!("http://127.0.0.1:{}/metrics", shop.base_port + 3))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mall_outbox_backlog"), "{text}");
    assert!(text.contains("mall_consumer_lag"), "{text}");
}

#[tokio::test]
async fn topics_get_as_many_partitions_as_mall_bus_partitions_says() {
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_BUS_PARTITIONS", "3"));
    let shop = Shop::start_with(&env).await;
    let product = shop.add_product(1_000, 10).await;
    let orders = join_all((0..6).map(|_| shop.place_order(&product, 1))).await;
    for order_id in &orders {
        shop.final_order(order_id).await;
    }

    let bus = shop.bus().await;
    for topic in [
        topics::CUSTOMER,
        topics::PRODUCT,
        topics::ORDER,
        topics::RESERVATION,
        topics::PAYMENT,
        topics::DELIVERY,
    ] {
        let group = format!("partitions-{}", uuid::Uuid::now_v7());
        let mut reader = bus.subscribe(&group, &group, &[topic]).await.unwrap();
        // A new member of a Kafka group is handed its partitions after a few seconds.
        let started = std::time::Instant::now();
        let mut records = Vec::new();
        while records.is_empty() && started.elapsed() < Duration::from_secs(30) {
            records = reader
                .next_batch(10_000, Duration::from_secs(1))
                .await
                .unwrap();
        }
        assert!(!records.is_empty(), "no events on {topic}");
        // Each aggregate's events on one partition: the embedded log's (FNV of the key),
        // or on Kafka librdkafka's partitioner's, the same for every event of a key.
        let mut placed: std::collections::HashMap<&str, u32> = Default::default();
        for record in &records {
            let subject = &record.envelope.subject;
            let expected = match shop.on_kafka() {
                false => partition_for(subject, 3),
                true => *placed.entry(subject).or_insert(record.partition),
            };
            assert_eq!(record.partition, expected, "{topic}: {subject}");
        }
        let partitions: BTreeSet<u32> = reader
            .lag()
            .await
            .unwrap()
            .iter()
            .map(|partition| partition.partition)
            .collect();
        assert_eq!(partitions, BTreeSet::from([0, 1, 2]), "{topic}");
        reader.close().await.unwrap();
    }
}
