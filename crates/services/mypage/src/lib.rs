//! My page: a CQRS read model of each customer's orders with their payment and delivery,
//! fed only by events (DESIGN.md section 8). It never asks another service anything.

mod api;
pub mod projection;
mod store;

use std::sync::Arc;

use chassis::{
    ServiceRuntime,
    bus::{EventBus, PartitionLag, Record, Subscription},
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

/// Events the replay may be behind the end of the log at most for the rebuild to hold
/// the live table while it reads them and swaps; further behind, it replays a batch and
/// lets the live consumer go on.
const FINAL_CATCH_UP: i64 = 1_000;

/// Replays the whole log into a fresh table and swaps it in, while the page (and its
/// consumer) keep running on the live table. Near the end of the log the rebuild holds the
/// live table, so that the live consumer applies nothing more: every event it applied is
/// then below the ends of the partitions as they are at that moment. The replay reads up
/// to those ends (what comes later is the live consumer's) and swaps, in that one
/// transaction, so it finishes while events keep coming; an event applied by both around
/// the swap is harmless, as the statuses are rank-based. Returns the number of events
/// replayed.
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
        let behind = replay.lag().await?;
        // A Kafka group holds no partitions until its first join is done.
        let near_the_end =
            !behind.is_empty() && behind.iter().map(|p| p.lag).sum::<i64>() <= FINAL_CATCH_UP;
        if near_the_end {
            replayed += replay_up_to(&mut tx, replay.as_mut(), behind).await?;
            store::swap_in_rebuild(&mut tx).await?;
            tx.commit().await?;
            break;
        }
        replayed += replay_batch(&mut tx, replay.as_mut()).await?.len() as u64;
        tx.commit().await?;
    }
    replay.close().await?;
    Ok(replayed)
}

/// Replays until each partition has given the records it was `behind` by. (A Kafka
/// group's lag counts from its last confirmed commit, so it may owe less than that: once
/// nothing comes and the lag is none, it owes nothing.)
async fn replay_up_to(
    conn: &mut Tx,
    replay: &mut dyn Subscription,
    mut behind: Vec<PartitionLag>,
) -> Result<u64, RebuildError> {
    let mut replayed = 0;
    behind.retain(|partition| partition.lag > 0);
    while !behind.is_empty() {
        let records = replay_batch(conn, replay).await?;
        replayed += records.len() as u64;
        for record in &records {
            if let Some(owing) = behind
                .iter_mut()
                .find(|p| p.topic == record.topic && p.partition == record.partition)
            {
                owing.lag -= 1;
            }
        }
        behind.retain(|partition| partition.lag > 0);
        if records.is_empty() && caught_up(replay).await? {
            break;
        }
    }
    Ok(replayed)
}

/// Whether the replay holds its partitions and has read all of them to the end.
async fn caught_up(replay: &mut dyn Subscription) -> Result<bool, RebuildError> {
    let lag = replay.lag().await?;
    Ok(!lag.is_empty() && lag.iter().all(|partition| partition.lag == 0))
}

/// Replays the next records into the rebuild table; returns them.
async fn replay_batch(
    conn: &mut Tx,
    replay: &mut dyn Subscription,
) -> Result<Vec<Record>, RebuildError> {
    let records = replay
        .next_batch(1_000, std::time::Duration::from_millis(50))
        .await?;
    for record in &records {
        for change in projection::changes(&record.envelope)? {
            store::apply(conn, store::REBUILD, &change).await?;
        }
    }
    replay.commit(&records).await?;
    Ok(records)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chassis::{
        bus::OutgoingEvent,
        config::{BusLocation, DatabaseLocation, Durability},
        db::PoolSettings,
    };
    use contracts::{Envelope, topics};
    use uuid::Uuid;

    use super::*;

    fn placed(customer_id: Uuid) -> OutgoingEvent {
        let order_id = Uuid::now_v7();
        let placed = events::OrderPlaced {
            order_id,
            customer_id,
            product_id: Uuid::now_v7(),
            quantity: 1,
            unit_price: 1_000,
            amount: 1_000,
            address: "1 Teheran-ro, Seoul".into(),
        };
        OutgoingEvent {
            topic: topics::ORDER.into(),
            envelope: Envelope::new("order", order_id, &placed, order_id),
        }
    }

    #[tokio::test]
    async fn a_rebuild_finishes_while_events_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let pool = PoolSettings {
            max_connections: 2,
            durability: Durability::Normal,
        };
        let db = Database::open(&DatabaseLocation::Embedded, dir.path(), NAME, pool)
            .await
            .unwrap();
        db.migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await
        .unwrap();
        let bus = chassis::bus::connect(
            &BusLocation::Embedded,
            dir.path(),
            Durability::Normal,
            4,
            Duration::from_secs(45),
        )
        .await
        .unwrap();
        let customer = Uuid::now_v7();
        bus.publish((0..100).map(|_| placed(customer)).collect())
            .await
            .unwrap();

        // Another customer orders every few milliseconds, so the log is never quiet.
        let publisher = tokio::spawn({
            let bus = bus.clone();
            let other_customer = Uuid::now_v7();
            async move {
                loop {
                    bus.publish(vec![placed(other_customer)]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let rebuilt =
            tokio::time::timeout(Duration::from_secs(10), rebuild(&db, bus.as_ref())).await;
        publisher.abort();
        let replayed = rebuilt
            .expect("the rebuild finished while events kept coming")
            .unwrap();
        assert!(replayed >= 100, "{replayed}");
        assert_eq!(store::orders_of(&db, customer).await.unwrap().len(), 100);
    }
}
