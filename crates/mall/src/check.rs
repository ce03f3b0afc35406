//! `mall admin check`: the invariants of DESIGN.md section 6, read from every service's
//! own database (read-only) once the bus is drained. An operator's tool, so it reads the
//! tables directly; no service is asked anything.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use chassis::{bus::EventBus, config::ChassisSettings, db::Database, flows::ServiceFlows, on_conn};
use contracts::{
    events::{ProductAdded, StockAdjusted},
    topics,
};
use uuid::Uuid;

/// Every service with a database, and what it consumes: all must have read everything
/// before the invariants mean anything.
const SERVICES: [&ServiceFlows; 6] = [
    &product::FLOWS,
    &order::FLOWS,
    &payment::FLOWS,
    &delivery::FLOWS,
    &mypage::FLOWS,
    &auth::FLOWS,
];

/// The shop's databases and bus, as its settings place them.
struct Shop {
    databases: HashMap<&'static str, Database>,
    bus: Arc<dyn EventBus>,
}

impl Shop {
    async fn open(data_dir: &Path, chassis: &ChassisSettings) -> anyhow::Result<Self> {
        let mut databases = HashMap::new();
        for flows in SERVICES {
            let db = crate::shop::service_database(flows.service, data_dir, chassis).await?;
            databases.insert(flows.service, db);
        }
        let bus = crate::shop::connect_bus(data_dir, chassis).await?;
        Ok(Shop { databases, bus })
    }

    fn db(&self, service: &str) -> &Database {
        &self.databases[service]
    }

    /// What is still on its way: events not yet published (outboxes) and not yet
    /// handled (consumer groups), per service that has any.
    async fn backlog(&self) -> anyhow::Result<Vec<Backlog>> {
        let mut backlog = Vec::new();
        for flows in SERVICES {
            let mut conn = self.db(flows.service).read().await?;
            let unpublished = on_conn!(&mut conn, c => sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM outbox",
                )
                .fetch_one(c)
                .await)?;
            let unhandled = group_lag(self.bus.as_ref(), flows.service).await?;
            if unpublished + unhandled > 0 {
                backlog.push(Backlog {
                    service: flows.service,
                    unpublished,
                    unhandled,
                });
            }
        }
        Ok(backlog)
    }

    async fn close(&self) {
        for db in self.databases.values() {
            db.close().await;
        }
    }
}

/// One service's events still on their way.
struct Backlog {
    service: &'static str,
    unpublished: i64,
    unhandled: i64,
}

impl std::fmt::Display for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} unpublished, {} not yet handled",
            self.service, self.unpublished, self.unhandled
        )
    }
}

/// Events on the topics `service` consumes that it has not handled yet.
pub async fn group_lag(bus: &dyn EventBus, service: &str) -> anyhow::Result<i64> {
    let flows = SERVICES
        .iter()
        .find(|flows| flows.service == service)
        .with_context(|| format!("no service {service}"))?;
    Ok(bus.group_backlog(service, &flows.topics()).await?)
}

/// Rows of `sql` in `service`'s database.
macro_rules! rows {
    ($shop:expr, $service:expr, $sql:expr) => {{
        let mut conn = $shop.db($service).read().await?;
        on_conn!(&mut conn, c => sqlx::query_as($sql).fetch_all(c).await)?
    }};
}

/// An order on my page: id, order, payment and delivery status.
type MyPageRow = (Uuid, Option<String>, Option<String>, Option<String>);

struct Report {
    violations: usize,
}

impl Report {
    fn line(&mut self, invariant: &str, checked: usize, broken: &[String]) {
        let verdict = if broken.is_empty() { "ok" } else { "VIOLATED" };
        println!(
            "{verdict:>8}  {invariant} ({checked} checked, {} broken)",
            broken.len()
        );
        for example in broken.iter().take(5) {
            println!("          - {example}");
        }
        self.violations += broken.len();
    }
}

/// What the order streams say, read in one pass.
struct OrderStreams {
    /// Each order's status, from the last status-changing event of its stream.
    statuses: HashMap<Uuid, String>,
    /// Orders that asked delivery something, and those whose last request has no answer.
    requesting: usize,
    unanswered: HashMap<Uuid, String>,
}

