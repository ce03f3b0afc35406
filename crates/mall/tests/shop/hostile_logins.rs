//! One hostile client cannot hurt the shop (issue 16): a flood of logins is shed at once
//! instead of queueing password hashes, the shop's memory stays bounded and the catalogue
//! keeps answering; guesses at one account's password meet that account's own limit.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{NO_RATE_LIMITS, Shop, assert_problem};

/// Wrong-password logins sent at once, each for an email of its own...
const FLOOD: usize = 300;
/// ...in waves, each sent when the one before is answered.
const WAVES: usize = 4;

/// The `p`-th percentile of `durations`.
fn percentile(durations: &mut [Duration], p: usize) -> Duration {
    durations.sort();
    durations[(durations.len() * p / 100).min(durations.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_at_once_with_memory_bounded_and_the_catalogue_answering() {
    let shop = Shop::start().await;
    let resident_before_kib = shop.memory_kib("VmRSS");
    // Straight at the auth service: the gateway's own limits are not what this is about.
    let auth_login = format!("http://127.0.0.1:{}/auth/login", shop.base_port + 6);
    let flooding = AtomicBool::new(true);
    let flood = async {
        let mut answers = Vec::new();
        for wave in 0..WAVES {
            answers.extend(
                join_all((0..FLOOD).map(|i| {
                    let (shop, auth_login) = (&shop, &auth_login);
                    let email = format!("guess-{wave}-{i}@test.12st");
                    async move {
                        let started = Instant::now();
                        let answer = shop
                            .client
                            .post(auth_login.as_str())
                            .json(&json!({"email": email, "password": "a wrong guess"}))
                            .send()
                            .await
                            .unwrap();
                        (answer, started.elapsed())
                    }
                }))
                .await,
            );
        }
        flooding.store(false, Ordering::Relaxed);
        answers
    };
    let watch = async {
        let mut catalogue_reads = Vec::new();
        let mut resident_peak_kib = 0;
        while flooding.load(Ordering::Relaxed) {
            resident_peak_kib = resident_peak_kib.max(shop.memory_kib("VmRSS"));
            let started = Instant::now();
            let read = shop.get("/api/products").await;
            catalogue_reads.push(started.elapsed());
            assert_eq!(read.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (catalogue_reads, resident_peak_kib)
    };
    let (answers, (mut catalogue_reads, resident_peak_kib)) = tokio::join!(flood, watch);

    let mut refused = 0;
    let mut shed = Vec::new();
    let mut unexpected = Vec::new();
    for (answer, took) in answers {
        match answer.status() {
            StatusCode::UNAUTHORIZED => refused += 1,
            status @ (StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) => {
                assert!(answer.headers().contains_key("retry-after"), "{status}");
                assert_problem(answer, status, "").await;
                shed.push(took);
            }
            status => unexpected.push(status),
        }
    }
    let shed_count = shed.len();
    let peak_kib = shop.memory_kib("VmHWM");
    let catalogue_p99 = percentile(&mut catalogue_reads, 99);
    eprintln!(
        "{WAVES} x {FLOOD} logins: {refused} checked (401), {shed_count} shed, shed p99 {:?}, \
         {} otherwise; resident {} MiB before, peak {} MiB (sampled {} MiB); \
         {} catalogue reads, p99 {catalogue_p99:?}",
        (!shed.is_empty()).then(|| percentile(&mut shed, 99)),
        unexpected.len(),
        resident_before_kib / 1024,
        peak_kib / 1024,
        resident_peak_kib / 1024,
        catalogue_reads.len(),
    );
    assert!(unexpected.is_empty(), "logins answered {unexpected:?}");
    assert!(refused > 0, "some guesses were checked");
    assert!(shed_count > 0, "guesses beyond the hashing pool are shed");
    assert!(
        percentile(&mut shed, 100) < Duration::from_secs(1),
        "shed at once, not after a queue"
    );
    assert!(
        peak_kib < 200 * 1024,
        "the shop's resident memory peaked at {} MiB",
        peak_kib / 1024
    );
    assert!(
        catalogue_p99 < Duration::from_millis(200),
        "a catalogue read took {catalogue_p99:?} during the flood"
    );
}

#[tokio::test]
async fn guesses_at_one_accounts_password_meet_that_accounts_own_limit() {
    let limits = [
        ("MALL_LOGIN_ATTEMPTS_PER_MINUTE", "6"),
        ("MALL_LOGIN_ATTEMPTS_BURST", "3"),
    ];
    let env: Vec<_> = NO_RATE_LIMITS.iter().chain(&limits).copied().collect();
    let shop = Shop::start_with(&env).await;
    for email in ["target@example.com", "bystander@example.com"] {
        let account = json!({"email": email, "password": "long enough pass", "name": "Kim"});
        let signup = shop.post("/api/auth/signup", &account).await;
        assert_eq!(signup.status(), StatusCode::CREATED);
    }
    let guess = |email: &'static str| {
        let shop = &shop;
        async move {
            shop.post(
                "/api/auth/login",
                &json!({"email": email, "password": "a wrong guess"}),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            guess("target@example.com").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The same address written differently is the same account, with the same budget.
    let limited = guess(" Target@EXAMPLE.com ").await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "email").await;

    assert_eq!(
        guess("bystander@example.com").await.status(),
        StatusCode::UNAUTHORIZED,
        "another account keeps its own budget"
    );
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    shop.login("target@example.com", "long enough pass").await;
}
