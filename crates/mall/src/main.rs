//! `mall`: runs the whole 12st mall in one command, or one service of it, and measures it.

mod admin;
mod bench;
mod canary;
mod chaos;
mod check;
mod docs;
mod loadgen;
mod shop;
mod split;
mod trace;

use std::{net::IpAddr, path::PathBuf};

use chassis::{
    config::{ChassisSettings, ServiceUrls},
    faults::Environment,
};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "mall",
    version,
    about = "The 12st mall: an online shop of event-driven microservices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop in this process: every service on its own port with its own
    /// database (a SQLite file under --data-dir, or with --db a PostgreSQL database), the
    /// embedded event log or Kafka (--bus) between them, and a demo catalogue and a demo
    /// customer on first start. Ports: gateway = base, order = base+1,
    /// delivery = base+2, product = base+3, payment = base+4, mypage = base+5, auth = base+6.
    Up {
        #[command(flatten)]
        place: Placement,
        /// First port; the gateway listens here, the services on the ports after it.
        #[arg(long, env = "MALL_BASE_PORT", default_value_t = 8080,
              value_parser = clap::value_parser!(u16).range(1..=65_528))]
        base_port: u16,
        /// Run each service in its own child process (`mall serve <service>`) under a
        /// supervisor that restarts a child that dies. The children take --db and --bus
        /// from here, every other setting from the environment (the `MALL_*` variables).
        #[arg(long)]
        split: bool,
        /// With --split, how many instances of a service to run (`order=2,product=3`),
        /// each its own process, consumer group member and port (instance i of a service
        /// 7 * i ports above its first), the gateway balancing across them.
        #[arg(long, env = "MALL_REPLICAS", requires = "split", default_value = "")]
        replicas: split::Replicas,
        /// With --split: how long a child gets to stop gracefully after SIGTERM before it
        /// is killed. Shorter than MALL_SHUTDOWN_DEADLINE_MS, past which the supervisor
        /// itself exits.
        #[arg(long, env = "MALL_STOP_GRACE_MS", default_value_t = 20_000,
              value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        stop_grace_ms: u64,
        #[command(flatten)]
        chassis: ChassisSettings,
        #[command(flatten)]
        order: order::OrderSettings,
        #[command(flatten)]
        gateway: gateway::GatewaySettings,
        #[command(flatten)]
        auth: auth::AuthSettings,
        #[command(flatten)]
        payment: payment::PaymentSettings,
    },
    /// Run one service, configured by flags or environment variables (12-factor), as a
    /// container or a Kubernetes pod would.
    Serve {
        service: ServiceName,
        #[command(flatten)]
        place: Placement,
        /// Port to listen on; defaults to the service's port in DESIGN.md section 2.
        #[arg(long, env = "MALL_PORT")]
        port: Option<u16>,
        #[command(flatten)]
        urls: ServiceUrls,
        #[command(flatten)]
        chassis: ChassisSettings,
        #[command(flatten)]
        order: order::OrderSettings,
        #[command(flatten)]
        gateway: gateway::GatewaySettings,
        #[command(flatten)]
        auth: auth::AuthSettings,
        #[command(flatten)]
        payment: payment::PaymentSettings,
        /// Seed the demo catalogue into an empty product database.
        #[arg(long, env = "MALL_SEED_DEMO")]
        seed_demo: bool,
    },
    /// Operator tools that work on a shop's data folder.
    Admin {
        #[command(subcommand)]
        task: admin::Task,
    },
    /// Drive real customers through a running shop's gateway and report confirmed
    /// orders/s and saga latency (JSON result and SVG plot in --out).
    Loadgen(loadgen::Settings),
    /// Order from a `mall up --split` shop while killing its services, crashing them at
    /// their worst moments, delivering old events again and slowing product; then check
    /// that no accepted order was lost and nothing was applied twice, and print a table.
    Chaos(chaos::Settings),
    /// Write the documents generated from the code into docs/ (AsyncAPI, event storming
    /// board, context map), or check that they are up to date.
    Docs(docs::Settings),
    /// Roll a new version of a service out to chosen customers and a growing share of the
    /// rest through the gateway, promoted step by step or rolled back when it does worse.
    Canary(canary::Settings),
    /// Show the trace of the request that placed an order (or a later one of it) as a
    /// waterfall, from the services' recent spans: no tracing backend needed.
    Trace(trace::Settings),
    /// Measure a part of the shop and print the figures.
    Bench {
        #[command(subcommand)]
        target: bench::Target,
    },
}

/// Where a shop keeps its data and which address it listens on.
#[derive(clap::Args, Clone)]
pub struct Placement {
    /// Folder of the shop's files: on the embedded defaults a SQLite file per service and
    /// `bus.db`, the event log; always the demo customer and the signing key of `mall up`.
    #[arg(long, env = "MALL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "MALL_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceName {
    Gateway,
    Order,
    Product,
    Auth,
    Payment,
    Delivery,
    Mypage,
}

