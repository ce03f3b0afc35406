//! My page: a CQRS read model of each customer's orders with their payment and delivery,
//! fed only by events (DESIGN.md section 8). It never asks another service anything.

mod api;
pub mod projection;
mod store;

use std::sync::Arc;

use chassis::{
    ServiceRuntime,
    bus::{EventBus, Subscription},
    consumer::{Delivery, EventHandler, HandlerError},
    db::{Database, Tx},
    flows::{Call, EventRef, Policy, ServiceFlows, Subdomain},
    server, ui,
};
use contracts::events;
use tokio::net::TcpListener;

pub const NAME: &str = "mypage";

/// The service's web components (MVVM: each view with its ViewModel), served under
/// its API path for the gateway's shell to compose.
const UI: &[ui::Asset] = &[
    ("mypage.js", include_str!("../ui/mypage.js")),
    ("mypage-vm.js", include_str!("../ui/mypage-vm.js")),
];

/// My page is only a projection: it reads the saga's events and answers queries.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Supporting,
    aggregate: None,
    commands: &[],
    policies: &[Policy {
        name: "Project my page",
        on: &[
            EventRef::of::<events::OrderPlaced>(),
            EventRef::of::<events::OrderConfirmed>(),
            EventRef::of::<events::OrderRejected>(),
            EventRef::of::<events::OrderCancelled>(),
            EventRef::of::<events::OrderCancellationRequested>(),
            EventRef::of::<events::PaymentAuthorized>(),
            EventRef::of::<events::PaymentDeclined>(),
            EventRef::of::<events::PaymentRefunded>(),
            EventRef::of::<events::DeliveryStarted>(),
            EventRef::of::<events::DeliveryCompleted>(),
            EventRef::of::<events::DeliveryCancelled>(),
            EventRef::of::<events::DeliveryCancellationRefused>(),
        ],
        emits: &[],
    }],
    read_models: &["My page: my orders with payment and delivery (GET /mypage)"],
    calls: &[Call {
        to: "auth",
        route: "GET /auth/jwks",
        why: "keys to verify bearer tokens",
    }],
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the mypage database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

struct Projection;

impl EventHandler for Projection {
    async fn handle(&self, conn: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
        for change in projection::changes(delivery.envelope)? {
            store::apply(conn, store::LIVE, &change).await?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Bus(#[from] chassis::bus::BusError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] contracts::DecodeError),
}

/// Replays the whole log into a fresh table and swaps it in, while the page (and its
/// consumer) keep running on the live table. The last catch-up and the swap happen in one
/// transaction that keeps the live consumer from writing; an event the live consumer
/// applies around the swap may be applied twice, which the rank-based statuses make
/// harmless. Returns the number of events replayed.
pub async fn rebuild(db: &Database, bus: &dyn EventBus) -> Result<u64, RebuildError> {
    let group = format!("{NAME}-rebuild-{}", uuid::Uuid::now_v7());
    let mut replay = bus.subscribe(&group, &group, &FLOWS.topics()).await?;
    let mut tx = db.begin_write().await?;
    store::create_rebuild_table(&mut tx).await?;
    tx.commit().await?;
    let mut replayed = 0;
    loop {
        let mut tx = db.begin_write().await?;
        store::hold_live_table(&mut tx).await?;
        let events = replay_batch(&mut tx, replay.as_mut()).await?;
        replayed += events;
        if events == 0 && caught_up(replay.as_mut()).await? {
            store::swap_in_rebuild(&mut tx).await?;
            tx.commit().await?;
            break;
        }
        tx.commit().await?;
    }
    replay.close().await?;
    Ok(replayed)
}

/// Whether the replay holds its partitions and has read all of them to the end. (A Kafka
/// group holds none until its first join is done.)
async fn caught_up(replay: &mut dyn Subscription) -> Result<bool, RebuildError> {
    let lag = replay.lag().await?;
    Ok(!lag.is_empty() && lag.iter().all(|partition| partition.lag == 0))
}

async fn replay_batch(conn: &mut Tx, replay: &mut dyn Subscription) -> Result<u64, RebuildError> {
    let records = replay
        .next_batch(1_000, std::time::Duration::from_millis(50))
        .await?;
    for record in &records {
        for change in projection::changes(&record.envelope)? {
            store::apply(conn, store::REBUILD, &change).await?;
        }
    }
    replay.commit(&records).await?;
    Ok(records.len() as u64)
}

/// Migrates the database, projects events and serves the page until shutdown.
pub async fn run(rt: Arc<ServiceRuntime>, listener: TcpListener) -> Result<(), Error> {
    rt.db
        .migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
    rt.consume(&FLOWS, Projection);
    let router = api::router(rt.clone()).merge(ui::assets("/mypage/ui", UI));
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}
