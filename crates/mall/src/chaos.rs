//! `mall chaos`: customers order from a `mall up --split` shop while services are killed
//! (SIGKILL, and injected crashes at the points where a crash hurts most), old events are
//! delivered again out of order, and product answers slowly; an operator completes
//! deliveries while customers cancel and redirect orders already on their way, so the
//! race between a parcel's arrival and a request to delivery is part of every run. Then
//! the shop drains and `mall admin check` runs. It fails if an accepted order was lost or anything was applied
//! twice. With `--small-disk-mb`, the shop runs on a small filesystem of its own, which
//! is filled up in the middle of the run and freed again.

use std::{
    collections::BTreeMap,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use chassis::config::ChassisSettings;
use chassis::{
    bus::{EventBus, OutgoingEvent, embedded::EmbeddedLog},
    config::Durability,
};
use contracts::Envelope;
use rand::{Rng, seq::IndexedRandom};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::{ServiceName, split};

#[derive(clap::Args)]
pub struct Settings {
    /// How long to place orders while breaking things, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_secs: u64,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    concurrency: u16,
    /// A random service is SIGKILLed this often, in milliseconds.
    #[arg(long, default_value_t = 4_000, value_parser = clap::value_parser!(u64).range(100..))]
    kill_every_ms: u64,
    /// Old events delivered again (duplicates, out of order) per kill interval.
    #[arg(long, default_value_t = 20)]
    duplicates_per_round: usize,
    /// Faults the services inject (MALL_FAULTS syntax): product slowed, and crashes at
    /// the relay's and the consumers' worst moments.
    #[arg(
        long,
        default_value = "product:latency-ms=40;order:crash-at=before-publish@0.003;payment:crash-at=after-publish@0.003;delivery:crash-at=before-offset-commit@0.003"
    )]
    faults: String,
    /// Instances of services to run and kill one by one (`order=2,product=2`), as
    /// `mall up --split --replicas` takes them.
    #[arg(long, default_value = "")]
    replicas: split::Replicas,
    /// First port of the shop under test.
    #[arg(long, default_value_t = 18_180, value_parser = clap::value_parser!(u16).range(1..=65_528))]
    base_port: u16,
    /// Data folder of the shop under test (a fresh temporary one by default).
    #[arg(long, conflicts_with = "small_disk_mb")]
    data_dir: Option<PathBuf>,
    /// Runs the shop on a filesystem of its own of this many MiB (a tmpfs that chaos
    /// mounts, which needs root), filled up a third into the run for --full-disk-secs.
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=4096))]
    small_disk_mb: Option<u32>,
    /// How long the small filesystem stays full, in seconds.
    #[arg(long, default_value_t = 8, requires = "small_disk_mb",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    full_disk_secs: u64,
}

const ADMIN_EMAIL: &str = "chaos-admin@12st.mall";
/// Services a kill may hit: all of them (each instance of each).
const SERVICES: [ServiceName; 7] = [
    ServiceName::Gateway,
    ServiceName::Order,
    ServiceName::Product,
    ServiceName::Payment,
    ServiceName::Delivery,
    ServiceName::Mypage,
    ServiceName::Auth,
];

/// One process of the shop under test: a service's instance.
#[derive(Clone, Copy)]
struct Victim {
    service: ServiceName,
    instance: u16,
}

impl Victim {
    fn all(replicas: &split::Replicas) -> Vec<Victim> {
        SERVICES
            .into_iter()
            .flat_map(|service| {
                (0..replicas.of(service)).map(move |instance| Victim { service, instance })
            })
            .collect()
    }

    fn port(self, base_port: u16) -> u16 {
        split::Replicas::port(base_port, self.service, self.instance)
            .expect("the shop started on these ports")
    }
}

