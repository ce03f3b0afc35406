//! Starting services: all of them in one process (`mall up`) or one (`mall serve`).

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use chassis::{
    ServiceRuntime,
    bus::{EventBus, embedded::EmbeddedLog},
    config::{ChassisSettings, ServiceUrls},
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{Placement, ServiceName};

pub struct ServeOptions {
    pub urls: ServiceUrls,
    pub order: order::OrderSettings,
    pub gateway: gateway::GatewaySettings,
    pub seed_demo: bool,
}

pub async fn up(
    place: Placement,
    base_port: u16,
    chassis: ChassisSettings,
    order: order::OrderSettings,
    gateway: gateway::GatewaySettings,
) -> anyhow::Result<()> {
    let port = |service: ServiceName| {
        base_port
            .checked_add(service.port_offset())
            .context("--base-port leaves no room for the services' ports")
    };
    let url = |service| port(service).map(|p| format!("http://{}", SocketAddr::new(place.bind, p)));
    let options = ServeOptions {
        urls: ServiceUrls {
            product_url: url(ServiceName::Product)?,
            order_url: url(ServiceName::Order)?,
        },
        order,
        gateway,
        seed_demo: true,
    };
    let services = [
        ServiceName::Product,
        ServiceName::Order,
        ServiceName::Gateway,
    ];
    let mut listeners = Vec::new();
    for service in services {
        listeners.push((
            service,
            bind(SocketAddr::new(place.bind, port(service)?)).await?,
        ));
    }
    let shop = Shop::open(&place.data_dir, &chassis).await?;
    for (service, listener) in listeners {
        shop.start(service, listener, &chassis, &options).await?;
    }
    println!(
        "12st mall is open at {}  (catalogue: {0}/api/products; data in {}; Ctrl-C stops it)",
        url(ServiceName::Gateway)?,
        place.data_dir.display()
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
    let listener = bind(SocketAddr::new(place.bind, port)).await?;
    let shop = Shop::open(&place.data_dir, &chassis).await?;
    shop.start(service, listener, &chassis, &options).await?;
    shop.run_until_stopped().await
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}: is another shop running there? (--base-port moves it)")
    })
}

/// Services running in this process, sharing one event log and one shutdown signal.
struct Shop {
    data_dir: std::path::PathBuf,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
    running: tokio::sync::Mutex<JoinSet<anyhow::Result<()>>>,
}

impl Shop {
    async fn open(data_dir: &Path, chassis: &ChassisSettings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
        let bus = EmbeddedLog::open(
            &data_dir.join("bus.db"),
            chassis.sqlite_synchronous,
            chassis.bus_partitions,
        )
        .await
        .context("cannot open the event log")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        Ok(Shop {
            data_dir: data_dir.to_owned(),
            bus: Arc::new(bus),
            shutdown,
            running: Default::default(),
        })
    }

    async fn runtime(
        &self,
        name: &'static str,
        chassis: &ChassisSettings,
    ) -> anyhow::Result<Arc<ServiceRuntime>> {
        let database = self.data_dir.join(format!("{name}.db"));
        ServiceRuntime::start(
            name,
            chassis.clone(),
            &database,
            self.bus.clone(),
            self.shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot open {}", database.display()))
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

/// Ctrl-C or SIGTERM starts a graceful shutdown.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests, stopping consumers, draining outboxes");
    shutdown.cancel();
}
