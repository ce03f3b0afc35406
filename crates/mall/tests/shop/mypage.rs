//! My page: the caller's orders with order, payment and delivery status, from its own
//! read model fed only by events.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

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

#[tokio::test]
async fn a_rebuild_replays_the_log_into_a_fresh_table_while_the_page_keeps_answering() {
    let shop = Shop::start().await;
    let product = shop.add_product(6_000, 10).await;
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

    let reader = {
        let (url, token) = (shop.url.clone(), shop.token.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for _ in 0..50 {
                let response = client
                    .get(format!("{url}/api/mypage"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                answers.push(response.status());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    let rebuilt = shop.admin(&["rebuild", "mypage"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt from"));
    assert!(
        reader.await.unwrap().iter().all(|s| *s == StatusCode::OK),
        "the page answered throughout"
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
