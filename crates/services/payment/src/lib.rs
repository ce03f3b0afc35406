//! The payment service: charges an order once its stock is reserved and refunds it when
//! it is cancelled, against a SIMULATED payment provider ([`provider`]); never charges
//! one order twice (one row per order, and the inbox).

mod consumers;
mod metrics;
pub mod provider;
mod store;

use std::{sync::Arc, time::Duration};

use chassis::{
    ServiceRuntime, dead_letters,
    flows::{Call, EventRef, Policy, ServiceFlows, Subdomain},
    openapi, server,
};
use contracts::events;
use tokio::net::TcpListener;

pub const NAME: &str = "payment";

/// Payment has no API of its own: it charges and refunds in reaction to the saga.
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Generic,
    aggregate: Some("Payment"),
    commands: &[],
    policies: &[
        Policy {
            name: "Charge the customer",
            on: &[EventRef::of::<events::StockReserved>()],
            emits: &[
                EventRef::of::<events::PaymentAuthorized>(),
                EventRef::of::<events::PaymentDeclined>(),
            ],
        },
        Policy {
            name: "Refund",
            on: &[
                EventRef::of::<events::OrderCancelled>(),
                EventRef::of::<events::OrderRejected>(),
            ],
            emits: &[EventRef::of::<events::PaymentRefunded>()],
        },
    ],
    read_models: &[],
    calls: &[Call {
        to: "payment provider",
        route: "authorize(amount)",
        why: "charge the card (simulated in-process, see provider.rs)",
    }],
};

#[derive(clap::Args, Debug, Clone)]
pub struct PaymentSettings {
    /// The simulated provider declines amounts above this, in KRW.
    #[arg(
        long = "payment-limit-krw",
        env = "MALL_PAYMENT_LIMIT_KRW",
        default_value_t = 5_000_000
    )]
    pub limit_krw: u64,

    /// The simulated provider's answer time, in milliseconds.
    #[arg(long = "payment-latency-ms", env = "MALL_PAYMENT_LATENCY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub latency_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the payment database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Migrates the database, consumes the saga's events and serves health and metrics until
/// shutdown.
pub async fn run(
    rt: Arc<ServiceRuntime>,
    listener: TcpListener,
    settings: PaymentSettings,
) -> Result<(), Error> {
    rt.db
        .migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
    rt.consume(
        &FLOWS,
        consumers::Charges {
            limit: settings.limit_krw,
            latency: Duration::from_millis(settings.latency_ms),
            metrics: metrics::PaymentMetrics::new(&rt.metrics),
        },
    );
    let (router, document) = dead_letters::routes(rt.clone()).split_for_parts();
    let router = openapi::serve_document(router, document);
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}
