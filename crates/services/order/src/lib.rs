//! The order service: orders, event-sourced (DESIGN.md section 7), and their saga.
//!
//! An order is stored only as its events ([`store`]); its state is their fold
//! ([`domain::apply`]). Placing an order asks product for the price over REST, stores
//! `OrderPlaced` with its outbox row in one transaction and answers 202 PENDING; the
//! stock answer from product ([`consumers`]) confirms or rejects it.

mod api;
mod consumers;
mod deadline;
pub mod domain;
mod metrics;
mod store;

use std::{sync::Arc, time::Duration};

use chassis::{
    ServiceRuntime,
    breaker::{BreakerSettings, CircuitBreaker},
    config::ServiceUrls,
    db::{self, Tx},
    flows::{Actor, Call, Command, EventRef, Policy, ServiceFlows, Subdomain},
    server,
    trace::TraceContext,
    ui,
};
use contracts::{Envelope, events, topics};
use tokio::net::TcpListener;

use chassis::outbox;
use uuid::Uuid;

use crate::{
    domain::{Order, OrderCommand, OrderError, OrderEvent, decide},
    metrics::OrderMetrics,
    store::StoreError,
};

pub const NAME: &str = "order";

/// The service's web components (MVVM: each view with its ViewModel), served under
/// its API path for the gateway's shell to compose.
const UI: &[ui::Asset] = &[
    ("order-form.js", include_str!("../ui/order-form.js")),
    ("order.js", include_str!("../ui/order.js")),
    ("order-vm.js", include_str!("../ui/order-vm.js")),
];

/// Order's commands and its part in the saga (DESIGN.md section 6).
pub const FLOWS: ServiceFlows = ServiceFlows {
    service: NAME,
    subdomain: Subdomain::Core,
    aggregate: Some("Order"),
    commands: &[
        Command {
            name: "Place order",
            actor: Actor::Customer,
            trigger: "POST /orders",
            emits: &[EventRef::of::<events::OrderPlaced>()],
        },
        Command {
            name: "Change address",
            actor: Actor::Customer,
            trigger: "PATCH /orders/{id}",
            emits: &[EventRef::of::<events::OrderAddressChangeRequested>()],
        },
        Command {
            name: "Undo last change",
            actor: Actor::Customer,
            trigger: "POST /orders/{id}/undo",
            emits: &[EventRef::of::<events::OrderAddressChangeRequested>()],
        },
        Command {
            name: "Cancel order",
            actor: Actor::Customer,
            trigger: "POST /orders/{id}/cancel",
            emits: &[
                EventRef::of::<events::OrderCancelled>(),
                EventRef::of::<events::OrderCancellationRequested>(),
            ],
        },
        Command {
            name: "Reject silent saga",
            actor: Actor::Clock,
            trigger: "MALL_SAGA_DEADLINE_SECS after placing, still PENDING",
            emits: &[EventRef::of::<events::OrderRejected>()],
        },
    ],
    policies: &[
        Policy {
            name: "Reject order",
            on: &[
                EventRef::of::<events::StockReservationFailed>(),
                EventRef::of::<events::PaymentDeclined>(),
            ],
            emits: &[EventRef::of::<events::OrderRejected>()],
        },
        Policy {
            name: "Confirm order",
            on: &[EventRef::of::<events::PaymentAuthorized>()],
            emits: &[EventRef::of::<events::OrderConfirmed>()],
        },
        Policy {
            name: "Track delivery",
            on: &[
                EventRef::of::<events::DeliveryStarted>(),
                EventRef::of::<events::DeliveryCompleted>(),
            ],
            emits: &[],
        },
        Policy {
            name: "Cancel when delivery called the parcel back",
            on: &[
                EventRef::of::<events::DeliveryCancelled>(),
                EventRef::of::<events::DeliveryCancellationRefused>(),
            ],
            emits: &[EventRef::of::<events::OrderCancelled>()],
        },
        Policy {
            name: "Change address when delivery redirected",
            on: &[
                EventRef::of::<events::DeliveryAddressChanged>(),
                EventRef::of::<events::DeliveryAddressChangeRefused>(),
            ],
            emits: &[EventRef::of::<events::OrderAddressChanged>()],
        },
    ],
    read_models: &["Order and its history (GET /orders/{id}, /orders/{id}/history)"],
    calls: &[
        Call {
            to: "product",
            route: "GET /products/{id}",
            why: "the price at the time of ordering",
        },
        Call {
            to: "auth",
            route: "GET /auth/jwks",
            why: "keys to verify bearer tokens",
        },
    ],
};

#[derive(clap::Args, Debug, Clone)]
pub struct OrderSettings {
    /// A saga with no answer this long after the order was placed is rejected and
    /// compensated.
    #[arg(long, env = "MALL_SAGA_DEADLINE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub saga_deadline_secs: u64,

    /// How long one attempt to ask product for a price may take.
    #[arg(long, env = "MALL_PRODUCT_TIMEOUT_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub product_timeout_ms: u64,

