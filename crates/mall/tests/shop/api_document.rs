use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::Shop;

/// The paths the gateway answers itself rather than forward to a service.
const GATEWAYS_OWN: [&str; 2] = ["/api/auth/session", "/api/auth/logout"];

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
        // What the chassis and the gateway answer around any handler is documented too
        // (schemathesis's status_code_conformance holds CI to it): the gateway's rate
        // limits; in front of a service, its own failures and the service's timeout; a
        // parameter or body that does not parse, a body too large or not JSON.
        let takes_a_body = operation["requestBody"].is_object();
        let takes_input = takes_a_body
            || operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty());
        let in_front_of_a_service = !GATEWAYS_OWN.contains(&path);
        let statuses = [
            ("429", true),
            ("502", in_front_of_a_service),
            ("503", in_front_of_a_service),
            ("504", in_front_of_a_service),
            ("400", takes_input),
            ("413", takes_a_body),
            ("415", takes_a_body),
        ];
        for status in statuses
            .into_iter()
            .filter_map(|(status, due)| due.then_some(status))
        {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert!(document["components"]["schemas"]["Order"].is_object());
}
