//! A full disk is an episode, not the end (issue 15): while the shop's filesystem is
//! full writes fail cleanly, and once space is back they work again without a restart
//! and every accepted order finishes its saga.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::Shop;

/// Fills the shop's filesystem with one file until no byte fits; returns the file.
fn fill_disk(shop: &Shop) -> PathBuf {
    let path = shop.data_dir().join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&block[..512]).is_ok() {}
    let _ = file.sync_all();
    path
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

#[tokio::test]
async fn writes_heal_when_space_comes_back_and_no_accepted_order_is_lost() {
    let Some(shop) = Shop::start_on_small_filesystem(16).await else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    if shop.on_postgres() {
        eprintln!("SKIPPED: the full disk is the embedded backend's (PostgreSQL: see outage)");
        return;
    }
    let product = shop.add_product(1_000, 100_000).await;
    let mut accepted = vec![shop.place_order(&product, 1).await];

    let filler = fill_disk(&shop);
    let started = Instant::now();
    let mut refused = 0;
    while refused == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the disk never refused a write"
        );
        match place(&shop, &product).await {
            (StatusCode::ACCEPTED, _, Some(order_id)) => accepted.push(order_id),
            (status, retry_after, _) => {
                assert_eq!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a full disk is no bug"
                );
                assert!(retry_after, "a 503 says when to try again");
                refused += 1;
            }
        }
    }

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    loop {
        let (status, _, order_id) = place(&shop, &product).await;
        if status == StatusCode::ACCEPTED {
            accepted.extend(order_id);
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "writes still fail {:?} after space came back: {status}",
            freed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} accepted, {refused} refused while full; writing again {:?} after space came back",
        accepted.len(),
        freed.elapsed()
    );
    for order_id in &accepted {
        let order = shop.final_order(order_id).await;
        assert_eq!(order["status"], "DELIVERING", "{order}");
    }
    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
}
