//! The shop's operations view, for a shop run without Prometheus and Grafana (`mall up`):
//! `GET /api/admin/operations` reads every instance's `/health/ready` and `/metrics`, all
//! at once and each within [`READ_TIMEOUT`], and answers each service's health, request
//! rate, 5xx rate, p99 latency, outbox, consumer lag, dead letters and breakers, and the
//! saga's orders per second and SLI, as JSON. An instance that does not answer in time is
//! shown not ready, with why; the answer never waits longer for it.
//!
//! Rates need two readings. The gateway keeps each instance's counters from its last
//! reading and divides what they gained by the time between the two, rather than leaving
//! that to the page: the answer then holds a few figures per service instead of every
//! instance's histogram buckets for the page to subtract, every client (the page, `curl`)
//! reads the same figures, and a page just opened gets rates from a reading made for
//! another. A reading younger than [`FRESH_FOR`] is answered again rather than made anew,
//! so that admins polling cannot make the gateway read every service more often.
//!
//! What it reads of a service's `/metrics` is summed into one row per service, never per
//! route or partition; consumer groups and breakers' upstreams are closed sets.
//!
//! It reads the instances at the base URLs the gateway routes to: the layout of `mall up`
//! and of `mall serve` without `MALL_OPERATIONS_PORT`. Where `/metrics` is served on an
//! operations port, behind a Kubernetes Service that picks one pod, Prometheus and the
//! dashboards are the operations view.

mod exposition;
mod figures;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chassis::{auth::Admin, instances::Instances};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::{Gateway, limits::RateLimits};
use figures::{Figures, InstanceReading, SagaSummary, ServiceSummary, Totals};

/// How long a reading waits for an instance's health or metrics: a frozen or overloaded
/// instance is shown as not ready after this, and the answer comes soon after.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A reading this recent is answered again instead of reading every instance anew.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The most of a `/metrics` answer read: a service's is tens of kilobytes.
const MAX_EXPOSITION_BYTES: usize = 4 * 1024 * 1024;

