//! Traces and logs: one order is one trace across every service and the bus, received over
//! OTLP by a real gRPC receiver; a receiver that is down or hangs costs the shop nothing;
//! each service keeps its recent spans for `/debug/traces`; log lines are Cloud Logging's.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{NO_RATE_LIMITS, Needs, Shop, free_ports, skipped};

const SERVICES: [&str; 6] = [
    "gateway", "order", "product", "payment", "delivery", "mypage",
];

/// The Python that runs the OTLP receiver: `MALL_TEST_OTLP_PYTHON`, or the venv `.ci/run`
/// installs; `None` (the test is skipped) when it lacks the packages.
fn otlp_python() -> Option<PathBuf> {
    let python = std::env::var_os("MALL_TEST_OTLP_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/12st-mall/otlp-venv/bin/python"))
        })?;
    Command::new(&python)
        .args(["-c", "import grpc, opentelemetry.proto.collector.trace.v1"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        .then_some(python)
}

/// An OTLP/gRPC receiver (`otlp_receiver.py`) on a port of its own, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    received: tempfile::NamedTempFile,
}

impl Receiver {
    /// Starts one; with `stall`, it takes every export and never answers.
    fn start(python: &PathBuf, stall: bool) -> Receiver {
        let port = free_ports(1);
        let received = tempfile::NamedTempFile::new().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shop/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(received.path())
            .args(stall.then_some("--stall"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the OTLP receiver did not start");
        Receiver {
            child,
            port,
            received,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(self.received.path())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mall up` shop with these settings besides no rate limits.
async fn shop_with(env: &[(&str, &str)]) -> Shop {
    let env: Vec<(&str, &str)> = NO_RATE_LIMITS.iter().chain(env).copied().collect();
    Shop::start_with(&env).await
}

/// The trace id and span id of a response's `traceparent`.
fn traceparent_of(response: &reqwest::Response) -> (String, String) {
    let header = response.headers()["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = header.split('-').collect();
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Places an order through the gateway; returns its id and the trace the gateway answered
/// in.
async fn place_traced_order(shop: &Shop, product: &str) -> (String, String, String) {
    let response = shop.order_request(product, 1, None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (trace_id, span_id) = traceparent_of(&response);
    let order: Value = response.json().await.unwrap();
    (
        order["order_id"].as_str().unwrap().to_owned(),
        trace_id,
        span_id,
    )
}

/// The span of `spans` of service `service` named `name` (the first, if several).
fn span<'a>(spans: &'a [Value], service: &str, name: &str) -> &'a Value {
    spans
        .iter()
        .find(|span| span["service"] == service && span["name"] == name)
        .unwrap_or_else(|| panic!("no span {name:?} of {service} in {spans:#?}"))
}

#[tokio::test]
async fn one_order_through_a_split_shop_is_one_trace_of_all_six_services_linked_across_the_bus() {
    let Some(python) = otlp_python() else {
        return skipped(Needs::Otlp, "no Python with opentelemetry-proto and grpcio");
    };
    let receiver = Receiver::start(&python, false);
    let shop = Shop::start_split(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())]).await;
    let product = shop.add_product(1_000, 5).await;
    let (order_id, trace_id, gateway_span) = place_traced_order(&shop, &product).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");

    // Complete once every service's spans of the saga arrived and none lacks its parent.
    let started = Instant::now();
    let (trace, orphans) = loop {
        let trace: Vec<Value> = receiver
            .spans()
            .into_iter()
            .filter(|span| span["trace_id"] == trace_id.as_str())
            .collect();
        let ids: HashSet<&str> = trace.iter().filter_map(|s| s["span_id"].as_str()).collect();
        let orphans: Vec<&Value> = trace
            .iter()
            .filter(|s| {
                s["parent_span_id"]
                    .as_str()
                    .is_some_and(|p| !ids.contains(p))
            })
            .collect();
        let services: HashSet<&str> = trace.iter().filter_map(|s| s["service"].as_str()).collect();
        let mypage_saw_delivery = trace
            .iter()
            .any(|s| s["service"] == "mypage" && s["name"] == "process delivery.delivery.v1");
        if (orphans.is_empty() && services.len() == SERVICES.len() && mypage_saw_delivery)
            || started.elapsed() > Duration::from_secs(20)
        {
            let orphans = orphans.into_iter().cloned().collect::<Vec<_>>();
            break (trace, orphans);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{} spans of trace {trace_id} received in {:?}",
        trace.len(),
        started.elapsed()
    );

    let services: HashSet<&str> = trace.iter().filter_map(|s| s["service"].as_str()).collect();
    assert_eq!(services, HashSet::from(SERVICES), "{trace:#?}");
    assert!(
        orphans.is_empty(),
        "spans whose parent never arrived: {orphans:#?}"
    );
    let by_id: HashMap<&str, &Value> = trace
        .iter()
        .map(|span| (span["span_id"].as_str().unwrap(), span))
        .collect();
    let parent = |span: &Value| by_id[span["parent_span_id"].as_str().unwrap()];

    // The root is the gateway's server span, the one whose id it answered with.
    let root = span(&trace, "gateway", "POST /api/orders");
    assert_eq!(root["span_id"], gateway_span.as_str());
    assert!(root["parent_span_id"].is_null());
    assert_eq!(
        trace
            .iter()
            .filter(|s| s["parent_span_id"].is_null())
            .count(),
        1
    );
    // Every other span descends from it.
    for span in &trace {
        let mut ancestor = span;
        while !ancestor["parent_span_id"].is_null() {
            ancestor = parent(ancestor);
        }
        assert_eq!(ancestor["span_id"], root["span_id"], "{span}");
    }

    // HTTP hops: gateway -> order -> product, each through a client span.
    let forwarded = span(&trace, "gateway", "POST order");
    assert_eq!(
        (forwarded["kind"].as_str(), parent(forwarded)),
        (Some("client"), root)
    );
    let served = span(&trace, "order", "POST /orders");
    assert_eq!(
        (served["kind"].as_str(), parent(served)),
        (Some("server"), forwarded)
    );
    let asked = span(&trace, "order", "GET product");
    assert_eq!(parent(asked), served);
    assert_eq!(parent(span(&trace, "product", "GET /products/{id}")), asked);
    let placed = trace
        .iter()
        .find(|s| s["service"] == "order" && s["name"] == "db transaction" && parent(s) == served)
        .expect("the placing transaction under the request");
    assert_eq!(placed["kind"], "internal");

    // Bus hops: each consumer's span is a child of the producer span that published the
    // event, in the service that published it.
    let published = span(&trace, "order", "publish order.order.v1");
    assert_eq!(
        (published["kind"].as_str(), parent(published)),
        (Some("producer"), served)
    );
    for (service, name, publisher, publication) in [
        (
            "product",
            "process order.order.v1",
            "order",
            "publish order.order.v1",
        ),
        (
            "payment",
            "process product.reservation.v1",
            "product",
            "publish product.reservation.v1",
        ),
        (
            "order",
            "process payment.payment.v1",
            "payment",
            "publish payment.payment.v1",
        ),
        (
            "delivery",
            "process order.order.v1",
            "order",
            "publish order.order.v1",
        ),
        (
            "mypage",
            "process delivery.delivery.v1",
            "delivery",
            "publish delivery.delivery.v1",
        ),
    ] {
        let handled = span(&trace, service, name);
        let cause = parent(handled);
        assert_eq!(handled["kind"], "consumer");
        assert_eq!(
            (
                cause["service"].as_str(),
                cause["name"].as_str(),
                cause["kind"].as_str()
            ),
            (Some(publisher), Some(publication), Some("producer")),
            "{service}'s {name}"
        );
        // Its transaction: under it, or, when it shared one with the other events of a
        // batch, under a span of the batch's own that links to it.
        let transaction = trace
            .iter()
            .any(|s| s["name"] == "db transaction" && parent(s) == handled);
        let batch = receiver.spans().into_iter().any(|s| {
            s["name"] == "handle batch"
                && s["links"]
                    .as_array()
                    .is_some_and(|links| links.contains(&handled["span_id"]))
        });
        assert!(
            transaction || batch,
            "{service}'s {name} has its transaction"
        );
    }
    // Reserving the stock answered the order's placement: a child of that publication.
    assert_eq!(
        parent(span(&trace, "product", "process order.order.v1")),
        published
    );
}

/// Places `count` orders and checks each is confirmed (and handed to delivery) as fast as
/// a shop with nothing to export confirms it; returns the slowest.
async fn orders_flow_at_normal_speed(shop: &Shop, count: usize) -> Duration {
    let product = shop.add_product(1_000, count as u32 + 1).await;
    // The first saga also waits for the consumers to join their groups (seconds, on Kafka).
    let first = shop.place_order(&product, 1).await;
    assert_eq!(shop.final_order(&first).await["status"], "DELIVERING");
    let mut slowest = Duration::ZERO;
    for _ in 0..count {
        let started = Instant::now();
        let order_id = shop.place_order(&product, 1).await;
        let order = shop.final_order(&order_id).await;
        assert_eq!(order["status"], "DELIVERING", "{order}");
        slowest = slowest.max(started.elapsed());
    }
    // A request that waited for the receiver would take its export timeout (10 s); a debug
    // build's saga takes well under a second here.
    assert!(
        slowest < Duration::from_secs(3),
        "slowest order took {slowest:?}"
    );
    slowest
}

/// Waits for a service's count of spans dropped for `reason` to move.
async fn wait_for_drops(shop: &Shop, port_offset: u16, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    let started = Instant::now();
    loop {
        let dropped = shop
            .metric_or_zero(port_offset, "mall_trace_spans_dropped_total", &[&label])
            .await;
        if dropped > 0.0 {
            return dropped;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no span counted dropped ({reason}):\n{}",
            shop.metrics_text(port_offset).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_the_shop_nothing_and_its_spans_are_counted_dropped() {
    let closed = free_ports(1);
    let shop = shop_with(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        &format!("http://127.0.0.1:{closed}"),
    )])
    .await;
    let slowest = orders_flow_at_normal_speed(&shop, 20).await;
    let dropped = wait_for_drops(&shop, 1, "export_failed").await;
    eprintln!("receiver down: slowest order {slowest:?}, {dropped} of order's spans dropped");
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_the_shop_nothing_nor_holds_up_its_shutdown() {
    let Some(python) = otlp_python() else {
        return skipped(Needs::Otlp, "no Python with opentelemetry-proto and grpcio");
    };
    let receiver = Receiver::start(&python, true);
    let mut shop = shop_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())]).await;
    let slowest = orders_flow_at_normal_speed(&shop, 20).await;
    let dropped = wait_for_drops(&shop, 1, "export_failed").await;
    // The spans still queued get a bounded time to leave; the shutdown goes on without them.
    let stopping = Instant::now();
    shop.terminate();
    let stopped = stopping.elapsed();
    eprintln!(
        "receiver hanging: slowest order {slowest:?}, {dropped} of order's spans dropped, \
         stopped in {stopped:?}"
    );
    assert!(
        stopped < Duration::from_secs(10),
        "shutdown took {stopped:?}"
    );
}

#[tokio::test]
async fn each_service_keeps_its_recent_spans_and_finds_an_order_s_trace_without_any_backend() {
    // Nothing exported and nothing sampled, yet every span is kept for the operator.
    let shop = shop_with(&[("OTEL_TRACES_SAMPLER", "always_off")]).await;
    let product = shop.add_product(1_000, 5).await;
    let (order_id, trace_id, gateway_span) = place_traced_order(&shop, &product).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");

    let debug = |port_offset: u16, path: String| {
        let url = format!("http://127.0.0.1:{}{path}", shop.base_port + port_offset);
        let client = shop.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    // The order service names the trace of the request that placed the order.
    let found: Value = debug(1, format!("/debug/traces?order_id={order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found[0]["trace_id"], trace_id.as_str(), "{found}");
    assert_eq!(found[0]["first_span"], "POST /orders");
    assert!(chrono::DateTime::parse_from_rfc3339(found[0]["start"].as_str().unwrap()).is_ok());

    // Then every service shows its part of it. The last hop (my page hearing of the
    // delivery) may still be on its way when the order reads DELIVERING.
    let started = Instant::now();
    let spans = loop {
        let mut spans: Vec<Value> = Vec::new();
        for port_offset in 0..=6 {
            let answer = debug(port_offset, format!("/debug/traces/{trace_id}")).await;
            assert_eq!(answer.status(), StatusCode::OK);
            spans.extend(answer.json::<Vec<Value>>().await.unwrap());
        }
        let complete = spans
            .iter()
            .any(|s| s["service"] == "mypage" && s["name"] == "process delivery.delivery.v1");
        if complete || started.elapsed() > Duration::from_secs(10) {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let services: HashSet<&str> = spans.iter().filter_map(|s| s["service"].as_str()).collect();
    assert_eq!(services, HashSet::from(SERVICES), "{spans:#?}");
    let hex = |value: &Value, digits: usize| {
        value
            .as_str()
            .is_some_and(|s| s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for span in &spans {
        assert_eq!(span["trace_id"], trace_id.as_str());
        assert!(hex(&span["span_id"], 16), "{span}");
        assert!(
            span["parent_span_id"].is_null() || hex(&span["parent_span_id"], 16),
            "{span}"
        );
        assert!(
            span["name"].is_string() && span["attributes"].is_object(),
            "{span}"
        );
        assert!(
            ["server", "client", "producer", "consumer", "internal"]
                .contains(&span["kind"].as_str().unwrap())
        );
        let start = chrono::DateTime::parse_from_rfc3339(span["start"].as_str().unwrap()).unwrap();
        assert_eq!(
            start.timestamp_nanos_opt().unwrap() as u64,
            span["start_unix_nano"].as_u64().unwrap()
        );
        assert!(span["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(["unset", "ok", "error"].contains(&span["status"]["code"].as_str().unwrap()));
    }
    let root = span(&spans, "gateway", "POST /api/orders");
    assert_eq!(root["span_id"], gateway_span.as_str());
    assert_eq!(root["attributes"]["http.response.status_code"], 202);
    assert_eq!(root["attributes"]["http.route"], "/api/orders");
    let published = span(&spans, "order", "publish order.order.v1");
    assert_eq!(
        published["attributes"]["messaging.message.conversation_id"],
        order_id.as_str()
    );
    assert_eq!(published["attributes"]["mall.event.type"], "OrderPlaced");

    // The operator's terminal shows the same trace as a waterfall, the gateway's request
    // first and every service's part under it.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args([
            "trace",
            &order_id,
            "--base-port",
            &shop.base_port.to_string(),
        ])
        .output()
        .unwrap();
    let waterfall = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{waterfall}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let mut lines = waterfall.lines();
    assert!(
        lines.next().unwrap().starts_with(&format!(
            "trace {trace_id} of order {order_id}: {} spans",
            spans.len()
        )),
        "{waterfall}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with("gateway   POST /api/orders"),
        "{waterfall}"
    );
    for service in SERVICES {
        assert!(
            waterfall.contains(&format!("  {service:<9} ")),
            "{service}: {waterfall}"
        );
    }
    let unknown_order = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["trace", &uuid::Uuid::now_v7().to_string()])
        .args(["--base-port", &shop.base_port.to_string()])
        .output()
        .unwrap();
    assert!(!unknown_order.status.success());
    assert!(String::from_utf8_lossy(&unknown_order.stderr).contains("has 0 trace(s)"));

    // The store is bounded by span count, not by trace: a trace no one recorded is empty,
    // and what is not a trace id is refused.
    let unknown = debug(3, format!("/debug/traces/{}", "1".repeat(32))).await;
    assert_eq!(
        unknown.json::<Vec<Value>>().await.unwrap(),
        Vec::<Value>::new()
    );
    for bad in [
        "/debug/traces/xyz",
        "/debug/traces?order_id=nonsense",
        "/debug/traces",
    ] {
        assert_eq!(
            debug(1, bad.to_owned()).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn log_lines_have_cloud_logging_s_fields_and_the_trace_and_span_of_their_work() {
    let shop = shop_with(&[("MALL_LOG", "info"), ("MALL_GCP_PROJECT", "shop-test")]).await;
    let product = shop.add_product(1_000, 5).await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = shop
        .client
        .get(format!("{}/api/products/{product}", shop.url))
        .header(
            "traceparent",
            format!("00-{caller_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (trace_id, gateway_span) = traceparent_of(&response);
    assert_eq!(trace_id, caller_trace);
    // The product service's span of it, from its span store.
    let product_spans: Vec<Value> = shop
        .client
        .get(format!(
            "http://127.0.0.1:{}/debug/traces/{trace_id}",
            shop.base_port + 3
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product_span = span(&product_spans, "product", "GET /products/{id}")["span_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let lines: Vec<Value> = loop {
        let lines: Vec<Value> = shop
            .stderr()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
            })
            .collect();
        let answered = lines
            .iter()
            .filter(|l| l["trace_id"] == trace_id.as_str() && l["message"] == "answered")
            .count();
        if answered >= 2 || started.elapsed() > Duration::from_secs(5) {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in &lines {
        let severity = line["severity"].as_str().unwrap_or_default();
        assert!(
            ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&severity),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        let time = line["time"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
    }
    let answered = |service: &str| {
        lines
            .iter()
            .find(|l| {
                l["trace_id"] == trace_id.as_str()
                    && l["service"] == service
                    && l["message"] == "answered"
            })
            .unwrap_or_else(|| panic!("no line of {service} answering trace {trace_id}"))
    };
    let cloud_trace = format!("projects/shop-test/traces/{trace_id}");
    for (service, span_id) in [("gateway", &gateway_span), ("product", &product_span)] {
        let line = answered(service);
        assert_eq!(line["severity"], "INFO", "{line}");
        assert_eq!(
            line["logging.googleapis.com/trace"],
            cloud_trace.as_str(),
            "{line}"
        );
        assert_eq!(
            line["logging.googleapis.com/spanId"],
            span_id.as_str(),
            "{line}"
        );
        assert_eq!(line["logging.googleapis.com/trace_sampled"], true, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert!(
            line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_admin_reads_an_order_s_trace_merged_from_every_service_as_one_tree() {
    let shop = shop_with(&[]).await;
    let product = shop.add_product(1_000, 5).await;
    let (order_id, trace_id, gateway_span) = place_traced_order(&shop, &product).await;
    assert_eq!(shop.final_order(&order_id).await["status"], "DELIVERING");
    let path = format!("/api/admin/orders/{order_id}/trace");

    // The last hop (my page hearing of the delivery) may still be on its way.
    let started = Instant::now();
    let trace = loop {
        let response = shop.get_as(&shop.admin_token, &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let trace: Value = response.json().await.unwrap();
        let complete = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service"] == "mypage" && s["name"] == "process delivery.delivery.v1");
        if complete || started.elapsed() > Duration::from_secs(10) {
            break trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(trace["order_id"], order_id.as_str());
    assert_eq!(trace["trace_id"], trace_id.as_str());
    assert_eq!(trace["unanswered"], serde_json::json!([]), "{trace:#}");
    assert_eq!(trace["left_out"], 0);
    let spans = trace["spans"].as_array().unwrap();
    let services: HashSet<&str> = spans.iter().filter_map(|s| s["service"].as_str()).collect();
    assert_eq!(services, HashSet::from(SERVICES), "{trace:#}");
    let starts: Vec<u64> = spans
        .iter()
        .map(|s| s["start_unix_nano"].as_u64().unwrap())
        .collect();
    assert!(starts.is_sorted(), "earliest first: {starts:?}");
    // One tree: the gateway's request is its only root, and every other span's parent is
    // among the spans.
    let ids: HashSet<&str> = spans
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), spans.len(), "each span once: {trace:#}");
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent_span_id"].is_null())
        .collect();
    assert_eq!(roots.len(), 1, "{trace:#}");
    assert_eq!(roots[0]["span_id"], gateway_span.as_str());
    assert_eq!(roots[0]["name"], "POST /api/orders");
    for span in spans.iter().filter(|s| !s["parent_span_id"].is_null()) {
        let parent = span["parent_span_id"].as_str().unwrap();
        assert!(ids.contains(parent), "no parent of {span}");
    }

    // Admins only; an order the shop has no trace of is not found, saying why; what is
    // not an order id is refused.
    assert_eq!(
        shop.get_as(&shop.token, &path).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(shop.get(&path).await.status(), StatusCode::UNAUTHORIZED);
    let unknown = shop
        .get_as(
            &shop.admin_token,
            &format!("/api/admin/orders/{}/trace", uuid::Uuid::now_v7()),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let problem: Value = unknown.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("MALL_SPAN_STORE_CAPACITY"),
        "{problem}"
    );
    let later = shop
        .get_as(&shop.admin_token, &format!("{path}?nth=50"))
        .await;
    assert_eq!(later.status(), StatusCode::NOT_FOUND);
    for bad in [
        "/api/admin/orders/nonsense/trace".to_owned(),
        format!("{path}?nth=-1"),
    ] {
        let refused = shop.get_as(&shop.admin_token, &bad).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}
