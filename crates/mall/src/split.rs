//! `mall up --split`: every service in its own child process (`mall serve <service>`),
//! sharing the data folder and its embedded event log, under a supervisor that restarts a
//! child that dies, with backoff, and stops them all on Ctrl-C or SIGTERM.

use std::{
    collections::VecDeque,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use chassis::config::{ChassisSettings, ServiceUrls};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::oneshot,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use crate::{Placement, ServiceName, shop};

/// The order children start in: auth first (everyone reads its keys), the gateway last.
const SERVICES: [ServiceName; 7] = [
    ServiceName::Auth,
    ServiceName::Product,
    ServiceName::Order,
    ServiceName::Payment,
    ServiceName::Delivery,
    ServiceName::Mypage,
    ServiceName::Gateway,
];
/// A child that ran this long before dying starts its backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Where the supervisor writes each child's process id: `<data-dir>/run/<service>.pid`
/// for a service's first instance, `<service>-<instance>.pid` for the others.
pub fn pid_file(data_dir: &Path, service: ServiceName, instance: u16) -> PathBuf {
    let name = match instance {
        0 => format!("{}.pid", service.name()),
        _ => format!("{}-{instance}.pid", service.name()),
    };
    data_dir.join("run").join(name)
}

/// Most instances of one service `mall up --split` runs.
const MAX_INSTANCES: u16 = 8;

/// How many instances of each service `mall up --split` runs (`order=2,product=3`): one
/// of each service not named. Instance `i` of a service listens `7 * i` ports above its
/// first, so the shop's ports stay one block: base .. base + 7 * most instances.
#[derive(Clone, Debug, Default)]
pub struct Replicas(Vec<(ServiceName, u16)>);

impl Replicas {
    pub fn of(&self, service: ServiceName) -> u16 {
        self.0
            .iter()
            .find(|(named, _)| *named == service)
            .map_or(1, |(_, count)| *count)
    }

    /// The port of `service`'s instance `instance` in a shop on `base_port`.
    pub fn port(base_port: u16, service: ServiceName, instance: u16) -> Option<u16> {
        base_port.checked_add(service.port_offset() + 7 * instance)
    }
}

impl std::fmt::Display for Replicas {
    /// The setting's form, `order=2,product=3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let named: Vec<String> = self
            .0
            .iter()
            .map(|(service, count)| format!("{}={count}", service.name()))
            .collect();
        f.write_str(&named.join(","))
    }
}

impl std::str::FromStr for Replicas {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let mut replicas: Vec<(ServiceName, u16)> = Vec::new();
        for part in value.split(',').filter(|part| !part.trim().is_empty()) {
            let (name, count) = part.split_once('=').ok_or_else(|| {
                format!("`{part}` is not `<service>=<instances>`, e.g. order=2,product=3")
            })?;
            let service = <ServiceName as clap::ValueEnum>::from_str(name.trim(), true)
                .map_err(|_| format!("`{name}` is no service of the shop"))?;
            if service == ServiceName::Gateway {
                return Err(
                    "the gateway is the front door: run several behind your own load \
                            balancer, each a `mall serve gateway`"
                        .into(),
                );
            }
            let count = count
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|count| (1..=MAX_INSTANCES).contains(count))
                .ok_or_else(|| {
                    format!("`{count}` instances of {name}: give 1 to {MAX_INSTANCES}")
                })?;
            if replicas.iter().any(|(named, _)| *named == service) {
                return Err(format!("{name} is named twice"));
            }
            replicas.push((service, count));
        }
        Ok(Replicas(replicas))
    }
}

/// What `mall up --split` hands its children beyond the environment they inherit.
pub struct ChildSettings {
    /// Auth's signing key; without one, a key kept in the data folder (made on first
    /// start).
    pub signing_key_file: Option<PathBuf>,
    /// The command line's settings, for `mall serve` to read as `mall up` did.
    pub flags: Vec<OsString>,
    pub replicas: Replicas,
}

