//! What the gateway does for the shop as a whole: limits per client address (behind
//! trusted proxies too), the stricter one on signing up and logging in, the headers
//! that keep browsers from running anyone else's code on the shop's pages, and the
//! page's session cookie.

use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::{NO_RATE_LIMITS, Shop, assert_problem};

/// Sign-ups and logins a shop's setup sends from its one address (the admin's login, a
/// customer's sign-up and login), before a test's own.
const SETUP_LOGINS: u32 = 3;

/// A shop whose only tight limit is on signing up and logging in: `spare` more after its
/// setup, then one a minute; more settings in `env`.
async fn shop_with_spare_logins(spare: u32, env: &[(&str, &str)]) -> Shop {
    let burst = (SETUP_LOGINS + spare).to_string();
    let mut settings = NO_RATE_LIMITS.to_vec();
    settings.extend([
        ("MALL_RATE_LIMIT_LOGIN_PER_MIN", "1"),
        ("MALL_RATE_LIMIT_LOGIN_BURST", burst.as_str()),
    ]);
    settings.extend(env);
    Shop::start_with(&settings).await
}

/// A login with a wrong password, as sent through a proxy that forwarded `forwarded_for`.
async fn login_forwarded_for(shop: &Shop, forwarded_for: &str) -> Response {
    shop.client
        .post(format!("{}/api/auth/login", shop.url))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": "nobody@test.12st", "password": "a guess"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn logins_and_signups_beyond_their_stricter_limit_get_429_while_browsing_goes_on() {
    let shop = shop_with_spare_logins(1, &[]).await;
    let signup = shop
        .post(
            "/api/auth/signup",
            &json!({"email": "late@test.12st", "password": "a good password", "name": "Late"}),
        )
        .await;
    assert_eq!(signup.status(), StatusCode::CREATED);

    let refused = shop
        .post(
            "/api/auth/login",
            &json!({"email": "late@test.12st", "password": "a good password"}),
        )
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "logins").await;
    assert_eq!(
        shop.get("/api/products").await.status(),
        StatusCode::OK,
        "only signing up and logging in are limited this tightly"
    );
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    let shop = shop_with_spare_logins(1, &[]).await;
    assert_eq!(
        login_forwarded_for(&shop, "198.51.100.1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let second = login_forwarded_for(&shop, "198.51.100.2").await;
    assert_problem(second, StatusCode::TOO_MANY_REQUESTS, "client address").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let shop = shop_with_spare_logins(0, &[("MALL_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    // The shop's setup used up the proxy's own address; each client behind it starts full.
    for _ in 0..SETUP_LOGINS {
        assert_eq!(
            login_forwarded_for(&shop, "198.51.100.1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let over = login_forwarded_for(&shop, "198.51.100.1").await;
    assert_problem(over, StatusCode::TOO_MANY_REQUESTS, "client address").await;
    assert_eq!(
        login_forwarded_for(&shop, "198.51.100.2").await.status(),
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy"
    );
    let spoofed = login_forwarded_for(&shop, "198.51.100.2, 198.51.100.1").await;
    assert_eq!(
        spoofed.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "what a client writes left of the proxy's entry does not make it someone else"
    );
}

#[tokio::test]
async fn every_response_tells_browsers_to_run_only_the_shops_own_code() {
    let shop = Shop::start().await;
    let responses = [
        ("the shell page", shop.get("/").await),
        ("a shell module", shop.get("/ui/shell/shell.js").await),
        ("an API answer", shop.get("/api/products").await),
        (
            "a component",
            shop.get("/api/products/ui/catalogue.js").await,
        ),
        ("a problem", shop.get("/api/mypage").await),
        ("an unknown path", shop.get("/no/such/page").await),
        ("a health check", shop.get("/health/live").await),
    ];
    for (what, response) in responses {
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("{what} ({}) has no {name}", response.status()))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{what}: {policy}");
        assert!(
            policy.contains("script-src 'self' 'sha256-"),
            "{what}: {policy}"
        );
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{what}: {policy}"
        );
        assert!(policy.contains("object-src 'none'"), "{what}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    }
}

/// A request as the shop's page sends it, with the session cookie it holds.
fn from_page(
    shop: &Shop,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
) -> reqwest::RequestBuilder {
    shop.client
        .request(method, format!("{}{path}", shop.url))
        .header("x-requested-with", "mall")
        .header("cookie", cookie)
}

/// `name=value` of the `Set-Cookie` of `response`, and all its attributes.
fn set_cookie(response: &Response) -> (String, String) {
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    (pair, set)
}

#[tokio::test]
async fn the_page_gets_the_token_as_a_cookie_no_script_can_read_and_no_other_site_can_use() {
    let shop = Shop::start().await;
    let login = shop
        .client
        .post(format!("{}/api/auth/login", shop.url))
        .header("x-requested-with", "mall")
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let (cookie, set) = set_cookie(&login);
    assert!(cookie.starts_with("mall_session=ey"), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP cannot keep a Secure cookie: {set}"
    );
    let body: serde_json::Value = login.json().await.unwrap();
    assert!(
        body.get("access_token").is_none(),
        "the page got the token: {body}"
    );

    let whose = from_page(&shop, reqwest::Method::GET, "/api/auth/session", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(whose.status(), StatusCode::OK);
    let whose: serde_json::Value = whose.json().await.unwrap();
    assert!(
        whose["roles"].as_array().unwrap().contains(&json!("admin")),
        "{whose}"
    );
    assert!(whose.get("access_token").is_none());

    let product = json!({"name": "Cookie jar", "description": "glass", "price": 9000, "stock": 3});
    let forged = shop
        .client
        .post(format!("{}/api/products", shop.url))
        .header("cookie", &cookie)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_problem(forged, StatusCode::FORBIDDEN, "x-requested-with").await;
    let from_the_page = from_page(&shop, reqwest::Method::POST, "/api/products", &cookie)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(
        from_the_page.status(),
        StatusCode::CREATED,
        "the cookie is the bearer"
    );

    let logout = from_page(&shop, reqwest::Method::POST, "/api/auth/logout", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let (cleared, set) = set_cookie(&logout);
    assert_eq!(cleared, "mall_session=");
    assert!(set.contains("Max-Age=0"), "{set}");
}

#[tokio::test]
async fn other_clients_get_the_token_in_the_answer_and_no_cookie() {
    let shop = Shop::start().await;
    let login = shop
        .post(
            "/api/auth/login",
            &json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.headers().get("set-cookie").is_none());
    let body: serde_json::Value = login.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn behind_a_trusted_https_proxy_the_session_cookie_is_secure() {
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_TRUSTED_PROXIES", "127.0.0.1/32"));
    let shop = Shop::start_with(&env).await;
    let login = shop
        .client
        .post(format!("{}/api/auth/login", shop.url))
        .header("x-requested-with", "mall")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let (_, set) = set_cookie(&login);
    assert!(set.ends_with("; Secure"), "{set}");
}
