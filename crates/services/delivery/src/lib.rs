//! The delivery service: at most one delivery per order, started when the order is
//! confirmed, completed by an admin. Once started it is the saga's pivot: the customer's
//! cancel or address change is a request that delivery grants or refuses ([`domain`]).

mod api;
mod consumers;
pub mod domain;
mod store;

use std::sync::Arc;

use chassis::{
    ServiceRuntime,
    flows::{Actor, Call, Command, EventRef, Policy, ServiceFlows, Subdomain},
    server, ui,
};
use contracts::events;
use tokio::net::TcpListener;

pub const NAME: &str = "delivery";

/// The service's web components (MVVM: each view with its ViewModel), served under
/// its API path for the gateway's shell to compose.
const UI: &[ui::Asset] = &[
    ("deliveries.js", include_str!("../ui/deliveries.js")),
    ("deliveries-vm.js", include_str!("../ui/deliveries-vm.js")),
];

/// Delivery follows the order: it starts once the order is confirmed.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Supporting,
    aggregate: Some("Delivery"),
    commands: &[Command {
        name: "Complete delivery",
        actor: Actor::Operator,
        trigger: "POST /deliveries/{order_id}/complete",
        emits: &[EventRef::of::<events::DeliveryCompleted>()],
    }],
    policies: &[
        Policy {
            name: "Keep the address",
            on: &[EventRef::of::<events::OrderPlaced>()],
            emits: &[],
        },
        Policy {
            name: "Start delivery",
            on: &[EventRef::of::<events::OrderConfirmed>()],
            emits: &[EventRef::of::<events::DeliveryStarted>()],
        },
        Policy {
            name: "Never start",
            on: &[
                EventRef::of::<events::OrderCancelled>(),
                EventRef::of::<events::OrderRejected>(),
            ],
            emits: &[],
        },
        Policy {
            name: "Call the parcel back unless delivered",
            on: &[EventRef::of::<events::OrderCancellationRequested>()],
            emits: &[
                EventRef::of::<events::DeliveryCancelled>(),
                EventRef::of::<events::DeliveryCancellationRefused>(),
            ],
        },
        Policy {
            name: "Redirect the parcel unless delivered",
            on: &[EventRef::of::<events::OrderAddressChangeRequested>()],
            emits: &[
                EventRef::of::<events::DeliveryAddressChanged>(),
                EventRef::of::<events::DeliveryAddressChangeRefused>(),
            ],
        },
    ],
    read_models: &["Deliveries on their way (GET /deliveries)"],
    calls: &[Call {
        to: "auth",
        route: "GET /auth/jwks",
        why: "keys to verify bearer tokens",
    }],
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the delivery database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Migrates the database, consumes order events and serves the API until shutdown.
pub async fn run(rt: Arc<ServiceRuntime>, listener: TcpListener) -> Result<(), Error> {
    rt.db
        .migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
    rt.consume(&FLOWS, consumers::OrderEvents);
    let router = api::router(rt.clone()).merge(ui::assets("/deliveries/ui", UI));
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}