/// The flags of a `mall up --split` command line (`args`, as the process got them) that
/// its children take too: all but the program, `up`, `--split`, `--replicas`,
/// `--base-port` (each child gets its own port), `--stop-grace-ms` (the supervisor's own)
/// and `--otel-service-name` (each child is named after its service).
pub fn flags_for_children(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    const SUPERVISORS_OWN: [&str; 4] = [
        "--base-port",
        "--replicas",
        "--stop-grace-ms",
        "--otel-service-name",
    ];
    let mut flags = Vec::new();
    let mut args = args.skip(1).skip_while(|arg| arg != "up").skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--split") => {}
            Some(flag) if SUPERVISORS_OWN.contains(&flag) => {
                args.next();
            }
            Some(flag)
                if SUPERVISORS_OWN
                    .iter()
                    .any(|own| flag.strip_prefix(own).is_some_and(|v| v.starts_with('='))) => {}
            _ => flags.push(arg),
        }
    }
    flags
}

/// Runs the shop split, each service in a `mall serve` child given `settings`; on
/// shutdown each child gets `stop_grace` to stop before it is killed.
pub async fn up(
    place: Placement,
    base_port: u16,
    chassis: &ChassisSettings,
    settings: ChildSettings,
    stop_grace: Duration,
) -> anyhow::Result<()> {
    // Past its deadline the supervisor exits, and its children die with it unstopped.
    anyhow::ensure!(
        stop_grace < chassis.shutdown_deadline(),
        "MALL_STOP_GRACE_MS ({} ms) must be shorter than MALL_SHUTDOWN_DEADLINE_MS ({} ms)",
        stop_grace.as_millis(),
        chassis.shutdown_deadline().as_millis()
    );
    let demo = shop::demo_customer(&place.data_dir, chassis).await?;
    let signing_key = match settings.signing_key_file {
        Some(given) => {
            auth::SigningKey::load(&given)?;
            given
        }
        None => {
            let kept = place.data_dir.join("auth-signing-key.pem");
            auth::SigningKey::load_or_generate(&kept)?;
            kept
        }
    };
    std::fs::create_dir_all(place.data_dir.join("run"))?;
    let urls = shop::urls_for(place.bind, base_port, &settings.replicas)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shop::cancel_on_signal(
        shutdown.clone(),
        chassis.shutdown_deadline(),
    ));

    let mut children = JoinSet::new();
    let mut first_starts = Vec::new();
    for service in SERVICES {
        for instance in 0..settings.replicas.of(service) {
            let command = ChildCommand {
                service,
                instance,
                place: place.clone(),
                port: Replicas::port(base_port, service, instance)
                    .context("--base-port leaves no room for the services' ports")?,
                urls: urls.clone(),
                signing_key: signing_key.clone(),
                flags: settings.flags.clone(),
                shared: [
                    ("MALL_DB", chassis.db.to_string()),
                    ("MALL_BUS", chassis.bus.to_string()),
                    ("MALL_ENV", chassis.environment().to_string()),
                ],
            };
            let (started, first_start) = oneshot::channel();
            first_starts.push(first_start);
            children.spawn(supervise(command, shutdown.clone(), stop_grace, started));
        }
    }
    // "Open" only over a shop that is: a child that dies before it first answers (a taken
    // port, a bad setting) would die the same way at every restart.
    for first_start in first_starts {
        if let Ok(Err(failure)) = first_start.await {
            shutdown.cancel();
            while children.join_next().await.is_some() {}
            anyhow::bail!(failure);
        }
    }
    println!(
        "12st mall is open at http://{}:{base_port}  (split: one process per service; data in \
         {}; Ctrl-C stops it)\ndemo customer: {} / {}",
        place.bind,
        place.data_dir.display(),
        demo.email,
        demo.password,
    );
    while let Some(finished) = children.join_next().await {
        finished.context("a supervisor task panicked")?;
    }
    Ok(())
}