    /// Further attempts after a failed one to ask product for a price (an idempotent GET).
    #[arg(long, env = "MALL_PRODUCT_RETRIES", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=5))]
    pub product_retries: u32,

    #[command(flatten)]
    pub product_breaker: BreakerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the order database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("building the product client failed: {0}")]
    Client(#[from] reqwest::Error),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Migrates the database, then consumes the stock answers and serves the API until
/// shutdown, when it lets the consumers stop and the outbox drain.
pub async fn run(
    rt: Arc<ServiceRuntime>,
    listener: TcpListener,
    urls: &ServiceUrls,
    settings: OrderSettings,
) -> Result<(), Error> {
    rt.db
        .migrate(
            &sqlx::migrate!("./migrations/sqlite"),
            &sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
    let catalogue = api::ProductCatalogue::new(
        urls.product_url.clone(),
        Duration::from_millis(settings.product_timeout_ms),
        rt.settings.client_idle_timeout(),
        settings.product_retries,
        CircuitBreaker::new("product", &settings.product_breaker, &rt.metrics),
    )?;
    let saga = OrderMetrics::new(&rt.metrics);
    rt.consume(&FLOWS, consumers::SagaAnswers { saga: saga.clone() });
    rt.spawn(deadline::reject_silent_sagas(
        rt.clone(),
        saga.clone(),
        Duration::from_secs(settings.saga_deadline_secs),
    ));
    let router = api::router(rt.clone(), catalogue, saga).merge(ui::assets("/orders/ui", UI));
    server::serve(rt.clone(), listener, router).await?;
    rt.stopped().await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Locks the order's stream, loads the order, decides, appends the events and the
/// integration events they cause, and counts them in `saga` once `conn` commits; returns
/// the order as it is now (`None` if there is no such order and nothing to do).
pub(crate) async fn execute(
    conn: &mut Tx,
    order_id: Uuid,
    command: OrderCommand,
    trace: TraceContext,
    cause: Option<&Envelope>,
    saga: &Arc<OrderMetrics>,
) -> Result<Option<Order>, CommandError> {
    db::lock(conn, order_id).await?;
    let (order, _) = store::load(conn, order_id).await?;
    let before = order.as_ref().map(|order| order.status);
    let rejection = match &command {
        OrderCommand::Reject { cause, .. } => Some(*cause),
        _ => None,
    };
    let events = decide(order.as_ref(), command)?;
    if events.is_empty() {
        tracing::info!(%order_id, "late or repeated saga answer ignored");
        return Ok(order);
    }
    let order = store::append(conn, order_id, order, &events).await?;
    if let Some(order) = &order {
        saga.count_on_commit(conn, before, order, rejection);
        for event in &events {
            if let Some(envelope) = integration_event(order, event, trace, cause) {
                outbox::enqueue(conn, topics::ORDER, &envelope).await?;
            }
        }
    }
    Ok(order)
}

/// The integration event other services see for an order event, if they see one.
fn integration_event(
    order: &Order,
    event: &OrderEvent,
    trace: TraceContext,
    cause: Option<&Envelope>,
) -> Option<Envelope> {
    let id = order.order_id;
    let envelope = match event {
        OrderEvent::OrderPlaced { .. } => Envelope::new(
            NAME,
            id,
            &events::OrderPlaced {
                order_id: id,
                customer_id: order.customer_id,
                product_id: order.product_id,
                quantity: order.quantity.units(),
                unit_price: order.unit_price,
                amount: order.amount,
                address: order.address.as_str().to_owned(),
            },
            id,
        ),
        OrderEvent::OrderConfirmed => {
            Envelope::new(NAME, id, &events::OrderConfirmed { order_id: id }, id)
        }
        OrderEvent::OrderRejected { reason } => Envelope::new(
            NAME,
            id,
            &events::OrderRejected {
                order_id: id,
                reason: reason.clone(),
            },
            id,
        ),
        OrderEvent::OrderCancelled => {
            Envelope::new(NAME, id, &events::OrderCancelled { order_id: id }, id)
        }
        OrderEvent::CancellationRequested => Envelope::new(
            NAME,
            id,
            &events::OrderCancellationRequested { order_id: id },
            id,
        ),
        OrderEvent::AddressChangeRequested { address }
        | OrderEvent::AddressChangeUndoRequested { address } => Envelope::new(
            NAME,
            id,
            &events::OrderAddressChangeRequested {
                order_id: id,
                address: address.as_str().to_owned(),
            },
            id,
        ),
        OrderEvent::AddressChanged { address } | OrderEvent::AddressChangeUndone { address } => {
            Envelope::new(
                NAME,
                id,
                &events::OrderAddressChanged {
                    order_id: id,
                    address: address.as_str().to_owned(),
                },
                id,
            )
        }
        // Delivery's steps and refusals are delivery's own events, mirrored here.
        OrderEvent::DeliveryStarted
        | OrderEvent::DeliveryCompleted
        | OrderEvent::RequestRefused { .. } => return None,
    };
    let envelope = match cause {
        Some(cause) => envelope.caused_by(cause),
        None => envelope,
    };
    Some(envelope.with_traceparent(Some(trace.to_string())))
}
