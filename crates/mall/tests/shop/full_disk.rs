//! Storage that refuses writes is an episode, not the end (issue 15): while it lasts,
//! writes fail cleanly with a 503 and readiness says why; once the storage takes writes
//! again they work without a restart and every accepted order finishes its saga. On the
//! embedded backend the shop's own small filesystem fills up; on PostgreSQL its databases
//! turn read-only, as after a failover to a standby.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Needs, Shop, skipped};

/// The order service's port, from the shop's base port.
const ORDER: u16 = 1;

/// What makes the shop's storage refuse writes.
enum Refusal {
    /// A file filling the shop's filesystem.
    FullDisk(PathBuf),
    ReadOnlyDatabases,
}

impl Refusal {
    fn start(shop: &Shop) -> Refusal {
        if shop.on_postgres() {
            shop.set_databases_read_only(true);
            return Refusal::ReadOnlyDatabases;
        }
        let path = shop.data_dir().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..512]).is_ok() {}
        let _ = file.sync_all();
        Refusal::FullDisk(path)
    }

    fn end(self, shop: &Shop) {
        match self {
            Refusal::FullDisk(filler) => std::fs::remove_file(filler).unwrap(),
            Refusal::ReadOnlyDatabases => shop.set_databases_read_only(false),
        }
    }
}

/// Places one order for the shop's customer; the status of the answer, whether it said
/// when to retry, and the order id when accepted.
async fn place(shop: &Shop, product: &str) -> (StatusCode, bool, Option<String>) {
    let response = shop
        .post_as(
            &shop.token,
            "/api/orders",
            &json!({"product_id": product, "quantity": 1, "address": "1 Teheran-ro, Seoul"}),
        )
        .await;
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        retry_after,
        body["order_id"].as_str().map(str::to_owned),
    )
}

/// The order service's readiness: its status and what it says.
async fn order_readiness(shop: &Shop) -> (StatusCode, Value) {
    let response = shop
        .client
        .get(format!(
            "http://127.0.0.1:{}/health/ready",
            shop.base_port + ORDER
        ))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or_default())
}

/// Waits until the order service's readiness answers `status`; returns what it said.
async fn readiness_becomes(shop: &Shop, status: StatusCode) -> Value {
    let started = Instant::now();
    loop {
        let (now, said) = order_readiness(shop).await;
        if now == status {
            return said;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "readiness still {now} {said} rather than {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn writes_heal_when_the_storage_takes_them_again_and_no_accepted_order_is_lost() {
    let shop = if crate::helpers::test_database_server().is_some() {
        Shop::start().await
    } else {
        let Some(shop) = Shop::start_on_small_filesystem(16).await else {
            skipped(Needs::Root, "mounting a tmpfs needs root");
            return;
        };
        shop
    };
    let product = shop.add_product(1_000, 100_000).await;
    // Sagas in flight when the storage goes: their consumers and relays meet it too.
    let mut accepted = Vec::new();
    for _ in 0..10 {
        accepted.push(shop.place_order(&product, 1).await);
    }

    let refusal = Refusal::start(&shop);
    let started = Instant::now();
    let mut refused = 0;
    while refused < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the storage never refused a write"
        );
        match place(&shop, &product).await {
            (StatusCode::ACCEPTED, _, Some(order_id)) => accepted.push(order_id),
            (status, retry_after, _) => {
                assert_eq!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "refused storage is no bug"
                );
                assert!(retry_after, "a 503 says when to try again");
                refused += 1;
            }
        }
    }
    let unready = readiness_becomes(&shop, StatusCode::SERVICE_UNAVAILABLE).await;
    let reason = unready["detail"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the order database has failed"),
        "readiness names the failing storage: {unready}"
    );
    if !shop.on_postgres() {
        let failed_commits = shop.metric(ORDER, "mall_db_failed_commits", &[]).await;
        assert!(failed_commits >= 1.0, "failed commits are counted");
    }
    // Long enough for the relays and consumers to back off a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;

    refusal.end(&shop);
    let freed = Instant::now();
    loop {
        let (status, _, order_id) = place(&shop, &product).await;
        if status == StatusCode::ACCEPTED {
            accepted.extend(order_id);
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "writes still fail {:?} after the storage came back: {status}",
            freed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writing_again = freed.elapsed();
    readiness_becomes(&shop, StatusCode::OK).await;
    let ready_again = freed.elapsed();
    for order_id in &accepted {
        let order = shop.final_order(order_id).await;
        assert_eq!(order["status"], "DELIVERING", "{order}");
    }
    let all_final = freed.elapsed();
    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");

    let log = shop.stderr();
    assert!(
        !log.contains("non-zero transaction depth"),
        "a failed commit left a connection inside its transaction"
    );
    let episodes = log.matches("storage failing").count();
    eprintln!(
        "{} accepted, {refused} refused ({reason}), {episodes} failure episodes logged; \
         after the storage came back: writing again in {writing_again:?}, ready in \
         {ready_again:?}, every order final in {all_final:?}",
        accepted.len(),
    );
    assert!(
        (1..=20).contains(&episodes),
        "the failure is logged once per episode and database, not per call: {episodes} times"
    );
}
