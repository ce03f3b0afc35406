//! A shutdown ends in bounded time: a process's graceful shutdown gives up at its deadline
//! (`MALL_SHUTDOWN_DEADLINE_MS`), a split shop's supervisor kills a child that does not
//! stop within its grace (`MALL_STOP_GRACE_MS`), and a killed supervisor's children die
//! with it.

use std::time::{Duration, Instant};

use crate::helpers::{NO_RATE_LIMITS, Shop};

/// Every service of a split shop, by the name of its pid file.
const SERVICES: [&str; 7] = [
    "gateway", "order", "delivery", "product", "payment", "mypage", "auth",
];

/// Whether process `pid` still runs: it exists and is not a zombie waiting to be reaped.
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|state| state.starts_with('Z'))
    })
}

#[tokio::test]
async fn a_shutdown_held_up_by_a_request_that_never_ends_gives_up_at_its_deadline() {
    let mut env = NO_RATE_LIMITS.to_vec();
    env.extend([
        ("MALL_SHUTDOWN_DEADLINE_MS", "1000"),
        // A catalogue request that takes a minute, and may.
        ("MALL_FAULTS", "product:latency-ms=60000"),
        ("MALL_REQUEST_TIMEOUT_MS", "120000"),
    ]);
    let mut shop = Shop::start_with(&env).await;
    let catalogue = format!("http://127.0.0.1:{}/products", shop.base_port + 3);
    let in_flight = tokio::spawn(shop.client.get(catalogue).send());
    // Long enough for the request to reach the service.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the request is still being served"
    );

    let stopping = Instant::now();
    let exited = shop.stop_within(Duration::from_secs(20));
    let took = stopping.elapsed();
    let exited = exited.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_millis(4_000),
        "the graceful shutdown waits for the request until its 1 s deadline, then gives up: \
         it took {took:?}"
    );
    assert!(
        !exited.success(),
        "a shutdown past its deadline is a failure"
    );
    assert!(
        shop.stderr()
            .contains("shutdown did not finish in time; exiting anyway"),
        "{}",
        shop.stderr()
    );
}

#[tokio::test]
async fn a_frozen_service_of_a_split_shop_is_killed_once_its_grace_is_over() {
    // The supervisor's own shutdown deadline stays at its default (30 s): only the grace
    // can end this shutdown within the test's limit.
    let mut shop = Shop::start_split(&[("MALL_STOP_GRACE_MS", "1000")]).await;
    let frozen = shop.service_pid("product");
    shop.signal("product", "STOP");

    let stopping = Instant::now();
    let exited = shop.stop_within(Duration::from_secs(15));
    let took = stopping.elapsed();
    let exited = exited.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_millis(5_000),
        "the frozen service gets its 1 s of grace, then is killed: the stop took {took:?}"
    );
    assert!(exited.success(), "{exited}: {}", shop.stderr());
    let log = shop.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains("no graceful stop in time; killing it")
                && line.contains("\"service\":\"product\"")),
        "{log}"
    );
    assert!(!runs(frozen), "the frozen product process was killed");
}

#[tokio::test]
async fn the_services_of_a_split_shop_die_with_their_killed_supervisor() {
    let mut shop = Shop::start_split(&[]).await;
    let children = SERVICES.map(|service| shop.service_pid(service));
    assert!(children.iter().all(|&pid| runs(pid)));

    // SIGKILL: the supervisor stops nothing itself.
    shop.kill();
    let killed = Instant::now();
    while children.iter().any(|&pid| runs(pid)) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "orphaned services still run: {:?}",
            SERVICES
                .iter()
                .zip(children)
                .filter(|(_, pid)| runs(*pid))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
