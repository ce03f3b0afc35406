//! `mall admin check`: the invariants of DESIGN.md section 6, read from every service's
//! own database (read-only) once the bus is drained. An operator's tool, so it reads the
//! tables directly; no service is asked anything.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use contracts::{
    Envelope,
    events::{ProductAdded, StockAdjusted},
    topics,
};
use sqlx::{SqlitePool, sqlite::SqliteConnectOptions};
use uuid::Uuid;

/// The groups that must have read everything before the invariants mean anything.
const GROUPS: [&str; 6] = ["product", "order", "payment", "delivery", "mypage", "auth"];
const SERVICES: [&str; 6] = ["product", "order", "payment", "delivery", "mypage", "auth"];

async fn open(data_dir: &Path, file: &str) -> anyhow::Result<SqlitePool> {
    let path = data_dir.join(file);
    anyhow::ensure!(
        path.exists(),
        "{} does not exist: is this a shop's data folder?",
        path.display()
    );
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path).read_only(true))
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Events not yet published (outboxes) or not yet handled (consumer groups).
async fn backlog(data_dir: &Path) -> anyhow::Result<i64> {
    let mut waiting = 0;
    for service in SERVICES {
        let db = open(data_dir, &format!("{service}.db")).await?;
        waiting += sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox")
            .fetch_one(&db)
            .await?;
        db.close().await;
    }
    let bus = open_bus(data_dir).await?;
    for group in GROUPS {
        waiting += group_lag(&bus, group).await?;
    }
    bus.close().await;
    Ok(waiting)
}

/// The shop's embedded event log, read-only.
pub async fn open_bus(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    open(data_dir, "bus.db").await
}

/// Events on the topics `group` reads that it has not handled yet.
pub async fn group_lag(bus: &SqlitePool, group: &str) -> anyhow::Result<i64> {
    let behind = sqlx::query_scalar(
        "SELECT COALESCE(SUM(head - COALESCE(o.next_position, 0)), 0) FROM
           (SELECT topic, partition, MAX(position) + 1 AS head FROM log GROUP BY topic, partition) h
         LEFT JOIN group_offsets o ON o.grp = ? AND o.topic = h.topic AND o.partition = h.partition
         WHERE h.topic IN (SELECT DISTINCT topic FROM leases WHERE grp = ?)",
    )
    .bind(group)
    .bind(group)
    .fetch_one(bus)
    .await?;
    Ok(behind)
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

/// Each order's status, from the last status-changing event of its stream.
async fn order_statuses(data_dir: &Path) -> anyhow::Result<HashMap<Uuid, String>> {
    let orders = open(data_dir, "order.db").await?;
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT order_id, event_type FROM order_events
         WHERE event_type NOT IN ('AddressChanged', 'AddressChangeUndone') ORDER BY order_id, version",
    )
    .fetch_all(&orders)
    .await?;
    orders.close().await;
    let status = |event: &str| match event {
        "OrderPlaced" => "PENDING",
        "OrderConfirmed" => "CONFIRMED",
        "OrderRejected" => "REJECTED",
        "OrderCancelled" => "CANCELLED",
        "DeliveryStarted" => "DELIVERING",
        "DeliveryCompleted" => "DELIVERED",
        _ => "UNKNOWN",
    };
    Ok(rows
        .into_iter()
        .map(|(id, event)| (id, status(&event).to_owned()))
        .collect())
}

pub async fn run(data_dir: &Path, wait: Duration) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut waiting = backlog(data_dir).await?;
    while waiting > 0 && started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting = backlog(data_dir).await?;
    }
    println!(
        "bus drained: {} ({waiting} events waiting)",
        if waiting == 0 { "yes" } else { "NO" }
    );
    let mut report = Report { violations: 0 };
    if waiting > 0 {
        report.violations += 1;
    }

    // Stock on hand + reserved + sold = stock ever added (ProductAdded + StockAdjusted).
    let bus = open(data_dir, "bus.db").await?;
    let catalogue_events: Vec<String> =
        sqlx::query_scalar("SELECT envelope FROM log WHERE topic = ?")
            .bind(topics::PRODUCT)
            .fetch_all(&bus)
            .await?;
    bus.close().await;
    let mut ever_added: HashMap<Uuid, i64> = HashMap::new();
    // The log is at least once: an event delivered twice was still one change.
    let mut seen = std::collections::HashSet::new();
    for raw in catalogue_events {
        let envelope: Envelope = serde_json::from_str(&raw)?;
        if !seen.insert(envelope.id) {
            continue;
        }
        if let Ok(added) = envelope.decode::<ProductAdded>() {
            *ever_added.entry(added.product_id).or_default() += i64::from(added.stock);
        } else if let Ok(adjusted) = envelope.decode::<StockAdjusted>() {
            *ever_added.entry(adjusted.product_id).or_default() += adjusted.delta;
        }
    }
    let product = open(data_dir, "product.db").await?;
    let stock: Vec<(Uuid, i64, i64, i64)> =
        sqlx::query_as("SELECT id, available, reserved, sold FROM products")
            .fetch_all(&product)
            .await?;
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

    let statuses = order_statuses(data_dir).await?;
    let reservations: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT order_id, status FROM reservations")
            .fetch_all(&product)
            .await?;
    product.close().await;
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
    let payment = open(data_dir, "payment.db").await?;
    let captured: HashSet<Uuid> =
        sqlx::query_scalar("SELECT order_id FROM payments WHERE status = 'AUTHORIZED'")
            .fetch_all(&payment)
            .await?
            .into_iter()
            .collect();
    let payments: HashMap<Uuid, String> = sqlx::query_as("SELECT order_id, status FROM payments")
        .fetch_all(&payment)
        .await?
        .into_iter()
        .collect();
    payment.close().await;
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
    let delivery = open(data_dir, "delivery.db").await?;
    let deliveries: HashMap<Uuid, String> =
        sqlx::query_as("SELECT order_id, status FROM deliveries")
            .fetch_all(&delivery)
            .await?
            .into_iter()
            .collect();
    delivery.close().await;
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

    // My page equals the owning services.
    let mypage = open(data_dir, "mypage.db").await?;
    let rows: Vec<MyPageRow> = sqlx::query_as(
        "SELECT order_id, order_status, payment_status, delivery_status FROM mypage_orders",
    )
    .fetch_all(&mypage)
    .await?;
    mypage.close().await;
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
