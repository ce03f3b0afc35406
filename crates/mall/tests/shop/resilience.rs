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

/// Tells delivery an order was confirmed that it never saw placed: delivery gives up on
/// the event (with `MALL_CONSUMER_MAX_ATTEMPTS` 2, soon). The order's id, and the dead
/// letters about it (one).
pub async fn poison_delivery(shop: &Shop) -> (uuid::Uuid, Vec<Value>) {
    let order_id = uuid::Uuid::now_v7();
    let confirmed = contracts::Envelope::new(
        "order",
        order_id,
        &contracts::events::OrderConfirmed { order_id },
        order_id,
    );
    shop.inject(contracts::topics::ORDER, &confirmed).await;
    let dead = wait_for_dead_letters(shop, "delivery", &order_id.to_string(), 1).await;
    (order_id, dead)
}

/// The operator's fix of [`poison_delivery`]: the placement delivery missed.
async fn repair_delivery(shop: &Shop, order_id: uuid::Uuid) {
    let delivery = shop.db("delivery").await;
    let mut tx = delivery.begin_write().await.unwrap();
    chassis::execute!(
        &mut tx,
        sqlx::query(
            "INSERT INTO deliveries (order_id, delivery_id, address, status, created_at, updated_at)
             VALUES ($1, $2, '1 Teheran-ro, Seoul', 'AWAITING', $3, $3)",
        )
        .bind(order_id)
        .bind(uuid::Uuid::now_v7())
        .bind(chrono::Utc::now())
    )
    .unwrap();
    tx.commit().await.unwrap();
    delivery.close().await;
}

#[tokio::test]
async fn a_dead_letter_replayed_from_the_command_line_is_handled_by_its_group_alone() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    env.push(("MALL_CONSUMER_MAX_ATTEMPTS", "2"));
    let shop = Shop::start_with(&env).await;
    let (order_id, dead) = poison_delivery(&shop).await;
    let before = taken_by_the_other_readers(&shop, 1.0).await;
    let id = dead[0]["id"].as_str().unwrap();

    let unknown = shop.admin(&["dlq", "replay", &uuid::Uuid::now_v7().to_string()]);
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no dead letter with id"), "{said}");
    let malformed = shop.admin(&["dlq", "replay", "not-an-id"]);
    assert!(!malformed.status.success());
    let said = String::from_utf8_lossy(&malformed.stderr);
    assert!(said.contains("UUID"), "{said}");

    repair_delivery(&shop, order_id).await;
    let replayed = shop.admin(&["dlq", "replay", id]);
    let said = String::from_utf8_lossy(&replayed.stdout);
    assert!(
        replayed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(
        said.contains(&format!(
            "replayed {id}: delivery goes back on order.order.v1"
        )),
        "{said}"
    );
    // The running service's relay publishes it; delivery handles it now.
    let subject = order_id.to_string();
    crate::saga::eventually("the delivery", "STARTED", || {
        crate::saga::status_in(&shop, "delivery", &subject)
    })
    .await;
    skipped_by_the_other_readers(&shop, &before, 1.0).await;

    let again = shop.admin(&["dlq", "replay", id]);
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("replayed already"), "{said}");
    assert_eq!(
        dead_letters_about(&shop, "delivery", &order_id.to_string())
            .await
            .len(),
        1,
        "handled, the replay left no new dead letter"
    );
}

