//! Who may do what: signup and login, and every forged, stale or misused token refused
//! at the gateway and again at the service itself, with nothing changed.

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use auth::{SigningKey, keys::generate_pem};
use axum::{http::HeaderMap, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chassis::auth::{Claims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{NO_RATE_LIMITS, Shop, assert_problem, count, free_ports};

#[tokio::test]
async fn a_customer_signs_up_logs_in_orders_and_reads_the_order_through_the_gateway() {
    let shop = Shop::start().await;
    let product = shop.add_product(3_000, 5).await;
    let signup = shop
        .post(
            "/api/auth/signup",
            &json!({"email": " Lee.Seojun@Example.com ", "password": "long enough pass", "name": "이서준"}),
        )
        .await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let account: Value = signup.json().await.unwrap();
    assert_eq!(account["email"], "lee.seojun@example.com");
    assert!(account.get("password").is_none() && account.get("password_hash").is_none());

    let token = shop
        .login("LEE.SEOJUN@example.com", "long enough pass")
        .await;
    let placed = shop
        .post_as(
            &token,
            "/api/orders",
            &json!({"product_id": product, "quantity": 2, "address": "Busan"}),
        )
        .await;
    assert_eq!(placed.status(), StatusCode::ACCEPTED);
    let order_id = placed.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order: Value = shop
        .get_as(&token, &format!("/api/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["customer_id"], account["customer_id"]);
}

#[tokio::test]
async fn signup_and_login_refuse_what_they_should() {
    let shop = Shop::start().await;
    for (body, status, mentions) in [
        (
            json!({"email": "not-an-email", "password": "long enough pass", "name": "Kim"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"email": "kim@example.com", "password": "short", "name": "Kim"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least 8",
        ),
        (
            json!({"email": "kim@example.com", "password": "kim@example.com", "name": "Kim"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must not be the email",
        ),
        (
            json!({"email": "kim@example.com", "password": "long enough pass", "name": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"email": "kim@example.com", "password": "long enough pass"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
    ] {
        assert_problem(shop.post("/api/auth/signup", &body).await, status, mentions).await;
    }
    let account =
        json!({"email": "kim@example.com", "password": "long enough pass", "name": "Kim"});
    assert_eq!(
        shop.post("/api/auth/signup", &account).await.status(),
        StatusCode::CREATED
    );
    assert_problem(
        shop.post("/api/auth/signup", &account).await,
        StatusCode::CONFLICT,
        "already registered",
    )
    .await;

    for (email, password) in [
        ("kim@example.com", "wrong password!"),
        ("nobody@example.com", "long enough pass"),
    ] {
        let login = shop
            .post(
                "/api/auth/login",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_problem(login, StatusCode::UNAUTHORIZED, "wrong email or password").await;
    }
    // As the README says: Argon2id, 12 MiB, 3 passes (and one lane), for a customer who
    // signed up and for the admin `mall admin create-user` made.
    let accounts = shop.db("auth").await;
    for email in ["kim@example.com", crate::helpers::ADMIN_EMAIL] {
        let hash: String = chassis::on_conn!(&mut accounts.read().await.unwrap(), c =>
            sqlx::query_scalar("SELECT password_hash FROM customers WHERE email = $1")
                .bind(email)
                .fetch_one(c)
                .await
                .unwrap());
        assert!(
            hash.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"),
            "{email}: {hash}"
        );
    }
}

fn claims(sub: Uuid, roles: Vec<Role>) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: "12st-mall".into(),
        aud: "12st-mall".into(),
        sub,
        exp: now + 600,
        nbf: now,
        iat: now,
        jti: Uuid::now_v7(),
        roles,
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The claims inside a token, read without verifying it.
fn payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The customer id (`sub`) inside a token, read without verifying it.
fn subject(token: &str) -> Uuid {
    payload(token)["sub"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn forged_stale_and_misaddressed_tokens_are_refused_by_the_gateway_and_the_service() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;
    let real_key = SigningKey::load(&shop.data_dir().join("auth-signing-key.pem")).unwrap();
    let customer = subject(&shop.token);
    let now = chrono::Utc::now().timestamp();

    let (header, payload, _) = {
        let mut parts = shop.token.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            (),
        )
    };
    let signature = shop.token.rsplit('.').next().unwrap();
    let mut raised =
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap();
    raised["roles"] = json!(["customer", "admin"]);
    let changed_payload = format!("{header}.{}.{signature}", b64(&raised));

    let other_key = SigningKey::from_pem(generate_pem().as_bytes()).unwrap();
    let mut other_key_real_kid = Header::new(Algorithm::EdDSA);
    other_key_real_kid.kid = Some(real_key.kid().to_owned());
    let other_pem = generate_pem();
    let signed_by_other_key = encode(
        &other_key_real_kid,
        &claims(customer, vec![Role::Customer]),
        &EncodingKey::from_ed_pem(other_pem.as_bytes()).unwrap(),
    )
    .unwrap();

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": real_key.kid()})),
        b64(&serde_json::to_value(claims(customer, vec![Role::Customer, Role::Admin])).unwrap())
    );

    let jwks: Value = shop.get("/api/auth/jwks").await.json().await.unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(real_key.kid().to_owned());
    let hmac_with_public_key = encode(
        &hs256,
        &claims(customer, vec![Role::Customer, Role::Admin]),
        &EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(&public_x).unwrap()),
    )
    .unwrap();

    let resign = |change: &dyn Fn(&mut Claims)| {
        let mut forged = claims(customer, vec![Role::Customer]);
        change(&mut forged);
        real_key.sign(&forged)
    };
    let expired = resign(&|c| {
        c.exp = now - 3_600;
        c.iat = now - 7_200;
        c.nbf = now - 7_200;
    });
    let not_yet_valid = resign(&|c| c.nbf = now + 3_600);
    const TEN_YEARS: i64 = 10 * 365 * 24 * 3_600;
    let lasting_ten_years = resign(&|c| c.exp = now + TEN_YEARS);
    // Within the allowed lifetime from its `iat`, but `iat` ten years out.
    let issued_in_the_future = resign(&|c| {
        c.iat = now + TEN_YEARS - 600;
        c.exp = now + TEN_YEARS;
    });
    let mut without_iat = serde_json::to_value(claims(customer, vec![Role::Customer])).unwrap();
    without_iat.as_object_mut().unwrap().remove("iat");
    let mut real_kid = Header::new(Algorithm::EdDSA);
    real_kid.kid = Some(real_key.kid().to_owned());
    let real_pem = std::fs::read(shop.data_dir().join("auth-signing-key.pem")).unwrap();
    let without_iat = encode(
        &real_kid,
        &without_iat,
        &EncodingKey::from_ed_pem(&real_pem).unwrap(),
    )
    .unwrap();
    let wrong_issuer = resign(&|c| c.iss = "https://evil.example".into());
    let wrong_audience = resign(&|c| c.aud = "another-shop".into());

    let attacks = [
        ("changed payload", changed_payload),
        ("signed by another key", signed_by_other_key),
        (
            "signed by another key with its own kid",
            other_key.sign(&claims(customer, vec![Role::Customer])),
        ),
        ("alg none", alg_none),
        ("HS256 with the public key", hmac_with_public_key),
        ("expired", expired),
        ("not yet valid", not_yet_valid),
        ("lasting ten years", lasting_ten_years),
        ("issued in the future", issued_in_the_future),
        ("without iat", without_iat),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("garbage", "not.a.token".to_owned()),
    ];
    let order = json!({"product_id": product, "quantity": 1, "address": "Seoul"});
    let order_service = format!("http://127.0.0.1:{}/orders", shop.base_port + 1);
    for (name, token) in &attacks {
        for url in [format!("{}/api/orders", shop.url), order_service.clone()] {
            let response = shop
                .client
                .post(&url)
                .bearer_auth(token)
                .json(&order)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{name} at {url}"
            );
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{name}"
            );
            assert_problem(response, StatusCode::UNAUTHORIZED, "").await;
        }
        let as_admin = shop
            .post_as(
                token,
                "/api/products",
                &json!({"name": "Forged", "price": 1}),
            )
            .await;
        assert_eq!(
            as_admin.status(),
            StatusCode::UNAUTHORIZED,
            "{name} as admin"
        );
        let on_a_public_route = shop.get_as(token, "/api/products").await;
        assert_eq!(
            on_a_public_route.status(),
            StatusCode::UNAUTHORIZED,
            "{name} is refused, not ignored, on a public route"
        );
    }
    assert_eq!(
        shop.get_as(&shop.token, "/api/products").await.status(),
        StatusCode::OK
    );
    let no_token = shop.post("/api/orders", &order).await;
    assert_problem(no_token, StatusCode::UNAUTHORIZED, "bearer token").await;
    let direct = shop
        .client
        .post(&order_service)
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_problem(direct, StatusCode::UNAUTHORIZED, "bearer token").await;

    let orders = shop.db("order").await;
    assert_eq!(count(&orders, "SELECT COUNT(*) FROM order_events").await, 0);
    let catalogue = shop.db("product").await;
    assert_eq!(
        count(
            &catalogue,
            "SELECT COUNT(*) FROM products WHERE name = 'Forged'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_customer_sees_only_their_own_orders_and_no_admin_routes() {
    let shop = Shop::start().await;
    let product = shop.add_product(1_000, 10).await;
    let order_id = shop.place_order(&product, 1).await;
    let intruder = shop.new_customer().await;

    for path in [
        format!("/api/orders/{order_id}"),
        format!("/api/orders/{order_id}/history"),
    ] {
        assert_problem(
            shop.get_as(&intruder, &path).await,
            StatusCode::NOT_FOUND,
            "no order",
        )
        .await;
        assert_eq!(
            shop.get_as(&shop.token, &path).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            shop.get_as(&shop.admin_token, &path).await.status(),
            StatusCode::OK
        );
    }
    let direct = shop
        .client
        .get(format!(
            "http://127.0.0.1:{}/orders/{order_id}",
            shop.base_port + 1
        ))
        .bearer_auth(&intruder)
        .send()
        .await
        .unwrap();
    assert_problem(direct, StatusCode::NOT_FOUND, "no order").await;

    let new_product = json!({"name": "Not yours to add", "price": 1000});
    assert_problem(
        shop.post_as(&intruder, "/api/products", &new_product).await,
        StatusCode::FORBIDDEN,
        "admin",
    )
    .await;
    let stock = shop
        .post_as(
            &intruder,
            &format!("/api/products/{product}/stock"),
            &json!({"delta": 100}),
        )
        .await;
    assert_problem(stock, StatusCode::FORBIDDEN, "admin").await;
    let direct = shop
        .client
        .post(format!("http://127.0.0.1:{}/products", shop.base_port + 3))
        .bearer_auth(&intruder)
        .json(&new_product)
        .send()
        .await
        .unwrap();
    assert_problem(direct, StatusCode::FORBIDDEN, "admin").await;
    // Only the customer's own order took stock, once its saga is done.
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    assert_eq!(shop.stock_of(&product).await, 9);
}

/// The outside parties of a service started alone, played by the test: an issuer that
/// publishes `key` at `/jwks`, and a my page that answers an empty page and keeps the
/// headers of every request it gets.
struct StandIn {
    url: String,
    requests_seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl StandIn {
    async fn start(key: &SigningKey) -> StandIn {
        let jwks = key.jwks();
        let requests_seen = Arc::new(Mutex::new(Vec::new()));
        let kept = requests_seen.clone();
        let app = axum::Router::new()
            .route("/jwks", get(move || async move { axum::Json(jwks) }))
            .route(
                "/mypage",
                get(move |headers: HeaderMap| async move {
                    kept.lock().unwrap().push(headers);
                    axum::Json(json!({"orders": []}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { url, requests_seen }
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }
}

/// One service alone (`mall serve <service>`) in a folder of its own, with `env`; killed
/// when dropped.
struct LoneService {
    url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl LoneService {
    async fn start(service: &str, env: &[(&str, &str)]) -> LoneService {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1);
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args(["serve", service, "--port", &port.to_string(), "--data-dir"])
            .arg(dir.path())
            .env("MALL_ENV", "test")
            .env("MALL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lone = LoneService {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let ready = format!("{}/health/ready", lone.url);
        let started = std::time::Instant::now();
        while !reqwest::get(&ready)
            .await
            .is_ok_and(|answer| answer.status().is_success())
        {
            let stderr = || std::fs::read_to_string(lone.dir.path().join("stderr.log")).unwrap();
            if let Some(status) = lone.child.try_wait().unwrap() {
                panic!("mall serve {service} exited with {status}: {}", stderr());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mall serve {service} did not start: {}",
                stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lone
    }
}

impl Drop for LoneService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nothing in the shop reads `X-User-*` headers (a service knows its caller only from the
/// token), so a shop cannot show them dropped: a stand-in behind the gateway can.
#[tokio::test]
async fn identity_headers_a_client_sends_never_reach_a_service() {
    let key = SigningKey::from_pem(generate_pem().as_bytes()).unwrap();
    let stand_in = StandIn::start(&key).await;
    let gateway = LoneService::start(
        "gateway",
        &[
            ("MALL_JWKS_URL", &stand_in.jwks_url()),
            ("MALL_MYPAGE_URL", &stand_in.url),
        ],
    )
    .await;
    let token = key.sign(&claims(Uuid::now_v7(), vec![Role::Customer]));
    let answer = reqwest::Client::new()
        .get(format!("{}/api/mypage", gateway.url))
        .bearer_auth(&token)
        .header("X-User-Id", Uuid::now_v7().to_string())
        .header("X-User-Roles", "admin")
        .header("x-user-email", "victim@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    let requests_seen = stand_in.requests_seen.lock().unwrap();
    assert_eq!(requests_seen.len(), 1);
    let forwarded = &requests_seen[0];
    let identity: Vec<_> = forwarded
        .keys()
        .filter(|name| name.as_str().starts_with("x-user-"))
        .collect();
    assert!(identity.is_empty(), "forwarded: {identity:?}");
    assert_eq!(
        forwarded["authorization"],
        format!("Bearer {token}").as_str(),
        "the token, which says who is asking, goes on"
    );
}

#[tokio::test]
async fn a_service_verifies_tokens_with_the_keys_an_outside_issuer_publishes() {
    let issuer_key = SigningKey::from_pem(generate_pem().as_bytes()).unwrap();
    let issuer = StandIn::start(&issuer_key).await;
    let mypage = LoneService::start("mypage", &[("MALL_JWKS_URL", &issuer.jwks_url())]).await;
    let page = |token: String| {
        let url = format!("{}/mypage", mypage.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let customer = Uuid::now_v7();
    let accepted = page(issuer_key.sign(&claims(customer, vec![Role::Customer]))).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.json::<Value>().await.unwrap()["orders"], json!([]));

    let other_pem = generate_pem();
    let other_key = SigningKey::from_pem(other_pem.as_bytes()).unwrap();
    let mut issuers_kid = Header::new(Algorithm::EdDSA);
    issuers_kid.kid = Some(issuer_key.kid().to_owned());
    let under_the_issuers_kid = encode(
        &issuers_kid,
        &claims(customer, vec![Role::Customer]),
        &EncodingKey::from_ed_pem(other_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    for (name, token) in [
        (
            "another key",
            other_key.sign(&claims(customer, vec![Role::Customer])),
        ),
        ("another key under the issuer's kid", under_the_issuers_kid),
    ] {
        let refused = page(token).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_problem(refused, StatusCode::UNAUTHORIZED, "not valid").await;
    }
}

#[tokio::test]
async fn a_token_is_refused_once_the_lifetime_the_shop_gives_it_is_over() {
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_TOKEN_TTL_SECS", "30"));
    let shop = Shop::start_with(&env).await;
    let claims = payload(&shop.token);
    let expires = claims["exp"].as_i64().unwrap();
    assert_eq!(expires - claims["iat"].as_i64().unwrap(), 30);

    let unknown_order = Uuid::now_v7();
    let order_service = format!(
        "http://127.0.0.1:{}/orders/{unknown_order}",
        shop.base_port + 1
    );
    let ask = || async {
        (
            shop.get_as(&shop.token, &format!("/api/orders/{unknown_order}"))
                .await,
            shop.client
                .get(&order_service)
                .bearer_auth(&shop.token)
                .send()
                .await
                .unwrap(),
        )
    };
    let (gateway, service) = ask().await;
    assert_eq!(gateway.status(), StatusCode::NOT_FOUND, "valid at first");
    assert_eq!(service.status(), StatusCode::NOT_FOUND, "valid at first");

    // Past `exp` and the 5 s of clock skew the verifiers allow.
    let left = expires + 6 - chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_secs(left.max(0) as u64)).await;
    let (gateway, service) = ask().await;
    assert_problem(gateway, StatusCode::UNAUTHORIZED, "expired").await;
    assert_problem(service, StatusCode::UNAUTHORIZED, "expired").await;
}

#[tokio::test]
async fn injection_and_script_strings_are_stored_as_text_and_never_run() {
    let shop = Shop::start().await;
    let nasty = "Robert'); DROP TABLE customers;-- <script>alert('x')</script>";
    let signup = shop
        .post(
            "/api/auth/signup",
            &json!({"email": "bobby@example.com", "password": "long enough pass", "name": nasty}),
        )
        .await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    assert_eq!(signup.json::<Value>().await.unwrap()["name"], nasty);
    let injected_login = shop
        .post(
            "/api/auth/login",
            &json!({"email": "bobby@example.com' OR '1'='1", "password": "x' OR '1'='1"}),
        )
        .await;
    assert_eq!(injected_login.status(), StatusCode::UNAUTHORIZED);

    let product = shop
        .post_as(
            &shop.admin_token,
            "/api/products",
            &json!({"name": nasty, "description": nasty, "price": 500, "stock": 3}),
        )
        .await;
    assert_eq!(product.status(), StatusCode::CREATED);
    let product: Value = product.json().await.unwrap();
    assert_eq!(product["name"], nasty);
    let product_id = product["id"].as_str().unwrap();
    let placed = shop
        .post_as(
            &shop.token,
            "/api/orders",
            &json!({"product_id": product_id, "quantity": 1, "address": nasty}),
        )
        .await;
    let order_id = placed.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = shop.final_order(&order_id).await;
    assert_eq!(order["address"], nasty);
    assert_eq!(order["status"], "DELIVERING");

    let accounts = shop.db("auth").await;
    assert_eq!(
        count(&accounts, "SELECT COUNT(*) FROM customers").await,
        4,
        "admin, demo customer, the shop's customer, bobby"
    );
}

#[tokio::test]
async fn a_burst_above_the_rate_limit_gets_429_with_retry_after_then_recovers() {
    let shop = Shop::start_with(&[
        ("MALL_RATE_LIMIT_IP_PER_SEC", "20"),
        ("MALL_RATE_LIMIT_IP_BURST", "40"),
        ("MALL_RATE_LIMIT_CUSTOMER_PER_SEC", "2"),
        ("MALL_RATE_LIMIT_CUSTOMER_BURST", "4"),
    ])
    .await;
    let other_customer = shop.new_customer().await;
    // Let the budget the shop's setup requests used fill up again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let own_order = format!("/api/orders/{}", Uuid::now_v7());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(shop.get_as(&shop.token, &own_order).await);
    }
    // At the same moment another customer is served: each customer has a budget of
    // their own.
    let (still_limited, other) = tokio::join!(
        shop.get_as(&shop.token, &own_order),
        shop.get_as(&other_customer, &own_order)
    );
    assert_eq!(still_limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "another customer is not limited"
    );
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .expect("a 429 for the customer");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "customer").await;
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        shop.get_as(&shop.token, &own_order).await.status(),
        StatusCode::NOT_FOUND,
        "allowed again"
    );

    let mut ip_limited = None;
    for _ in 0..60 {
        let response = shop.get("/api/products").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            ip_limited = Some(response);
            break;
        }
    }
    let ip_limited = ip_limited.expect("a 429 for the client address");
    assert!(ip_limited.headers().contains_key("retry-after"));
    assert_problem(ip_limited, StatusCode::TOO_MANY_REQUESTS, "client address").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(shop.get("/api/products").await.status(), StatusCode::OK);
}

/// `mall <args>` in a fresh data folder with `env`: its exit status and standard error,
/// once it ended (killed after 30 s).
fn run_mall(args: &[&str], env: (&str, &str)) -> (std::process::ExitStatus, String) {
    let data = tempfile::tempdir().unwrap();
    let mut mall = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .env(env.0, env.1)
        .env("MALL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = mall.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            mall.kill().unwrap();
            panic!("mall {args:?} with {env:?} did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut mall.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn settings_that_would_weaken_token_checks_are_refused_at_start() {
    let base_port = free_ports(7).to_string();
    let (status, stderr) = run_mall(
        &["serve", "product", "--port", &base_port],
        ("MALL_JWKS_URL", "http://auth.internal:8086/auth/jwks"),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("MALL_JWKS_URL") && stderr.contains("must be https"),
        "{stderr}"
    );

    let (status, stderr) = run_mall(
        &["up", "--base-port", &base_port],
        ("MALL_TOKEN_TTL_SECS", "3600"),
    );
    assert!(!status.success());
    assert!(stderr.contains("MALL_TOKEN_MAX_LIFETIME_SECS"), "{stderr}");
}
