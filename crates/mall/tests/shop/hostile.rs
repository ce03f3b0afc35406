//! What a hostile client or a careless default could do to the shop (issue 16), each tried
//! as the attack that used to work, now refused or bounded.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Shop, assert_problem, count};

/// The order service's port, from the shop's base port.
const ORDER: u16 = 1;

async fn metrics_size(shop: &Shop) -> usize {
    shop.metrics_text(ORDER).await.len()
}

#[tokio::test]
async fn invented_http_methods_do_not_grow_the_metrics() {
    let shop = Shop::start().await;
    let before = metrics_size(&shop).await;
    let url = format!("http://127.0.0.1:{}/api/orders", shop.base_port + ORDER);
    let mut answers = Vec::new();
    for batch in 0..40 {
        let requests = (0..50).map(|i| {
            let method =
                Method::from_bytes(format!("JUNK{batch}X{i}{}", "Z".repeat(1_000)).as_bytes())
                    .unwrap();
            shop.client.request(method, &url).send()
        });
        answers.extend(futures::future::join_all(requests).await);
    }
    let answered = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(answered, 2_000, "the service answers each junk request");
    let grown = metrics_size(&shop).await.saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "/metrics grew by {grown} bytes after 2,000 invented methods"
    );
}

/// NUL bytes, bidirectional overrides and invisible characters in every free-text field
/// are refused with a 422 naming the field, and nothing is stored.
#[tokio::test]
async fn control_bidi_and_invisible_characters_are_refused_in_every_text_field() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;
    let order_id = shop.place_order(&product, 1).await;
    shop.final_order(&order_id).await;
    let (orders, catalogue, accounts) = (
        shop.db("order").await,
        shop.db("product").await,
        shop.db("auth").await,
    );
    let order_events = count(&orders, "SELECT COUNT(*) FROM order_events").await;
    let products = count(&catalogue, "SELECT COUNT(*) FROM products").await;
    let customers = count(&accounts, "SELECT COUNT(*) FROM customers").await;
    let poisons = [
        "Seoul\u{0}evil",
        "Seoul\u{202E}live",
        "Se\u{200B}oul",
        "Seoul\u{1B}[31m",
    ];
    for poison in poisons {
        let cases = [
            (
                shop.post(
                    "/api/auth/signup",
                    &json!({"email": "new@test.12st", "password": "a good password", "name": poison}),
                )
                .await,
                "name",
            ),
            (
                shop.post(
                    "/api/auth/signup",
                    &json!({"email": format!("a{poison}@test.12st"), "password": "a good password", "name": "Kim"}),
                )
                .await,
                "email",
            ),
            (
                shop.post_as(
                    &shop.admin_token,
                    "/api/products",
                    &json!({"name": poison, "price": 100}),
                )
                .await,
                "name",
            ),
            (
                shop.post_as(
                    &shop.admin_token,
                    "/api/products",
                    &json!({"name": "Mug", "description": poison, "price": 100}),
                )
                .await,
                "description",
            ),
            (
                shop.post_as(
                    &shop.token,
                    "/api/orders",
                    &json!({"product_id": product, "quantity": 1, "address": poison}),
                )
                .await,
                "address",
            ),
            (
                shop.client
                    .patch(format!("{}/api/orders/{order_id}", shop.url))
                    .bearer_auth(&shop.token)
                    .json(&json!({"address": poison}))
                    .send()
                    .await
                    .unwrap(),
                "address",
            ),
        ];
        for (answer, field) in cases {
            let problem = assert_problem(answer, StatusCode::UNPROCESSABLE_ENTITY, field).await;
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("must not contain"),
                "{poison:?}: {problem}"
            );
        }
    }
    let description_with_lines = shop
        .post_as(
            &shop.admin_token,
            "/api/products",
            &json!({"name": "Notebook", "description": "A5\n80 pages", "price": 100}),
        )
        .await;
    assert_eq!(description_with_lines.status(), StatusCode::CREATED);

    assert_eq!(
        count(&orders, "SELECT COUNT(*) FROM order_events").await,
        order_events
    );
    assert_eq!(
        count(&catalogue, "SELECT COUNT(*) FROM products").await,
        products + 1,
        "only the notebook"
    );
    assert_eq!(
        count(&accounts, "SELECT COUNT(*) FROM customers").await,
        customers
    );
}

#[tokio::test]
async fn the_data_folder_and_its_files_are_the_owners_alone() {
    let shop = Shop::start().await;
    shop.place_order(&shop.add_product(1_000, 10).await, 1)
        .await;
    let mut open_to_others = Vec::new();
    let mut folders = vec![shop.data_dir().to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            // The test harness, not the shop, writes the shop's output there.
            if path.ends_with("stdout.log") || path.ends_with("stderr.log") {
                continue;
            }
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                open_to_others.push(format!("{} {mode:o}", path.display()));
            }
            if path.is_dir() {
                folders.push(path);
            }
        }
    }
    assert!(open_to_others.is_empty(), "{open_to_others:#?}");
}

#[test]
fn a_signing_key_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not even read").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["serve", "auth", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("MALL_AUTH_SIGNING_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("open to other users"), "{stderr}");
}