#[tokio::test]
async fn a_replay_through_the_gateway_while_its_keeper_is_down_is_a_503_naming_it() {
    let shop = Shop::start_split(&[
        ("MALL_CONSUMER_MAX_ATTEMPTS", "2"),
        // Short, for the frozen keeper; longer than a login's password check (Argon2)
        // through the gateway takes on a loaded machine.
        ("MALL_UPSTREAM_TIMEOUT_MS", "1500"),
    ])
    .await;
    let (order_id, dead) = poison_delivery(&shop).await;
    let id = dead[0]["id"].as_str().unwrap();
    let (path, no_body) = (format!("/api/admin/dlq/{id}/replay"), serde_json::json!({}));
    let replay = || shop.post_as(&shop.admin_token, &path, &no_body);

    // Frozen: delivery, which keeps this dead letter, answers nobody.
    shop.signal("delivery", "STOP");
    let listed = shop.get_as(&shop.admin_token, "/api/admin/dlq").await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["unavailable"], serde_json::json!(["delivery"]));
    let refused = replay().await;
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "could not ask").await;

    // Thawed, delivery may still take the request the gateway gave up on: the dead letter
    // is then replayed already. Either way it is replayed once.
    shop.signal("delivery", "CONT");
    let started = Instant::now();
    loop {
        let answer = replay().await;
        if answer.status() == StatusCode::ACCEPTED {
            break;
        }
        if answer.status() == StatusCode::CONFLICT {
            assert_problem(answer, StatusCode::CONFLICT, "replayed already").await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "delivery is back: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Replayed with its cause unfixed, it fails again.
    wait_for_dead_letters(&shop, "delivery", &order_id.to_string(), 2).await;
}

/// `mall_dead_letters` of delivery's group: its dead letters not yet replayed.
async fn dead_letters_gauge(shop: &Shop) -> String {
    shop.metric(2, "mall_dead_letters", &["group=\"delivery\""])
        .await
        .to_string()
}

/// The dead letters of `group` about `subject`, as the gateway lists them to an admin.
async fn dead_letters_about(shop: &Shop, group: &str, subject: &str) -> Vec<Value> {
    let response = shop.get_as(&shop.admin_token, "/api/admin/dlq").await;
    assert_eq!(response.status(), StatusCode::OK);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["unavailable"], serde_json::json!([]));
    list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["group"] == group && d["event"]["subject"] == subject)
        .cloned()
        .collect()
}

