//! The metrics an operator's alerts and dashboards read: business (orders, the saga,
//! payments, stock-outs), bus (handler time), database pools and the process. Each
//! counter must move by exactly what happened, and a redelivered event must not move it.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    time::{Duration, Instant},
};

use contracts::{
    Envelope, Event,
    events::{
        DeliveryCancelled, DeliveryStarted, OrderCancelled, OrderPlaced, PaymentAuthorized,
        PaymentDeclined, StockReservationFailed, StockReserved,
    },
};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{Shop, sum_of_series},
    saga::eventually,
};

const ORDER: u16 = 1;
const PRODUCT: u16 = 3;
const PAYMENT: u16 = 4;

const REJECTED: &str = "mall_orders_rejected_total";
const SAGAS: &str = "mall_saga_duration_seconds_count";
const PAYMENTS: &str = "mall_payments_total";

/// The series the saga moves: (port offset, name, labels).
const SAGA_SERIES: [(u16, &str, &[&str]); 12] = [
    (ORDER, "mall_orders_placed_total", &[]),
    (ORDER, "mall_orders_confirmed_total", &[]),
    (ORDER, REJECTED, &["reason=\"out_of_stock\""]),
    (ORDER, REJECTED, &["reason=\"payment_declined\""]),
    (ORDER, REJECTED, &["reason=\"deadline\""]),
    (ORDER, "mall_orders_cancelled_total", &[]),
    (ORDER, SAGAS, &["until=\"confirmed\""]),
    (ORDER, SAGAS, &["until=\"final\""]),
    (PAYMENT, PAYMENTS, &["outcome=\"authorized\""]),
    (PAYMENT, PAYMENTS, &["outcome=\"declined\""]),
    (PAYMENT, PAYMENTS, &["outcome=\"refunded\""]),
    (PRODUCT, "mall_stock_outs_total", &[]),
];

/// Every series of [`SAGA_SERIES`], now. Each must be there from the start: an alert
/// needs a series to read before the first rejection of a kind.
pub async fn saga_series(shop: &Shop) -> Vec<f64> {
    let mut texts = BTreeMap::new();
    for (port, _, _) in SAGA_SERIES {
        if let Entry::Vacant(entry) = texts.entry(port) {
            entry.insert(shop.metrics_text(port).await);
        }
    }
    SAGA_SERIES
        .iter()
        .map(|(port, name, labels)| {
            sum_of_series(&texts[port], name, labels)
                .unwrap_or_else(|| panic!("no {name} {labels:?} on port offset {port}"))
        })
        .collect()
}

