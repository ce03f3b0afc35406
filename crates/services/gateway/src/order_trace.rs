//! One order's trace across the shop, for the admin page's waterfall, without a tracing
//! backend: `GET /api/admin/orders/{order_id}/trace` asks the order service (each
//! instance) which traces touched the order, takes the one that placed it (or `?nth=N`,
//! in time order), then asks every instance of every service for its spans of that trace,
//! all at once and each within the operations view's
//! [`READ_TIMEOUT`](crate::operations_view::READ_TIMEOUT), adds the gateway's
//! own, and answers them merged, earliest first. An instance that does not answer in
//! time is named in `unanswered` rather than waited for: its spans are missing.
//!
//! ```json
//! {"order_id": "…", "trace_id": "…", "spans": [ /* /debug/traces/{trace_id} spans */ ],
//!  "unanswered": ["payment"], "left_out": 0}
//! ```
//!
//! The same merge as `mall trace <order-id>` in the terminal; the page builds the tree.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chassis::{auth::Admin, instances::Instances, problem::Problem};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Gateway, limits::RateLimits, operations_view::get};

/// The most spans answered: a trace of one order has tens; a runaway one is cut here.
const MAX_SPANS: usize = 2_000;

/// Whom the endpoint asks.
pub(crate) struct OrderTraces {
    gateway: Arc<Gateway>,
    /// The order service's instances, which know an order's traces.
    order: Instances,
    /// Every service behind the gateway, each asked for its spans.
    services: Vec<(&'static str, Instances)>,
    client: Client<HttpConnector, axum::body::Body>,
    limits: Arc<RateLimits>,
}

/// The body of `GET /api/admin/orders/{order_id}/trace`.
#[derive(Serialize)]
struct Answer {
    order_id: Uuid,
    trace_id: String,
    /// Every span found, earliest first, at most [`MAX_SPANS`].
    spans: Vec<Value>,
    /// Services with an instance that did not answer: their spans may be missing.
    unanswered: Vec<&'static str>,
    /// Spans found beyond [`MAX_SPANS`], not sent.
    left_out: usize,
}

#[derive(Deserialize)]
pub(crate) struct Which {
    /// 0 is the request that placed the order, then each later trace in time order.
    #[serde(default)]
    nth: usize,
}

/// A trace as the order service's `/debug/traces?order_id=` lists it.
#[derive(Deserialize)]
struct TraceSummary {
    trace_id: String,
    start: chrono::DateTime<chrono::Utc>,
}

impl OrderTraces {
    pub fn new(
        gateway: Arc<Gateway>,
        order: Instances,
        services: Vec<(&'static str, Instances)>,
        client: Client<HttpConnector, axum::body::Body>,
        limits: Arc<RateLimits>,
    ) -> OrderTraces {
        OrderTraces {
            gateway,
            order,
            services,
            client,
            limits,
        }
    }

    /// The order's traces, earliest first, from every order instance that answered; and
    /// whether one did not.
    async fn traces_of(&self, order_id: Uuid) -> (Vec<String>, bool) {
        let path = format!("/debug/traces?order_id={order_id}");
        let answers = futures::future::join_all(
            self.order
                .all()
                .map(|base| async { get(&self.client, base, &path).await }),
        )
        .await;
        let mut missed = false;
        let mut found: Vec<TraceSummary> = vec![];
        for answer in answers {
            match answer.map(|(status, body)| (status, serde_json::from_slice(&body))) {
                Ok((StatusCode::OK, Ok(summaries))) => found.extend::<Vec<_>>(summaries),
                _ => missed = true,
            }
        }
        found.sort_by_key(|summary| summary.start);
        let mut traces: Vec<String> = vec![];
        for summary in found {
            if !traces.contains(&summary.trace_id) {
                traces.push(summary.trace_id);
            }
        }
        (traces, missed)
    }

    /// Every span of `trace_id` the gateway and each instance hold, earliest first, and
    /// the services with an instance that did not answer.
    async fn spans_of(&self, trace_id: &str) -> (Vec<Value>, Vec<&'static str>) {
        let path = format!("/debug/traces/{trace_id}");
        let answers =
            futures::future::join_all(self.services.iter().flat_map(|(service, instances)| {
                let path = &path;
                instances.all().map(move |base| async move {
                    let spans = get(&self.client, base, path)
                        .await
                        .and_then(|(status, body)| match status {
                            StatusCode::OK => serde_json::from_slice::<Vec<Value>>(&body)
                                .map_err(|e| e.to_string()),
                            other => Err(format!("answered {other}")),
                        });
                    (*service, spans)
                })
            }))
            .await;
        let own = u128::from_str_radix(trace_id, 16)
            .map(|id| self.gateway.tracer.store().trace(id))
            .unwrap_or_default();
        let mut spans: Vec<Value> = own
            .iter()
            .map(|span| serde_json::to_value(span).expect("a span always serialises"))
            .collect();
        let mut unanswered = vec![];
        for (service, answer) in answers {
            match answer {
                Ok(found) => spans.extend(found),
                Err(_) if !unanswered.contains(&service) => unanswered.push(service),
                Err(_) => {}
            }
        }
        spans.sort_by_key(|span| span["start_unix_nano"].as_u64().unwrap_or(0));
        (spans, unanswered)
    }
}

/// `GET /api/admin/orders/{order_id}/trace`: the order's trace, merged from every service
/// (admins only).
pub(crate) async fn show(
    State(traces): State<Arc<OrderTraces>>,
    Admin(caller): Admin,
    Path(order_id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Response {
    if let Err(refusal) = traces.limits.check_customer(caller.customer_id) {
        return refusal.into_response();
    }
    let Ok(order_id) = Uuid::parse_str(&order_id) else {
        return Problem::validation(format!("`{order_id}` is not an order id (a UUID)"))
            .into_response();
    };
    let nth = match which {
        Ok(Query(which)) => which.nth,
        Err(rejection) => {
            return Problem::validation(format!("`?nth=` is a number from 0: {rejection}"))
                .into_response();
        }
    };
    let (found, missed) = traces.traces_of(order_id).await;
    let Some(trace_id) = found.get(nth) else {
        if missed && found.is_empty() {
            return Problem::unavailable("the order service did not answer in time", 1)
                .into_response();
        }
        return Problem::not_found(format!(
            "the order service holds {} trace(s) of order {order_id}, not a trace number {nth}: \
             it keeps only its most recent spans (MALL_SPAN_STORE_CAPACITY), so an old or \
             unknown order has none",
            found.len()
        ))
        .into_response();
    };
    let (mut spans, mut unanswered) = traces.spans_of(trace_id).await;
    if missed && !unanswered.contains(&"order") {
        unanswered.push("order");
    }
    let left_out = spans.len().saturating_sub(MAX_SPANS);
    spans.truncate(MAX_SPANS);
    Json(Answer {
        order_id,
        trace_id: trace_id.clone(),
        spans,
        unanswered,
        left_out,
    })
    .into_response()
}
