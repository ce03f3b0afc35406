//! My page: the caller's orders with order, payment and delivery status, from its own
//! read model fed only by events.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Shop, assert_problem};

/// The caller's my page row for `order_id` once it shows `expected` (order, payment,
/// delivery status).
async fn row_shows(shop: &Shop, token: &str, order_id: &str, expected: [Value; 3]) -> Value {
    let started = Instant::now();
    loop {
        let page: Value = shop
            .get_as(token, "/api/mypage")
            .await
            .json()
            .await
            .unwrap();
        let row = page["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == order_id)
            .cloned();
        if let Some(row) = &row
            && [
                row["order_status"].clone(),
                row["payment_status"].clone(),
                row["delivery_status"].clone(),
            ] == expected
        {
            return row.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{order_id}: {row:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn my_page_follows_each_order_through_its_saga_and_shows_only_my_orders() {
    let shop = Shop::start().await;
    let product = shop.add_product(6_000, 10).await;
    let delivered = shop.place_order(&product, 2).await;
    let cancelled = shop.place_order(&product, 1).await;
    let declined_product = shop.add_product(10_402, 10).await;
    let declined = shop.place_order(&declined_product, 1).await;
    for order_id in [&delivered, &cancelled, &declined] {
        shop.final_order(order_id).await;
    }
    shop.post_as(
        &shop.admin_token,
        &format!("/api/deliveries/{delivered}/complete"),
        &json!({}),
    )
    .await;
    shop.post_as(
        &shop.token,
        &format!("/api/orders/{cancelled}/cancel"),
        &json!({}),
    )
    .await;

    let row = row_shows(
        &shop,
        &shop.token,
        &delivered,
        [json!("DELIVERED"), json!("AUTHORIZED"), json!("COMPLETED")],
    )
    .await;
    assert_eq!(row["amount"], 12_000);
    assert_eq!(row["quantity"], 2);
    assert_eq!(row["product_id"], product.as_str());
    let row = row_shows(
        &shop,
        &shop.token,
        &cancelled,
        [json!("CANCELLED"), json!("REFUNDED"), json!("CANCELLED")],
    )
    .await;
    assert_eq!(
        row["cancellation_status"], "REQUESTED",
        "asked once on its way"
    );
    row_shows(
        &shop,
        &shop.token,
        &declined,
        [json!("REJECTED"), json!("DECLINED"), Value::Null],
    )
    .await;

    let stranger = shop.new_customer().await;
    let page: Value = shop
        .get_as(&stranger, "/api/mypage")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["orders"], json!([]));
    assert_problem(
        shop.get("/api/mypage").await,
        StatusCode::UNAUTHORIZED,
        "bearer token",
    )
    .await;
}

/// When a request a client made around a rebuild was sent and when it was answered.
struct Exchange {
    sent: Instant,
    answered: Instant,
}

impl Exchange {
    /// Whether it was under way at some moment between `started` and `ended`.
    fn overlaps(&self, started: Instant, ended: Instant) -> bool {
        self.sent < ended && self.answered > started
    }
}

/// Reads the customer's page again and again until `stop`; each read's answer.
async fn read_my_page_until(
    shop: Arc<Shop>,
    stop: CancellationToken,
) -> Vec<(Exchange, StatusCode)> {
    let mut reads = Vec::new();
    while !stop.is_cancelled() {
        let sent = Instant::now();
        let status = shop.get_as(&shop.token, "/api/mypage").await.status();
        let answered = Instant::now();
        reads.push((Exchange { sent, answered }, status));
    }
    reads
}

/// Places orders of one unit of `product` as the customer `token`, one after the other,
/// until `stop` or until `at_most` are placed; each order's id.
async fn place_orders_until(
    shop: Arc<Shop>,
    token: String,
    product: String,
    at_most: usize,
    stop: CancellationToken,
) -> Vec<(Exchange, String)> {
    let mut orders = Vec::new();
    while !stop.is_cancelled() && orders.len() < at_most {
        let sent = Instant::now();
        let placed = shop
            .post_as(
                &token,
                "/api/orders",
                &json!({"product_id": product, "quantity": 1, "address": "1 Teheran-ro, Seoul"}),
            )
            .await;
        assert_eq!(placed.status(), StatusCode::ACCEPTED);
        let answered = Instant::now();
        let order_id = placed.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        orders.push((Exchange { sent, answered }, order_id));
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replays_the_log_into_a_fresh_table_while_the_page_keeps_answering() {
    let shop = Arc::new(Shop::start().await);
    let product = shop.add_product(6_000, 1000).await;
    let kept = shop.place_order(&product, 1).await;
    let cancelled = shop.place_order(&product, 2).await;
    shop.final_order(&kept).await;
    shop.final_order(&cancelled).await;
    shop.post_as(
        &shop.token,
        &format!("/api/orders/{cancelled}/cancel"),
        &json!({}),
    )
    .await;
    row_shows(
        &shop,
        &shop.token,
        &cancelled,
        [json!("CANCELLED"), json!("REFUNDED"), json!("CANCELLED")],
    )
    .await;

    // The read model is damaged: one row gone, one wrong.
    let page_db = shop.db("mypage").await;
    let mut tx = page_db.begin_write().await.unwrap();
    chassis::execute!(
        &mut tx,
        sqlx::query("DELETE FROM mypage_orders WHERE order_id = $1")
            .bind(kept.parse::<uuid::Uuid>().unwrap())
    )
    .unwrap();
    chassis::execute!(
        &mut tx,
        sqlx::query("UPDATE mypage_orders SET order_status = 'PENDING'")
    )
    .unwrap();
    tx.commit().await.unwrap();
    page_db.close().await;

    // The customer reads their page, and they and another customer place orders, from
    // before the rebuild starts until it is over, so that both meet every step of it, the
    // swap included. (My page lists 200 orders: each buyer stays below.)
    const MOST_ORDERS: usize = 150;
    let other_customer = shop.new_customer().await;
    let rebuilt = CancellationToken::new();
    let reader = tokio::spawn(read_my_page_until(shop.clone(), rebuilt.clone()));
    let buyers: Vec<_> = [shop.token.clone(), other_customer.clone()]
        .into_iter()
        .map(|token| {
            let orders = place_orders_until(
                shop.clone(),
                token.clone(),
                product.clone(),
                MOST_ORDERS,
                rebuilt.clone(),
            );
            (token, tokio::spawn(orders))
        })
        .collect();
    // Their events fill the log first, so that the replay has some way to go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let rebuild = tokio::task::spawn_blocking({
        let shop = shop.clone();
        move || shop.admin(&["rebuild", "mypage"])
    })
    .await
    .unwrap();
    let ended = Instant::now();
    rebuilt.cancel();
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuild.stdout).contains("rebuilt from"));
    let reads = reader.await.unwrap();
    let mut orders = Vec::new();
    for (token, buyer) in buyers {
        let placed = buyer.await.unwrap();
        orders.extend(placed.into_iter().map(|order| (token.clone(), order)));
    }
    let reads_during = reads
        .iter()
        .filter(|(read, _)| read.overlaps(started, ended))
        .count();
    let orders_during = orders
        .iter()
        .filter(|(_, (order, _))| order.overlaps(started, ended))
        .count();
    assert!(
        reads_during >= 5 && orders_during >= 4,
        "the rebuild took {:?}: {reads_during} reads and {orders_during} orders met it",
        ended - started
    );
    let refused: Vec<_> = reads
        .iter()
        .map(|(_, status)| *status)
        .filter(|status| *status != StatusCode::OK)
        .collect();
    assert!(
        refused.is_empty(),
        "the page answered throughout: {refused:?}"
    );

    row_shows(
        &shop,
        &shop.token,
        &kept,
        [json!("DELIVERING"), json!("AUTHORIZED"), json!("STARTED")],
    )
    .await;
    row_shows(
        &shop,
        &shop.token,
        &cancelled,
        [json!("CANCELLED"), json!("REFUNDED"), json!("CANCELLED")],
    )
    .await;
    // Every order placed around the rebuild is on its customer's page, as far on as its
    // saga.
    for (token, (_, order_id)) in &orders {
        row_shows(
            &shop,
            token,
            order_id,
            [json!("DELIVERING"), json!("AUTHORIZED"), json!("STARTED")],
        )
        .await;
    }

    // And it keeps following events after the swap.
    let later = shop.place_order(&product, 1).await;
    shop.final_order(&later).await;
    row_shows(
        &shop,
        &shop.token,
        &later,
        [json!("DELIVERING"), json!("AUTHORIZED"), json!("STARTED")],
    )
    .await;
}