#[test]
fn chaos_refuses_a_real_database_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["chaos", "--data-dir"])
        .arg(dir.path())
        .env("MALL_DB", "postgres://nobody@127.0.0.1:1/production")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mall chaos runs on the embedded database"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

/// Slowloris: 500 connections that never finish their headers are closed after the header
/// timeout, while other customers are served meanwhile; an idle keep-alive connection is
/// closed after it too.
#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let shop = Shop::start_with(&[("MALL_HEADER_TIMEOUT_MS", "1000")]).await;
    let gateway = format!("127.0.0.1:{}", shop.base_port);
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut connection = tokio::net::TcpStream::connect(&gateway).await.unwrap();
        connection
            .write_all(b"GET /api/products HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(connection);
    }
    let opened = std::time::Instant::now();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let catalogue = shop.get("/api/products").await;
        assert_eq!(catalogue.status(), StatusCode::OK);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    let closed = futures::future::join_all(slow.iter_mut().map(|connection| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            connection.read_to_end(&mut rest),
        )
        .await
        .is_ok()
    }))
    .await;
    let still_open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(still_open, 0, "slow connections still open after 5 s");
    eprintln!("500 slow connections closed within {:?}", opened.elapsed());

    let mut idle = tokio::net::TcpStream::connect(&gateway).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        idle.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "an idle keep-alive connection stays open");
}

/// An order's stream cannot be grown without end: address changes stop at the cap with a
/// 409, and its history comes a page at a time.
#[tokio::test]
async fn address_changes_are_capped_and_history_is_paged() {
    let shop = Shop::start().await;
    let order_id = shop
        .place_order(&shop.add_product(1_000, 10).await, 1)
        .await;
    shop.final_order(&order_id).await;
    let order_url = format!("{}/api/orders/{order_id}", shop.url);
    let change = |n: usize| {
        shop.client
            .patch(&order_url)
            .bearer_auth(&shop.token)
            .json(&json!({"address": format!("{n} Haeundae-ro, Busan")}))
            .send()
    };
    for n in 0..10 {
        assert_eq!(change(n).await.unwrap().status(), StatusCode::ACCEPTED);
        let started = std::time::Instant::now();
        while shop.order(&order_id).await["request"]["status"] == "PENDING" {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_problem(
        change(10).await.unwrap(),
        StatusCode::CONFLICT,
        "the most allowed",
    )
    .await;
    assert_eq!(
        shop.order(&order_id).await["address"],
        "9 Haeundae-ro, Busan"
    );

    let mut versions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
        let page: serde_json::Value = shop
            .get_as(
                &shop.token,
                &format!("/api/orders/{order_id}/history?limit=4{query}"),
            )
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 4);
        versions.extend(items.iter().map(|event| event["version"].as_u64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected, "every event once, in order");
    assert_eq!(
        versions.len(),
        23,
        "placed, confirmed, on its way, 10 × requested and changed"
    );
    for bad in ["limit=0", "limit=101", "cursor=yesterday", "colour=red"] {
        assert_problem(
            shop.get_as(
                &shop.token,
                &format!("/api/orders/{order_id}/history?{bad}"),
            )
            .await,
            if bad.starts_with("colour") {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            "",
        )
        .await;
    }
}

/// With an operations port, a service's health and metrics are served there and nowhere
/// else; a production gateway refuses to start without one.
#[tokio::test]
async fn operator_endpoints_move_to_their_own_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_ports(2);
    let mut order = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["serve", "order", "--port", &port.to_string()])
        .args(["--operations-port", &(port + 1).to_string(), "--data-dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let ready_url = format!("http://127.0.0.1:{}/health/ready", port + 1);
    let started = std::time::Instant::now();
    while !client
        .get(&ready_url)
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for path in ["/metrics", "/health/live", "/health/ready"] {
        let public = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path}");
        let operator = client
            .get(format!("http://127.0.0.1:{}{path}", port + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(operator.status(), StatusCode::OK, "{path}");
    }
    let api = client
        .get(format!("http://127.0.0.1:{port}/orders/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "the API stays where it was"
    );
    order.kill().unwrap();
    order.wait().unwrap();

    let gateway = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["serve", "gateway", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("MALL_ENV")
        .output()
        .unwrap();
    assert!(!gateway.status.success());
    let stderr = String::from_utf8_lossy(&gateway.stderr);
    assert!(stderr.contains("MALL_OPERATIONS_PORT"), "{stderr}");
}

#[tokio::test]
async fn the_merged_api_document_is_not_rebuilt_for_every_caller() {
    let shop = Shop::start().await;
    let fetches = futures::future::join_all((0..20).map(|_| shop.get("/api/openapi.json"))).await;
    assert!(
        fetches
            .iter()
            .all(|answer| answer.status() == StatusCode::OK)
    );
    let asked = shop
        .metric(
            ORDER,
            "mall_http_requests_total",
            &["route=\"/openapi.json\""],
        )
        .await;
    assert_eq!(asked, 1.0, "order was asked for its document {asked} times");
}
