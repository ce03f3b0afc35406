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
    /// What its cancel or redirect got, for the kinds that send one.
    answer: Option<Answer>,
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
                        Ok((order_id, answer)) => tally.accepted.push(Accepted {
                            order_id,
                            token: token.clone(),
                            kind,
                            answer,
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
    let mut answers: BTreeMap<(Kind, Answer), usize> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut wrong = Vec::new();
    for order in &tally.accepted {
        if let Some(answer) = order.answer {
            *answers.entry((order.kind, answer)).or_default() += 1;
        }
        match final_status(&client, &url, order).await {
            Some(status) => {
                if !may_end(order.kind, order.answer, &status) {
                    wrong.push(format!(
                        "{} ({:?}{}) ended {status}",
                        order.order_id,
                        order.kind,
                        order
                            .answer
                            .map(|answer| format!(", asked: {answer}"))
                            .unwrap_or_default()
                    ));
                }
                *finals.entry((order.kind, status)).or_default() += 1
            }
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
    for ((kind, answer), count) in &answers {
        println!("{:<58} {count:>8}", format!("asked: {kind:?} -> {answer}"));
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
    println!("{:<58} {:>8}", "orders in a wrong final state", wrong.len());
    for example in wrong.iter().take(10) {
        println!("    {example}");
    }
    let confirmed: usize = finals
        .iter()
        .filter(|((_, status), _)| status.starts_with("DELIVER"))
        .map(|(_, count)| count)
        .sum();
    let kills: usize = kills.values().sum();
    let not_done = shortfalls(settings, confirmed, kills, crashes);
    for shortfall in &not_done {
        println!("not done: {shortfall}");
    }
    println!(
        "{:<58} {:>8}",
        "invariants",
        if invariants_hold { "hold" } else { "BROKEN" }
    );
    anyhow::ensure!(lost.is_empty(), "accepted orders lost: {lost:?}");
    anyhow::ensure!(invariants_hold, "invariants broken: see the report above");
    anyhow::ensure!(
        wrong.is_empty(),
        "{} orders ended in a state their kind and answer do not allow, e.g. {}",
        wrong.len(),
        wrong[0]
    );
    anyhow::ensure!(
        not_done.is_empty(),
        "the run proves nothing: {}",
        not_done.join("; ")
    );
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

/// Places one order, then does to it what its `kind` says; its id once accepted, with the
/// answer to its cancel or redirect, or why it was not accepted.
async fn place(
    client: &Client,
    url: &str,
    token: &str,
    product: &str,
    kind: Kind,
) -> Result<(String, Option<Answer>), String> {
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
        Kind::Normal | Kind::OverStock | Kind::Declined => return Ok((order_id, None)),
    };
    let answer = match request.bearer_auth(token).send().await {
        Ok(response) => Answer::from(response.status()),
        Err(_) => Answer::Unavailable,
    };
    Ok((order_id, Some(answer)))
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

/// The order's final state once its saga is over and delivery answered any request (a
/// rejection with its reason); `None` if it is gone or still not final after two minutes.
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
                return Some(
                    match (body["request"]["status"].as_str(), body["reason"].as_str()) {
                        (Some(request), _) => format!("{status}, request {request}"),
                        (None, Some(reason)) => format!("{status}: {reason}"),
                        (None, None) => status.to_owned(),
                    },
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What a customer's cancel or redirect got from the shop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// 200: done at once (a cancel while PENDING).
    Done,
    /// 202: asked of delivery, which answers later.
    Requested,
    /// 409: not allowed in the order's state, or the order changed meanwhile.
    Refused,
    /// No answer, or 502, 503, 504: a service was down, so whether it took effect is
    /// unknown.
    Unavailable,
    /// Any other status: never right.
    Unexpected(StatusCode),
}

impl From<StatusCode> for Answer {
    fn from(status: StatusCode) -> Self {
        match status {
            StatusCode::OK => Answer::Done,
            StatusCode::ACCEPTED => Answer::Requested,
            StatusCode::CONFLICT => Answer::Refused,
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Answer::Unavailable,
            other => Answer::Unexpected(other),
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Done => f.write_str("200 done"),
            Answer::Requested => f.write_str("202 requested"),
            Answer::Refused => f.write_str("409 refused"),
            Answer::Unavailable => f.write_str("unavailable"),
            Answer::Unexpected(status) => write!(f, "unexpected {status}"),
        }
    }
}

/// How order's saga deadline words a rejection: the one rejection chaos causes itself
/// (its kills, crashes and full disk kept a saga without an answer that long), and so
/// the one any order may end with, except one cancelled at once.
const SILENCED_BY_CHAOS: &str = "REJECTED: no answer from the saga within";

/// Whether an order of `kind` whose cancel or redirect got `answer` may end in `state`
/// (as [`final_status`] words it). The operator completes deliveries all along, so an
/// order on its way may end delivered; a request refused or unanswered leaves an order
/// that goes on as if never asked.
fn may_end(kind: Kind, answer: Option<Answer>, state: &str) -> bool {
    const ON_ITS_WAY: [&str; 2] = ["DELIVERING", "DELIVERED"];
    const CANCELLED: &str = "CANCELLED";
    const REFUSED_AS_DELIVERED: &str = "DELIVERED, request REFUSED";
    let allowed: &[&str] = match (kind, answer) {
        (Kind::Normal, None) => &ON_ITS_WAY,
        (Kind::OverStock, None) => &["REJECTED: insufficient stock"],
        (Kind::Declined, None) => &["REJECTED: payment declined"],
        (Kind::Cancelled | Kind::CancelledOnItsWay, Some(Answer::Done)) => {
            return state == CANCELLED;
        }
        (Kind::Cancelled | Kind::CancelledOnItsWay, Some(Answer::Requested)) => {
            &[CANCELLED, REFUSED_AS_DELIVERED]
        }
        (Kind::Cancelled | Kind::CancelledOnItsWay, Some(Answer::Refused)) => &ON_ITS_WAY,
        (Kind::Cancelled | Kind::CancelledOnItsWay, Some(Answer::Unavailable)) => {
            &["DELIVERING", "DELIVERED", CANCELLED, REFUSED_AS_DELIVERED]
        }
        // Granted, an address change leaves no request; refused, only once delivered.
        (Kind::RedirectedOnItsWay, Some(Answer::Requested | Answer::Unavailable)) => {
            &["DELIVERING", "DELIVERED", REFUSED_AS_DELIVERED]
        }
        (Kind::RedirectedOnItsWay, Some(Answer::Refused)) => &ON_ITS_WAY,
        _ => return false,
    };
    state.starts_with(SILENCED_BY_CHAOS)
        || allowed
            .iter()
            .any(|allowed| state == *allowed || state.starts_with(&format!("{allowed}:")))
}

/// What the run was to do and did not, each in words: confirm an order; and, when it
/// lasted a kill interval, kill a service and, if its faults name a crash point, crash one.
fn shortfalls(settings: &Settings, confirmed: usize, kills: usize, crashes: usize) -> Vec<String> {
    let mut shortfalls = Vec::new();
    if confirmed == 0 {
        shortfalls.push("no order was confirmed".to_owned());
    }
    let lasted_a_kill_interval = settings.duration_secs * 1_000 >= settings.kill_every_ms;
    if lasted_a_kill_interval && kills == 0 {
        shortfalls.push(format!(
            "no service was killed in {} s with a kill every {} ms",
            settings.duration_secs, settings.kill_every_ms
        ));
    }
    if lasted_a_kill_interval && settings.faults.contains("crash-at=") && crashes == 0 {
        shortfalls.push(format!(
            "no injected crash happened ({}): run longer or make crashes likelier",
            settings.faults
        ));
    }
    shortfalls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_order_may_end_on_its_way_or_silenced_by_chaos_and_not_otherwise_rejected() {
        for state in [
            "DELIVERING",
            "DELIVERED",
            "REJECTED: no answer from the saga within 30 s",
        ] {
            assert!(may_end(Kind::Normal, None, state), "{state}");
        }
        for state in [
            "REJECTED: payment declined: amount exceeds the card limit",
            "REJECTED: insufficient stock: 0 available, 1 requested",
            "CANCELLED",
            "DELIVERED, request REFUSED",
        ] {
            assert!(!may_end(Kind::Normal, None, state), "{state}");
        }
        assert!(may_end(
            Kind::OverStock,
            None,
            "REJECTED: insufficient stock: 0 available, 1 requested"
        ));
        assert!(!may_end(Kind::OverStock, None, "DELIVERING"));
        assert!(!may_end(
            Kind::Declined,
            None,
            "REJECTED: insufficient stock: 0 available, 1 requested"
        ));
    }

    #[test]
    fn a_cancel_or_redirect_is_judged_by_its_answer() {
        let cancel = |answer, state| may_end(Kind::Cancelled, Some(answer), state);
        assert!(cancel(Answer::Done, "CANCELLED"));
        assert!(!cancel(Answer::Done, "DELIVERING"));
        assert!(!cancel(
            Answer::Done,
            "REJECTED: no answer from the saga within 30 s"
        ));
        assert!(cancel(Answer::Requested, "DELIVERED, request REFUSED"));
        assert!(!cancel(Answer::Requested, "DELIVERING"));
        assert!(cancel(Answer::Refused, "DELIVERED"));
        assert!(!cancel(Answer::Refused, "CANCELLED"));
        assert!(cancel(Answer::Unavailable, "CANCELLED"));
        assert!(!cancel(
            Answer::Unexpected(StatusCode::INTERNAL_SERVER_ERROR),
            "CANCELLED"
        ));
        let redirect = |answer, state| may_end(Kind::RedirectedOnItsWay, Some(answer), state);
        assert!(redirect(Answer::Requested, "DELIVERING"));
        assert!(redirect(Answer::Requested, "DELIVERED, request REFUSED"));
        assert!(!redirect(Answer::Requested, "CANCELLED"));
        assert!(!redirect(Answer::Done, "DELIVERING"));
        assert_eq!(
            Answer::from(StatusCode::NOT_FOUND),
            Answer::Unexpected(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn a_run_that_did_nothing_says_what_it_did_not_do() {
        let settings = |duration_secs, faults: &str| Settings {
            duration_secs,
            concurrency: 1,
            kill_every_ms: 4_000,
            duplicates_per_round: 0,
            faults: faults.to_owned(),
            replicas: split::Replicas::default(),
            base_port: 1,
            data_dir: None,
            small_disk_mb: None,
            full_disk_secs: 1,
        };
        let crashing = settings(60, "order:crash-at=before-publish@0.01");
        assert!(shortfalls(&crashing, 1, 1, 1).is_empty());
        let said = shortfalls(&crashing, 0, 0, 0).join("; ");
        assert!(said.contains("no order was confirmed"), "{said}");
        assert!(said.contains("no service was killed"), "{said}");
        assert!(said.contains("no injected crash"), "{said}");
        // Shorter than a kill interval, or with no crash point, nothing of them is due.
        assert!(shortfalls(&settings(2, "order:crash-at=before-publish"), 1, 0, 0).is_empty());
        assert!(shortfalls(&settings(60, "product:latency-ms=40"), 1, 1, 0).is_empty());
    }
}