/// How to start one service's process. Settings not set here come from the environment
/// the children inherit (the same `MALL_*` variables as `mall serve`).
struct ChildCommand {
    service: ServiceName,
    /// Which of the service's instances: its consumer group member and its port.
    instance: u16,
    place: Placement,
    port: u16,
    urls: ServiceUrls,
    signing_key: PathBuf,
    /// The settings `mall up` was given on its command line.
    flags: Vec<OsString>,
    /// What `mall up` was given, by flag or environment, that its children share: the
    /// databases, the bus, and the environment (`mall serve` alone would be production).
    shared: [(&'static str, String); 3],
}

impl ChildCommand {
    fn command(&self) -> anyhow::Result<Command> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .arg(self.service.name())
            .args(&self.flags)
            .env("MALL_DATA_DIR", &self.place.data_dir)
            .env("MALL_BIND", self.place.bind.to_string())
            .env("MALL_PORT", self.port.to_string())
            .env("MALL_INSTANCE_ID", self.instance.to_string())
            .env("MALL_PRODUCT_URL", self.urls.product_url.to_string())
            .env("MALL_ORDER_URL", self.urls.order_url.to_string())
            .env("MALL_DELIVERY_URL", self.urls.delivery_url.to_string())
            .env("MALL_MYPAGE_URL", self.urls.mypage_url.to_string())
            .env("MALL_AUTH_URL", self.urls.auth_url.to_string())
            .env("MALL_PAYMENT_URL", self.urls.payment_url.to_string())
            .env(
                "MALL_JWKS_URL",
                format!("{}/auth/jwks", self.urls.auth_url.first()),
            )
            .env("MALL_AUTH_SIGNING_KEY_FILE", &self.signing_key)
            // Each child names its spans after its own service, as `mall up` does.
            .env_remove("OTEL_SERVICE_NAME")
            .envs(self.shared.iter().map(|(name, value)| (name, value)))
            .env(
                "MALL_SEED_DEMO",
                (self.service == ServiceName::Product && self.instance == 0).to_string(),
            )
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the terminal reaches the supervisor only,
            // which then stops the children in order.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // A child whose supervisor was killed (SIGKILL cannot be caught) dies too,
                // rather than holding its port as an orphan.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(command)
    }
}

/// Keeps one service's process running until shutdown: restarts it when it dies, after a
/// backoff that grows while it keeps dying; on shutdown sends it SIGTERM and waits. Says
/// on `first_start` whether its first process came up answering its liveness check, or how it died.
async fn supervise(
    child: ChildCommand,
    shutdown: CancellationToken,
    stop_grace: Duration,
    first_start: oneshot::Sender<Result<(), String>>,
) {
    let service = match child.instance {
        0 => child.service.name().to_owned(),
        instance => format!("{}#{instance}", child.service.name()),
    };
    let service = service.as_str();
    let pid_file = pid_file(&child.place.data_dir, child.service, child.instance);
    let mut failures = 0u32;
    let mut first_start = Some(first_start);
    while !shutdown.is_cancelled() {
        // Another program on the port would answer for a child that cannot bind it.
        let port_taken = || std::net::TcpListener::bind((child.place.bind, child.port)).is_err();
        if let Some(first) = first_start.take_if(|_| port_taken()) {
            let _ = first.send(Err(format!(
                "{service} cannot listen on {}:{}: it is taken (is another shop running \
                 there? --base-port moves it)",
                child.place.bind, child.port
            )));
            break;
        }
        let started = Instant::now();
        let spawned = child.command().and_then(|mut c| Ok(c.spawn()?));
        let mut process = match spawned {
            Ok(process) => process,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(service, error, "cannot start a service");
                if let Some(first_start) = first_start.take() {
                    let _ = first_start.send(Err(format!("cannot start {service}: {error}")));
                    break;
                }
                failures += 1;
                if !pause(backoff(failures), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let pid = process.id().unwrap_or_default();
        if let Err(error) = std::fs::write(&pid_file, pid.to_string()) {
            tracing::warn!(service, %error, "cannot write the pid file");
        }
        tracing::info!(service, pid, "service started");
        let (last_words, heard_all) = keep_last_words(&mut process);
        if let Some(first_start) = first_start.take() {
            let failure = tokio::select! {
                live = answers(child.place.bind, child.port) => {
                    (!live).then(|| format!("it did not answer within {} s", FIRST_START.as_secs()))
                }
                status = process.wait() => Some(match status {
                    Ok(status) => format!("it exited ({status})"),
                    Err(error) => error.to_string(),
                }),
                _ = shutdown.cancelled() => None,
            };
            if let Some(failure) = failure {
                let _ = process.kill().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), heard_all).await;
                let said = Vec::from(last_words.lock().expect("last words lock poisoned").clone());
                let _ = first_start.send(Err(format!(
                    "{service} did not start: {failure}\n{}",
                    said.join("\n")
                )));
                break;
            }
            let _ = first_start.send(Ok(()));
        }
        tokio::select! {
            status = process.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                failures = if started.elapsed() > STABLE_AFTER { 1 } else { failures + 1 };
                let delay = backoff(failures);
                tracing::warn!(
                    service, pid, status, restarts = failures,
                    restart_in_ms = delay.as_millis() as u64,
                    "a service stopped; restarting it"
                );
                if !pause(delay, &shutdown).await {
                    break;
                }
            }
            _ = shutdown.cancelled() => {
                stop(&mut process, service, stop_grace).await;
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&pid_file);
}

/// How long a child's first process gets to answer on its port.
const FIRST_START: Duration = Duration::from_secs(60);

/// Whether the service on `port` answers its liveness check within [`FIRST_START`]. Not
/// merely a connection: a service binds its port before it checks its settings, so a
/// connection can succeed to one about to exit over a bad setting.
async fn answers(bind: std::net::IpAddr, port: u16) -> bool {
    let url = format!(
        "http://{}/health/live",
        std::net::SocketAddr::new(bind, port)
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < FIRST_START {
        let live = client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if live {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The last lines a child wrote to stderr.
type LastWords = Arc<Mutex<VecDeque<String>>>;

/// Passes the child's stderr on to ours, keeping its last lines (what it said before
/// dying, for an operator who would otherwise see only "restarting"); the task ends when
/// the child closes its stderr.
fn keep_last_words(process: &mut tokio::process::Child) -> (LastWords, JoinHandle<()>) {
    const KEPT: usize = 20;
    let last_words: LastWords = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT)));
    let stderr = process.stderr.take();
    let kept = last_words.clone();
    let heard_all = tokio::spawn(async move {
        let Some(stderr) = stderr else { return };
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            let mut kept = kept.lock().expect("last words lock poisoned");
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
    (last_words, heard_all)
}

/// SIGTERM, then `grace` for the graceful shutdown, then SIGKILL.
async fn stop(process: &mut tokio::process::Child, service: &str, grace: Duration) {
    if let Some(pid) = process.id() {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(grace, process.wait()).await {
        Ok(status) => tracing::info!(service, status = ?status.ok(), "service stopped"),
        Err(_) => {
            tracing::warn!(service, "no graceful stop in time; killing it");
            let _ = process.kill().await;
        }
    }
}

/// Sleeps unless shutdown comes first; false when it did.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// 250 ms after the first death, doubling with each death in a row, at most 10 s.
fn backoff(failures: u32) -> Duration {
    let millis = 250u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_millis(millis.min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_take_the_command_lines_settings_but_their_own_port() {
        let args = [
            "mall",
            "up",
            "--split",
            "--base-port",
            "9000",
            "--request-timeout-ms",
            "500",
            "--base-port=9001",
            "--replicas",
            "order=2",
            "--replicas=product=2",
            "--stop-grace-ms",
            "1000",
            "--stop-grace-ms=2000",
            "--faults=order:latency-ms=5",
        ]
        .map(OsString::from);
        assert_eq!(
            flags_for_children(args.into_iter()),
            ["--request-timeout-ms", "500", "--faults=order:latency-ms=5"].map(OsString::from)
        );
    }

    #[test]
    fn replicas_name_services_and_counts_and_refuse_the_rest() {
        let replicas: Replicas = "order=2, product=3".parse().unwrap();
        assert_eq!(replicas.of(ServiceName::Order), 2);
        assert_eq!(replicas.of(ServiceName::Product), 3);
        assert_eq!(replicas.of(ServiceName::Payment), 1);
        assert_eq!(replicas.to_string(), "order=2,product=3");
        assert_eq!("".parse::<Replicas>().unwrap().of(ServiceName::Auth), 1);
        for (refused, says) in [
            ("order", "not `<service>=<instances>`"),
            ("orders=2", "no service"),
            ("order=0", "give 1 to 8"),
            ("order=9", "give 1 to 8"),
            ("order=two", "give 1 to 8"),
            ("order=2,order=3", "named twice"),
            ("gateway=2", "load balancer"),
        ] {
            let error = refused.parse::<Replicas>().unwrap_err();
            assert!(error.contains(says), "{refused}: {error}");
        }
        assert_eq!(Replicas::port(8080, ServiceName::Order, 0), Some(8081));
        assert_eq!(Replicas::port(8080, ServiceName::Order, 2), Some(8095));
        assert_eq!(Replicas::port(65_528, ServiceName::Auth, 1), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(4_000));
        assert_eq!(backoff(7), Duration::from_millis(10_000));
        assert_eq!(backoff(100), Duration::from_millis(10_000));
    }
}
