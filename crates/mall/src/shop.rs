//! Starting services: all of them in one process (`mall up`) or one (`mall serve`).

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use chassis::{
    ServiceRuntime,
    bus::EventBus,
    config::{ChassisSettings, DatabaseLocation, ServiceUrls},
    db::Database,
    faults::Environment,
    instances::Instances,
};
use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{Placement, ServiceName, split::Replicas};

pub struct ServeOptions {
    pub urls: ServiceUrls,
    pub order: order::OrderSettings,
    pub gateway: gateway::GatewaySettings,
    pub auth: auth::AuthSettings,
    pub payment: payment::PaymentSettings,
    pub seed_demo: bool,
}

/// Where each service (each instance of it) of a shop on `base_port` listens.
pub fn urls_for(bind: IpAddr, base_port: u16, replicas: &Replicas) -> anyhow::Result<ServiceUrls> {
    let url = |service: ServiceName| {
        (0..replicas.of(service))
            .map(|instance| {
                Replicas::port(base_port, service, instance)
                    .map(|port| format!("http://{}", SocketAddr::new(bind, port)))
                    .context("--base-port leaves no room for the services' ports")
            })
            .collect::<anyhow::Result<Instances>>()
    };
    Ok(ServiceUrls {
        product_url: url(ServiceName::Product)?,
        order_url: url(ServiceName::Order)?,
        delivery_url: url(ServiceName::Delivery)?,
        mypage_url: url(ServiceName::Mypage)?,
        auth_url: url(ServiceName::Auth)?,
        payment_url: url(ServiceName::Payment)?,
    })
}

pub async fn up(
    place: Placement,
    base_port: u16,
    mut chassis: ChassisSettings,
    options: ServeOptions,
) -> anyhow::Result<()> {
    chassis.tokens.jwks_url = format!("{}/auth/jwks", options.urls.auth_url.first());
    let services = [
        ServiceName::Auth,
        ServiceName::Product,
        ServiceName::Order,
        ServiceName::Payment,
        ServiceName::Delivery,
        ServiceName::Mypage,
        ServiceName::Gateway,
    ];
    let mut listeners = Vec::new();
    for service in services {
        let port = base_port + service.port_offset();
        listeners.push((service, bind(SocketAddr::new(place.bind, port)).await?));
    }
    let demo = demo_customer(&place.data_dir, &chassis).await?;
    let shop = Shop::open(&place.data_dir, &chassis).await?;
    for (service, listener) in listeners {
        shop.start(service, listener, &chassis, &options).await?;
    }
    println!(
        "12st mall is open at http://{}  (data in {}; Ctrl-C stops it)\n\
         demo customer: {} / {}",
        SocketAddr::new(place.bind, base_port),
        place.data_dir.display(),
        demo.email,
        demo.password,
    );
    shop.run_until_stopped().await
}

pub async fn serve(
    service: ServiceName,
    place: Placement,
    port: u16,
    chassis: ChassisSettings,
    options: ServeOptions,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        service != ServiceName::Gateway
            || chassis.operations_port.is_some()
            || chassis.environment() != Environment::Production,
        "the gateway faces the internet: in production set MALL_OPERATIONS_PORT, so that \
         /health and /metrics are served on a port of their own and not to everyone"
    );
    let listener = bind(SocketAddr::new(place.bind, port)).await?;
    open_data_dir(&place.data_dir)?;
    let shop = Shop::open(&place.data_dir, &chassis).await?;
    shop.start(service, listener, &chassis, &options).await?;
    shop.run_until_stopped().await
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}: is another shop running there? (--base-port moves it)")
    })
}

/// Holds the data folder for this `mall up` while the returned file stays open: a second
/// `mall up` on the same folder would share its files (and, split, its pid files), so it
/// is refused with the first one's pid.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    open_data_dir(data_dir)?;
    let path = data_dir.join("mall.lock");
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match lock.try_lock() {
        Ok(()) => {
            lock.set_len(0)?;
            write!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another mall up (pid {}) runs on the data folder {}: stop it, or give this \
                 one another --data-dir",
                holder.trim(),
                data_dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(error)) => Err(error.into()),
    }
}

