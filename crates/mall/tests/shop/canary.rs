//! A canary release at the gateway: a split shop, and a second order process acting as
//! the new version (it shares order's database and consumer group, as a new version's
//! pods would).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Instance, Shop, assert_problem, sum_of_series};

/// Orders answered by one order process: the requests its own `/metrics` counted on the
/// order routes.
async fn order_requests_at(shop: &Shop, base: &str) -> f64 {
    let text = shop
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sum_of_series(&text, "mall_http_requests_total", &["route=\"/orders"]).unwrap_or(0.0)
}

fn stable_order_url(shop: &Shop) -> String {
    format!("http://127.0.0.1:{}", shop.base_port + 1)
}

async fn customer_id(shop: &Shop, token: &str) -> String {
    let session: Value = shop
        .get_as(token, "/api/auth/session")
        .await
        .json()
        .await
        .unwrap();
    session["customer_id"].as_str().unwrap().to_owned()
}

async fn start_canary(shop: &Shop, plan: Value) -> Value {
    let response = shop
        .client
        .put(format!("{}/api/admin/canaries/order", shop.url))
        .bearer_auth(&shop.admin_token)
        .json(&plan)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn canary_status(shop: &Shop) -> Value {
    let response = shop
        .get_as(&shop.admin_token, "/api/admin/canaries/order")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Places an order as the customer of `token` and reads it back: two requests to order.
async fn order_as(shop: &Shop, token: &str, product: &str) -> (StatusCode, Option<String>) {
    let placed = shop
        .post_as(
            token,
            "/api/orders",
            &json!({"product_id": product, "quantity": 1, "address": "1 Teheran-ro, Gangnam-gu, Seoul"}),
        )
        .await;
    let status = placed.status();
    if status != StatusCode::ACCEPTED {
        return (status, None);
    }
    let id = placed.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = shop.get_as(token, &format!("/api/orders/{id}")).await;
    (read.status(), Some(id))
}

async fn every_order_final(shop: &Shop, tokens_and_orders: &[(String, String)]) {
    for (token, order) in tokens_and_orders {
        let started = Instant::now();
        loop {
            let read: Value = shop
                .get_as(token, &format!("/api/orders/{order}"))
                .await
                .json()
                .await
                .unwrap();
            if matches!(read["status"].as_str(), Some("DELIVERING" | "REJECTED")) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "order {order} never final: {read}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn new_version(shop: &Shop, faults: &str) -> Instance {
    shop.add_instance_with("order", 1, &[("MALL_FAULTS", faults)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_customers_reach_the_new_version_and_others_never_do() {
    let shop = Shop::start_split(&[]).await;
    let canary = new_version(&shop, "").await;
    let product = shop.add_product(1_000, 1_000).await;
    let listed = shop.new_customer().await;
    start_canary(
        &shop,
        json!({"instances": [canary.url], "customers": [customer_id(&shop, &listed).await],
               "roles": ["admin"], "steps": [0, 100], "interval_secs": 3600}),
    )
    .await;

    let mut orders = Vec::new();
    let cohort = [listed.clone(), listed, shop.admin_token.clone()];
    for token in &cohort {
        let (status, order) = order_as(&shop, token, &product).await;
        assert_eq!(status, StatusCode::OK);
        orders.push((token.clone(), order.unwrap()));
    }
    let canary_answered = order_requests_at(&shop, &canary.url).await;
    assert_eq!(
        canary_answered, 6.0,
        "the cohort's 3 orders, each placed and read"
    );

    let stable_before = order_requests_at(&shop, &stable_order_url(&shop)).await;
    for _ in 0..12 {
        let someone = shop.new_customer().await;
        let (status, order) = order_as(&shop, &someone, &product).await;
        assert_eq!(status, StatusCode::OK);
        orders.push((someone, order.unwrap()));
    }
    assert_eq!(
        order_requests_at(&shop, &canary.url).await,
        canary_answered,
        "a customer outside the cohort reached the canary at 0 %"
    );
    assert_eq!(
        order_requests_at(&shop, &stable_order_url(&shop)).await - stable_before,
        24.0
    );

    let status = canary_status(&shop).await;
    assert_eq!(status["phase"], "progressing");
    assert_eq!(status["totals"]["canary"]["requests"], 6);
    assert_eq!(status["totals"]["stable"]["requests"], 24);
    // Both versions share order's events: every order ends its saga, whoever took it.
    every_order_final(&shop, &orders).await;
    let (clean, report) = shop.admin_check();
    assert!(clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_within_its_step_and_no_order_is_lost() {
    let shop = Shop::start_split(&[]).await;
    let canary = new_version(&shop, "order:error-rate=1").await;
    let product = shop.add_product(1_000, 1_000).await;
    let mut customers = Vec::new();
    for _ in 0..16 {
        customers.push(shop.new_customer().await);
    }
    const INTERVAL_SECS: u64 = 30;
    let started = Instant::now();
    start_canary(
        &shop,
        json!({"instances": [canary.url], "steps": [50, 100], "interval_secs": INTERVAL_SECS,
               "min_requests": 5}),
    )
    .await;

    let mut accepted = Vec::new();
    let mut failed = 0;
    let status = loop {
        for token in &customers {
            match order_as(&shop, token, &product).await {
                (_, Some(order)) => accepted.push((token.clone(), order)),
                (status, None) => {
                    assert!(status.is_server_error(), "{status}");
                    failed += 1;
                }
            }
        }
        let status = canary_status(&shop).await;
        if status["phase"] != "progressing" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(INTERVAL_SECS),
            "not rolled back within the step: {status}"
        );
    };
    let rolled_back_in = started.elapsed();
    assert_eq!(status["phase"], "rolled_back", "{status}");
    assert!(
        status["reason"].as_str().unwrap().contains("failed"),
        "{status}"
    );
    let answered_by_canary = status["totals"]["canary"]["requests"].as_u64().unwrap();
    eprintln!(
        "rolled back {rolled_back_in:?} after the start, {} ms after the first failed answer; \
         the canary answered {answered_by_canary} requests, customers saw {failed} failures",
        status["rolled_back_after_first_error_ms"]
    );
    assert!(answered_by_canary >= 5, "judged on at least min_requests");
    assert_eq!(
        shop.metric(0, "mall_canary_rollbacks", &["upstream=\"order\""])
            .await,
        1.0
    );
    assert_eq!(
        shop.metric(0, "mall_canary_weight_percent", &["upstream=\"order\""])
            .await,
        0.0
    );

    // After the rollback every customer is served by the stable version again.
    let canary_after_rollback = order_requests_at(&shop, &canary.url).await;
    for token in &customers {
        let (status, order) = order_as(&shop, token, &product).await;
        assert_eq!(status, StatusCode::OK);
        accepted.push((token.clone(), order.unwrap()));
    }
    assert_eq!(
        order_requests_at(&shop, &canary.url).await,
        canary_after_rollback
    );
    every_order_final(&shop, &accepted).await;
    let (clean, report) = shop.admin_check();
    assert!(clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_every_step_and_then_ended() {
    let shop = Shop::start_split(&[]).await;
    let canary = new_version(&shop, "").await;
    let product = shop.add_product(1_000, 1_000).await;
    let mut customers = Vec::new();
    for _ in 0..16 {
        customers.push(shop.new_customer().await);
    }
    start_canary(
        &shop,
        json!({"instances": [canary.url], "steps": [25, 50, 100], "interval_secs": 2,
               "min_requests": 5, "max_p99_increase_ms": 500}),
    )
    .await;
    let started = Instant::now();
    let mut orders = Vec::new();
    let status = loop {
        for token in &customers {
            let (status, order) = order_as(&shop, token, &product).await;
            assert_eq!(status, StatusCode::OK);
            orders.push((token.clone(), order.unwrap()));
        }
        let status = canary_status(&shop).await;
        if status["phase"] != "progressing" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not promoted: {status}"
        );
    };
    assert_eq!(status["phase"], "promoted", "{status}");
    assert_eq!(status["weight_percent"], 100);
    let log: Vec<&str> = status["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["what"].as_str().unwrap())
        .collect();
    assert!(log[1].contains("now 50 %"), "{log:?}");
    assert!(log[2].contains("now 100 %"), "{log:?}");
    assert!(log[3].starts_with("promoted"), "{log:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "three steps of 2 s"
    );

    // Promoted: every customer meets the new version.
    let stable_before = order_requests_at(&shop, &stable_order_url(&shop)).await;
    for token in &customers {
        let (status, order) = order_as(&shop, token, &product).await;
        assert_eq!(status, StatusCode::OK);
        orders.push((token.clone(), order.unwrap()));
    }
    assert_eq!(
        order_requests_at(&shop, &stable_order_url(&shop)).await,
        stable_before
    );

    // The operator's view of it, then the end of it.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
            .arg("canary")
            .args(args)
            .args(["--gateway", &shop.url])
            .env("MALL_ADMIN_TOKEN", &shop.admin_token)
            .output()
            .unwrap()
    };
    let shown = cli(&["status", "order"]);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("order: promoted, step 3 of 3"),
        "{stdout}"
    );
    let ended = cli(&["end", "order"]);
    assert!(ended.status.success());
    let canary_before = order_requests_at(&shop, &canary.url).await;
    let (status, order) = order_as(&shop, &customers[0], &product).await;
    assert_eq!(status, StatusCode::OK);
    orders.push((customers[0].clone(), order.unwrap()));
    assert_eq!(order_requests_at(&shop, &canary.url).await, canary_before);
    let none = shop
        .get_as(&shop.admin_token, "/api/admin/canaries/order")
        .await;
    assert_problem(none, StatusCode::NOT_FOUND, "no canary").await;

    every_order_final(&shop, &orders).await;
    let (clean, report) = shop.admin_check();
    assert!(clean, "{report}");
}

#[tokio::test]
async fn canary_mistakes_are_refused_with_the_reason() {
    let shop = Shop::start().await;
    let put = |token: &str, service: &str, plan: Value| {
        shop.client
            .put(format!("{}/api/admin/canaries/{service}", shop.url))
            .bearer_auth(token.to_owned())
            .json(&plan)
            .send()
    };
    let good = json!({"instances": ["http://127.0.0.1:1"]});
    let customer = put(&shop.token, "order", good.clone()).await.unwrap();
    assert_problem(customer, StatusCode::FORBIDDEN, "admin").await;
    let admin = &shop.admin_token;
    let typo = put(admin, "ordr", good.clone()).await.unwrap();
    assert_problem(typo, StatusCode::NOT_FOUND, "one of auth, delivery").await;
    for (plan, mentions) in [
        (
            json!({"instances": ["http://127.0.0.1:1"], "steps": [5, 25]}),
            "ending at 100",
        ),
        (
            json!({"instances": ["http://127.0.0.1:1"], "steps": [50, 25, 100]}),
            "rising",
        ),
        (json!({"instances": []}), "instances"),
        (json!({"instances": ["127.0.0.1:1"]}), "http://"),
        (
            json!({"instances": [format!("http://127.0.0.1:{}", shop.base_port + 1)]}),
            "stable instance",
        ),
        (
            json!({"instances": ["http://127.0.0.1:1"], "interval_secs": 0}),
            "interval_secs",
        ),
        (
            json!({"instances": ["http://127.0.0.1:1"], "max_error_rate_increase": 5}),
            "max_error_rate_increase",
        ),
        (
            json!({"instances": ["http://127.0.0.1:1"], "wieght": 5}),
            "wieght",
        ),
    ] {
        let refused = put(admin, "order", plan.clone()).await.unwrap();
        assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, mentions).await;
    }
    let nothing = shop.get_as(admin, "/api/admin/canaries").await;
    assert_eq!(
        nothing.json::<Value>().await.unwrap()["canaries"],
        json!([])
    );

    assert_eq!(
        put(admin, "order", good.clone()).await.unwrap().status(),
        StatusCode::CREATED
    );
    let twice = put(admin, "order", good).await.unwrap();
    assert_problem(twice, StatusCode::CONFLICT, "abort it").await;
    let end_early = shop
        .client
        .delete(format!("{}/api/admin/canaries/order", shop.url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_problem(end_early, StatusCode::CONFLICT, "promote or abort").await;
    let no_canary = shop
        .post_as(admin, "/api/admin/canaries/product/promote", &json!({}))
        .await;
    assert_problem(no_canary, StatusCode::NOT_FOUND, "product has no canary").await;

    // The operator's command says the same, and says who it needs.
    let cli = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mall"));
        command
            .arg("canary")
            .args(args)
            .args(["--gateway", &shop.url]);
        command.env_remove("MALL_ADMIN_TOKEN");
        if let Some(token) = token {
            command.env("MALL_ADMIN_TOKEN", token);
        }
        command.output().unwrap()
    };
    let anonymous = cli(&["status"], None);
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("MALL_ADMIN_TOKEN"));
    let typo = cli(&["abort", "ordr"], Some(admin));
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("no service `ordr`"),
        "{stderr}"
    );
    let aborted = cli(&["abort", "order"], Some(admin));
    assert!(aborted.status.success());
    assert!(String::from_utf8_lossy(&aborted.stdout).contains("rolled back"));
    let again = cli(&["abort", "order"], Some(admin));
    assert!(String::from_utf8_lossy(&again.stderr).contains("rolled back already"));
}
