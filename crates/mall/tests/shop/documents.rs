//! The generated documents tell the truth about a running shop: every event a real run
//! puts on the bus was declared by the service that sent it, and validates against its
//! message in docs/asyncapi.yaml.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use contracts::{Envelope, Event, events};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::Shop;

/// Every event type of the contracts crate.
fn all_event_types() -> Vec<&'static str> {
    let mut types: Vec<_> = events::catalogue().iter().map(|e| e.name).collect();
    types.push(events::DeadLettered::TYPE);
    types
}

/// Every topic of the contracts, with the dead-letter topic of each consumer group.
fn all_topics() -> Vec<String> {
    let mut topics: Vec<String> = events::catalogue()
        .iter()
        .map(|e| e.topic.to_owned())
        .collect();
    topics.sort();
    topics.dedup();
    let groups = ["product", "order", "payment", "delivery", "mypage"];
    let dead_letters: Vec<String> = topics
        .iter()
        .flat_map(|topic| groups.map(|group| contracts::topics::dead_letter(topic, group)))
        .collect();
    topics.extend(dead_letters);
    topics
}

/// Drives the shop through every path that publishes an event: sign-up, catalogue
/// changes, a delivered order with an address change, requests that came too late for
/// it, a cancelled one, one rejected for stock, one for payment, and a poison event that
/// ends in a dead-letter topic.
async fn every_kind_of_event(shop: &Shop) {
    shop.new_customer().await;
    let product = shop.add_product(7_000, 5).await;
    let restock = shop
        .post_as(
            &shop.admin_token,
            &format!("/api/products/{product}/stock"),
            &json!({"delta": 5}),
        )
        .await;
    assert_eq!(restock.status(), StatusCode::OK);

    let delivered = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&delivered).await["status"], "DELIVERING");
    let changed = shop
        .client
        .patch(format!("{}/api/orders/{delivered}", shop.url))
        .bearer_auth(&shop.token)
        .json(&json!({"address": "2 Haeundae-ro, Busan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::ACCEPTED);
    let started = Instant::now();
    while shop.order(&delivered).await["address"] != "2 Haeundae-ro, Busan" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never redirected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed = shop
        .post_as(
            &shop.admin_token,
            &format!("/api/deliveries/{delivered}/complete"),
            &json!({}),
        )
        .await;
    assert_eq!(completed.status(), StatusCode::OK);
    // Requests that reach delivery after the parcel did, as a customer racing the
    // operator would send them: delivery refuses both.
    let delivered_id: uuid::Uuid = delivered.parse().unwrap();
    let too_late_cancel = events::OrderCancellationRequested {
        order_id: delivered_id,
    };
    let too_late_redirect = events::OrderAddressChangeRequested {
        order_id: delivered_id,
        address: "3 Jeju-daero, Jeju".into(),
    };
    for request in [
        Envelope::new("order", delivered_id, &too_late_cancel, delivered_id),
        Envelope::new("order", delivered_id, &too_late_redirect, delivered_id),
    ] {
        shop.inject(events::OrderCancellationRequested::TOPIC, &request)
            .await;
    }

    let cancelled = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&cancelled).await["status"], "DELIVERING");
    let cancel = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{cancelled}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);

    let too_many = shop.place_order(&product, 100).await;
    assert_eq!(shop.final_order(&too_many).await["status"], "REJECTED");
    // The simulated provider declines amounts ending in 402.
    let declined = shop.add_product(10_402, 5).await;
    let declined = shop.place_order(&declined, 1).await;
    assert_eq!(shop.final_order(&declined).await["status"], "REJECTED");

    // A confirmation of an order nobody placed: delivery cannot digest it.
    let never_placed = uuid::Uuid::now_v7();
    let poison = Envelope::new(
        "order",
        never_placed,
        &events::OrderConfirmed {
            order_id: never_placed,
        },
        never_placed,
    );
    shop.inject(events::OrderConfirmed::TOPIC, &poison).await;
}

/// One envelope of each type on the bus once every type has shown up, by type.
async fn captured_events(shop: &Shop) -> BTreeMap<String, Vec<Envelope>> {
    let started = Instant::now();
    loop {
        let bus = shop.bus().await;
        let mut by_type: BTreeMap<String, Vec<Envelope>> = BTreeMap::new();
        for topic in all_topics() {
            for envelope in bus.read_topic(&topic).await.unwrap() {
                by_type
                    .entry(envelope.event_type.clone())
                    .or_default()
                    .push(envelope);
            }
        }
        let missing: Vec<_> = all_event_types()
            .into_iter()
            .filter(|t| !by_type.contains_key(*t))
            .collect();
        if missing.is_empty() {
            return by_type;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never published: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `schema` with every local `$ref` of `document` replaced by what it points to.
fn resolve(schema: &Value, document: &Value) -> Value {
    match schema {
        Value::Object(object) => match object.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = document
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{pointer} points nowhere"));
                resolve(target, document)
            }
            None => Value::Object(
                object
                    .iter()
                    .map(|(key, value)| (key.clone(), resolve(value, document)))
                    .collect(),
            ),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, document)).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn every_event_of_a_real_run_matches_its_asyncapi_message_and_its_declared_sender() {
    let shop = Shop::start().await;
    every_kind_of_event(&shop).await;
    let captured = captured_events(&shop).await;

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/asyncapi.yaml");
    let asyncapi: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for event_type in all_event_types() {
        let payload = asyncapi
            .pointer(&format!("/components/messages/{event_type}/payload"))
            .unwrap_or_else(|| panic!("{event_type} is not in docs/asyncapi.yaml"));
        let validator = jsonschema::draft7::new(&resolve(payload, &asyncapi)).unwrap();
        for envelope in &captured[event_type] {
            let instance = serde_json::to_value(envelope).unwrap();
            if let Err(error) = validator.validate(&instance) {
                panic!("{event_type} {instance} does not match docs/asyncapi.yaml: {error}");
            }
        }
        // The schema is not vacuous: the same event under another type fails it.
        let mut mislabelled = serde_json::to_value(&captured[event_type][0]).unwrap();
        mislabelled["type"] = json!("SomethingElse");
        assert!(
            !validator.is_valid(&mislabelled),
            "{event_type} accepts any type"
        );
    }

    let services = [
        &auth::FLOWS,
        &product::FLOWS,
        &order::FLOWS,
        &payment::FLOWS,
        &delivery::FLOWS,
        &mypage::FLOWS,
    ];
    for envelope in captured.values().flatten() {
        let sender = services
            .iter()
            .find(|s| s.service == envelope.source)
            .unwrap_or_else(|| panic!("unknown source {}", envelope.source));
        let declared = if envelope.event_type == events::DeadLettered::TYPE {
            !sender.policies.is_empty()
        } else {
            sender
                .emitted()
                .iter()
                .any(|e| e.name == envelope.event_type)
        };
        assert!(
            declared,
            "{} sent {} without declaring it in its FLOWS",
            envelope.source, envelope.event_type
        );
    }
}