async fn order_streams(shop: &Shop) -> anyhow::Result<OrderStreams> {
    let rows: Vec<(Uuid, String)> = rows!(
        shop,
        "order",
        "SELECT order_id, event_type FROM order_events ORDER BY order_id, version"
    );
    let mut streams = OrderStreams {
        statuses: HashMap::new(),
        requesting: 0,
        unanswered: HashMap::new(),
    };
    let mut requesting = HashSet::new();
    for (id, event) in rows {
        let status = match event.as_str() {
            "OrderPlaced" => Some("PENDING"),
            "OrderConfirmed" => Some("CONFIRMED"),
            "OrderRejected" => Some("REJECTED"),
            "OrderCancelled" => Some("CANCELLED"),
            "DeliveryStarted" => Some("DELIVERING"),
            "DeliveryCompleted" => Some("DELIVERED"),
            _ => None,
        };
        if let Some(status) = status {
            streams.statuses.insert(id, status.to_owned());
        }
        match event.as_str() {
            "CancellationRequested" | "AddressChangeRequested" | "AddressChangeUndoRequested" => {
                requesting.insert(id);
                streams.unanswered.insert(id, event);
            }
            "RequestRefused" | "OrderCancelled" | "AddressChanged" | "AddressChangeUndone" => {
                streams.unanswered.remove(&id);
            }
            _ => {}
        }
    }
    streams.requesting = requesting.len();
    Ok(streams)
}

pub async fn run(
    data_dir: &Path,
    chassis: &ChassisSettings,
    wait: Duration,
) -> anyhow::Result<bool> {
    let shop = Shop::open(data_dir, chassis).await?;
    let healthy = check(&shop, wait).await;
    shop.close().await;
    healthy
}

