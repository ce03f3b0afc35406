use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use std::{str::FromStr, sync::Arc};

use chassis::{
    bus::{EventBus, OutgoingEvent},
    config::{BusLocation, DatabaseLocation, Durability},
    db::{Database, PoolSettings},
    on_conn,
};
use rand::Rng;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const SAGA_TIMEOUT: Duration = Duration::from_secs(30);

pub const ADMIN_EMAIL: &str = "admin@test.12st";
pub const ADMIN_PASSWORD: &str = "admin password for tests";

/// The PostgreSQL server (`postgres://user@host:port`) the shops of this test run keep
/// their databases on, when `MALL_TEST_DB` names one; else each keeps SQLite files.
pub fn test_database_server() -> Option<String> {
    std::env::var("MALL_TEST_DB")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The Kafka brokers (`host:port`) the shops of this test run use as their bus, when
/// `MALL_TEST_KAFKA_BROKERS` names them and `MALL_TEST_BUS` is `kafka`.
pub fn test_kafka_brokers() -> Option<String> {
    std::env::var("MALL_TEST_KAFKA_BROKERS")
        .ok()
        .filter(|brokers| !brokers.is_empty())
}

/// What a test may need beyond what every machine has, by the name `MALL_TEST_REQUIRE`
/// gives it.
#[derive(Clone, Copy, Debug)]
pub enum Needs {
    /// Root, to mount a filesystem of the test's own.
    Root,
    /// A tansu binary (`MALL_TEST_TANSU`), to run a broker of the test's own.
    Tansu,
    /// A real Kafka broker (`MALL_TEST_KAFKA_BROKERS`).
    KafkaBroker,
    /// A run on PostgreSQL (`MALL_TEST_DB`).
    Postgres,
    /// Prometheus, promtool and Alertmanager on the PATH (Debian's `prometheus` and
    /// `prometheus-alertmanager`).
    Prometheus,
    /// A Python with PyPI's `opentelemetry-proto` and `grpcio`, to receive spans over OTLP
    /// (`MALL_TEST_OTLP_PYTHON`, or the venv `.ci/run` makes).
    Otlp,
}

impl Needs {
    fn name(self) -> &'static str {
        match self {
            Needs::Root => "root",
            Needs::Tansu => "tansu",
            Needs::KafkaBroker => "kafka",
            Needs::Postgres => "postgres",
            Needs::Prometheus => "prometheus",
            Needs::Otlp => "otlp",
        }
    }
}

/// Marks the calling test, or the part of it that needs `what`, as not run here (`why`):
/// nextest has no skipped outcome, so it says "SKIPPED" on stderr (shown for the tests
/// `.config/nextest.toml` names) rather than pass in silence. Panics instead when
/// `MALL_TEST_REQUIRE` (a comma-separated list, e.g. `root,tansu`) names `what`: that run
/// was meant to check it, as CI is for what `.ci/run` provides.
pub fn skipped(what: Needs, why: &str) {
    let required = std::env::var("MALL_TEST_REQUIRE").unwrap_or_default();
    assert!(
        !required.split(',').any(|name| name.trim() == what.name()),
        "not run: {why}; and MALL_TEST_REQUIRE={required} says this run needs {}",
        what.name()
    );
    eprintln!("SKIPPED: {why}");
}

fn test_bus_is_kafka() -> bool {
    std::env::var("MALL_TEST_BUS").is_ok_and(|bus| bus == "kafka")
}

/// A running `mall up` in its own folder and ports, with an admin and one signed-up
/// customer and their tokens. Killed when dropped. Its databases and bus are the embedded
/// defaults, or PostgreSQL and Kafka when the test run names them (`MALL_TEST_DB`,
/// `MALL_TEST_BUS=kafka`), each shop in its own namespace there.
pub struct Shop {
    pub url: String,
    pub base_port: u16,
    /// Prefix of this shop's PostgreSQL databases and Kafka topics and groups.
    namespace: String,
    /// Holds the logs, and the data unless that is on a filesystem of its own.
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    child: Option<Child>,
    /// `mall up --split`: one process per service under a supervisor.
    split: bool,
    /// The data folder is a filesystem of its own, unmounted when the shop is dropped.
    mounted: bool,
    env: Vec<(String, String)>,
    pub client: Client,
    pub admin_token: String,
    /// The token of the shop's first customer, used by the order helpers.
    pub token: String,
}

