//! The saga across product, payment, delivery and order, and every compensation.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Shop, assert_problem};

/// The value `read` gives once it equals `expected`, polling for a while.
pub async fn eventually<F, Fut>(what: &str, expected: &str, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let started = Instant::now();
    loop {
        let value = read().await;
        if value == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} is {value:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status `service` (product, payment or delivery) keeps for `order_id` in its own
/// database, as text ("-" when it has none).
pub async fn status_in(shop: &Shop, service: &str, order_id: &str) -> String {
    let sql = match service {
        "product" => "SELECT status FROM reservations WHERE order_id = $1",
        "payment" => "SELECT status FROM payments WHERE order_id = $1",
        "delivery" => "SELECT status FROM deliveries WHERE order_id = $1",
        other => panic!("{other} keeps no status per order"),
    };
    let db = shop.db(service).await;
    let order_id = order_id.parse::<uuid::Uuid>().unwrap();
    let status: Option<String> = chassis::on_conn!(&mut db.read().await.unwrap(), c =>
        sqlx::query_scalar(sql).bind(order_id).fetch_optional(c).await.unwrap());
    db.close().await;
    status.unwrap_or_else(|| "-".into())
}

/// Waits until an order's compensation is done: `product` back to `units`, the payment
/// `payment`, the delivery cancelled.
async fn compensated(shop: &Shop, product: &str, units: &str, order_id: &str, payment: &str) {
    eventually("the stock", units, || async {
        shop.stock_of(product).await.to_string()
    })
    .await;
    eventually("the payment", payment, || {
        status_in(shop, "payment", order_id)
    })
    .await;
    eventually("the delivery", "CANCELLED", || {
        status_in(shop, "delivery", order_id)
    })
    .await;
}

pub async fn delivery_address(shop: &Shop, order_id: &str) -> String {
    let db = shop.db("delivery").await;
    let order_id = order_id.parse::<uuid::Uuid>().unwrap();
    let address = chassis::on_conn!(&mut db.read().await.unwrap(), c =>
        sqlx::query_scalar("SELECT address FROM deliveries WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(c)
            .await
            .unwrap());
    db.close().await;
    address
}

#[tokio::test]
async fn a_declined_payment_rejects_the_order_and_releases_its_stock() {
    let shop = Shop::start().await;
    // The simulated provider declines amounts ending in 402 and amounts over its limit.
    for (price, reason) in [
        (10_402, "card declined by the issuer"),
        (6_000_000, "amount exceeds the card limit"),
    ] {
        let product = shop.add_product(price, 5).await;
        let order_id = shop.place_order(&product, 1).await;
        let order = shop.final_order(&order_id).await;
        assert_eq!(order["status"], "REJECTED");
        assert_eq!(order["reason"], format!("payment declined: {reason}"));
        eventually("the stock", "5", || async {
            shop.stock_of(&product).await.to_string()
        })
        .await;
        eventually("the reservation", "RELEASED", || {
            status_in(&shop, "product", &order_id)
        })
        .await;
        assert_eq!(status_in(&shop, "payment", &order_id).await, "DECLINED");
        eventually("the delivery", "CANCELLED", || {
            status_in(&shop, "delivery", &order_id)
        })
        .await;
    }
}

#[tokio::test]
async fn cancelling_a_confirmed_order_returns_the_stock_refunds_and_cancels_the_delivery() {
    let shop = Shop::start().await;
    let product = shop.add_product(7_000, 5).await;
    let order_id = shop.place_order(&product, 2).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    assert_eq!(shop.stock_of(&product).await, 3);

    let requested = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{order_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(
        requested.status(),
        StatusCode::ACCEPTED,
        "on its way, a cancel is a request that delivery answers"
    );
    let requested: Value = requested.json().await.unwrap();
    assert_eq!(requested["status"], "DELIVERING");
    assert_eq!(
        requested["request"],
        json!({"kind": "CANCEL", "status": "PENDING"})
    );

    compensated(&shop, &product, "5", &order_id, "REFUNDED").await;
    let cancelled = shop.order(&order_id).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(cancelled.get("request").is_none(), "{cancelled}");

    let again = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{order_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_problem(again, StatusCode::CONFLICT, "cannot be cancelled").await;
}

#[tokio::test]
async fn an_order_cancelled_while_pending_is_never_left_charged_or_holding_stock() {
    let shop = Shop::start().await;
    let product = shop.add_product(3_000, 50).await;
    let order_ids = futures::future::join_all((0..10).map(|_| shop.place_order(&product, 1))).await;
    for order_id in &order_ids {
        let cancelled = shop
            .post_as(
                &shop.token,
                &format!("/api/orders/{order_id}/cancel"),
                &json!({}),
            )
            .await;
        // Cancelled at once while PENDING; confirmed meanwhile, a request delivery grants.
        assert!(
            matches!(cancelled.status(), StatusCode::OK | StatusCode::ACCEPTED),
            "cancel is allowed in every state before delivery: {}",
            cancelled.status()
        );
    }
    eventually("the stock", "50", || async {
        shop.stock_of(&product).await.to_string()
    })
    .await;
    for order_id in &order_ids {
        assert_eq!(shop.order(order_id).await["status"], "CANCELLED");
        let started = Instant::now();
        loop {
            let payment = status_in(&shop, "payment", order_id).await;
            let delivery = status_in(&shop, "delivery", order_id).await;
            // Charged and refunded, or cancelled before the charge; never left charged.
            if matches!(payment.as_str(), "REFUNDED" | "CANCELLED") && delivery == "CANCELLED" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{order_id}: payment {payment}, delivery {delivery}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn an_admin_completes_the_delivery_and_then_the_order_cannot_be_cancelled() {
    let shop = Shop::start().await;
    let product = shop.add_product(4_000, 5).await;
    let order_id = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    let complete = format!("/api/deliveries/{order_id}/complete");

    assert_problem(
        shop.post_as(&shop.token, &complete, &json!({})).await,
        StatusCode::FORBIDDEN,
        "admin",
    )
    .await;
    let completed = shop.post_as(&shop.admin_token, &complete, &json!({})).await;
    assert_eq!(completed.status(), StatusCode::OK);
    eventually("the order", "DELIVERED", || async {
        shop.order(&order_id).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .await;
    assert_eq!(
        shop.post_as(&shop.admin_token, &complete, &json!({}))
            .await
            .status(),
        StatusCode::OK,
        "idempotent"
    );

    let cancel = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{order_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_problem(cancel, StatusCode::CONFLICT, "cannot be cancelled").await;
    assert_eq!(status_in(&shop, "payment", &order_id).await, "AUTHORIZED");
    assert_eq!(shop.stock_of(&product).await, 4);

    let unknown = format!("/api/deliveries/{}/complete", uuid::Uuid::now_v7());
    assert_problem(
        shop.post_as(&shop.admin_token, &unknown, &json!({})).await,
        StatusCode::NOT_FOUND,
        "no delivery",
    )
    .await;
}

#[tokio::test]
async fn a_customer_cannot_cancel_someone_elses_order() {
    let shop = Shop::start().await;
    let product = shop.add_product(4_000, 5).await;
    let order_id = shop.place_order(&product, 1).await;
    shop.final_order(&order_id).await;
    let intruder = shop.new_customer().await;
    let cancel = shop
        .post_as(
            &intruder,
            &format!("/api/orders/{order_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_problem(cancel, StatusCode::NOT_FOUND, "no order").await;
    assert_eq!(shop.order(&order_id).await["status"], "DELIVERING");
    assert_eq!(status_in(&shop, "payment", &order_id).await, "AUTHORIZED");
}

#[tokio::test]
async fn a_saga_past_its_deadline_is_rejected_and_a_late_charge_refunded() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    env.extend([
        ("MALL_PAYMENT_LATENCY_MS", "2500"),
        ("MALL_SAGA_DEADLINE_SECS", "1"),
    ]);
    let shop = Shop::start_with(&env).await;
    let before = crate::metrics::saga_series(&shop).await;
    let product = shop.add_product(2_000, 5).await;
    let order_id = shop.place_order(&product, 1).await;

    let order = shop.final_order(&order_id).await;
    assert_eq!(order["status"], "REJECTED");
    assert_eq!(order["reason"], "no answer from the saga within 1 s");
    // The late charge is refunded.
    compensated(&shop, &product, "5", &order_id, "REFUNDED").await;
    assert_eq!(
        shop.order(&order_id).await["status"],
        "REJECTED",
        "the late payment changed nothing"
    );
    // Counted as placed and rejected by the deadline, its saga over then, never
    // confirmed; the late charge authorised and refunded.
    let moved = [1., 0., 0., 0., 1., 0., 0., 1., 1., 0., 1., 0.];
    crate::metrics::saga_series_moved(&shop, &before, moved).await;
    let final_sum = shop
        .metric(1, "mall_saga_duration_seconds_sum", &["until=\"final\""])
        .await;
    assert!(
        (1.0..10.0).contains(&final_sum),
        "{final_sum} s to the deadline"
    );
}

#[tokio::test]
async fn an_address_change_is_undone_by_a_compensating_event_and_delivery_follows() {
    let shop = Shop::start().await;
    let product = shop.add_product(4_000, 5).await;
    let order_id = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    let path = format!("/api/orders/{order_id}");
    let change = |address: &str| {
        shop.client
            .patch(format!("{}{path}", shop.url))
            .bearer_auth(&shop.token)
            .json(&json!({"address": address}))
            .send()
    };

    let order_address = || async {
        shop.order(&order_id).await["address"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let changed = change("2 Haeundae-ro, Busan").await.unwrap();
    assert_eq!(changed.status(), StatusCode::ACCEPTED);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(
        changed["request"],
        json!({"kind": "CHANGE_ADDRESS", "status": "PENDING", "address": "2 Haeundae-ro, Busan"})
    );
    assert_eq!(
        changed["address"], "1 Teheran-ro, Gangnam-gu, Seoul",
        "the address changes once delivery redirects the parcel"
    );
    eventually("the order's address", "2 Haeundae-ro, Busan", order_address).await;
    assert_eq!(
        delivery_address(&shop, &order_id).await,
        "2 Haeundae-ro, Busan"
    );
    assert_problem(
        change("  ").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "address",
    )
    .await;

    let intruder = shop.new_customer().await;
    let undo = format!("{path}/undo");
    assert_problem(
        shop.post_as(&intruder, &undo, &json!({})).await,
        StatusCode::NOT_FOUND,
        "no order",
    )
    .await;
    let undone = shop.post_as(&shop.token, &undo, &json!({})).await;
    assert_eq!(undone.status(), StatusCode::ACCEPTED);
    assert_eq!(
        undone.json::<Value>().await.unwrap()["request"]["kind"],
        "UNDO_ADDRESS_CHANGE"
    );
    eventually(
        "the order's address",
        "1 Teheran-ro, Gangnam-gu, Seoul",
        order_address,
    )
    .await;
    assert_eq!(
        delivery_address(&shop, &order_id).await,
        "1 Teheran-ro, Gangnam-gu, Seoul"
    );
    assert_problem(
        shop.post_as(&shop.token, &undo, &json!({})).await,
        StatusCode::CONFLICT,
        "nothing",
    )
    .await;

    let history: Value = shop
        .get_as(&shop.token, &format!("{path}/history"))
        .await
        .json()
        .await
        .unwrap();
    let events = history["items"].as_array().unwrap();
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "OrderConfirmed",
            "DeliveryStarted",
            "AddressChangeRequested",
            "AddressChanged",
            "AddressChangeUndoRequested",
            "AddressChangeUndone"
        ]
    );
    let changes = events[6]["changes"].as_array().unwrap();
    assert!(
        changes.contains(&json!({"field": "address", "from": "2 Haeundae-ro, Busan", "to": "1 Teheran-ro, Gangnam-gu, Seoul"})),
        "{changes:?}"
    );
    assert_eq!(
        changes
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["address", "request"],
        "the undo granted, no request is left"
    );
}

#[tokio::test]
async fn the_invariants_hold_after_every_kind_of_saga_and_a_broken_one_is_reported() {
    let shop = Shop::start().await;
    let product = shop.add_product(5_000, 6).await;
    let declining = shop.add_product(20_402, 3).await;
    let mut orders = Vec::new();
    for (product, quantity) in [
        (&product, 2),
        (&product, 1),
        (&product, 10),
        (&declining, 1),
        (&product, 1),
    ] {
        orders.push(shop.place_order(product, quantity).await);
    }
    for order_id in &orders {
        shop.final_order(order_id).await;
    }
    shop.post_as(
        &shop.token,
        &format!("/api/orders/{}/cancel", orders[1]),
        &json!({}),
    )
    .await;
    shop.post_as(
        &shop.admin_token,
        &format!("/api/deliveries/{}/complete", orders[0]),
        &json!({}),
    )
    .await;

    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
    assert!(report.contains("bus drained: yes"), "{report}");
    for invariant in INVARIANTS {
        assert!(
            report.contains(&format!("ok  {invariant}")),
            "{invariant}: {report}"
        );
    }

    // Each invariant broken alone, by damaging its owners' tables behind their backs, is
    // reported VIOLATED while the others stay ok; then repaired for the next.
    let [delivered, _, _, _, delivering] = [0, 1, 2, 3, 4].map(|i| orders[i].as_str());
    let never_placed = uuid::Uuid::now_v7().to_string();
    let product_id = product.as_str();
    let damages: [Damage; 7] = [
        Damage {
            broken: &[STOCK],
            subject: product_id,
            changes: &[(
                "product",
                "UPDATE products SET available = available + 1 WHERE id = $1",
                "UPDATE products SET available = available - 1 WHERE id = $1",
            )],
        },
        Damage {
            broken: &[RESERVATIONS],
            subject: delivering,
            changes: &[(
                "product",
                "UPDATE reservations SET status = 'RESERVED' WHERE order_id = $1",
                "UPDATE reservations SET status = 'SOLD' WHERE order_id = $1",
            )],
        },
        Damage {
            broken: &[CAPTURED],
            subject: &never_placed,
            changes: &[(
                "payment",
                "INSERT INTO payments (order_id, status, created_at, updated_at)
                 VALUES ($1, 'AUTHORIZED', $2, $2)",
                "DELETE FROM payments WHERE order_id = $1",
            )],
        },
        Damage {
            broken: &[DELIVERIES],
            subject: &never_placed,
            changes: &[(
                "delivery",
                "INSERT INTO deliveries (order_id, delivery_id, address, status, created_at, updated_at)
                 VALUES ($1, $1, 'Seoul', 'STARTED', $2, $2)",
                "DELETE FROM deliveries WHERE order_id = $1",
            )],
        },
        Damage {
            broken: &[ANSWERED],
            subject: delivering,
            changes: &[(
                "order",
                "INSERT INTO order_events (order_id, version, event_type, event, changes, recorded_at)
                 SELECT $1, MAX(version) + 1, 'CancellationRequested', '{}', '[]', $2
                 FROM order_events WHERE order_id = $1",
                "DELETE FROM order_events WHERE order_id = $1 AND event_type = 'CancellationRequested'",
            )],
        },
        // A refund of a delivered order cannot be alone: the order is delivered, so its
        // payment should be captured. (My page is damaged alike, to keep it in step.)
        Damage {
            broken: &[CAPTURED, NO_REFUND_OF_DELIVERED],
            subject: delivered,
            changes: &[
                (
                    "payment",
                    "UPDATE payments SET status = 'REFUNDED' WHERE order_id = $1",
                    "UPDATE payments SET status = 'AUTHORIZED' WHERE order_id = $1",
                ),
                (
                    "mypage",
                    "UPDATE mypage_orders SET payment_status = 'REFUNDED' WHERE order_id = $1",
                    "UPDATE mypage_orders SET payment_status = 'AUTHORIZED' WHERE order_id = $1",
                ),
            ],
        },
        Damage {
            broken: &[MY_PAGE],
            subject: delivering,
            changes: &[(
                "mypage",
                "UPDATE mypage_orders SET order_status = 'CANCELLED' WHERE order_id = $1",
                "UPDATE mypage_orders SET order_status = 'DELIVERING' WHERE order_id = $1",
            )],
        },
    ];
    for damage in &damages {
        for (service, sql, _) in damage.changes {
            run_sql(&shop, service, sql, damage.subject).await;
        }
        let (healthy, report) = shop.admin_check();
        assert!(!healthy, "{:?} broken: {report}", damage.broken);
        for invariant in INVARIANTS {
            let verdict = if damage.broken.contains(&invariant) {
                "VIOLATED"
            } else {
                "ok"
            };
            assert!(
                report.contains(&format!("{verdict}  {invariant}")),
                "{:?} broken, so {invariant} is {verdict}: {report}",
                damage.broken
            );
        }
        for (service, _, repair) in damage.changes {
            run_sql(&shop, service, repair, damage.subject).await;
        }
    }
    let (healthy, report) = shop.admin_check();
    assert!(healthy, "every damage repaired: {report}");
}

const STOCK: &str = "stock on hand + reserved + sold = stock ever added";
const RESERVATIONS: &str = "reserved stock belongs to pending orders, sold stock to confirmed ones";
const CAPTURED: &str = "captured payments = confirmed, not-cancelled orders";
const DELIVERIES: &str = "one delivery per order, in step with the order";
const ANSWERED: &str = "every request to delivery is answered";
const NO_REFUND_OF_DELIVERED: &str = "no refund of a delivered order";
const MY_PAGE: &str = "my page equals the owning services";
/// Every invariant `mall admin check` reports, by its words there.
const INVARIANTS: [&str; 7] = [
    STOCK,
    RESERVATIONS,
    CAPTURED,
    DELIVERIES,
    ANSWERED,
    NO_REFUND_OF_DELIVERED,
    MY_PAGE,
];

/// Changes to services' tables that break `broken` and nothing else, each with its repair
/// (`service`, damage, repair): SQL with `$1`, the subject's id, and perhaps `$2`, now.
struct Damage<'a> {
    broken: &'a [&'a str],
    subject: &'a str,
    changes: &'a [(&'a str, &'static str, &'static str)],
}

/// Runs `sql` in `service`'s database, `$1` bound to `subject` and `$2`, if used, to now.
async fn run_sql(shop: &Shop, service: &str, sql: &'static str, subject: &str) {
    let db = shop.db(service).await;
    let mut tx = db.begin_write().await.unwrap();
    let (subject, now) = (subject.parse::<uuid::Uuid>().unwrap(), chrono::Utc::now());
    let changed = chassis::execute!(&mut tx, {
        let query = sqlx::query(sql).bind(subject);
        if sql.contains("$2") {
            query.bind(now)
        } else {
            query
        }
    })
    .unwrap();
    assert_eq!(changed, 1, "{service}: {sql}");
    tx.commit().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_randomized_workload_of_a_thousand_orders_leaves_every_invariant_intact() {
    use rand::Rng;
    const PRICE: u64 = 3_000;
    const DECLINING_PRICE: u64 = 7_402;
    let shop = Shop::start().await;
    let plenty = shop.add_product(PRICE, 100_000).await;
    let scarce = shop.add_product(PRICE, 40).await;
    let declining = shop.add_product(DECLINING_PRICE, 100_000).await;
    // One after another: signups beyond the password hashing pool would be shed (503).
    let mut customers = Vec::new();
    for _ in 0..8 {
        customers.push(shop.new_customer().await);
    }

    let (shop, customers) = (&shop, &customers);
    let (plenty, scarce, declining) = (&plenty, &scarce, &declining);
    let one = |i: usize| {
        let (product, quantity, cancel) = {
            let mut rng = rand::rng();
            let product = match rng.random_range(0..100) {
                0..70 => plenty,
                70..85 => scarce,
                _ => declining,
            };
            (product, rng.random_range(1..=3), rng.random_bool(0.15))
        };
        let token = &customers[i % customers.len()];
        async move {
            let placed = shop
                .post_as(
                    token,
                    "/api/orders",
                    &json!({"product_id": product, "quantity": quantity, "address": "Seoul"}),
                )
                .await;
            assert_eq!(placed.status(), StatusCode::ACCEPTED);
            let order_id = placed.json::<Value>().await.unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let mut cancel_answer = None;
            if cancel {
                let cancelled = shop
                    .post_as(token, &format!("/api/orders/{order_id}/cancel"), &json!({}))
                    .await;
                // Cancelled while PENDING, a request once confirmed, or too late.
                assert!(matches!(
                    cancelled.status(),
                    StatusCode::OK | StatusCode::ACCEPTED | StatusCode::CONFLICT
                ));
                cancel_answer = Some(cancelled.status());
            }
            let price = if product == declining {
                DECLINING_PRICE
            } else {
                PRICE
            };
            Placed {
                order_id,
                token,
                scarce: product == scarce,
                amount: price * quantity,
                cancel_answer,
            }
        }
    };
    let mut placed = Vec::new();
    for chunk in (0..1_000).collect::<Vec<_>>().chunks(50) {
        placed.extend(futures::future::join_all(chunk.iter().map(|&i| one(i))).await);
    }

    let (healthy, report) = shop.admin_check();
    assert!(healthy, "{report}");
    assert!(report.contains("bus drained: yes"), "{report}");

    // The bus is drained: every saga is over. Each order ended as its kind must.
    let mut outcomes: std::collections::BTreeMap<&str, usize> = Default::default();
    for chunk in placed.chunks(50) {
        let finals = futures::future::join_all(chunk.iter().map(|order| async move {
            let path = format!("/api/orders/{}", order.order_id);
            let response = shop.get_as(order.token, &path).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }))
        .await;
        for (order, final_order) in chunk.iter().zip(finals) {
            let outcome = order.outcome(&final_order);
            assert!(
                order.may_end(outcome),
                "an order of {} KRW{}{} ended {final_order}",
                order.amount,
                if order.scarce {
                    " of the scarce product"
                } else {
                    ""
                },
                order
                    .cancel_answer
                    .map(|answer| format!(", its cancel answered {answer}"))
                    .unwrap_or_default(),
            );
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    // Each way an order can end was taken, by a share of the thousand its mix promises.
    for (outcome, at_least) in [
        (DELIVERING, 300),
        (OUT_OF_STOCK, 10),
        (DECLINED, 10),
        (CANCELLED, 50),
    ] {
        let count = outcomes.get(outcome).copied().unwrap_or(0);
        assert!(count >= at_least, "{count} {outcome}: {outcomes:?}");
    }
}

const DELIVERING: &str = "delivering";
const OUT_OF_STOCK: &str = "rejected: out of stock";
const DECLINED: &str = "rejected: payment declined";
const CANCELLED: &str = "cancelled";

/// An order of the randomized workload, as placed.
struct Placed<'a> {
    order_id: String,
    token: &'a str,
    scarce: bool,
    amount: u64,
    /// What the customer's cancel got, if they sent one.
    cancel_answer: Option<StatusCode>,
}

impl Placed<'_> {
    /// How the order ended: one of the outcomes above, or its status and reason.
    fn outcome(&self, order: &Value) -> &'static str {
        let reason = order["reason"].as_str().unwrap_or_default();
        match order["status"].as_str() {
            Some("DELIVERING") if order["request"].is_null() => DELIVERING,
            Some("REJECTED") if reason.starts_with("insufficient stock") => OUT_OF_STOCK,
            Some("REJECTED") if reason.starts_with("payment declined") => DECLINED,
            Some("CANCELLED") => CANCELLED,
            _ => "something else",
        }
    }

    /// Whether `outcome` is one this order may reach: the simulated provider declines
    /// an amount ending in 402, the scarce product runs out, a cancel answered 200 or 202
    /// cancels (nobody completes deliveries here), one answered 409 came too late.
    fn may_end(&self, outcome: &str) -> bool {
        let uncancelled = if self.amount % 1_000 == 402 {
            outcome == DECLINED
        } else if self.scarce {
            outcome == DELIVERING || outcome == OUT_OF_STOCK
        } else {
            outcome == DELIVERING
        };
        match self.cancel_answer {
            None => uncancelled,
            Some(StatusCode::OK | StatusCode::ACCEPTED) => outcome == CANCELLED,
            Some(_) => uncancelled,
        }
    }
}