async fn check(shop: &Shop, wait: Duration) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut backlog = shop.backlog().await?;
    while !backlog.is_empty() && started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(100)).await;
        backlog = shop.backlog().await?;
    }
    // Invariants read mid-flight would report orders in transit as broken.
    anyhow::ensure!(
        backlog.is_empty(),
        "cannot check: events are still on their way after {} s ({}). The running shop \
         publishes and handles them: start it if it is stopped, or wait longer (--wait-secs)",
        wait.as_secs(),
        backlog
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("bus drained: yes");
    let mut report = Report { violations: 0 };

    // Stock on hand + reserved + sold = stock ever added (ProductAdded + StockAdjusted).
    let catalogue_events = shop.bus.read_topic(topics::PRODUCT).await?;
    let mut ever_added: HashMap<Uuid, i64> = HashMap::new();
    // The log is at least once: an event delivered twice was still one change.
    let mut seen = std::collections::HashSet::new();
    for envelope in catalogue_events {
        if !seen.insert(envelope.id) {
            continue;
        }
        if let Ok(added) = envelope.decode::<ProductAdded>() {
            *ever_added.entry(added.product_id).or_default() += i64::from(added.stock);
        } else if let Ok(adjusted) = envelope.decode::<StockAdjusted>() {
            *ever_added.entry(adjusted.product_id).or_default() += adjusted.delta;
        }
    }
    let stock: Vec<(Uuid, i64, i64, i64)> = rows!(
        shop,
        "product",
        "SELECT id, available, reserved, sold FROM products"
    );
    let broken: Vec<String> = stock
        .iter()
        .filter(|(id, a, r, s)| ever_added.get(id).copied().unwrap_or(0) != a + r + s)
        .map(|(id, a, r, s)| {
            format!(
                "product {id}: {a} + {r} + {s} != {} added",
                ever_added.get(id).copied().unwrap_or(0)
            )
        })
        .collect();
    report.line(
        "stock on hand + reserved + sold = stock ever added",
        stock.len(),
        &broken,
    );

    // Each product's reserved and sold units are its reservations' (a lost update of two
    // writers of one product keeps the sum above but not this).
    let mut held: HashMap<Uuid, (i64, i64)> = HashMap::new();
    let reservation_rows: Vec<(Uuid, i64, String)> = rows!(
        shop,
        "product",
        "SELECT product_id, quantity, status FROM reservations"
    );
    for (product, quantity, status) in reservation_rows {
        let (reserved, sold) = held.entry(product).or_default();
        match status.as_str() {
            "RESERVED" => *reserved += quantity,
            "SOLD" => *sold += quantity,
            _ => {}
        }
    }
    let broken: Vec<String> = stock
        .iter()
        .filter(|(id, _, r, s)| held.get(id).copied().unwrap_or_default() != (*r, *s))
        .map(|(id, _, r, s)| {
            let (reserved, sold) = held.get(id).copied().unwrap_or_default();
            format!(
                "product {id}: {r} reserved and {s} sold, its reservations {reserved} and {sold}"
            )
        })
        .collect();
    report.line(
        "reserved and sold stock = the reservations' quantities",
        stock.len(),
        &broken,
    );

    let streams = order_streams(shop).await?;
    let statuses = streams.statuses;
    let reservations: Vec<(Uuid, String)> =
        rows!(shop, "product", "SELECT order_id, status FROM reservations");
    let expected_reservation = |status: &str| match status {
        "PENDING" => "RESERVED",
        "CONFIRMED" | "DELIVERING" | "DELIVERED" => "SOLD",
        _ => "RELEASED",
    };
    let broken: Vec<String> = reservations
        .iter()
        .filter(|(id, status)| {
            statuses
                .get(id)
                .is_none_or(|s| expected_reservation(s) != status)
        })
        .map(|(id, status)| format!("order {id} is {:?}, its stock {status}", statuses.get(id)))
        .collect();
    report.line(
        "reserved stock belongs to pending orders, sold stock to confirmed ones",
        reservations.len(),
        &broken,
    );

    // Captured payments = confirmed, not-cancelled orders.
    let payment_rows: Vec<(Uuid, String)> =
        rows!(shop, "payment", "SELECT order_id, status FROM payments");
    let captured: HashSet<Uuid> = payment_rows
        .iter()
        .filter(|(_, status)| status == "AUTHORIZED")
        .map(|(id, _)| *id)
        .collect();
    let payments: HashMap<Uuid, String> = payment_rows.into_iter().collect();
    let confirmed: HashSet<Uuid> = statuses
        .iter()
        .filter(|(_, s)| matches!(s.as_str(), "CONFIRMED" | "DELIVERING" | "DELIVERED"))
        .map(|(id, _)| *id)
        .collect();
    let broken: Vec<String> = captured
        .symmetric_difference(&confirmed)
        .map(|id| {
            format!(
                "order {id} is {:?}, its payment {:?}",
                statuses.get(id),
                payments.get(id)
            )
        })
        .collect();
    report.line(
        "captured payments = confirmed, not-cancelled orders",
        confirmed.len(),
        &broken,
    );

    // At most one delivery per order (the table's key), and only for orders that go out.
    let delivery_rows: Vec<(Uuid, String)> =
        rows!(shop, "delivery", "SELECT order_id, status FROM deliveries");
    let deliveries: HashMap<Uuid, String> = delivery_rows.into_iter().collect();
    let broken: Vec<String> = deliveries
        .iter()
        .filter(|(id, status)| {
            let order = statuses.get(id).map_or("NONE", |s| s.as_str());
            !matches!(
                (status.as_str(), order),
                ("STARTED", "DELIVERING")
                    | ("COMPLETED", "DELIVERED")
                    | ("CANCELLED", "CANCELLED" | "REJECTED")
            )
        })
        .map(|(id, status)| {
            format!(
                "order {id} is {:?}, its delivery {status}",
                statuses.get(id)
            )
        })
        .collect();
    report.line(
        "one delivery per order, in step with the order",
        deliveries.len(),
        &broken,
    );

    // Every request to delivery got its answer: none is left pending once drained.
    let broken: Vec<String> = streams
        .unanswered
        .iter()
        .map(|(id, event)| format!("order {id}: {event} never answered"))
        .collect();
    report.line(
        "every request to delivery is answered",
        streams.requesting,
        &broken,
    );

    // A parcel that reached the customer is never paid back (the race of issue 14).
    let broken: Vec<String> = payments
        .iter()
        .filter(|(id, status)| {
            status.as_str() == "REFUNDED"
                && deliveries.get(*id).map(String::as_str) == Some("COMPLETED")
        })
        .map(|(id, _)| format!("order {id} was delivered and refunded"))
        .collect();
    report.line("no refund of a delivered order", payments.len(), &broken);

    // My page equals the owning services.
    let rows: Vec<MyPageRow> = rows!(
        shop,
        "mypage",
        "SELECT order_id, order_status, payment_status, delivery_status FROM mypage_orders"
    );
    let mut broken = Vec::new();
    for (id, order_status, payment_status, delivery_status) in &rows {
        let payment_expected = payments.get(id).filter(|s| s.as_str() != "CANCELLED");
        let delivery_ok = match deliveries.get(id).map(String::as_str) {
            Some("STARTED" | "COMPLETED") => {
                delivery_status.as_deref() == deliveries.get(id).map(String::as_str)
            }
            Some("CANCELLED") => matches!(delivery_status.as_deref(), None | Some("CANCELLED")),
            _ => delivery_status.is_none(),
        };
        if order_status.as_ref() != statuses.get(id)
            || payment_status.as_ref() != payment_expected
            || !delivery_ok
        {
            broken.push(format!(
                "order {id}: my page {order_status:?}/{payment_status:?}/{delivery_status:?}, services {:?}/{:?}/{:?}",
                statuses.get(id),
                payments.get(id),
                deliveries.get(id)
            ));
        }
    }
    if rows.len() != statuses.len() {
        broken.push(format!(
            "my page has {} orders, order has {}",
            rows.len(),
            statuses.len()
        ));
    }
    report.line("my page equals the owning services", rows.len(), &broken);

    println!("orders by status: {:?}", count_by(statuses.values()));
    Ok(report.violations == 0)
}

fn count_by<'a>(values: impl Iterator<Item = &'a String>) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    counts.sort();
    counts
}
