//! `docs/context-map.md`: the bounded contexts and how they relate, from the events each
//! publishes and consumes and the synchronous calls each declares.

use std::{collections::BTreeMap, fmt::Write};

use chassis::flows::ServiceFlows;

use super::{GENERATED, SERVICES, label};

/// How one context depends on another (DDD context-mapping patterns).
enum Relation {
    /// The downstream reacts to events in the upstream's published language.
    PublishedLanguage(Vec<&'static str>),
    /// The downstream calls the upstream's API, which is built for such callers.
    CustomerSupplier(String),
    /// The gateway forwards the public API to the upstream as it is.
    OpenHost(String),
    /// An outside party behind a translating layer in the downstream.
    AntiCorruption(String),
}

struct Edge {
    upstream: &'static str,
    downstream: &'static str,
    relation: Relation,
}

pub fn document() -> String {
    let edges = edges();
    let mut doc = format!(
        "{GENERATED}\n\n# Context map\n\n\
         One bounded context per service, each owned by one team with its own database \
         (docs/analysis.md says which capability each is and why). An arrow points from \
         upstream to downstream: the downstream depends on the upstream's model. Solid \
         arrows are events in the **published language** (crates/contracts: the only \
         code contexts share); dotted arrows are synchronous calls. The **gateway** is the \
         **open host service** of the whole shop: the one public API the browser and \
         other clients use.\n\n```mermaid\nflowchart LR\n"
    );
    let _ = writeln!(doc, "    client([\"Browser and API clients\"])");
    for service in SERVICES {
        let what = match service.aggregate {
            Some(aggregate) => format!("aggregate {aggregate}"),
            None if service.read_models.is_empty() => "no state of its own".to_owned(),
            None => "read model".to_owned(),
        };
        let _ = writeln!(
            doc,
            "    {}[{}]",
            service.service,
            label(&format!(
                "{}<br/><small>{} · {what}</small>",
                service.service,
                service.subdomain.label()
            ))
        );
    }
    let _ = writeln!(doc, "    gateway -- \"OHS: /api/*\" --> client");
    for edge in &edges {
        let (arrow, text) = match &edge.relation {
            Relation::PublishedLanguage(events) => ("-->", format!("PL: {}", events.join(", "))),
            Relation::CustomerSupplier(route) => ("-.->", format!("C/S: {route}")),
            Relation::OpenHost(route) => ("-.->", format!("OHS: {route}")),
            Relation::AntiCorruption(route) => ("-.->", format!("ACL: {route}")),
        };
        let upstream = node(edge.upstream);
        let _ = writeln!(
            doc,
            "    {upstream} {arrow}|{}| {}",
            label(&text),
            edge.downstream
        );
    }
    let _ = writeln!(
        doc,
        "```\n\n| Upstream | Downstream | Relation | Through |\n|---|---|---|---|"
    );
    for edge in &edges {
        let (relation, through) = match &edge.relation {
            Relation::PublishedLanguage(events) => ("published language", events.join(", ")),
            Relation::CustomerSupplier(route) => ("customer / supplier", format!("`{route}`")),
            Relation::OpenHost(route) => {
                ("open host service (gateway routes)", format!("`{route}`"))
            }
            Relation::AntiCorruption(route) => ("anticorruption layer", format!("`{route}`")),
        };
        let _ = writeln!(
            doc,
            "| {} | {} | {relation} | {through} |",
            edge.upstream, edge.downstream
        );
    }
    doc
}

/// Outside parties are not services: they get a node of their own shape.
fn node(name: &str) -> String {
    if SERVICES.iter().any(|s| s.service == name) {
        name.to_owned()
    } else {
        format!("ext_{}[({})]", name.replace(' ', "_"), label(name))
    }
}

fn edges() -> Vec<Edge> {
    let mut edges = Vec::new();
    for downstream in SERVICES {
        let mut by_upstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for event in downstream.consumed() {
            for upstream in super::publishers(&event) {
                by_upstream
                    .entry(upstream.service)
                    .or_default()
                    .push(event.name);
            }
        }
        for (upstream, events) in by_upstream {
            edges.push(Edge {
                upstream,
                downstream: downstream.service,
                relation: Relation::PublishedLanguage(events),
            });
        }
        for call in downstream.calls {
            edges.push(Edge {
                upstream: call.to,
                downstream: downstream.service,
                relation: call_relation(downstream, call.to, call.route),
            });
        }
    }
    edges
}

fn call_relation(downstream: &ServiceFlows, upstream: &str, route: &str) -> Relation {
    if !SERVICES.iter().any(|s| s.service == upstream) {
        Relation::AntiCorruption(route.to_owned())
    } else if downstream.service == gateway::NAME {
        Relation::OpenHost(route.to_owned())
    } else {
        Relation::CustomerSupplier(route.to_owned())
    }
}
