use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::Shop;

#[tokio::test]
async fn the_gateway_serves_the_merged_openapi_document_of_the_public_api() {
    let shop = Shop::start().await;
    let response = shop.get("/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");

    let operations = [
        ("post", "/api/auth/signup", false),
        ("post", "/api/auth/login", false),
        ("get", "/api/auth/jwks", false),
        ("get", "/api/auth/session", true),
        ("post", "/api/auth/logout", false),
        ("get", "/api/products", false),
        ("post", "/api/products", true),
        ("get", "/api/products/{id}", false),
        ("post", "/api/products/{id}/stock", true),
        ("post", "/api/orders", true),
        ("get", "/api/orders/{id}", true),
        ("get", "/api/orders/{id}/history", true),
        ("post", "/api/orders/{id}/cancel", true),
        ("patch", "/api/orders/{id}", true),
        ("post", "/api/orders/{id}/undo", true),
        ("get", "/api/mypage", true),
        ("get", "/api/deliveries", true),
        ("post", "/api/deliveries/{order_id}/complete", true),
        ("get", "/api/admin/dlq", true),
        ("post", "/api/admin/dlq/{id}/replay", true),
    ];
    for (method, path, protected) in operations {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert_eq!(
            operation["security"].is_array(),
            protected,
            "{method} {path} security"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert!(document["components"]["schemas"]["Order"].is_object());
}
