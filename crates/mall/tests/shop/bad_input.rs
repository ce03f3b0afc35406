use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{NO_RATE_LIMITS, Shop, assert_problem, count};

/// Every refused order leaves no order, no event and no stock change behind.
#[tokio::test]
async fn bad_orders_get_a_problem_naming_what_is_wrong_and_nothing_is_stored() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;
    let orders_url = format!("{}/api/orders", shop.url);
    let order = |quantity: serde_json::Value, address: &str| json!({"product_id": product, "quantity": quantity, "address": address});

    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).header("content-type", "application/json").body("{\"product_id\": "),
            StatusCode::BAD_REQUEST,
            "parse the request body as json",
        ),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).header("content-type", "text/plain").body(order(json!(1), "Seoul").to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        ),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).json(&json!({"product_id": "01a21bee-0000-7000-8000-000000000000", "quantity": 1, "address": "Seoul"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not exist",
        ),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).json(&json!({"product_id": "not-a-uuid", "quantity": 1, "address": "Seoul"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "product_id",
        ),
        (shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(0), "Seoul")), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(-3), "Seoul")), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(1_000_000_000_000_i64), "Seoul")), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(1e300), "Seoul")), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(1), "   ")), StatusCode::UNPROCESSABLE_ENTITY, "address"),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).json(&json!({"product_id": product, "quantity": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "address",
        ),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).json(&order(json!(1), &"x".repeat(200_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            shop.client.post(&orders_url).bearer_auth(&shop.token).header("Idempotency-Key", "").json(&order(json!(1), "Seoul")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key",
        ),
    ];
    for (request, status, mentions) in cases {
        assert_problem(request.send().await.unwrap(), status, mentions).await;
    }

    let orders = shop.db("order").await;
    assert_eq!(count(&orders, "SELECT COUNT(*) FROM order_events").await, 0);
    assert_eq!(count(&orders, "SELECT COUNT(*) FROM outbox").await, 0);
    assert!(shop.events_on(contracts::topics::ORDER).await.is_empty());
    assert_eq!(shop.stock_of(&product).await, 10);
}

#[tokio::test]
async fn unknown_ids_and_paths_are_404_problems() {
    let shop = Shop::start().await;
    for path in [
        "/api/orders/01a21bee-0000-7000-8000-000000000000",
        "/api/orders/01a21bee-0000-7000-8000-000000000000/history",
        "/api/orders/not-an-id",
        "/api/products/01a21bee-0000-7000-8000-000000000000",
        "/api/products/nope",
    ] {
        assert_problem(
            shop.get_as(&shop.token, path).await,
            StatusCode::NOT_FOUND,
            "no ",
        )
        .await;
    }
    assert_problem(
        shop.get("/api/nothing-here").await,
        StatusCode::NOT_FOUND,
        "",
    )
    .await;
    let wrong_method = shop
        .client
        .delete(format!("{}/api/products", shop.url))
        .send()
        .await
        .unwrap();
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "").await;
}

#[tokio::test]
async fn bad_products_and_stock_changes_are_refused_and_change_nothing() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 5).await;
    for (body, mentions) in [
        (json!({"name": "", "price": 100}), "name"),
        (json!({"name": "Mug", "price": 0}), "price"),
        (json!({"name": "Mug", "price": -5}), "price"),
        (json!({"name": "Mug", "price": 100, "stock": -1}), "stock"),
        (
            json!({"name": "Mug", "price": 100, "colour": "red"}),
            "colour",
        ),
    ] {
        assert_problem(
            shop.post_as(&shop.admin_token, "/api/products", &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            mentions,
        )
        .await;
    }
    let stock_url = format!("/api/products/{product}/stock");
    assert_problem(
        shop.post_as(&shop.admin_token, &stock_url, &json!({"delta": 0}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "delta",
    )
    .await;
    assert_problem(
        shop.post_as(&shop.admin_token, &stock_url, &json!({"delta": -6}))
            .await,
        StatusCode::CONFLICT,
        "insufficient",
    )
    .await;
    assert_eq!(shop.stock_of(&product).await, 5);

    let raised = shop
        .post_as(&shop.admin_token, &stock_url, &json!({"delta": 7}))
        .await;
    assert_eq!(raised.status(), StatusCode::OK);
    assert_eq!(shop.stock_of(&product).await, 12);
    let catalogue = shop.db("product").await;
    assert_eq!(
        count(&catalogue, "SELECT COUNT(*) FROM products").await,
        7,
        "6 demo products and ours"
    );
}

#[tokio::test]
async fn catalogue_pages_follow_their_cursor() {
    let shop = Shop::start().await;
    let first: serde_json::Value = shop
        .get("/api/products?limit=4")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: serde_json::Value = shop
        .get(&format!("/api/products?limit=4&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert!(second["next_cursor"].is_null());
    assert_problem(
        shop.get("/api/products?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
    assert_problem(
        shop.get("/api/products?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "limit",
    )
    .await;
}

#[tokio::test]
async fn a_body_just_over_the_configured_limit_gets_413_and_one_at_the_limit_gets_through() {
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_BODY_LIMIT_BYTES", "2048"));
    let shop = Shop::start_with(&env).await;
    // A new product padded with whitespace to `size` bytes: valid JSON of any length.
    let product_of_size = |size: usize| {
        let product =
            json!({"name": "Padded", "description": "to the limit", "price": 1_000, "stock": 1})
                .to_string();
        format!("{product}{}", " ".repeat(size - product.len()))
    };
    let gateway = format!("{}/api/products", shop.url);
    let product_service = format!("http://127.0.0.1:{}/products", shop.base_port + 3);
    for url in [gateway, product_service] {
        let post = |size: usize| {
            shop.client
                .post(&url)
                .bearer_auth(&shop.admin_token)
                .header("content-type", "application/json")
                .body(product_of_size(size))
                .send()
        };
        assert_eq!(
            post(2048).await.unwrap().status(),
            StatusCode::CREATED,
            "{url}"
        );
        assert_problem(
            post(2049).await.unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is 2049 bytes; at most 2048",
        )
        .await;
    }
}
