//! What a running service holds: its settings, database, bus, metrics, outbox relay and
//! consumers, and the shutdown signal they all obey.

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::TokenVerifier,
    bus::EventBus,
    collectors::PoolCollector,
    config::ChassisSettings,
    consumer::{self, EventHandler},
    db::{self, Database, OpenError, Tx},
    dead_letters,
    faults::{FaultError, Faults},
    flows::ServiceFlows,
    inbox,
    outbox::{self, OutboxSignal},
    server::Service,
    spans::{Tracer, TracingError},
    storage::StorageHealth,
    telemetry::Metrics,
};

/// How long a stopping service waits for its last spans to be exported.
pub const SPAN_FLUSH: Duration = Duration::from_secs(2);

pub struct ServiceRuntime {
    pub name: &'static str,
    pub settings: ChassisSettings,
    pub db: Database,
    pub bus: Arc<dyn EventBus>,
    pub metrics: Arc<Metrics>,
    pub outbox: OutboxSignal,
    pub shutdown: CancellationToken,
    pub verifier: Arc<TokenVerifier>,
    pub faults: Faults,
    /// Told when this process adds or replays a dead letter, so its gauge follows at once.
    dead_letters_changed: watch::Sender<()>,
    pub tracer: Tracer,
    tasks: TaskTracker,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Faults(#[from] FaultError),
    #[error(transparent)]
    Tracing(#[from] TracingError),
}

impl ServiceRuntime {
    /// Opens the service's database (with the outbox and inbox tables) and starts its
    /// outbox relay.
    pub async fn start(
        name: &'static str,
        settings: ChassisSettings,
        data_dir: &Path,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let faults = Faults::parse(&settings.faults, name, settings.environment())?;
        let db = open_service_database(name, &settings, data_dir).await?;
        let metrics = Metrics::new(name);
        metrics.register_failed_commits(db.health().failed_commits());
        metrics.register_collector(PoolCollector(db.clone()));
        let tracer = Tracer::new(name, &settings.tracing, &settings.instance_id, &metrics)?;
        let rt = Arc::new(ServiceRuntime {
            name,
            db,
            bus,
            metrics: Arc::new(metrics),
            outbox: OutboxSignal::default(),
            verifier: Arc::new(TokenVerifier::new(settings.tokens.clone())),
            faults,
            tracer,
            settings,
            shutdown,
            dead_letters_changed: watch::Sender::new(()),
            tasks: TaskTracker::new(),
        });
        rt.tasks.spawn(outbox::relay(
            rt.db.clone(),
            rt.bus.clone(),
            rt.outbox.clone(),
            rt.metrics.clone(),
            rt.faults.clone(),
            rt.tracer.clone(),
            rt.shutdown.clone(),
        ));
        Ok(rt)
    }

    /// Runs `handler` as consumer group `<service>` until shutdown, on the topics of the
    /// service's declared policies and for the event types they name.
    pub fn consume<H: EventHandler>(self: &Arc<Self>, flows: &'static ServiceFlows, handler: H) {
        self.tasks.spawn(consumer::run(
            self.clone(),
            self.name.to_owned(),
            flows,
            handler,
        ));
        self.tasks.spawn(dead_letters::count(
            self.db.clone(),
            self.name.to_owned(),
            self.metrics.clone(),
            self.dead_letters_changed.subscribe(),
            self.shutdown.clone(),
        ));
    }

    /// Tells the dead-letter gauge that this process added or replayed a dead letter.
    pub(crate) fn dead_letters_changed(&self) {
        self.dead_letters_changed.send_replace(());
    }

    /// Commits a write transaction and tells the relay its outbox rows are there, so the
    /// events it caused go out at once rather than at the relay's next idle check.
    pub async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// Runs a background task of the service, waited for at shutdown.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits for the relay (which flushes the outbox last) and the consumers to stop, then
    /// sends the spans still queued for export.
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.db.close().await;
        self.tracer.shutdown(SPAN_FLUSH).await;
    }
}

/// Service `name`'s database, where `settings` put it, with the outbox, inbox and dead
/// letter tables: for the service, and for tools that change a service's data while it
/// is stopped or running (its relay publishes what they leave).
pub async fn open_service_database(
    name: &str,
    settings: &ChassisSettings,
    data_dir: &Path,
) -> Result<Database, StartError> {
    let db = Database::open(&settings.db, data_dir, name, settings.pool()).await?;
    let schemas = [
        outbox::SCHEMA,
        inbox::SCHEMA,
        dead_letters::SCHEMA,
        db::WRITE_PROBE_SCHEMA,
    ];
    for (sqlite, postgres) in schemas {
        db.apply_schema(sqlite, postgres).await?;
    }
    Ok(db)
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

    fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn storage(&self) -> Option<&StorageHealth> {
        Some(self.db.health())
    }

    /// Ready when the database answers, takes writes, and the bus answers. While the
    /// storage fails, each check tries one write, so that readiness recovers with it even
    /// when no traffic comes (an orchestrator sends none to a service that is not ready).
    async fn ready(&self) -> Result<(), String> {
        if let Some(failing) = self.db.health().failing()
            && self.db.probe_write().await.is_err()
        {
            return Err(failing);
        }
        let mut conn = self
            .db
            .read()
            .await
            .map_err(|error| format!("database: {error}"))?;
        crate::on_conn!(&mut conn, c => sqlx::query("SELECT 1").execute(c).await.map(drop))
            .map_err(|error| format!("database: {error}"))?;
        self.bus
            .ping()
            .await
            .map_err(|error| format!("event bus: {error}"))
    }
}