async fn wait_for_dead_letters(
    shop: &Shop,
    group: &str,
    subject: &str,
    count: usize,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = dead_letters_about(shop, group, subject).await;
        if found.len() >= count {
            return found;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_poison_event_lands_in_the_dead_letters_and_replays_once_its_cause_is_fixed() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    env.push(("MALL_CONSUMER_MAX_ATTEMPTS", "2"));
    let shop = Shop::start_with(&env).await;
    let dead_letters_are = |count: &'static str| {
        crate::saga::eventually("delivery's dead letters", count, || {
            dead_letters_gauge(&shop)
        })
    };
    dead_letters_are("0").await;
    let (order_id, dead) = poison_delivery(&shop).await;
    let subject = order_id.to_string();
    dead_letters_are("1").await;
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["topic"], "order.order.v1");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("never placed"),
        "{dead:?}"
    );
    assert_eq!(dead[0]["replayed_at"], Value::Null);
    let forbidden = shop.get_as(&shop.token, "/api/admin/dlq").await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    // The other groups take the event once, as it first comes.
    let before = taken_by_the_other_readers(&shop, 1.0).await;

    // Replayed before the cause is fixed, it fails again and comes back as a new one.
    let first = dead[0]["id"].as_str().unwrap().to_owned();
    let replay = |id: String| {
        let shop = &shop;
        async move {
            shop.post_as(
                &shop.admin_token,
                &format!("/api/admin/dlq/{id}/replay"),
                &serde_json::json!({}),
            )
            .await
        }
    };
    assert_eq!(replay(first.clone()).await.status(), StatusCode::ACCEPTED);
    let dead = wait_for_dead_letters(&shop, "delivery", &subject, 2).await;
    dead_letters_are("1").await;
    let second = dead.iter().find(|d| d["replayed_at"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(
        replay(first).await,
        StatusCode::CONFLICT,
        "replayed already",
    )
    .await;

    // The operator repairs delivery's data (the placement it missed), then replays.
    repair_delivery(&shop, order_id).await;
    let replayed = replay(second.clone()).await;
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    assert!(replayed.json::<Value>().await.unwrap()["replayed_at"].is_string());
    dead_letters_are("0").await;

    let started = Instant::now();
    loop {
        let db = shop.db("delivery").await;
        let status: String = chassis::on_conn!(&mut db.read().await.unwrap(), c =>
            sqlx::query_scalar("SELECT status FROM deliveries WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(c)
                .await
                .unwrap());
        db.close().await;
        if status == "STARTED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "delivery is {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dead_letters_about(&shop, "delivery", &subject).await.len(),
        2,
        "the replay after the fix left no new dead letter"
    );
    // Both replays went back on the order topic, which others read too: their inboxes
    // knew the event, so none applied it again.
    skipped_by_the_other_readers(&shop, &before, 2.0).await;
    assert_problem(
        replay(uuid::Uuid::now_v7().to_string()).await,
        StatusCode::NOT_FOUND,
        "no dead letter",
    )
    .await;

    let listed = shop.admin(&["dlq", "list"]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&second) && listed.contains("replayed 20"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_slow_service_fills_only_its_own_bulkhead_and_the_excess_is_shed_at_once() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    env.extend([
        ("MALL_UPSTREAM_MAX_IN_FLIGHT", "2"),
        ("MALL_FAULTS", "mypage:latency-ms=600;delivery:error-rate=1"),
    ]);
    let shop = Shop::start_with(&env).await;
    let started = Instant::now();
    let answers = join_all((0..6).map(|_| shop.get_as(&shop.token, "/api/mypage"))).await;
    let statuses: Vec<_> = answers.iter().map(|a| a.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
            .count(),
        4
    );
    for shed in answers
        .into_iter()
        .filter(|a| a.status() == StatusCode::SERVICE_UNAVAILABLE)
    {
        assert_eq!(shed.headers()["retry-after"], "1");
        assert_problem(shed, StatusCode::SERVICE_UNAVAILABLE, "in flight").await;
    }
    assert!(started.elapsed() < Duration::from_millis(1_500));

    // While mypage's bulkhead is full, mypage sheds, and the other services answer as
    // usual: each has a bulkhead of its own.
    let unknown_order = format!("/api/orders/{}", uuid::Uuid::now_v7());
    let (filling, (other_mypage, products, order)) = tokio::join!(
        join_all((0..2).map(|_| shop.get_as(&shop.token, "/api/mypage"))),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::join!(
                shop.get_as(&shop.token, "/api/mypage"),
                shop.get("/api/products"),
                shop.get_as(&shop.token, &unknown_order),
            )
        }
    );
    for slow in filling {
        assert_eq!(slow.status(), StatusCode::OK);
    }
    assert_problem(other_mypage, StatusCode::SERVICE_UNAVAILABLE, "in flight").await;
    assert_eq!(products.status(), StatusCode::OK);
    assert_problem(order, StatusCode::NOT_FOUND, "no order").await;

    // An injected error is a problem like any other; health stays true.
    let complete = format!("/api/deliveries/{}/complete", uuid::Uuid::now_v7());
    let failed = shop
        .post_as(&shop.admin_token, &complete, &serde_json::json!({}))
        .await;
    assert_problem(failed, StatusCode::INTERNAL_SERVER_ERROR, "injected").await;
    let health = reqwest::get(format!(
        "http://127.0.0.1:{}/health/ready",
        shop.base_port + 2
    ))
    .await
    .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[test]
fn production_refuses_to_start_with_faults_and_is_what_a_service_told_nothing_runs_as() {
    let dir = tempfile::tempdir().unwrap();
    for environment in [Some("production"), None] {
        let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_mall"));
        serve
            .args(["serve", "order", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .env_remove("MALL_ENV")
            .env("MALL_FAULTS", "order:error-rate=0.5");
        if let Some(environment) = environment {
            serve.env("MALL_ENV", environment);
        }
        let output = serve.output().unwrap();
        assert!(!output.status.success(), "{environment:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refused when MALL_ENV=production"),
            "{environment:?}: {stderr}"
        );
    }
}

/// The groups besides delivery that read the order topic, by their service's port offset,
/// and how each takes an `OrderConfirmed` it has seen before: as its business, known to
/// its inbox (`duplicate`), or not its business (`ignored`).
const OTHER_ORDER_READERS: [(&str, u16, &str); 3] = [
    ("product", 3, "duplicate"),
    ("payment", 4, "ignored"),
    ("mypage", 5, "duplicate"),
];

/// How many events of the order topic each of [`OTHER_ORDER_READERS`] applied
/// (`handled`), and how many it skipped as it skips a repeat, from its metrics.
async fn other_readers_of_the_order_topic(shop: &Shop) -> Vec<(f64, f64)> {
    let mut counts = Vec::new();
    for (group, port_offset, repeat) in OTHER_ORDER_READERS {
        let taken = |outcome: &str| {
            let labels = [
                // Also under a Kafka namespace's prefix.
                "order.order.v1\"".to_owned(),
                format!("group=\"{group}\""),
                format!("outcome=\"{outcome}\""),
            ];
            async move {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                // A count of skips starts at the first skip.
                shop.metric_or_zero(port_offset, "mall_events_consumed_total", &labels)
                    .await
            }
        };
        counts.push((taken("handled").await, taken(repeat).await));
    }
    counts
}

/// Waits until each of [`OTHER_ORDER_READERS`] has taken `events` events of the order
/// topic, applied or skipped; returns its counts.
async fn taken_by_the_other_readers(shop: &Shop, events: f64) -> Vec<(f64, f64)> {
    let started = Instant::now();
    loop {
        let counts = other_readers_of_the_order_topic(shop).await;
        if counts
            .iter()
            .all(|(applied, skipped)| applied + skipped >= events)
        {
            return counts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the other groups took {counts:?} of {events} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until each of [`OTHER_ORDER_READERS`] has skipped `replays` more events of the
/// order topic than `before`, and asserts that it applied none of them.
async fn skipped_by_the_other_readers(shop: &Shop, before: &[(f64, f64)], replays: f64) {
    let started = Instant::now();
    loop {
        let now = other_readers_of_the_order_topic(shop).await;
        for ((group, _, _), ((applied_now, _), (applied, _))) in
            OTHER_ORDER_READERS.iter().zip(now.iter().zip(before))
        {
            assert_eq!(
                applied_now, applied,
                "{group} applied a replayed event again"
            );
        }
        if now
            .iter()
            .zip(before)
            .all(|((_, skipped_now), (_, skipped))| *skipped_now >= skipped + replays)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the other groups skipped {now:?}, from {before:?}, of {replays} replays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_service_slower_than_the_upstream_timeout_gets_a_504_from_the_gateway() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    // Long enough for a login (Argon2) on a loaded machine, which also goes through it.
    env.extend([
        ("MALL_UPSTREAM_TIMEOUT_MS", "1500"),
        ("MALL_FAULTS", "mypage:latency-ms=5000"),
    ]);
    let shop = Shop::start_with(&env).await;
    let started = Instant::now();
    let slow = shop.get_as(&shop.token, "/api/mypage").await;
    let waited = started.elapsed();
    assert_problem(
        slow,
        StatusCode::GATEWAY_TIMEOUT,
        "no answer within 1500 ms",
    )
    .await;
    assert!(
        (Duration::from_millis(1_500)..Duration::from_millis(3_500)).contains(&waited),
        "answered after {waited:?}"
    );
    assert_eq!(shop.get("/api/products").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_gets_a_503() {
    let mut env = crate::helpers::NO_RATE_LIMITS.to_vec();
    env.extend([
        ("MALL_REQUEST_TIMEOUT_MS", "500"),
        ("MALL_FAULTS", "mypage:latency-ms=3000"),
    ]);
    let shop = Shop::start_with(&env).await;
    let mypage_service = format!("http://127.0.0.1:{}/mypage", shop.base_port + 5);
    let started = Instant::now();
    let slow = shop
        .client
        .get(&mypage_service)
        .bearer_auth(&shop.token)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_problem(slow, StatusCode::SERVICE_UNAVAILABLE, "").await;
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(2_000)).contains(&waited),
        "answered after {waited:?}"
    );
    // The gateway's own requests have the same bound, shorter than its upstream timeout.
    let through_the_gateway = shop.get_as(&shop.token, "/api/mypage").await;
    assert_problem(through_the_gateway, StatusCode::SERVICE_UNAVAILABLE, "").await;
    assert_eq!(shop.get("/api/products").await.status(), StatusCode::OK);
}
