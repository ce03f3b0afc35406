use futures::future::join_all;

use crate::helpers::{Shop, count};

/// Orders answered 202 just before a SIGKILL, most of them still waiting for their stock
/// answer, all reach a final state after a restart, and stock counts each exactly once.
#[tokio::test]
async fn orders_interrupted_by_a_crash_reach_a_final_state_after_restart() {
    let mut shop = Shop::start().await;
    let product = shop.add_product(1_000, 20).await;
    let order_ids = join_all((0..30).map(|_| shop.place_order(&product, 1))).await;
    shop.kill();

    let orders = shop.db("order").await;
    let pending_at_crash = count(
        &orders,
        "SELECT COUNT(*) FROM (SELECT order_id FROM order_events GROUP BY order_id HAVING MAX(version) = 1) AS pending",
    )
    .await;
    orders.close().await;
    eprintln!("{pending_at_crash} of 30 orders were PENDING when the shop was killed");
    assert!(
        pending_at_crash > 0,
        "the crash must interrupt a saga for this test to mean anything"
    );

    shop.restart().await;
    let finals = join_all(order_ids.iter().map(|id| shop.final_order(id))).await;
    let confirmed = finals
        .iter()
        .filter(|o| o["status"] == "DELIVERING")
        .count();
    assert_eq!(confirmed, 20);
    assert_eq!(
        finals.iter().filter(|o| o["status"] == "REJECTED").count(),
        10
    );
    assert_eq!(shop.stock_of(&product).await, 0);
    let catalogue = shop.db("product").await;
    assert_eq!(
        count(&catalogue, "SELECT COUNT(*) FROM reservations").await,
        20
    );
}

#[tokio::test]
async fn a_graceful_stop_keeps_everything_and_the_demo_catalogue_is_seeded_once() {
    let mut shop = Shop::start().await;
    let product = shop.add_product(1_000, 5).await;
    let order_id = shop.place_order(&product, 2).await;
    shop.terminate();

    shop.restart().await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    assert_eq!(shop.stock_of(&product).await, 3);
    let catalogue = shop.db("product").await;
    assert_eq!(count(&catalogue, "SELECT COUNT(*) FROM products").await, 7);
}
