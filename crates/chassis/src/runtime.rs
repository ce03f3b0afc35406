//! What a running service holds: its settings, database, bus, metrics, outbox relay and
//! consumers, and the shutdown signal they all obey.

use std::{path::Path, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    bus::EventBus,
    config::ChassisSettings,
    consumer::{self, EventHandler},
    db::Database,
    inbox,
    outbox::{self, OutboxSignal},
    server::Service,
    telemetry::Metrics,
};

pub struct ServiceRuntime {
    pub name: &'static str,
    pub settings: ChassisSettings,
    pub db: Database,
    pub bus: Arc<dyn EventBus>,
    pub metrics: Arc<Metrics>,
    pub outbox: OutboxSignal,
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ServiceRuntime {
    /// Opens the service's database (with the outbox and inbox tables) and starts its
    /// outbox relay.
    pub async fn start(
        name: &'static str,
        settings: ChassisSettings,
        database: &Path,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let db = Database::open(database, settings.sqlite_synchronous, 8).await?;
        sqlx::raw_sql(outbox::SCHEMA).execute(db.writer()).await?;
        sqlx::raw_sql(inbox::SCHEMA).execute(db.writer()).await?;
        let rt = Arc::new(ServiceRuntime {
            name,
            settings,
            db,
            bus,
            metrics: Arc::new(Metrics::new(name)),
            outbox: OutboxSignal::default(),
            shutdown,
            tasks: TaskTracker::new(),
        });
        rt.tasks.spawn(outbox::relay(
            rt.db.clone(),
            rt.bus.clone(),
            rt.outbox.clone(),
            rt.metrics.clone(),
            rt.shutdown.clone(),
        ));
        Ok(rt)
    }

    /// Runs `handler` for `topics` as consumer group `<service>` until shutdown.
    pub fn consume<H: EventHandler>(self: &Arc<Self>, topics: &[&'static str], handler: H) {
        self.tasks.spawn(consumer::run(
            self.clone(),
            self.name.to_owned(),
            topics.to_vec(),
            handler,
        ));
    }

    /// Waits for the relay (which flushes the outbox last) and the consumers to stop.
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.db.close().await;
    }
}

impl Service for ServiceRuntime {
    fn name(&self) -> &'static str {
        self.name
    }

    fn settings(&self) -> &ChassisSettings {
        &self.settings
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    async fn ready(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(self.db.reader())
            .await
            .map_err(|error| format!("database: {error}"))?;
        self.bus
            .ping()
            .await
            .map_err(|error| format!("event bus: {error}"))
    }
}
