//! An operator's mistakes (issue 17): each is refused at once with the cause, not hung
//! on, crashed over or silently done wrong.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::helpers::{Needs, Shop, free_ports, skipped};

/// Runs `mall` with `args` (and `env`) in `dir`; asserts it fails within `limit` and that
/// its error says `says`.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration, says: &str) {
    let started = Instant::now();
    let output: Output = Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{args:?} was not refused: {stderr}"
    );
    assert!(took < limit, "{args:?} took {took:?} to be refused");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_ports(1)
}

#[test]
fn an_unreachable_kafka_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bus = format!("kafka://127.0.0.1:{}", closed_port());
    let base = free_ports(7).to_string();
    refused(
        dir.path(),
        &["up", "--base-port", &base, "--data-dir", ".", "--bus", &bus],
        &[],
        Duration::from_secs(15),
        "cannot reach Kafka at 127.0.0.1",
    );
}

#[test]
fn postgresql_urls_without_a_usable_name_or_server_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let check = |db: &str, limit: Duration, says: &str| {
        refused(
            dir.path(),
            &["admin", "check", "--data-dir", ".", "--db", db],
            &[],
            limit,
            says,
        );
    };
    check(
        "postgres://postgres@127.0.0.1:5432",
        Duration::from_secs(2),
        "names no database",
    );
    check(
        &format!("postgres://postgres@127.0.0.1:5432/{}", "x".repeat(60)),
        Duration::from_secs(2),
        "at most 54",
    );
    check(
        &format!("postgres://postgres@127.0.0.1:{}/shop", closed_port()),
        Duration::from_secs(10),
        "refused",
    );
}

#[test]
fn admin_tools_refuse_a_folder_with_no_shop() {
    let dir = tempfile::tempdir().unwrap();
    let create_user_on = |place: &[&str]| {
        let mut args = vec!["admin", "create-user", "--email", "a@b.co", "--name", "A"];
        args.extend(place);
        refused(
            dir.path(),
            &args,
            &[("MALL_NEW_USER_PASSWORD", "a good password")],
            Duration::from_secs(2),
            "holds no shop",
        );
    };
    create_user_on(&["--data-dir", "typo"]);
    assert!(!dir.path().join("typo").exists(), "nothing was created");
    refused(
        dir.path(),
        &["admin", "dlq", "list", "--data-dir", "typo"],
        &[],
        Duration::from_secs(2),
        "holds no shop",
    );
    // The same with a mistyped PostgreSQL shop name: no database is created for it.
    let typo = format!("typo_{}", uuid::Uuid::new_v4().simple());
    create_user_on(&[
        "--data-dir",
        ".",
        "--db",
        &format!("postgres://postgres@127.0.0.1:5432/{typo}"),
    ]);
    let databases = Command::new("psql")
        .args([
            "postgres://postgres@127.0.0.1:5432/postgres",
            "-Atc",
            "SELECT datname FROM pg_database",
        ])
        .output()
        .unwrap();
    assert!(databases.status.success());
    assert!(
        !String::from_utf8_lossy(&databases.stdout).contains(&typo),
        "no database was created"
    );
}

#[tokio::test]
async fn a_second_shop_on_the_same_data_folder_is_refused() {
    let shop = Shop::start().await;
    let base = free_ports(7).to_string();
    refused(
        shop.data_dir(),
        &["up", "--base-port", &base, "--data-dir", "."],
        &[],
        Duration::from_secs(5),
        "another mall up (pid",
    );
    assert_eq!(
        shop.get("/api/products").await.status(),
        reqwest::StatusCode::OK,
        "the first goes on"
    );
}

