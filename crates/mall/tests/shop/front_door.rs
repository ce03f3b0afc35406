//! What the gateway does for the shop as a whole: limits per client address (behind
//! trusted proxies too), and the stricter one on signing up and logging in.

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
