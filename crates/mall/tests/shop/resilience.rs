//! Failure stays isolated: a split shop (one process per service) survives killed and
//! hung services, loses nothing, and refuses fast what it cannot do.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Shop, assert_problem};

#[tokio::test]
async fn a_split_shop_restarts_killed_services_and_every_order_still_ends_right() {
    let shop = Shop::start_split(&[]).await;
    let product = shop.add_product(1_000, 20).await;
    let order_ids = join_all((0..30).map(|_| shop.place_order(&product, 1))).await;
    for service in ["product", "payment", "delivery"] {
        shop.signal(service, "KILL");
    }

    let finals = join_all(order_ids.iter().map(|id| shop.final_order(id))).await;
    let with_status = |status: &str| finals.iter().filter(|o| o["status"] == status).count();
    assert_eq!(with_status("DELIVERING"), 20);
    assert_eq!(with_status("REJECTED"), 10);
    assert_eq!(shop.stock_of(&product).await, 0);
    let (passed, report) = shop.admin_check();
    assert!(passed, "{report}");
    let restarts = shop
        .stderr()
        .matches("a service stopped; restarting it")
        .count();
    assert_eq!(
        restarts, 3,
        "the supervisor restarted each killed service once"
    );
}

/// Order's circuit breaker to product: 0 closed, 1 open, 2 half-open.
async fn breaker_state(shop: &Shop) -> f64 {
    shop.metric(1, "mall_circuit_breaker_state", &["upstream=\"product\""])
        .await
}

#[tokio::test]
async fn with_product_hung_orders_fail_fast_while_my_page_works_and_flow_again_after() {
    let shop = Shop::start_split(&[
        ("MALL_BREAKER_FAILURES", "2"),
        ("MALL_BREAKER_OPEN_MS", "1000"),
        ("MALL_PRODUCT_TIMEOUT_MS", "200"),
        ("MALL_PRODUCT_RETRIES", "1"),
    ])
    .await;
    let product = shop.add_product(1_000, 10).await;
    let before = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&before).await["status"], "DELIVERING");
    assert_eq!(breaker_state(&shop).await, 0.0);

    shop.signal("product", "STOP");
    for _ in 0..2 {
        let response = shop.order_request(&product, 1, None).await;
        assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "did not answer").await;
    }
    let started = Instant::now();
    let refused = shop.order_request(&product, 1, None).await;
    let waited = started.elapsed();
    let retry_after = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "refused until it recovers",
    )
    .await;
    assert!(
        waited < Duration::from_millis(150),
        "an open breaker answers at once: {waited:?}"
    );
    assert_eq!(retry_after, "1");
    assert_eq!(breaker_state(&shop).await, 1.0);

    let my_page = shop.get_as(&shop.token, "/api/mypage").await;
    assert_eq!(my_page.status(), StatusCode::OK);
    let my_page: Value = my_page.json().await.unwrap();
    assert!(my_page.to_string().contains(&before), "{my_page}");

    shop.signal("product", "CONT");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&after).await["status"], "DELIVERING");
    assert_eq!(breaker_state(&shop).await, 0.0);
}
