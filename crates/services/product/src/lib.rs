//! The product service: the catalogue, prices, and stock with reservations.
//!
//! It answers `OrderPlaced` with `StockReserved` or `StockReservationFailed`, and never
//! oversells: every stock change happens in a transaction that holds the database's
//! write lock, through the pure rules in [`domain`], with CHECK constraints behind them.

pub mod api;
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
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

pub const NAME: &str = "product";

/// The service's web components (MVVM: each view with its ViewModel), served under
/// its API path for the gateway's shell to compose.
const UI: &[ui::Asset] = &[
    ("catalogue.js", include_str!("../ui/catalogue.js")),
    ("catalogue-vm.js", include_str!("../ui/catalogue-vm.js")),
    ("product.js", include_str!("../ui/product.js")),
    ("admin.js", include_str!("../ui/admin.js")),
    ("admin-vm.js", include_str!("../ui/admin-vm.js")),
];

/// The catalogue's commands and stock's part in the saga.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Core,
    aggregate: Some("Product stock"),
    commands: &[
        Command {
            name: "Add product",
            actor: Actor::Operator,
            trigger: "POST /products",
            emits: &[EventRef::of::<events::ProductAdded>()],
        },
        Command {
            name: "Adjust stock",
            actor: Actor::Operator,
            trigger: "POST /products/{id}/stock",
            emits: &[EventRef::of::<events::StockAdjusted>()],
        },
    ],
    policies: &[
        Policy {
            name: "Reserve stock",
            on: &[EventRef::of::<events::OrderPlaced>()],
            emits: &[
                EventRef::of::<events::StockReserved>(),
                EventRef::of::<events::StockReservationFailed>(),
            ],
        },
        Policy {
            name: "Count reserved units as sold",
            on: &[EventRef::of::<events::OrderConfirmed>()],
            emits: &[],
        },
        Policy {
            name: "Release stock",
            on: &[
                EventRef::of::<events::OrderRejected>(),
                EventRef::of::<events::OrderCancelled>(),
            ],
            emits: &[EventRef::of::<events::StockReleased>()],
        },
    ],
    read_models: &["Catalogue with stock (GET /products, /products/{id})"],
    calls: &[Call {
        to: "auth",
        route: "GET /auth/jwks",
        why: "keys to verify bearer tokens",
    }],
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the product database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("seeding the demo catalogue failed: {0}")]
    Seed(#[from] api::ApiError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Migrates the database, optionally seeds the demo catalogue, then consumes order
/// events and serves the API until shutdown, when it lets the consumers stop and the
/// outbox drain.
pub async fn run(
    rt: Arc<ServiceRuntime>,
    listener: TcpListener,
    seed_demo: bool,
) -> Result<(), Error> {
    rt.db
        .migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
    if seed_demo {
        seed_demo_catalogue(&rt).await?;
    }
    let stock_outs = Counter::default();
    rt.metrics.register(
        "stock_outs",
        "Stock reservations for an order refused for too few units on hand",
        stock_outs.clone(),
    );
    rt.consume(&FLOWS, consumers::OrderEvents { stock_outs });
    let router = api::router(rt.clone()).merge(ui::assets("/products/ui", UI));
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}

/// A few products so that a new shop has something to sell; only into an empty catalogue.
async fn seed_demo_catalogue(rt: &ServiceRuntime) -> Result<(), api::ApiError> {
    if store::count_products(&rt.db).await? > 0 {
        return Ok(());
    }
    let demo = [
        (
            "Wireless earbuds",
            "Noise cancelling, 24 h battery",
            89_000,
            50,
        ),
        (
            "Mechanical keyboard",
            "Hot-swappable switches, Korean layout",
            129_000,
            30,
        ),
        ("Ceramic mug", "350 ml, dishwasher safe", 12_000, 200),
        ("Running shoes", "Lightweight, breathable mesh", 99_000, 40),
        ("Green tea, Jeju", "Loose leaf, 100 g", 18_000, 120),
        ("Backpack", "20 L, water resistant", 59_000, 25),
    ];
    for (name, description, price, stock) in demo {
        api::create_product(
            rt,
            api::NewProduct {
                name: name.into(),
                description: description.into(),
                price,
                stock,
            },
            None,
        )
        .await?;
    }
    tracing::info!(products = demo.len(), "demo catalogue seeded");
    Ok(())
}