/// Creates the data folder (0700, by the process's umask) unless it exists, checks that
/// it can be written, and warns when an existing one is open to other users, rather than
/// changing a folder it did not make. Each command that writes there calls it once.
pub fn open_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    // SQLite would say only "unable to open database file" of a folder it cannot write.
    tempfile::tempfile_in(data_dir).with_context(|| {
        format!(
            "cannot write in the data folder {} (read-only, or not this user's?)",
            data_dir.display()
        )
    })?;
    let mode = std::fs::metadata(data_dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            folder = %data_dir.display(),
            mode = format!("{mode:o}"),
            "the data folder is open to other users: `chmod 700` it"
        );
    }
    Ok(())
}

/// The auth service's database, migrated, in a data folder already opened
/// ([`open_data_dir`]): for tools that add accounts.
pub async fn auth_database(data_dir: &Path, chassis: &ChassisSettings) -> anyhow::Result<Database> {
    let db = chassis::runtime::open_service_database(auth::NAME, chassis, data_dir)
        .await
        .context("cannot open the auth database")?;
    auth::migrate(&db).await?;
    Ok(db)
}

/// Service `name`'s database in an existing shop where the settings put it, for operator
/// tools: a missing SQLite file is an error, not a new empty database.
pub async fn service_database(
    name: &str,
    data_dir: &Path,
    chassis: &ChassisSettings,
) -> anyhow::Result<Database> {
    anyhow::ensure!(
        Database::exists(&chassis.db, data_dir, name).await?,
        "{} holds no {name} database: has the shop run there? Check --data-dir and --db",
        shop_location(data_dir, chassis)
    );
    chassis::runtime::open_service_database(name, chassis, data_dir)
        .await
        .with_context(|| format!("cannot open the {name} database"))
}

/// Where the settings put the shop's data, in an operator's words.
pub fn shop_location(data_dir: &Path, chassis: &ChassisSettings) -> String {
    match &chassis.db {
        DatabaseLocation::Embedded => data_dir.display().to_string(),
        DatabaseLocation::Sqlite(folder) => folder.display().to_string(),
        DatabaseLocation::Postgres { server, .. } => format!(
            "the PostgreSQL server {}:{} under the name {}",
            server.get_host(),
            server.get_port(),
            server.get_database().unwrap_or_default()
        ),
    }
}

/// The bus the settings name: the embedded log in `data_dir`, or Kafka.
pub async fn connect_bus(
    data_dir: &Path,
    chassis: &ChassisSettings,
) -> anyhow::Result<Arc<dyn EventBus>> {
    chassis::bus::connect(
        &chassis.bus,
        data_dir,
        chassis.sqlite_synchronous,
        chassis.bus_partitions,
        Duration::from_millis(chassis.bus_session_timeout_ms),
    )
    .await
    .with_context(|| format!("cannot reach the event bus {}", chassis.bus))
}

#[derive(Serialize, Deserialize)]
pub struct DemoCustomer {
    pub email: String,
    pub password: String,
}