/// What the view reads, and what it read last.
pub(crate) struct OperationsView {
    gateway: Arc<Gateway>,
    /// The gateway's own address, to name its row.
    gateway_url: String,
    /// The services behind the gateway, in the order the view shows them.
    services: Vec<(&'static str, Instances)>,
    client: Client<HttpConnector, Body>,
    limits: Arc<RateLimits>,
    last: Mutex<Option<Reading>>,
}

/// One reading of every instance.
struct Reading {
    at: Instant,
    /// Each instance's figures, by service and base URL: the next reading's rates.
    figures: HashMap<(&'static str, String), Figures>,
    answer: Bytes,
}

/// The body of `GET /api/admin/operations`.
#[derive(Serialize)]
struct Answer {
    read_at: chrono::DateTime<chrono::Utc>,
    /// Since the previous reading, over which the rates are; `None` for the first one.
    interval_seconds: Option<f64>,
    read_timeout_ms: u128,
    saga: SagaSummary,
    services: Vec<ServiceSummary>,
}

impl OperationsView {
    pub fn new(
        gateway: Arc<Gateway>,
        gateway_url: String,
        services: Vec<(&'static str, Instances)>,
        client: Client<HttpConnector, Body>,
        limits: Arc<RateLimits>,
    ) -> OperationsView {
        OperationsView {
            gateway,
            gateway_url,
            services,
            client,
            limits,
            last: Mutex::new(None),
        }
    }

    /// The answer of a fresh reading, or of one made within [`FRESH_FOR`]. Callers take
    /// turns: one reads while the others wait for its answer. The last reading is
    /// replaced only by a whole new one: a caller that goes away mid-reading leaves it.
    async fn answer(&self) -> Bytes {
        let mut last = self.last.lock().await;
        if let Some(recent) = last.as_ref().filter(|r| r.at.elapsed() < FRESH_FOR) {
            return recent.answer.clone();
        }
        let reading = self.read(last.as_ref()).await;
        let answer = reading.answer.clone();
        *last = Some(reading);
        answer
    }

    async fn read(&self, previous: Option<&Reading>) -> Reading {
        let at = Instant::now();
        let interval_seconds = previous.map(|p| at.duration_since(p.at).as_secs_f64());
        let no_figures = HashMap::new();
        let before = previous.map_or(&no_figures, |p| &p.figures);
        let remote =
            futures::future::join_all(self.services.iter().flat_map(|(service, instances)| {
                instances.all().map(move |base| async move {
                    let (ready, figures) = read_instance(&self.client, base).await;
                    (*service, base.to_owned(), ready, figures)
                })
            }))
            .await;
        // The gateway reads its own registry: it answers this very request, so it is up.
        let own = Figures::read(&self.gateway.metrics.render());
        let instances =
            std::iter::once((crate::NAME, self.gateway_url.clone(), Ok(()), own)).chain(remote);

        let mut kept = HashMap::new();
        let mut by_service: Vec<(&'static str, Vec<InstanceReading>)> = vec![];
        for (service, url, ready, figures) in instances {
            let key = (service, url);
            let gained = figures.as_ref().ok().and_then(|now| {
                let earlier = before.get(&key)?;
                Some(now.gained_since(earlier))
            });
            if let Ok(figures) = &figures {
                kept.insert(key.clone(), figures.clone());
            }
            let reading = InstanceReading {
                url: key.1,
                ready,
                figures,
                gained,
            };
            match by_service.last_mut() {
                Some((name, readings)) if *name == service => readings.push(reading),
                _ => by_service.push((service, vec![reading])),
            }
        }

        let mut shop = Totals::default();
        let services = by_service
            .iter()
            .map(|(service, readings)| {
                let (summary, totals) = figures::summarize(service, readings, interval_seconds);
                shop.merge(&totals);
                summary
            })
            .collect();
        let answer = Answer {
            read_at: chrono::Utc::now(),
            interval_seconds,
            read_timeout_ms: READ_TIMEOUT.as_millis(),
            saga: shop.saga(interval_seconds),
            services,
        };
        Reading {
            at,
            figures: kept,
            answer: serde_json::to_vec(&answer)
                .expect("the answer always serialises")
                .into(),
        }
    }
}

/// `GET /api/admin/operations`: every service's health and figures (admins only).
pub(crate) async fn show(
    State(view): State<Arc<OperationsView>>,
    Admin(caller): Admin,
) -> Response {
    if let Err(refusal) = view.limits.check_customer(caller.customer_id) {
        return refusal.into_response();
    }
    let answer = view.answer().await;
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// Whether the instance at `base` is ready (or why not), and its figures (or why none).
async fn read_instance(
    client: &Client<HttpConnector, Body>,
    base: &str,
) -> (Result<(), String>, Result<Figures, String>) {
    let (health, metrics) = tokio::join!(
        get(client, base, "/health/ready"),
        get(client, base, "/metrics")
    );
    let ready = health.and_then(|(status, body)| match status {
        StatusCode::OK => Ok(()),
        // Not ready: the chassis's problem says what is missing.
        _ => Err(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|problem| Some(problem["detail"].as_str()?.to_owned()))
            .unwrap_or_else(|| format!("/health/ready answered {status}"))),
    });
    let figures = metrics.and_then(|(status, body)| {
        if status != StatusCode::OK {
            return Err(format!("/metrics answered {status}"));
        }
        let text = std::str::from_utf8(&body).map_err(|e| format!("/metrics: {e}"))?;
        Figures::read(text).map_err(|line| format!("/metrics: not a sample at {line}"))
    });
    (ready, figures)
}

/// One GET to `base` + `path`, read whole within [`READ_TIMEOUT`].
pub(crate) async fn get(
    client: &Client<HttpConnector, Body>,
    base: &str,
    path: &str,
) -> Result<(StatusCode, Bytes), String> {
    let uri: Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| format!("{base}{path}: {e}"))?;
    let request = axum::http::Request::get(uri)
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|error| {
            if error.is_connect() {
                format!("cannot connect: {}", innermost(&error))
            } else {
                format!("{path}: {}", innermost(&error))
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_EXPOSITION_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{path}: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(READ_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", READ_TIMEOUT.as_millis())))
}

/// The root cause of an error, which says what happened ("Connection refused"); the
/// client's own wrappers only say where.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
