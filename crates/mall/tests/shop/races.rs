//! A customer's request racing the operator's completion of the same delivery (issue 14):
//! whichever reaches delivery first wins, and every service ends on the same side.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::Shop,
    saga::{delivery_address, status_in},
};

/// Orders in each race: enough that both outcomes show up on every run.
const ORDERS: usize = 60;

/// `count` orders of one product, each confirmed and on its way.
async fn orders_on_their_way(shop: &Shop, count: usize) -> (String, Vec<String>) {
    let product = shop.add_product(2_000, count as u32).await;
    let mut orders = Vec::new();
    for _ in 0..count {
        orders.push(shop.place_order(&product, 1).await);
    }
    for order_id in &orders {
        assert_eq!(shop.final_order(order_id).await["status"], "DELIVERING");
    }
    (product, orders)
}

/// The order once delivery answered every request and the status settled.
async fn settled(shop: &Shop, order_id: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let order = shop.order(order_id).await;
        let open = order["status"] == "DELIVERING" || order["request"]["status"] == "PENDING";
        if !open {
            return order;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "order {order_id} never settled: {order}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until `service`'s status for the order is `expected`.
async fn status_becomes(shop: &Shop, service: &str, order_id: &str, expected: &str) {
    crate::saga::eventually(&format!("{service} of {order_id}"), expected, || {
        status_in(shop, service, order_id)
    })
    .await;
}

/// The customer's status on my page for the order's cancellation request, once there.
async fn my_page_cancellation(shop: &Shop, order_id: &str, expected: &str) {
    crate::saga::eventually(&format!("my page of {order_id}"), expected, || async {
        let page: Value = shop
            .get_as(&shop.token, "/api/mypage")
            .await
            .json()
            .await
            .unwrap();
        page["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == order_id)
            .and_then(|o| o["cancellation_status"].as_str())
            .unwrap_or("-")
            .to_owned()
    })
    .await;
}

#[tokio::test]
async fn a_cancel_racing_the_completion_either_cancels_and_refunds_or_is_refused_never_both() {
    let shop = Shop::start().await;
    let (product, orders) = orders_on_their_way(&shop, ORDERS).await;

    let racer = &shop;
    let races = orders.iter().map(|order_id| async move {
        let shop = racer;
        let (cancel_path, complete_path, nothing) = (
            format!("/api/orders/{order_id}/cancel"),
            format!("/api/deliveries/{order_id}/complete"),
            json!({}),
        );
        let (cancel, complete) = tokio::join!(
            shop.post_as(&shop.token, &cancel_path, &nothing),
            shop.post_as(&shop.admin_token, &complete_path, &nothing)
        );
        (order_id, cancel.status(), complete.status())
    });
    let answers = join_all(races).await;

    let (mut cancelled, mut delivered) = (0, 0);
    for (order_id, cancel, complete) in answers {
        // 202: a request; 409: the order had already heard of the completion.
        assert!(
            matches!(cancel, StatusCode::ACCEPTED | StatusCode::CONFLICT),
            "cancel answered {cancel}"
        );
        let order = settled(&shop, order_id).await;
        match order["status"].as_str().unwrap() {
            "CANCELLED" => {
                cancelled += 1;
                assert_eq!(cancel, StatusCode::ACCEPTED);
                assert_eq!(
                    complete,
                    StatusCode::CONFLICT,
                    "delivery cancelled {order_id} first, so the completion is refused"
                );
                status_becomes(&shop, "delivery", order_id, "CANCELLED").await;
                status_becomes(&shop, "payment", order_id, "REFUNDED").await;
                status_becomes(&shop, "product", order_id, "RELEASED").await;
                my_page_cancellation(&shop, order_id, "REQUESTED").await;
            }
            "DELIVERED" => {
                delivered += 1;
                assert_eq!(complete, StatusCode::OK);
                if cancel == StatusCode::ACCEPTED {
                    assert_eq!(order["request"]["kind"], "CANCEL", "{order}");
                    assert_eq!(order["request"]["status"], "REFUSED", "{order}");
                    assert_eq!(
                        order["request"]["reason"],
                        "the parcel was already delivered"
                    );
                    my_page_cancellation(&shop, order_id, "REFUSED").await;
                }
                assert_eq!(status_in(&shop, "delivery", order_id).await, "COMPLETED");
                assert_eq!(status_in(&shop, "product", order_id).await, "SOLD");
                // A late refund would still show in the invariants checked below.
                assert_eq!(status_in(&shop, "payment", order_id).await, "AUTHORIZED");
            }
            other => panic!("order {order_id} ended {other}: {order}"),
        }
    }
    assert_eq!(cancelled + delivered, ORDERS);
    assert_eq!(
        shop.stock_of(&product).await,
        cancelled as i64,
        "the units of cancelled orders, and only those, are back"
    );

    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
    for invariant in [
        "no refund of a delivered order",
        "every request to delivery is answered",
        "captured payments = confirmed, not-cancelled orders",
        "one delivery per order, in step with the order",
        "my page equals the owning services",
    ] {
        assert!(report.contains(&format!("ok  {invariant}")), "{report}");
    }
    eprintln!("{ORDERS} races: {cancelled} cancelled, {delivered} delivered");
}

#[tokio::test]
async fn an_address_change_racing_the_completion_sends_the_parcel_where_the_order_says() {
    let shop = Shop::start().await;
    let (_, orders) = orders_on_their_way(&shop, ORDERS).await;
    const BUSAN: &str = "2 Haeundae-ro, Haeundae-gu, Busan";
    const SEOUL: &str = "1 Teheran-ro, Gangnam-gu, Seoul";

    let racer = &shop;
    let races = orders.iter().map(|order_id| async move {
        let shop = racer;
        let change = shop
            .client
            .patch(format!("{}/api/orders/{order_id}", shop.url))
            .bearer_auth(&shop.token)
            .json(&json!({"address": BUSAN}))
            .send();
        let (complete_path, nothing) = (format!("/api/deliveries/{order_id}/complete"), json!({}));
        let (change, complete) = tokio::join!(
            change,
            shop.post_as(&shop.admin_token, &complete_path, &nothing)
        );
        (order_id, change.unwrap().status(), complete.status())
    });
    let answers = join_all(races).await;

    let (mut redirected, mut refused) = (0, 0);
    for (order_id, change, complete) in answers {
        assert_eq!(
            complete,
            StatusCode::OK,
            "a redirect never stops a delivery"
        );
        assert!(
            matches!(change, StatusCode::ACCEPTED | StatusCode::CONFLICT),
            "the change answered {change}"
        );
        let order = settled(&shop, order_id).await;
        assert_eq!(order["status"], "DELIVERED", "{order}");
        let parcel_went_to = delivery_address(&shop, order_id).await;
        assert_eq!(
            order["address"], parcel_went_to,
            "the order and the parcel agree on where it went"
        );
        if parcel_went_to == BUSAN {
            redirected += 1;
            assert!(order.get("request").is_none(), "granted: {order}");
        } else {
            assert_eq!(parcel_went_to, SEOUL);
            refused += 1;
            if change == StatusCode::ACCEPTED {
                assert_eq!(order["request"]["kind"], "CHANGE_ADDRESS", "{order}");
                assert_eq!(order["request"]["status"], "REFUSED", "{order}");
            }
        }
    }
    assert_eq!(redirected + refused, ORDERS);

    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
    assert!(
        report.contains("ok  every request to delivery is answered"),
        "{report}"
    );
    eprintln!("{ORDERS} races: {redirected} redirected, {refused} refused");
}