#[tokio::test]
async fn admin_check_on_a_stopped_shop_with_events_on_their_way_says_so() {
    let mut shop = Shop::start().await;
    shop.stop_within(Duration::from_secs(30))
        .expect("the shop stops");
    // Two events written by a transaction the relay never got to publish.
    let order = shop.db("order").await;
    let mut tx = order.begin_write().await.unwrap();
    for _ in 0..2 {
        chassis::execute!(
            &mut tx,
            sqlx::query(
                "INSERT INTO outbox (topic, envelope, created_at_us) VALUES ('order', '{}', 0)"
            )
        )
        .unwrap();
    }
    tx.commit().await.unwrap();
    order.close().await;

    let started = Instant::now();
    let output = shop.admin(&["check", "--wait-secs", "1"]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        !stdout.contains("ok"),
        "no invariant is judged mid-flight: {stdout}"
    );
    assert!(
        stderr.contains("order: 2 unpublished") && stderr.contains("start it"),
        "{stderr}"
    );
}

#[test]
fn numbers_that_make_no_sense_and_a_filter_that_logs_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let quick = Duration::from_secs(2);
    refused(
        dir.path(),
        &["up", "--base-port", "0"],
        &[],
        quick,
        "--base-port",
    );
    refused(
        dir.path(),
        &["up", "--replicas", "order=2"],
        &[],
        quick,
        "--split",
    );
    refused(
        dir.path(),
        &["up", "--split", "--replicas", "gateway=2"],
        &[],
        quick,
        "load balancer",
    );
    refused(
        dir.path(),
        &["up", "--data-dir", "."],
        &[("MALL_LOG", "nonsense")],
        quick,
        "neither a level",
    );
    // The error names the setting as the operator wrote it: flag and variable agree.
    refused(
        dir.path(),
        &["up", "--data-dir", "."],
        &[("MALL_BREAKER_FAILURES", "0")],
        quick,
        "--breaker-failures",
    );
    for (flag, value) in [
        ("--producers", "0"),
        ("--batch", "0"),
        ("--partitions", "0"),
    ] {
        refused(dir.path(), &["bench", "bus", flag, value], &[], quick, flag);
    }
    refused(
        dir.path(),
        &["loadgen", "--url", "not-a-url", "--admin-email", "a@b.co"],
        &[("MALL_ADMIN_PASSWORD", "x")],
        quick,
        "`not-a-url` is not a URL",
    );
    for (flag, value) in [
        ("--duration-secs", "0"),
        ("--concurrency", "0"),
        ("--kill-every-ms", "0"),
    ] {
        refused(dir.path(), &["chaos", flag, value], &[], quick, flag);
    }
}

#[test]
fn a_split_shop_whose_service_cannot_start_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(7);
    let product_port = std::net::TcpListener::bind(("127.0.0.1", base + 3)).unwrap();
    let base_port = base.to_string();
    let up = [
        "up",
        "--split",
        "--base-port",
        &base_port,
        "--data-dir",
        ".",
    ];
    refused(
        dir.path(),
        &up,
        &[],
        Duration::from_secs(30),
        &format!(
            "product cannot listen on 127.0.0.1:{}: it is taken",
            base + 3
        ),
    );
    drop(product_port);
    refused(
        dir.path(),
        &up,
        &[("MALL_FAULTS", "order:error-rate=lots")],
        Duration::from_secs(30),
        "order did not start",
    );
    // A setting given as a flag reaches the children as one given by the environment.
    refused(
        dir.path(),
        &[&up[..], &["--faults", "order:error-rate=lots"]].concat(),
        &[],
        Duration::from_secs(30),
        "order did not start",
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", base)).is_ok(),
        "no gateway is left behind"
    );
}

#[test]
fn chaos_whose_shop_cannot_start_says_why_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(7);
    let taken = std::net::TcpListener::bind(("127.0.0.1", base + 3)).unwrap();
    refused(
        dir.path(),
        &[
            "chaos",
            "--base-port",
            &base.to_string(),
            "--duration-secs",
            "5",
        ],
        &[],
        Duration::from_secs(30),
        "product cannot listen",
    );
    drop(taken);
    for offset in 0..7 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok(),
            "port {} still held",
            base + offset
        );
    }
}

#[test]
fn a_read_only_data_folder_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        skipped(Needs::Root, "mounting a read-only tmpfs needs root");
        return;
    }
    let base = free_ports(7).to_string();
    refused(
        dir.path(),
        &["up", "--base-port", &base, "--data-dir", "."],
        &[],
        Duration::from_secs(2),
        "cannot write in the data folder",
    );
    let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
}
