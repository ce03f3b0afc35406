//! Several instances of order, product and payment (`mall up --split --replicas`) under
//! load, on the embedded log or Kafka: one of each killed and one of each added mid-run.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use contracts::topics;
use serde_json::Value;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop};

const SERVICES: [&str; 3] = ["order", "product", "payment"];

/// Events of `event_type` on `topic` that answer one order with different event ids: a
/// step the saga took twice (a second charge, a second reservation).
async fn taken_twice(shop: &Shop, topic: &str, event_type: &str) -> Vec<String> {
    let mut ids: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    for envelope in shop.events_on(topic).await {
        if envelope.event_type == event_type {
            ids.entry(envelope.subject).or_default().insert(envelope.id);
        }
    }
    ids.into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(order, ids)| format!("order {order}: {event_type} {} times", ids.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_and_lose_nothing_when_one_dies_and_one_joins() {
    let shop = Shop::start_split(&[
        ("MALL_REPLICAS", "order=2,product=2,payment=3"),
        // A member that dies leaves its partitions to the others after this long (on a
        // broker of tansu's, members of a shorter session were taken for gone while they
        // heartbeat)...
        ("MALL_BUS_SESSION_TIMEOUT_MS", "15000"),
        // ...and the saga waits out the rebalances that follow rather than reject orders.
        ("MALL_SAGA_DEADLINE_SECS", "120"),
        // Eleven processes with a database: PostgreSQL's 100 connections are shared with
        // the tests running beside this one.
        ("MALL_DB_MAX_CONNECTIONS", "3"),
    ])
    .await;
    let out = tempfile::tempdir().unwrap();
    let loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["loadgen", "--url", &shop.url, "--admin-email", ADMIN_EMAIL])
        .args([
            "--duration-secs",
            "24",
            "--concurrency",
            "8",
            "--customers",
            "8",
        ])
        .arg("--out")
        .arg(out.path())
        .env("MALL_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output();
    let loadgen = tokio::spawn(loadgen);

    // A supervised instance of each killed (and restarted by its supervisor)...
    tokio::time::sleep(Duration::from_secs(6)).await;
    for service in SERVICES {
        shop.signal(&format!("{service}-1"), "KILL");
    }
    // ...one more of each joins its consumer group...
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut added = Vec::new();
    for service in SERVICES {
        added.push(shop.add_instance(service, 7).await);
    }
    // ...and dies for good, leaving its partitions to the others. Not on tansu, the
    // broker of these tests: after a member of a group died there (its session over), a
    // rebalance handed some partitions to nobody (payment held 2 of its 8) and the group
    // stalled for good, on tansu 0.6.0 whatever the session timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    if !shop.on_kafka() {
        for instance in &mut added {
            instance.kill();
        }
    }

    let ran = loadgen.await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("result.json")).unwrap())
            .unwrap();
    // Every accepted order reached the state its kind must reach. The only errors allowed
    // are placements and cancels a killed instance was handling as it died (the gateway
    // sends a change to one instance only): the customer was told, nothing was lost.
    let errors = result["errors"].as_object().unwrap();
    let mut cut_off = 0;
    for (error, count) in errors {
        assert!(
            error == "place: 502 Bad Gateway" || error == "cancel: 502 Bad Gateway",
            "{error} ({count}): {said}"
        );
        cut_off += count.as_u64().unwrap();
    }
    assert!(cut_off <= 8 * 3, "{cut_off} requests cut off: {said}");
    let finals = result["final_states"].as_object().unwrap();
    let delivering = finals
        .get("Normal -> DELIVERING")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(
        delivering >= 20,
        "too little work to prove anything: {said}"
    );

    // No charge and no reservation twice; the books balance and every group caught up.
    assert_eq!(
        taken_twice(&shop, topics::PAYMENT, "PaymentAuthorized").await,
        Vec::<String>::new()
    );
    assert_eq!(
        taken_twice(&shop, topics::RESERVATION, "StockReserved").await,
        Vec::<String>::new()
    );
    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
    assert!(report.contains("bus drained: yes"), "{report}");

    // Every instance of order and product served requests: the gateway and order's
    // product client take them in turn (payment has no requests of customers).
    for (service, port_offset) in [("order", 1), ("product", 3)] {
        for instance in 0..2 {
            let port = shop.base_port + port_offset + 7 * instance;
            let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics
                    .lines()
                    .any(|line| line.starts_with("mall_http_requests_total")),
                "{service} instance {instance} served nothing"
            );
        }
    }
}
