//! The production backends failing under a running shop: the Kafka broker frozen for tens
//! of seconds, PostgreSQL connections cut. Nothing accepted is lost or applied twice.
//!
//! The broker test needs a tansu binary (`MALL_TEST_TANSU`) to run a broker of its own;
//! the PostgreSQL test needs `MALL_TEST_DB`. `.ci/run` gives both; without them each test
//! says SKIPPED and checks nothing (or fails, where `MALL_TEST_REQUIRE` names the need).

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::future::join_all;

use crate::helpers::{NO_RATE_LIMITS, Needs, Shop, skipped};

/// A tansu broker with memory storage on its own port, killed when dropped.
struct Broker {
    process: Child,
    port: u16,
}

impl Broker {
    fn start(tansu: &str) -> Broker {
        let port = crate::helpers::free_ports(1);
        let listener = format!("tcp://127.0.0.1:{port}");
        let process = Command::new(tansu)
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { process, port }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_frozen_mid_workload_loses_nothing_and_never_hangs_shutdown() {
    let Ok(tansu) = std::env::var("MALL_TEST_TANSU") else {
        skipped(Needs::Tansu, "MALL_TEST_TANSU does not name a tansu binary");
        return;
    };
    let broker = Broker::start(&tansu);
    let bus = format!(
        "kafka://127.0.0.1:{}/o{}",
        broker.port,
        uuid::Uuid::now_v7().simple()
    );
    let mut env = NO_RATE_LIMITS.to_vec();
    env.push(("MALL_BUS", &bus));
    // Longer than the outage: these sagas are to finish, not be rejected as silent.
    env.push(("MALL_SAGA_DEADLINE_SECS", "300"));
    let mut shop = Shop::start_with(&env).await;
    let product = shop.add_product(1_000, 100).await;
    let before = join_all((0..10).map(|_| shop.place_order(&product, 1))).await;
    for order in &before {
        assert_eq!(shop.final_order(order).await["status"], "DELIVERING");
    }

    // Frozen, not gone: connections stay open and nothing answers, the worst case.
    broker.signal("STOP");
    let during = join_all((0..10).map(|_| shop.place_order(&product, 1))).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    for order in &during {
        assert_eq!(
            shop.order(order).await["status"],
            "PENDING",
            "no saga step can happen without the bus"
        );
    }
    broker.signal("CONT");

    for order in before.iter().chain(&during) {
        assert_eq!(shop.final_order(order).await["status"], "DELIVERING");
    }
    assert_eq!(shop.stock_of(&product).await, 80);
    let (passed, report) = shop.admin_check();
    assert!(passed, "{report}");

    // A shutdown while the broker is frozen: the final commits and the outbox flush give
    // up in bounded time instead of hanging the process.
    shop.place_order(&product, 1).await;
    broker.signal("STOP");
    let stopping = Instant::now();
    let exited = shop.stop_within(Duration::from_secs(60));
    let took = stopping.elapsed();
    eprintln!("shutdown with the broker frozen took {took:?}: {exited:?}");
    assert!(exited.is_some(), "shutdown took longer than {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_cut_mid_workload_lose_nothing() {
    let shop = Shop::start().await;
    if !shop.on_postgres() {
        skipped(
            Needs::Postgres,
            "the shop is not on PostgreSQL (MALL_TEST_DB)",
        );
        return;
    }
    let product = shop.add_product(1_000, 60).await;
    let mut accepted = Vec::new();
    for round in 0..3 {
        accepted.extend(join_all((0..10).map(|_| shop.place_order(&product, 1))).await);
        let cut = shop.cut_database_connections();
        assert!(cut > 0, "round {round}: no connection was cut");
        // Requests right after the cut meet dead connections in the pools.
        for _ in 0..10 {
            let response = shop.order_request(&product, 1, None).await;
            if response.status() == reqwest::StatusCode::ACCEPTED {
                let body: serde_json::Value = response.json().await.unwrap();
                accepted.push(body["order_id"].as_str().unwrap().to_owned());
            }
        }
    }
    for order in &accepted {
        assert_eq!(shop.final_order(order).await["status"], "DELIVERING");
    }
    assert_eq!(shop.stock_of(&product).await, 60 - accepted.len() as i64);
    let (passed, report) = shop.admin_check();
    assert!(passed, "{report}");
}
