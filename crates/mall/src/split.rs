//! `mall up --split`: every service in its own child process (`mall serve <service>`),
//! sharing the data folder and its embedded event log, under a supervisor that restarts a
//! child that dies, with backoff, and stops them all on Ctrl-C or SIGTERM.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use chassis::config::{ChassisSettings, ServiceUrls};
use tokio::{process::Command, task::JoinSet};
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
/// How long a child gets to shut down gracefully before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where the supervisor writes each child's process id: `<data-dir>/run/<service>.pid`.
pub fn pid_file(data_dir: &Path, service: ServiceName) -> PathBuf {
    data_dir.join("run").join(format!("{}.pid", service.name()))
}

pub async fn up(place: Placement, base_port: u16, chassis: &ChassisSettings) -> anyhow::Result<()> {
    let demo = shop::demo_customer(&place.data_dir, chassis).await?;
    let signing_key = place.data_dir.join("auth-signing-key.pem");
    auth::SigningKey::load_or_generate(&signing_key)?;
    std::fs::create_dir_all(place.data_dir.join("run"))?;
    let urls = shop::urls_for(place.bind, base_port)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shop::cancel_on_signal(shutdown.clone()));

    let mut children = JoinSet::new();
    for service in SERVICES {
        let command = ChildCommand {
            service,
            place: place.clone(),
            port: base_port + service.port_offset(),
            urls: urls.clone(),
            signing_key: signing_key.clone(),
            shared: [
                ("MALL_DB", chassis.db.to_string()),
                ("MALL_BUS", chassis.bus.to_string()),
                ("MALL_ENV", chassis.environment().to_string()),
            ],
        };
        children.spawn(supervise(command, shutdown.clone()));
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
    place: Placement,
    port: u16,
    urls: ServiceUrls,
    signing_key: PathBuf,
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
            .env("MALL_DATA_DIR", &self.place.data_dir)
            .env("MALL_BIND", self.place.bind.to_string())
            .env("MALL_PORT", self.port.to_string())
            .env("MALL_PRODUCT_URL", &self.urls.product_url)
            .env("MALL_ORDER_URL", &self.urls.order_url)
            .env("MALL_DELIVERY_URL", &self.urls.delivery_url)
            .env("MALL_MYPAGE_URL", &self.urls.mypage_url)
            .env("MALL_AUTH_URL", &self.urls.auth_url)
            .env("MALL_PAYMENT_URL", &self.urls.payment_url)
            .env("MALL_JWKS_URL", format!("{}/auth/jwks", self.urls.auth_url))
            .env("MALL_AUTH_SIGNING_KEY_FILE", &self.signing_key)
            .envs(self.shared.iter().map(|(name, value)| (name, value)))
            .env(
                "MALL_SEED_DEMO",
                (self.service == ServiceName::Product).to_string(),
            )
            .stdin(Stdio::null())
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
/// backoff that grows while it keeps dying; on shutdown sends it SIGTERM and waits.
async fn supervise(child: ChildCommand, shutdown: CancellationToken) {
    let service = child.service.name();
    let pid_file = pid_file(&child.place.data_dir, child.service);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let spawned = child.command().and_then(|mut c| Ok(c.spawn()?));
        let mut process = match spawned {
            Ok(process) => process,
            Err(error) => {
                tracing::error!(
                    service,
                    error = format!("{error:#}"),
                    "cannot start a service"
                );
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
                stop(&mut process, service).await;
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&pid_file);
}

/// SIGTERM, then a grace period for the graceful shutdown, then SIGKILL.
async fn stop(process: &mut tokio::process::Child, service: &str) {
    if let Some(pid) = process.id() {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(STOP_GRACE, process.wait()).await {
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
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(4_000));
        assert_eq!(backoff(7), Duration::from_millis(10_000));
        assert_eq!(backoff(100), Duration::from_millis(10_000));
    }
}