/// `count` consecutive free ports, checked by binding them.
pub fn free_ports(count: u16) -> u16 {
    loop {
        // Below the ephemeral range (32768 and up), where outgoing connections take ports.
        let base = rand::rng().random_range(20_000..32_000);
        if (base..base + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return base;
        }
    }
}

/// Rate limits high enough that tests which are not about them never meet them.
pub const NO_RATE_LIMITS: [(&str, &str); 6] = [
    ("MALL_RATE_LIMIT_IP_PER_SEC", "100000"),
    ("MALL_RATE_LIMIT_IP_BURST", "100000"),
    ("MALL_RATE_LIMIT_CUSTOMER_PER_SEC", "100000"),
    ("MALL_RATE_LIMIT_CUSTOMER_BURST", "100000"),
    ("MALL_RATE_LIMIT_LOGIN_PER_MIN", "100000"),
    ("MALL_RATE_LIMIT_LOGIN_BURST", "100000"),
];

impl Shop {
    pub async fn start() -> Shop {
        Self::start_with(&NO_RATE_LIMITS).await
    }

    /// A shop whose `mall up` gets these environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Shop {
        Self::start_as(false, env).await
    }

    /// A `mall up --split` shop: each service its own process, which tests can signal.
    pub async fn start_split(env: &[(&str, &str)]) -> Shop {
        let env: Vec<_> = NO_RATE_LIMITS.iter().chain(env).copied().collect();
        Self::start_as(true, &env).await
    }

    /// A shop whose data folder is a tmpfs of `megabytes` of its own, for tests that fill
    /// the disk (its logs stay outside); `None` where this process may not mount one (it
    /// is not root).
    pub async fn start_on_small_filesystem(megabytes: u32) -> Option<Shop> {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&data_dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            // SAFETY: geteuid(2) cannot fail.
            assert_ne!(
                unsafe { libc::geteuid() },
                0,
                "root could not mount a tmpfs"
            );
            return None;
        }
        Some(Self::start_in(dir, Some(data_dir), false, &NO_RATE_LIMITS).await)
    }

    async fn start_as(split: bool, env: &[(&str, &str)]) -> Shop {
        Self::start_in(tempfile::tempdir().unwrap(), None, split, env).await
    }

    /// Starts a shop with its logs in `dir`, and its data in `mount` when that is given
    /// (a filesystem mounted there), else in `dir` too.
    async fn start_in(
        dir: tempfile::TempDir,
        mount: Option<PathBuf>,
        split: bool,
        env: &[(&str, &str)],
    ) -> Shop {
        let mounted = mount.is_some();
        let data_dir = mount.unwrap_or_else(|| dir.path().to_owned());
        // With `MALL_REPLICAS`, room for three instances of each service, 7 ports apart.
        let replicated = env.iter().any(|(name, _)| *name == "MALL_REPLICAS");
        let base_port = free_ports(if replicated { 21 } else { 7 });
        let namespace = format!("t{:08x}", rand::rng().random::<u32>());
        let mut backends = Vec::new();
        if let Some(server) = test_database_server() {
            backends.push(("MALL_DB".to_owned(), format!("{server}/{namespace}")));
        }
        if let (true, Some(brokers)) = (test_bus_is_kafka(), test_kafka_brokers()) {
            backends.push((
                "MALL_BUS".to_owned(),
                format!("kafka://{brokers}/{namespace}"),
            ));
        }
        let env: Vec<(String, String)> = backends
            .into_iter()
            .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let created = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args([
                "admin",
                "create-user",
                "--init",
                "--admin",
                "--email",
                ADMIN_EMAIL,
                "--name",
                "Admin",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("MALL_NEW_USER_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let mut shop = Shop {
            url: format!("http://127.0.0.1:{base_port}"),
            base_port,
            namespace,
            dir,
            data_dir,
            child: None,
            split,
            mounted,
            env,
            // Lets idle connections go before a shop's header timeout closes them.
            client: Client::builder()
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
            admin_token: String::new(),
            token: String::new(),
        };
        shop.launch().await;
        shop.admin_token = shop.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        shop.token = shop.new_customer().await;
        shop
    }

    /// Signs up a new customer through the gateway and returns their token.
    pub async fn new_customer(&self) -> String {
        let email = format!("customer-{}@test.12st", uuid::Uuid::now_v7());
        let signup = self
            .post(
                "/api/auth/signup",
                &json!({"email": email, "password": "a good password", "name": "김민지"}),
            )
            .await;
        assert_eq!(signup.status(), StatusCode::CREATED);
        self.login(&email, "a good password").await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .post(
                "/api/auth/login",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The value this shop's processes get for the environment variable `name`.
    fn setting(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn on_kafka(&self) -> bool {
        self.setting("MALL_BUS")
            .is_some_and(|bus| bus.starts_with("kafka"))
    }

    pub fn on_postgres(&self) -> bool {
        self.setting("MALL_DB")
            .is_some_and(|db| db.starts_with("postgres"))
    }

    /// Terminates every server connection to the shop's PostgreSQL databases, as a
    /// failover or a network cut would; returns how many there were.
    pub fn cut_database_connections(&self) -> usize {
        self.psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname LIKE '{}\\_%'",
            self.namespace
        ))
        .parse()
        .unwrap()
    }

    /// Runs `sql` on the test PostgreSQL server as its superuser; returns what it printed.
    fn psql(&self, sql: &str) -> String {
        let server = test_database_server().expect("a shop on PostgreSQL");
        let output = Command::new("psql")
            .arg(format!("{server}/postgres"))
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Makes the shop's PostgreSQL databases refuse writes (or take them again), as a
    /// failover to a read-only standby (and back) would: new sessions start read-only,
    /// and every open one is cut so that none keeps the old mode.
    pub fn set_databases_read_only(&self, read_only: bool) {
        let mode = if read_only { "on" } else { "off" };
        self.psql(&format!(
            "DO $$ DECLARE name text; BEGIN
               FOR name IN SELECT datname FROM pg_database WHERE datname LIKE '{}\\_%' LOOP
                 EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = {mode}', name);
               END LOOP;
             END $$",
            self.namespace
        ));
        self.cut_database_connections();
    }

    /// The shop's event bus, as its services reach it.
    pub async fn bus(&self) -> Arc<dyn EventBus> {
        let location = BusLocation::from_str(self.setting("MALL_BUS").unwrap_or("embedded"));
        chassis::bus::connect(
            &location.unwrap(),
            &self.data_dir,
            Durability::Normal,
            4,
            Duration::from_secs(45),
        )
        .await
        .unwrap()
    }

    /// Every event on `topic` so far.
    pub async fn events_on(&self, topic: &str) -> Vec<contracts::Envelope> {
        self.bus().await.read_topic(topic).await.unwrap()
    }

    /// One service's database (`order`, `product`, ...), to look into or to damage on
    /// purpose.
    pub async fn db(&self, service: &str) -> Database {
        let location =
            DatabaseLocation::from_str(self.setting("MALL_DB").unwrap_or("embedded")).unwrap();
        let pool = PoolSettings {
            max_connections: 2,
            durability: Durability::Normal,
        };
        Database::open(&location, &self.data_dir, service, pool)
            .await
            .unwrap()
    }

    async fn launch(&mut self) {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .unwrap()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args([
                "up",
                "--base-port",
                &self.base_port.to_string(),
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .args(self.split.then_some("--split"))
            .env("MALL_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log("stdout.log")))
            .stderr(Stdio::from(log("stderr.log")))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        for port_offset in [0, 1, 2, 3, 4, 5, 6] {
            let url = format!(
                "http://127.0.0.1:{}/health/ready",
                self.base_port + port_offset
            );
            loop {
                if let Ok(response) = self.client.get(&url).send().await
                    && response.status().is_success()
                {
                    break;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("mall up exited with {status}: {}", self.stderr());
                }
                assert!(
                    started.elapsed() < START_TIMEOUT,
                    "shop did not start: {}",
                    self.stderr()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// A `kB` field (`VmRSS`, `VmHWM`...) of `/proc/<pid>/status` of the `mall up`
    /// process: what the shop holds in memory now, or held at its peak.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("a running shop").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the graceful shutdown to finish.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            let exit = child.wait().unwrap();
            assert!(
                exit.success(),
                "graceful shutdown failed: {exit}: {}",
                self.stderr()
            );
        }
    }

    /// SIGTERM, then waits at most `limit` for the process to end: its exit status, or
    /// `None` (and a SIGKILL) when it did not end in time.
    pub fn stop_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, ...) to one service's process of a split
    /// shop, as its supervisor recorded it.
    pub fn signal(&self, service: &str, signal: &str) {
        let pid = self.service_pid(service).to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {service}");
    }

    /// Starts one more instance of `service` in a split shop: a `mall serve` of its own,
    /// outside the supervisor and the gateway's list, so it takes a share of the service's
    /// events but none of its requests. Returns once it is ready.
    pub async fn add_instance(&self, service: &str, instance: u16) -> Instance {
        self.add_instance_with(service, instance, &[]).await
    }

    /// [`Shop::add_instance`], with these environment variables besides the shop's.
    pub async fn add_instance_with(
        &self,
        service: &str,
        instance: u16,
        env: &[(&str, &str)],
    ) -> Instance {
        assert!(self.split, "instances are added to a split shop");
        let port = free_ports(1);
        let log_path = self
            .dir
            .path()
            .join(format!("stderr-{service}-{instance}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args(["serve", service, "--port", &port.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .env("MALL_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("MALL_ENV", "development")
            .env("MALL_INSTANCE_ID", instance.to_string())
            .env(
                "MALL_PRODUCT_URL",
                format!("http://127.0.0.1:{}", self.base_port + 3),
            )
            .env(
                "MALL_JWKS_URL",
                format!("http://127.0.0.1:{}/auth/jwks", self.base_port + 6),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut added = Instance {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        let ready = format!("http://127.0.0.1:{port}/health/ready");
        while !self
            .client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            assert!(
                added.child.try_wait().unwrap().is_none() && started.elapsed() < START_TIMEOUT,
                "{service} instance {instance} did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        added
    }

    /// The process id of one service of a split shop, as its supervisor recorded it.
    pub fn service_pid(&self, service: &str) -> u32 {
        assert!(self.split, "only a split shop has a process per service");
        let pid_file = self.data_dir.join("run").join(format!("{service}.pid"));
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Publishes `envelope` to `topic` on the shop's bus behind the services' backs, as a
    /// misbehaving publisher would.
    pub async fn inject(&self, topic: &str, envelope: &contracts::Envelope) {
        self.bus()
            .await
            .publish(vec![OutgoingEvent {
                topic: topic.to_owned(),
                envelope: envelope.clone(),
            }])
            .await
            .unwrap();
    }

    /// `mall admin <args> --data-dir <the shop's>`, with the shop's settings.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mall"))
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// `mall admin check` on the shop's data: whether every invariant holds, and its report.
    pub fn admin_check(&self) -> (bool, String) {
        let output = self.admin(&["check", "--wait-secs", "20"]);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Starts the shop again on the same folder and ports.
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Adds a product with `stock` units through the API; returns its id.
    pub async fn add_product(&self, price: u64, stock: u32) -> String {
        let response = self
            .post_as(
                &self.admin_token,
                "/api/products",
                &json!({"name": "Test product", "description": "for a test", "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn stock_of(&self, product_id: &str) -> i64 {
        let response = self.get(&format!("/api/products/{product_id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["stock"]
            .as_i64()
            .unwrap()
    }

    /// Places an order and returns its id, asserting the 202 PENDING answer.
    pub async fn place_order(&self, product_id: &str, quantity: i64) -> String {
        let response = self.order_request(product_id, quantity, None).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "PENDING");
        body["order_id"].as_str().unwrap().to_owned()
    }

    pub async fn order_request(
        &self,
        product_id: &str,
        quantity: i64,
        key: Option<&str>,
    ) -> Response {
        let mut request = self.client.post(format!("{}/api/orders", self.url)).bearer_auth(&self.token).json(
            &json!({"product_id": product_id, "quantity": quantity, "address": "1 Teheran-ro, Gangnam-gu, Seoul"}),
        );
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    pub async fn order(&self, order_id: &str) -> Value {
        let response = self
            .get_as(&self.token, &format!("/api/orders/{order_id}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Polls the order until the automatic part of its saga is over (REJECTED, or
    /// DELIVERING: confirmed and handed to delivery, or CANCELLED); returns it.
    pub async fn final_order(&self, order_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let order = self.order(order_id).await;
            if !matches!(order["status"].as_str(), Some("PENDING" | "CONFIRMED")) {
                return order;
            }
            assert!(
                started.elapsed() < SAGA_TIMEOUT,
                "order {order_id} still in its saga after {SAGA_TIMEOUT:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of a metric in a service's `/metrics`, summed over series whose labels
    /// contain every `label=value` of `labels`. Panics, naming the series and showing the
    /// exposition, when no series matches: a renamed or unregistered metric must fail the
    /// test, not read as 0 (a closed breaker's state is 0 too).
    pub async fn metric(&self, port_offset: u16, name: &str, labels: &[&str]) -> f64 {
        let text = self.metrics_text(port_offset).await;
        sum_of_series(&text, name, labels).unwrap_or_else(|| {
            panic!(
                "no series {name} with {labels:?} in /metrics of port {}:\n{text}",
                self.base_port + port_offset
            )
        })
    }

    /// [`Shop::metric`], but 0 while no series matches: for a counter polled until it
    /// moves, which a service creates only when it first counts (an event's first
    /// duplicate, say).
    pub async fn metric_or_zero(&self, port_offset: u16, name: &str, labels: &[&str]) -> f64 {
        sum_of_series(&self.metrics_text(port_offset).await, name, labels).unwrap_or(0.0)
    }

    /// A service's whole `/metrics` exposition.
    pub async fn metrics_text(&self, port_offset: u16) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.base_port + port_offset);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A service instance a test started by hand; SIGKILLed when dropped.
pub struct Instance {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Instance {
    /// SIGKILL: it leaves its consumer group without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.kill();
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.data_dir)
                .status();
        }
        if let (true, Some(server)) = (self.on_postgres(), test_database_server()) {
            let mut drop_databases = Command::new("psql");
            drop_databases.arg(format!("{server}/postgres")).arg("-q");
            for service in ["auth", "product", "order", "payment", "delivery", "mypage"] {
                drop_databases.arg("-c").arg(format!(
                    "DROP DATABASE IF EXISTS \"{}_{service}\" WITH (FORCE)",
                    self.namespace
                ));
            }
            // Best effort: a database left behind costs disk, not correctness.
            let _ = drop_databases.stderr(Stdio::null()).status();
        }
    }
}

/// The sum of the series of metric `name` in an exposition whose labels contain every
/// `label=value` of `labels`; `None` when there is no such series.
pub fn sum_of_series(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("a series without a value: {line}"))
        })
        .reduce(|sum, value| sum + value)
}

/// Asserts a problem+json answer with `status` whose detail mentions `mentions`.
pub async fn assert_problem(response: Response, status: StatusCode, mentions: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "a {status} must be a problem"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status.as_u16());
    assert!(problem["title"].is_string());
    let detail = problem["detail"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        detail.contains(&mentions.to_lowercase()),
        "detail {detail:?} should mention {mentions:?}"
    );
    problem
}

/// The one number `sql` selects in a service's database, for "nothing was stored" checks.
pub async fn count(db: &Database, sql: &'static str) -> i64 {
    let mut conn = db.read().await.unwrap();
    on_conn!(&mut conn, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await.unwrap())
}