impl std::fmt::Display for Victim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.instance {
            0 => f.write_str(self.service.name()),
            instance => write!(f, "{}#{instance}", self.service.name()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Normal,
    OverStock,
    Declined,
    /// Cancelled at once, while PENDING.
    Cancelled,
    /// Cancelled once on its way, racing the operator's completion.
    CancelledOnItsWay,
    /// Sent elsewhere once on its way, racing the operator's completion.
    RedirectedOnItsWay,
}

struct Accepted {
    order_id: String,
    token: Arc<str>,
    kind: Kind,
}

#[derive(Default)]
struct Tally {
    accepted: Vec<Accepted>,
    refused: BTreeMap<String, usize>,
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // First: chaos kills and damages what it runs on, which must be a throwaway shop.
    let embedded = embedded_settings()?;
    let temporary = tempfile::tempdir()?;
    let small_disk = match settings.small_disk_mb {
        Some(megabytes) => Some(SmallDisk::mount(&temporary.path().join("disk"), megabytes)?),
        None => None,
    };
    let data_dir = match (&small_disk, &settings.data_dir) {
        (Some(disk), _) => disk.path.clone(),
        (None, Some(data_dir)) => data_dir.clone(),
        (None, None) => temporary.path().to_owned(),
    };
    // Beside the small filesystem, not on it: the log must not lose what happens while
    // it is full.
    let supervisor_log = match small_disk {
        Some(_) => temporary.path().join("supervisor.log"),
        None => data_dir.join("supervisor.log"),
    };
    // Interrupted, the run is dropped: its shop is killed (and its services with it), and
    // the temporary folder and the small filesystem go as this function returns.
    tokio::select! {
        result = run_on(&settings, &embedded, &data_dir, &supervisor_log, small_disk.as_ref()) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the shop under test is stopped"),
    }
}

async fn run_on(
    settings: &Settings,
    embedded: &ChassisSettings,
    data_dir: &Path,
    supervisor_log: &Path,
    small_disk: Option<&SmallDisk>,
) -> anyhow::Result<()> {
    let data_dir = data_dir.to_owned();
    let admin_password = uuid::Uuid::new_v4().to_string();
    crate::shop::open_data_dir(&data_dir)?;
    let db = crate::shop::auth_database(&data_dir, embedded).await?;
    auth::register(
        &db,
        &auth::Passwords::new(NonZeroUsize::MIN),
        ADMIN_EMAIL,
        "Chaos admin",
        &admin_password,
        true,
        None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    db.close().await;

    let mut shop = start_shop(settings, &data_dir, supervisor_log)?;
    let url = format!("http://127.0.0.1:{}", settings.base_port);
    let client = Client::builder().timeout(Duration::from_secs(10)).build()?;
    wait_until_ready(&client, settings, &mut shop, supervisor_log).await?;
    let gateway = crate::loadgen::Shop::new(client.clone(), &url);
    let admin = gateway.login(ADMIN_EMAIL, &admin_password).await?;
    let products = gateway.test_products(&admin, "chaos").await?;
    let mut tokens = Vec::new();
    for i in 0..settings.concurrency {
        let email = format!("chaos-{}-{i}@chaos.12st", uuid::Uuid::now_v7());
        tokens.push(Arc::<str>::from(gateway.sign_up(&email, "Chaos").await?));
    }

    println!(
        "chaos: {} s, {} customers ordering, a kill every {} ms, faults {}",
        settings.duration_secs, settings.concurrency, settings.kill_every_ms, settings.faults
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let run_time = Duration::from_secs(settings.duration_secs);
    let deadline = Instant::now() + run_time;
    let disk_episode = small_disk.as_ref().map(|disk| {
        tokio::spawn(fill_disk_for_a_while(
            client.clone(),
            settings.base_port,
            disk.path.clone(),
            Instant::now() + run_time / 3,
            Duration::from_secs(settings.full_disk_secs),
        ))
    });
    let mut workers = tokio::task::JoinSet::new();
    for token in &tokens {
        let (client, url, products, tally) =
            (client.clone(), url.clone(), products.clone(), tally.clone());
        let token = token.clone();
        workers.spawn(async move {
            while Instant::now() < deadline {
                let kind = match rand::rng().random_range(0..100) {
                    0..70 => Kind::Normal,
                    70..75 => Kind::OverStock,
                    75..80 => Kind::Declined,
                    80..86 => Kind::Cancelled,
                    86..93 => Kind::CancelledOnItsWay,
                    _ => Kind::RedirectedOnItsWay,
                };
                let product = match kind {
                    Kind::OverStock => &products[1],
                    Kind::Declined => &products[2],
                    _ => &products[0],
                };
                let outcome = place(&client, &url, &token, product, kind).await;
                let refused = outcome.is_err();
                {
                    let mut tally = tally.lock().expect("tally lock poisoned");
                    match outcome {
                        Ok(order_id) => tally.accepted.push(Accepted {
                            order_id,
                            token: token.clone(),
                            kind,
                        }),
                        Err(refusal) => *tally.refused.entry(refusal).or_default() += 1,
                    }
                }
                if refused {
                    // As a person would: wait a moment before trying again.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }

    workers.spawn(complete_deliveries(
        client.clone(),
        url.clone(),
        admin.clone(),
        deadline,
    ));

    let bus = EmbeddedLog::open(&data_dir.join("bus.db"), Durability::Normal, 4).await?;
    let victims = Victim::all(&settings.replicas);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = 0;
    let mut duplicates_refused = 0;
    let mut restarts = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(settings.kill_every_ms)).await;
        let victim = *victims
            .choose(&mut rand::rng())
            .expect("victims are listed");
        let killed_at = Instant::now();
        if signal(&data_dir, victim, libc::SIGKILL) {
            *kills.entry(victim.to_string()).or_default() += 1;
        }
        match deliver_again(&bus, &data_dir, settings.duplicates_per_round).await {
            Ok(delivered) => duplicates += delivered,
            // The log refuses appends while the small filesystem is full.
            Err(_) if small_disk.is_some() => duplicates_refused += 1,
            Err(error) => return Err(error),
        }
        if let Some(drained) =
            restart_to_drained(&client, settings.base_port, &data_dir, victim, killed_at).await
        {
            restarts.push((victim.to_string(), drained));
        }
    }
    while workers.join_next().await.is_some() {}
    let disk_episode = match disk_episode {
        Some(task) => Some(task.await??),
        None => None,
    };
    let load_stopped = Instant::now();

    let tally = Arc::try_unwrap(tally)
        .ok()
        .context("workers finished")?
        .into_inner()?;
    let mut finals: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    let mut lost = Vec::new();
    for order in &tally.accepted {
        match final_status(&client, &url, order).await {
            Some(status) => *finals.entry((order.kind, status)).or_default() += 1,
            None => lost.push(order.order_id.clone()),
        }
    }
    let settled_in = load_stopped.elapsed();
    stop_shop(&mut shop).await;
    println!("\n== invariants (mall admin check) ==");
    let invariants_hold = crate::check::run(&data_dir, embedded, Duration::from_secs(60)).await?;

    println!("\n== chaos ==");
    println!(
        "{:<58} {:>8}",
        "orders accepted (202)",
        tally.accepted.len()
    );
    for (refusal, count) in &tally.refused {
        println!("{:<58} {count:>8}", format!("placing refused: {refusal}"));
    }
    for ((kind, status), count) in &finals {
        println!("{:<58} {count:>8}", format!("final: {kind:?} -> {status}"));
    }
    for (service, count) in &kills {
        println!("{:<58} {count:>8}", format!("SIGKILL {service}"));
    }
    let crashes = std::fs::read_to_string(supervisor_log)
        .unwrap_or_default()
        .matches("injected crash")
        .count();
    println!("{:<58} {crashes:>8}", "injected crashes (crash points)");
    println!("{:<58} {duplicates:>8}", "old events delivered again");
    if small_disk.is_some() {
        println!(
            "{:<58} {duplicates_refused:>8}",
            "rounds of old events refused by the full disk"
        );
    }
    if let Some(episode) = &disk_episode {
        println!(
            "{:<58} {:>8}",
            "disk filled, MiB",
            episode.filled_bytes / (1024 * 1024)
        );
        println!(
            "{:<58} {:>8}",
            "order service unready while the disk was full",
            if episode.unready_while_full {
                "yes"
            } else {
                "NO"
            }
        );
        println!(
            "{:<58} {:>8}",
            "disk freed -> order service ready, ms",
            episode.ready_again.as_millis()
        );
    }
    if !restarts.is_empty() {
        let mut times: Vec<_> = restarts.iter().map(|(_, d)| d.as_millis()).collect();
        times.sort_unstable();
        println!(
            "{:<58} {:>8}",
            "kill -> restarted and backlog drained, p50 ms",
            times[times.len() / 2]
        );
        println!(
            "{:<58} {:>8}",
            "kill -> restarted and backlog drained, max ms",
            times[times.len() - 1]
        );
    }
    println!(
        "{:<58} {:>8}",
        "all orders final after load, ms",
        settled_in.as_millis()
    );
    println!("{:<58} {:>8}", "orders lost", lost.len());
    println!(
        "{:<58} {:>8}",
        "invariants",
        if invariants_hold { "hold" } else { "BROKEN" }
    );
    anyhow::ensure!(lost.is_empty(), "accepted orders lost: {lost:?}");
    anyhow::ensure!(invariants_hold, "invariants broken: see the report above");
    Ok(())
}

fn start_shop(
    settings: &Settings,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(log)?;
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["up", "--split", "--base-port"])
        .arg(settings.base_port.to_string())
        .arg("--replicas")
        .arg(settings.replicas.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .env("MALL_FAULTS", &settings.faults)
        .env("MALL_ENV", "test")
        .env("MALL_LOG", "warn")
        .env("MALL_RATE_LIMIT_IP_PER_SEC", "100000")
        .env("MALL_RATE_LIMIT_IP_BURST", "100000")
        .env("MALL_RATE_LIMIT_CUSTOMER_PER_SEC", "100000")
        .env("MALL_RATE_LIMIT_CUSTOMER_BURST", "100000")
        .env("MALL_RATE_LIMIT_LOGIN_PER_MIN", "100000")
        .env("MALL_RATE_LIMIT_LOGIN_BURST", "100000")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start mall up --split")?;
    Ok(child)
}

async fn stop_shop(shop: &mut tokio::process::Child) {
    if let Some(pid) = shop.id() {
        // SAFETY: kill(2) with the pid of our own child and a valid signal number.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), shop.wait()).await;
}

fn signal(data_dir: &Path, victim: Victim, signal: libc::c_int) -> bool {
    let pid_file = split::pid_file(data_dir, victim.service, victim.instance);
    let Ok(pid) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let Ok(pid) = pid.trim().parse::<libc::pid_t>() else {
        return false;
    };
    // SAFETY: kill(2) with a pid the supervisor recorded and a valid signal number.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// How long the shop under test may take to become ready.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Waits until every service of `shop` is ready; fails with the end of its log when it
/// stops first or takes longer than [`START_LIMIT`].
async fn wait_until_ready(
    client: &Client,
    settings: &Settings,
    shop: &mut tokio::process::Child,
    log: &Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let log_tail = || {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    for victim in Victim::all(&settings.replicas) {
        let url = format!(
            "http://127.0.0.1:{}/health/ready",
            victim.port(settings.base_port)
        );
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                break;
            }
            if let Some(status) = shop.try_wait()? {
                anyhow::bail!("the shop under test stopped ({status}):\n{}", log_tail());
            }
            anyhow::ensure!(
                started.elapsed() < START_LIMIT,
                "{victim} did not become ready within {} s:\n{}",
                START_LIMIT.as_secs(),
                log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Time from the kill until the service answers again and its consumer group has caught
/// up with the events that arrived meanwhile (at most 10 waiting).
async fn restart_to_drained(
    client: &Client,
    base_port: u16,
    data_dir: &Path,
    victim: Victim,
    killed_at: Instant,
) -> Option<Duration> {
    let url = format!("http://127.0.0.1:{}/health/ready", victim.port(base_port));
    let bus = crate::shop::connect_bus(data_dir, &embedded_settings().ok()?)
        .await
        .ok()?;
    while killed_at.elapsed() < Duration::from_secs(30) {
        let ready = client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready
            && crate::check::group_lag(bus.as_ref(), victim.service.name())
                .await
                .ok()?
                <= 10
        {
            return Some(killed_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The shop's settings as its children read them from the environment: the embedded
/// database and log, which chaos damages directly.
fn embedded_settings() -> anyhow::Result<ChassisSettings> {
    #[derive(clap::Parser)]
    struct FromEnvironment {
        #[command(flatten)]
        chassis: ChassisSettings,
    }
    let settings = <FromEnvironment as clap::Parser>::try_parse_from(["mall"])?.chassis;
    anyhow::ensure!(
        matches!(settings.db, chassis::config::DatabaseLocation::Embedded)
            && settings.bus == chassis::config::BusLocation::Embedded,
        "mall chaos runs on the embedded database and log (unset MALL_DB and MALL_BUS)"
    );
    Ok(settings)
}

/// Appends copies of random events already in the log: each is a duplicate, and arrives
/// after events that followed it.
async fn deliver_again(bus: &EmbeddedLog, data_dir: &Path, count: usize) -> anyhow::Result<usize> {
    let log = sqlx::sqlite::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(data_dir.join("bus.db"))
            .read_only(true),
    )
    .await?;
    let picked: Vec<(String, String)> = sqlx::query_as(
        "SELECT topic, envelope FROM log WHERE topic NOT LIKE '%.dlq.%'
         ORDER BY random() LIMIT ?",
    )
    .bind(count as i64)
    .fetch_all(&log)
    .await?;
    log.close().await;
    let events = picked
        .into_iter()
        .map(|(topic, envelope)| {
            Ok(OutgoingEvent {
                topic,
                envelope: serde_json::from_str::<Envelope>(&envelope)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let delivered = events.len();
    bus.publish(events).await?;
    Ok(delivered)
}

/// A tmpfs mounted for the run, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, megabytes: u32) -> anyhow::Result<SmallDisk> {
        std::fs::create_dir(path)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={megabytes}m,mode=0700"))
            .arg("tmpfs")
            .arg(path)
            .status()
            .context("cannot run mount")?;
        anyhow::ensure!(
            mounted.success(),
            "cannot mount a {megabytes} MiB tmpfs on {}: --small-disk-mb needs root",
            path.display()
        );
        Ok(SmallDisk {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a straggling child may still hold a file open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// What the shop did while its filesystem was full.
struct DiskEpisode {
    filled_bytes: u64,
    /// The order service's readiness answered 503 at least once while the disk was full.
    unready_while_full: bool,
    /// From freeing the disk until the order service was ready again.
    ready_again: Duration,
}

/// At `at`, fills the filesystem of `data_dir` with one file until no byte fits, keeps
/// it full for `hold` while watching the order service's readiness, then deletes the file.
async fn fill_disk_for_a_while(
    client: Client,
    base_port: u16,
    data_dir: PathBuf,
    at: Instant,
    hold: Duration,
) -> anyhow::Result<DiskEpisode> {
    tokio::time::sleep_until(at.into()).await;
    let filler = data_dir.join("filler");
    let filled_bytes = tokio::task::spawn_blocking({
        let filler = filler.clone();
        move || fill(&filler)
    })
    .await??;
    let ready_url = format!(
        "http://127.0.0.1:{}/health/ready",
        base_port + ServiceName::Order.port_offset()
    );
    let is_ready = || async {
        client
            .get(&ready_url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    let full_since = Instant::now();
    let mut unready_while_full = false;
    while full_since.elapsed() < hold {
        unready_while_full |= !is_ready().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    while !is_ready().await {
        anyhow::ensure!(
            freed.elapsed() < Duration::from_secs(60),
            "the order service is still not ready a minute after the disk was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(DiskEpisode {
        filled_bytes,
        unready_while_full,
        ready_again: freed.elapsed(),
    })
}

/// Writes `path` until the filesystem takes no more; returns the bytes written.
fn fill(path: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let mut written = 0;
    for size in [64 * 1024, 512] {
        let block = vec![0u8; size];
        while file.write_all(&block).is_ok() {
            written += size as u64;
        }
    }
    let _ = file.sync_all();
    Ok(written)
}

/// Places one order, then does to it what its `kind` says; its id once accepted, or why
/// it was not.
async fn place(
    client: &Client,
    url: &str,
    token: &str,
    product: &str,
    kind: Kind,
) -> Result<String, String> {
    let body =
        json!({"product_id": product, "quantity": 1, "address": "1 Teheran-ro, Gangnam-gu, Seoul"});
    let response = client
        .post(format!("{url}/api/orders"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|_| "no answer".to_owned())?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(response.status().to_string());
    }
    let order: Value = response
        .json()
        .await
        .map_err(|_| "unreadable answer".to_owned())?;
    let order_id = order["order_id"].as_str().ok_or("no order id")?.to_owned();
    let order_url = format!("{url}/api/orders/{order_id}");
    if matches!(kind, Kind::CancelledOnItsWay | Kind::RedirectedOnItsWay) {
        on_its_way(client, &order_url, token).await;
    }
    let request = match kind {
        Kind::Cancelled | Kind::CancelledOnItsWay => client.post(format!("{order_url}/cancel")),
        Kind::RedirectedOnItsWay => client
            .patch(&order_url)
            .json(&json!({"address": "2 Haeundae-ro, Haeundae-gu, Busan"})),
        Kind::Normal | Kind::OverStock | Kind::Declined => return Ok(order_id),
    };
    // A request refused while a service is down leaves an order that simply goes on.
    let _ = request.bearer_auth(token).send().await;
    Ok(order_id)
}

/// Waits (at most 5 s) until the order is on its way.
async fn on_its_way(client: &Client, order_url: &str, token: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(response) = client.get(order_url).bearer_auth(token).send().await
            && let Ok(order) = response.json::<Value>().await
            && order["status"] == "DELIVERING"
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The operator: until `deadline`, completes every delivery on its way, as fast as the
/// list comes back, so customers' cancels and redirects race the completions.
async fn complete_deliveries(client: Client, url: String, admin: String, deadline: Instant) {
    while Instant::now() < deadline {
        let on_their_way = match client
            .get(format!("{url}/api/deliveries"))
            .bearer_auth(&admin)
            .send()
            .await
        {
            Ok(response) => response.json::<Vec<Value>>().await.unwrap_or_default(),
            Err(_) => vec![],
        };
        for delivery in on_their_way {
            if let Some(order_id) = delivery["order_id"].as_str() {
                // Refused while delivery is down, or once cancelled: both are expected.
                let _ = client
                    .post(format!("{url}/api/deliveries/{order_id}/complete"))
                    .bearer_auth(&admin)
                    .send()
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The order's final state once its saga is over and delivery answered any request;
/// `None` if it is gone or still not final after two minutes.
async fn final_status(client: &Client, url: &str, order: &Accepted) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let response = client
            .get(format!("{url}/api/orders/{}", order.order_id))
            .bearer_auth(&*order.token)
            .send()
            .await;
        if let Ok(response) = response {
            if response.status() == StatusCode::NOT_FOUND {
                return None;
            }
            if let Ok(body) = response.json::<Value>().await
                && let Some(status) = body["status"].as_str()
                && !matches!(status, "PENDING" | "CONFIRMED")
                && body["request"]["status"] != "PENDING"
            {
                return Some(match body["request"]["status"].as_str() {
                    Some(request) => format!("{status}, request {request}"),
                    None => status.to_owned(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