/// Waits until each series of [`SAGA_SERIES`] is `before` plus its `moved`, and returns
/// them; fails at once when one goes past it (counted twice), or when they do not get
/// there in 20 s.
pub async fn saga_series_moved(shop: &Shop, before: &[f64], moved: [f64; 12]) -> Vec<f64> {
    let expected: Vec<f64> = before.iter().zip(moved).map(|(b, m)| b + m).collect();
    let started = Instant::now();
    loop {
        let now = saga_series(shop).await;
        let names = SAGA_SERIES.iter().map(|(_, name, labels)| (name, labels));
        for ((series, now), expected) in names.clone().zip(&now).zip(&expected) {
            assert!(now <= expected, "{series:?} is {now}, past {expected}");
        }
        if now == expected {
            return expected;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            names.zip(now.iter().zip(&expected)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first event of type `E` about `order_id`, with its topic.
async fn event_about<E: Event>(shop: &Shop, order_id: &str) -> (&'static str, Envelope) {
    let envelope = shop
        .events_on(E::TOPIC)
        .await
        .into_iter()
        .find(|envelope| envelope.is::<E>() && envelope.subject == order_id)
        .unwrap_or_else(|| panic!("no {} about {order_id}", std::any::type_name::<E>()));
    (E::TOPIC, envelope)
}

/// Events `group` took with `outcome` (any outcome when it is empty), over all topics.
async fn consumed(shop: &Shop, port_offset: u16, group: &str, outcome: &str) -> f64 {
    let group = format!("group=\"{group}\"");
    let outcome = format!("outcome=\"{outcome}");
    shop.metric_or_zero(
        port_offset,
        "mall_events_consumed_total",
        &[&group, &outcome],
    )
    .await
}

#[tokio::test]
async fn each_order_is_counted_once_by_how_its_saga_ended_and_a_redelivery_counts_nothing() {
    let shop = Shop::start().await;
    let before = saga_series(&shop).await;
    let plenty = shop.add_product(10_000, 10).await;
    let scarce = shop.add_product(10_000, 1).await;
    // The simulated provider declines amounts ending in 402.
    let declining = shop.add_product(10_402, 10).await;

    let confirmed = shop.place_order(&plenty, 1).await;
    let out_of_stock = shop.place_order(&scarce, 2).await;
    let declined = shop.place_order(&declining, 1).await;
    let cancelled = shop.place_order(&plenty, 1).await;
    for (order_id, status) in [
        (&confirmed, "DELIVERING"),
        (&out_of_stock, "REJECTED"),
        (&declined, "REJECTED"),
        (&cancelled, "DELIVERING"),
    ] {
        assert_eq!(shop.final_order(order_id).await["status"], status);
    }
    let path = format!("/api/orders/{cancelled}/cancel");
    let cancel = shop.post_as(&shop.token, &path, &json!({})).await;
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    eventually("the cancelled order", "CANCELLED", || async {
        shop.order(&cancelled).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .await;

    // Placed 4; confirmed 2, each timed to its confirmation; rejected 1 for want of stock
    // and 1 declined; cancelled 1, after its saga ended (delivering). The saga ended for
    // all 4: delivering, rejected, rejected, delivering. Charged 2 (one refunded by the
    // cancel), declined 1; one stock-out.
    let moved = [4., 2., 1., 1., 0., 1., 2., 4., 2., 1., 1., 1.];
    let after = saga_series_moved(&shop, &before, moved).await;
    let took = |until: &'static str, part: &'static str| {
        let shop = &shop;
        async move {
            let label = format!("until=\"{until}\"");
            let name = format!("mall_saga_duration_seconds_{part}");
            shop.metric(ORDER, &name, &[&label]).await
        }
    };
    for until in ["confirmed", "final"] {
        let (sum, count) = (took(until, "sum").await, took(until, "count").await);
        assert!(
            sum > 0.0 && sum < count * 30.0,
            "{until}: {sum} s over {count}"
        );
        let all = shop
            .metric(
                ORDER,
                "mall_saga_duration_seconds_bucket",
                &[&format!("until=\"{until}\""), "le=\"+Inf\""],
            )
            .await;
        assert_eq!(all, count, "{until}: every saga in a bucket");
    }

    // Every answer each counting service took, delivered again: each inbox skips it and
    // no counter moves. The cancel goes to product and payment (both read the order
    // topic), the others each to one of the three.
    let again = [
        event_about::<PaymentAuthorized>(&shop, &confirmed).await,
        event_about::<StockReservationFailed>(&shop, &out_of_stock).await,
        event_about::<PaymentDeclined>(&shop, &declined).await,
        event_about::<DeliveryStarted>(&shop, &confirmed).await,
        event_about::<DeliveryCancelled>(&shop, &cancelled).await,
        event_about::<OrderPlaced>(&shop, &out_of_stock).await,
        event_about::<StockReserved>(&shop, &declined).await,
        event_about::<OrderCancelled>(&shop, &cancelled).await,
    ];
    let redelivered = [5.0, 2.0, 2.0];
    let groups = [(ORDER, "order"), (PRODUCT, "product"), (PAYMENT, "payment")];
    let mut skipped = Vec::new();
    for (port, group) in groups {
        skipped.push(consumed(&shop, port, group, "duplicate").await);
    }
    let answers = [
        "payment.payment.v1\"",
        "group=\"order\"",
        "outcome=\"handled\"",
    ];
    let answers_handled = shop
        .metric(ORDER, "mall_events_consumed_total", &answers)
        .await;
    for (topic, envelope) in &again {
        shop.inject(topic, envelope).await;
    }
    // And a second PaymentAuthorized for the confirmed order under a new id: not a
    // duplicate to the inbox, a late answer to the order, which changes nothing.
    let authorized: PaymentAuthorized = again[0].1.decode().unwrap();
    let late = Envelope::new("payment", &confirmed, &authorized, authorized.order_id);
    shop.inject(PaymentAuthorized::TOPIC, &late).await;
    // A skipped event is counted once its transaction committed and what waited for the
    // commit ran: when all are counted, a second count of any would show.
    for (((port, group), skipped), redelivered) in groups.iter().zip(skipped).zip(redelivered) {
        let expected = (skipped + redelivered).to_string();
        eventually(&format!("{group}'s skipped events"), &expected, || {
            let shop = &shop;
            async move { consumed(shop, *port, group, "duplicate").await.to_string() }
        })
        .await;
    }
    let expected = (answers_handled + 1.0).to_string();
    eventually("the late answer", &expected, || async {
        shop.metric(ORDER, "mall_events_consumed_total", &answers)
            .await
            .to_string()
    })
    .await;
    assert_eq!(saga_series(&shop).await, after, "{SAGA_SERIES:?}");

    // The handler's time is taken for every event a handler applied.
    for (port, group) in groups {
        let group = format!("group=\"{group}\"");
        let handled = shop
            .metric(
                port,
                "mall_events_consumed_total",
                &[&group, "outcome=\"handled\""],
            )
            .await;
        let timed = shop
            .metric(port, "mall_event_handler_duration_seconds_count", &[&group])
            .await;
        assert_eq!(timed, handled, "{group}");
    }
}

#[tokio::test]
async fn every_service_shows_its_database_pools_and_its_process() {
    let shop = Shop::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (pools, max): (&[&str], &[f64]) = if shop.on_postgres() {
        (&["read_write"], &[8.0])
    } else {
        // SQLite: `MALL_DB_MAX_CONNECTIONS` (8) readers and one writer.
        (&["read", "write"], &[8.0, 1.0])
    };
    let mut start_times = Vec::new();
    for port in 0..=6 {
        let text = shop.metrics_text(port).await;
        let series = |name: &str, labels: &[&str]| {
            sum_of_series(&text, name, labels)
                .unwrap_or_else(|| panic!("no {name} {labels:?} on port offset {port}:\n{text}"))
        };
        let resident = series("mall_process_resident_memory_bytes", &[]);
        assert!(resident > 1e6, "{port}: {resident} bytes resident");
        let open = series("mall_process_open_fds", &[]);
        assert!(open > 3.0, "{port}: {open} descriptors");
        let cpu = series("mall_process_cpu_seconds_total", &[]);
        assert!(cpu > 0.0 && cpu < 3_600.0, "{port}: {cpu} s of CPU");
        let started = series("mall_process_start_time_seconds", &[]);
        assert!(started <= now && started > now - 600.0, "{port}: {started}");
        start_times.push(started);

        if port == 0 {
            assert_eq!(
                sum_of_series(&text, "mall_db_pool", &[]),
                None,
                "the gateway has no database"
            );
            continue;
        }
        let mut open_connections = 0.0;
        for (pool, max) in pools.iter().zip(max) {
            let pool = format!("pool=\"{pool}\"");
            let in_use = series("mall_db_pool_connections", &[&pool, "state=\"in_use\""]);
            let idle = series("mall_db_pool_connections", &[&pool, "state=\"idle\""]);
            assert_eq!(series("mall_db_pool_max_connections", &[&pool]), *max);
            assert!(
                in_use >= 0.0 && idle >= 0.0 && in_use + idle <= *max,
                "{port} {pool}"
            );
            open_connections += in_use + idle;
        }
        assert!(
            open_connections >= 1.0,
            "{port}: the service has used its database"
        );
        // Every service with a consumer group counts its dead letters; auth has none.
        let dead_letters = sum_of_series(&text, "mall_dead_letters", &[]);
        assert_eq!(dead_letters, (port != 6).then_some(0.0), "{port}");
    }
    start_times.dedup();
    assert_eq!(
        start_times.len(),
        1,
        "`mall up` is one process: {start_times:?}"
    );
}