/// The demo customer of a `mall up` shop: created with a random password on first start,
/// kept in `demo-customer.json` in the data folder so it can be shown at every start.
pub async fn demo_customer(
    data_dir: &Path,
    chassis: &ChassisSettings,
) -> anyhow::Result<DemoCustomer> {
    let path = data_dir.join("demo-customer.json");
    if let Ok(saved) = std::fs::read(&path) {
        return serde_json::from_slice(&saved)
            .with_context(|| format!("{} is unreadable", path.display()));
    }
    let demo = DemoCustomer {
        email: "demo@12st.mall".into(),
        password: rand::rng()
            .sample_iter(Alphanumeric)
            .take(16)
            .map(char::from)
            .collect(),
    };
    let db = auth_database(data_dir, chassis).await?;
    auth::register(
        &db,
        &auth::Passwords::new(NonZeroUsize::MIN),
        &demo.email,
        "Demo Customer",
        &demo.password,
        false,
        None,
    )
    .await
    .context("cannot create the demo customer")?;
    db.close().await;
    std::fs::write(&path, serde_json::to_vec_pretty(&demo)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(demo)
}

/// Services running in this process, sharing one event log and one shutdown signal.
struct Shop {
    data_dir: PathBuf,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
    running: tokio::sync::Mutex<JoinSet<anyhow::Result<()>>>,
}

impl Shop {
    /// The shop on `data_dir`, which `mall up` locked or `mall serve` opened.
    async fn open(data_dir: &Path, chassis: &ChassisSettings) -> anyhow::Result<Self> {
        let bus = connect_bus(data_dir, chassis).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(
            shutdown.clone(),
            chassis.shutdown_deadline(),
        ));
        Ok(Shop {
            data_dir: data_dir.to_owned(),
            bus,
            shutdown,
            running: Default::default(),
        })
    }

    async fn runtime(
        &self,
        name: &'static str,
        chassis: &ChassisSettings,
    ) -> anyhow::Result<Arc<ServiceRuntime>> {
        ServiceRuntime::start(
            name,
            chassis.clone(),
            &self.data_dir,
            self.bus.clone(),
            self.shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot start {name}"))
    }

    /// The token signing key: the configured file, or (for `mall up`, which seeds demo
    /// data) one kept in the data folder and created on first start.
    fn signing_key(&self, options: &ServeOptions) -> anyhow::Result<auth::SigningKey> {
        Ok(match (&options.auth.signing_key_file, options.seed_demo) {
            (Some(path), _) => auth::SigningKey::load(path)?,
            (None, true) => {
                auth::SigningKey::load_or_generate(&self.data_dir.join("auth-signing-key.pem"))?
            }
            (None, false) => anyhow::bail!(
                "the auth service needs its signing key: set MALL_AUTH_SIGNING_KEY_FILE \
                 (an Ed25519 PKCS#8 PEM file)"
            ),
        })
    }

    async fn start(
        &self,
        service: ServiceName,
        listener: TcpListener,
        chassis: &ChassisSettings,
        options: &ServeOptions,
    ) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        match service {
            ServiceName::Auth => {
                options.auth.check(&chassis.tokens)?;
                let key = self.signing_key(options)?;
                let rt = self.runtime(auth::NAME, chassis).await?;
                let settings = options.auth.clone();
                running.spawn(async move { Ok(auth::run(rt, listener, key, settings).await?) });
            }
            ServiceName::Product => {
                let rt = self.runtime(product::NAME, chassis).await?;
                let seed_demo = options.seed_demo;
                running.spawn(async move { Ok(product::run(rt, listener, seed_demo).await?) });
            }
            ServiceName::Order => {
                let rt = self.runtime(order::NAME, chassis).await?;
                let (urls, settings) = (options.urls.clone(), options.order.clone());
                running.spawn(async move { Ok(order::run(rt, listener, &urls, settings).await?) });
            }
            ServiceName::Payment => {
                let rt = self.runtime(payment::NAME, chassis).await?;
                let settings = options.payment.clone();
                running.spawn(async move { Ok(payment::run(rt, listener, settings).await?) });
            }
            ServiceName::Delivery => {
                let rt = self.runtime(delivery::NAME, chassis).await?;
                running.spawn(async move { Ok(delivery::run(rt, listener).await?) });
            }
            ServiceName::Mypage => {
                let rt = self.runtime(mypage::NAME, chassis).await?;
                running.spawn(async move { Ok(mypage::run(rt, listener).await?) });
            }
            ServiceName::Gateway => {
                let (chassis, urls, settings) = (
                    chassis.clone(),
                    options.urls.clone(),
                    options.gateway.clone(),
                );
                let shutdown = self.shutdown.clone();
                running.spawn(async move {
                    Ok(gateway::run(chassis, &urls, settings, listener, shutdown).await?)
                });
            }
        }
        Ok(())
    }

    /// Waits for shutdown; a service that fails stops the others too.
    async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut running = self.running.into_inner();
        let mut outcome = Ok(());
        while let Some(finished) = running.join_next().await {
            let result = finished.context("a service panicked").and_then(|r| r);
            if let Err(error) = result {
                tracing::error!(
                    error = format!("{error:#}"),
                    "a service stopped; stopping the shop"
                );
                self.shutdown.cancel();
                outcome = Err(error);
            }
        }
        outcome
    }
}

/// Ctrl-C or SIGTERM starts a graceful shutdown, which may take `deadline` at most
/// before the process exits regardless.
pub async fn cancel_on_signal(shutdown: CancellationToken, deadline: Duration) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests, stopping consumers, draining outboxes");
    shutdown.cancel();
    // A thread, not a task: it must fire even when the runtime is stuck waiting for a
    // blocking call (a broker that stopped answering). Exiting loses nothing: the outbox
    // keeps what was not published, and uncommitted events come again to the inbox.
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        tracing::error!(
            deadline_ms = deadline.as_millis() as u64,
            "shutdown did not finish in time; exiting anyway"
        );
        std::process::exit(1);
    });
}
