//! `mall trace <order-id>`: the trace of the request that placed an order, as a waterfall
//! in the terminal, merged from every service's span store (`/debug/traces`), with no
//! tracing backend.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use clap::{Args, ValueEnum};
use reqwest::Client;
use serde::Deserialize;
use uuid::Uuid;

use crate::ServiceName;

#[derive(Args)]
pub struct Settings {
    /// The order whose saga to show.
    order_id: Uuid,
    /// Where the shop's services listen.
    #[arg(long, env = "MALL_BIND", default_value = "127.0.0.1")]
    host: String,
    /// The shop's first port (`mall up --base-port`).
    #[arg(long, env = "MALL_BASE_PORT", default_value_t = 8080,
          value_parser = clap::value_parser!(u16).range(1..=65_528))]
    base_port: u16,
    /// Instances per service to ask (`mall up --split --replicas`: instance i listens 7 * i
    /// ports above the first).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    instances: u16,
    /// Which of the order's traces: 0 is the request that placed it, then each later one
    /// (a cancel, an address change, the deadline) in time order.
    #[arg(long, default_value_t = 0)]
    nth: usize,
}

/// A span as the services' `/debug/traces/{trace_id}` show it (the fields shown here).
#[derive(Debug, Deserialize)]
struct Span {
    span_id: String,
    parent_span_id: Option<String>,
    name: String,
    service: String,
    start_unix_nano: u64,
    duration_ms: f64,
    status: Status,
}

#[derive(Debug, Deserialize)]
struct Status {
    code: String,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TraceSummary {
    trace_id: String,
}

const BAR_WIDTH: usize = 40;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::builder().timeout(Duration::from_secs(3)).build()?;
    let ports: Vec<u16> = (0..settings.instances)
        .flat_map(|instance| {
            ServiceName::value_variants()
                .iter()
                .map(move |service| service.port_offset() + 7 * instance)
        })
        .filter_map(|offset| settings.base_port.checked_add(offset))
        .collect();
    let order_ports: Vec<u16> = (0..settings.instances)
        .filter_map(|i| {
            settings
                .base_port
                .checked_add(ServiceName::Order.port_offset() + 7 * i)
        })
        .collect();
    let base = |port: u16| format!("http://{}:{port}", settings.host);

    let mut traces = Vec::new();
    for port in &order_ports {
        let url = format!(
            "{}/debug/traces?order_id={}",
            base(*port),
            settings.order_id
        );
        let found: Vec<TraceSummary> = get(&client, &url)
            .await
            .with_context(|| format!("cannot ask order at {}", base(*port)))?;
        traces.extend(found.into_iter().map(|summary| summary.trace_id));
    }
    traces.dedup();
    let trace_id = traces.get(settings.nth).with_context(|| {
        format!(
            "order {} has {} trace(s) in the order service's recent spans (it keeps the \
             last MALL_SPAN_STORE_CAPACITY of them); --nth {} is not among them",
            settings.order_id,
            traces.len(),
            settings.nth
        )
    })?;

    let mut spans = Vec::new();
    let mut unanswered = Vec::new();
    for port in ports {
        let url = format!("{}/debug/traces/{trace_id}", base(port));
        match get::<Vec<Span>>(&client, &url).await {
            Ok(found) => spans.extend(found),
            Err(_) => unanswered.push(port),
        }
    }
    print!("{}", waterfall(trace_id, &settings.order_id, &spans));
    if !unanswered.is_empty() {
        println!("(no answer from the ports {unanswered:?}: their spans are missing)");
    }
    Ok(())
}

async fn get<T: for<'de> Deserialize<'de>>(client: &Client, url: &str) -> anyhow::Result<T> {
    Ok(client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The spans as a tree (each child under its parent, in time order), each with its
/// offset from the trace's start and a bar of its time.
fn waterfall(trace_id: &str, order_id: &Uuid, spans: &[Span]) -> String {
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_unix_nano + (s.duration_ms * 1e6) as u64)
        .max()
        .unwrap_or(start);
    let total_ms = (end - start) as f64 / 1e6;
    let mut out = format!(
        "trace {trace_id} of order {order_id}: {} spans over {total_ms:.1} ms\n",
        spans.len()
    );
    let known: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<Option<&str>, Vec<&Span>> = HashMap::new();
    for span in spans {
        // A span whose parent is not here (not kept, or from a service not asked) is
        // shown as a root rather than left out.
        let parent = span
            .parent_span_id
            .as_deref()
            .filter(|parent| known.contains(parent));
        children.entry(parent).or_default().push(span);
    }
    for siblings in children.values_mut() {
        siblings.sort_by_key(|s| s.start_unix_nano);
    }
    let mut stack: Vec<(&Span, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|s| (*s, 0)).collect())
        .unwrap_or_default();
    while let Some((span, depth)) = stack.pop() {
        let offset_ms = (span.start_unix_nano - start) as f64 / 1e6;
        let scale = |ms: f64| ((ms / total_ms.max(1e-9)) * BAR_WIDTH as f64) as usize;
        let lead = scale(offset_ms).min(BAR_WIDTH - 1);
        let width = scale(span.duration_ms).clamp(1, BAR_WIDTH - lead);
        let failed = match (&span.status.code[..], &span.status.message) {
            ("error", Some(why)) => format!("  failed: {why}"),
            ("error", None) => "  failed".to_owned(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{offset_ms:>9.1} ms |{}{}{}| {:>8.1} ms  {:<9} {}{}{failed}\n",
            " ".repeat(lead),
            "█".repeat(width),
            " ".repeat(BAR_WIDTH - lead - width),
            span.duration_ms,
            span.service,
            "  ".repeat(depth),
            span.name,
        ));
        if let Some(kids) = children.get(&Some(span.span_id.as_str())) {
            stack.extend(kids.iter().rev().map(|kid| (*kid, depth + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, start_ms: u64, ms: f64) -> Span {
        Span {
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            name: format!("span {id}"),
            service: service.to_owned(),
            start_unix_nano: start_ms * 1_000_000,
            duration_ms: ms,
            status: Status {
                code: "unset".to_owned(),
                message: None,
            },
        }
    }

    #[test]
    fn children_follow_their_parent_in_time_order_and_orphans_are_roots() {
        let spans = [
            span("c", Some("a"), "order", 30, 10.0),
            span("a", None, "gateway", 0, 100.0),
            span("b", Some("a"), "order", 10, 10.0),
            span("d", Some("b"), "product", 12, 5.0),
            span("e", Some("missing"), "mypage", 50, 5.0),
        ];
        let shown = waterfall("t", &Uuid::nil(), &spans);
        let names: Vec<&str> = shown
            .lines()
            .skip(1)
            .map(|line| line.rsplit("  ").next().unwrap().trim())
            .collect();
        assert_eq!(
            names,
            ["span a", "span b", "span d", "span c", "span e"],
            "{shown}"
        );
        assert!(shown.starts_with("trace t of order"));
        assert!(shown.contains("5 spans over 100.0 ms"), "{shown}");
        let depth_of_d = shown.lines().find(|l| l.ends_with("span d")).unwrap();
        assert!(
            depth_of_d.contains("    span d"),
            "two levels deep: {shown}"
        );
    }
}