impl ServiceName {
    /// The name on the command line, as in `mall serve order`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceName::Gateway => gateway::NAME,
            ServiceName::Order => order::NAME,
            ServiceName::Product => product::NAME,
            ServiceName::Auth => auth::NAME,
            ServiceName::Payment => payment::NAME,
            ServiceName::Delivery => delivery::NAME,
            ServiceName::Mypage => mypage::NAME,
        }
    }

    /// Offset from the base port (DESIGN.md section 2).
    fn port_offset(self) -> u16 {
        match self {
            ServiceName::Gateway => 0,
            ServiceName::Order => 1,
            ServiceName::Product => 3,
            ServiceName::Auth => 6,
            ServiceName::Payment => 4,
            ServiceName::Delivery => 2,
            ServiceName::Mypage => 5,
        }
    }
}

/// Makes glibc give large freed buffers back to the system. By default it raises its mmap
/// threshold to the size of each large buffer freed, after which such buffers (Argon2's
/// 12 MiB per password check) come from per-thread arenas and stay resident when freed:
/// a burst of logins left the shop 150 MiB larger for good.
#[cfg(target_env = "gnu")]
fn return_large_buffers_to_the_system() {
    const THRESHOLD_BYTES: libc::c_int = 128 * 1024;
    // SAFETY: mallopt(3) only sets an allocator parameter; called before any thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD_BYTES) };
}

fn main() -> anyhow::Result<()> {
    #[cfg(target_env = "gnu")]
    return_large_buffers_to_the_system();
    let mut cli = Cli::parse();
    chassis::telemetry::init_logging().map_err(anyhow::Error::msg)?;
    if matches!(
        cli.command,
        Command::Up { .. } | Command::Serve { .. } | Command::Admin { .. } | Command::Chaos(_)
    ) {
        keep_files_private();
    }
    let mut _data_dir_lock = None;
    if let Command::Up { chassis, place, .. } = &mut cli.command {
        chassis.environment.get_or_insert(Environment::Development);
        anyhow::ensure!(
            chassis.operations_port.is_none(),
            "MALL_OPERATIONS_PORT is for `mall serve`, one service per process: `mall up` \
             serves each service's /health and /metrics on its own port"
        );
        _data_dir_lock = Some(shop::lock_data_dir(&place.data_dir)?);
        // Seven services, seven names: one name for all would merge them in a trace.
        if let Some(name) = chassis.tracing.otel_service_name.take() {
            tracing::warn!(
                name,
                "OTEL_SERVICE_NAME is for `mall serve`: under `mall up` each service's spans \
                 carry its own name"
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Up {
                place,
                base_port,
                split: true,
                replicas,
                stop_grace_ms,
                chassis,
                auth,
                ..
            } => {
                let settings = split::ChildSettings {
                    signing_key_file: auth.signing_key_file,
                    flags: split::flags_for_children(std::env::args_os()),
                    replicas,
                };
                let stop_grace = std::time::Duration::from_millis(stop_grace_ms);
                split::up(place, base_port, &chassis, settings, stop_grace).await
            }
            Command::Up {
                place,
                base_port,
                split: false,
                chassis,
                replicas: _,
                stop_grace_ms: _,
                order,
                gateway,
                auth,
                payment,
            } => {
                let options = shop::ServeOptions {
                    urls: shop::urls_for(place.bind, base_port, &split::Replicas::default())?,
                    order,
                    gateway,
                    auth,
                    payment,
                    seed_demo: true,
                };
                shop::up(place, base_port, chassis, options).await
            }
            Command::Serve {
                service,
                place,
                port,
                urls,
                chassis,
                order,
                gateway,
                auth,
                payment,
                seed_demo,
            } => {
                let port = port.unwrap_or(8080 + service.port_offset());
                let options = shop::ServeOptions {
                    urls,
                    order,
                    gateway,
                    auth,
                    payment,
                    seed_demo,
                };
                shop::serve(service, place, port, chassis, options).await
            }
            Command::Admin { task } => admin::run(task).await,
            Command::Loadgen(settings) => loadgen::run(settings).await,
            Command::Docs(settings) => docs::run(settings),
            Command::Chaos(settings) => chaos::run(settings).await,
            Command::Canary(settings) => canary::run(settings).await,
            Command::Trace(settings) => trace::run(settings).await,
            Command::Bench { target } => bench::run(target).await,
        }
    })
}

/// Files and folders this process creates are its user's alone (0600, 0700): the
/// databases hold password hashes, orders and addresses, the data folder a signing key.
fn keep_files_private() {
    // SAFETY: umask(2) only sets the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}
