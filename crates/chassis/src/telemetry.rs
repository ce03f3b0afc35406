//! JSON logs through `tracing`, and each service's Prometheus metrics.

use std::sync::Mutex;

use prometheus_client::{
    collector::Collector,
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, prelude::*};

use crate::collectors::ProcessCollector;

/// Installs the process-wide JSON logger ([`crate::logs`]): one line per event with its
/// span fields (service, trace id, request id) and Cloud Logging's. `MALL_LOG` sets the
/// filter (default `info`); one that would not say what to log is refused rather than
/// silently logging nothing. `MALL_GCP_PROJECT` (or `GOOGLE_CLOUD_PROJECT`) names the
/// project whose Cloud Trace the lines point to.
pub fn init_logging() -> Result<(), String> {
    let spec = std::env::var("MALL_LOG").unwrap_or_else(|_| "info".to_owned());
    check_log_filter(&spec)?;
    let filter =
        EnvFilter::try_new(&spec).map_err(|error| format!("MALL_LOG={spec:?}: {error}"))?;
    let project = ["MALL_GCP_PROJECT", "GOOGLE_CLOUD_PROJECT"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|project| !project.is_empty())
        });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(crate::logs::JsonLines::new(project))
        .try_init();
    Ok(())
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Each directive of a filter is a level, or `target=level`: a bare word such as
/// `nonsense` would parse as a target and quietly turn every other log off.
fn check_log_filter(spec: &str) -> Result<(), String> {
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_lowercase().as_str()) {
            return Err(format!(
                "MALL_LOG={spec:?}: {directive:?} is neither a level ({}) nor target=level",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub topic: String,
    pub group: String,
    /// `handled`, `duplicate`, `ignored` (a type the service declares no policy for) or
    /// `dead_lettered`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub topic: String,
    pub group: String,
    pub partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub topic: String,
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

/// One service's metrics. Each service has its own registry, so services sharing a
/// process (`mall up`) still report only their own figures.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub events_published: Family<TopicLabels, Counter>,
    pub events_consumed: Family<ConsumedLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub consumer_lag: Family<LagLabels, Gauge>,
    pub event_handler_duration: Family<HandlerLabels, Histogram>,
    pub dead_letters: Family<GroupLabels, Gauge>,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_breaker_state: Family<UpstreamLabels, Gauge>,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "mall",
            [("service".into(), service.to_owned().into())].into_iter(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let events_published = Family::<TopicLabels, Counter>::default();
        let events_consumed = Family::<ConsumedLabels, Counter>::default();
        let outbox_backlog = Gauge::default();
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        let event_handler_duration =
            Family::<HandlerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
            });
        let dead_letters = Family::<GroupLabels, Gauge>::default();
        let circuit_breaker_state = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        registry.register(
            "events_published",
            "Events published to the bus",
            events_published.clone(),
        );
        registry.register(
            "events_consumed",
            "Events taken from the bus",
            events_consumed.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Events stored in the outbox and not yet published",
            outbox_backlog.clone(),
        );
        registry.register(
            "consumer_lag",
            "Events in a partition not yet handled by a consumer group",
            consumer_lag.clone(),
        );
        registry.register(
            "event_handler_duration_seconds",
            "Time to handle one event, its transaction included (events handled together in \
             one transaction share its begin and commit)",
            event_handler_duration.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters of a consumer group not yet replayed, as its service's dead-letter \
             table holds them (every instance of the service reports the same table)",
            dead_letters.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "State of the circuit breaker to an upstream: 0 closed, 1 open, 2 half-open",
            circuit_breaker_state.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        Metrics {
            registry: Mutex::new(registry),
            http_requests,
            http_duration,
            events_published,
            events_consumed,
            outbox_backlog,
            consumer_lag,
            event_handler_duration,
            dead_letters,
            circuit_breaker_state,
        }
    }

    /// Adds metrics read when scraped (see [`crate::collectors`]).
    pub(crate) fn register_collector(&self, collector: impl Collector) {
        self.registry
            .lock()
            .expect("metrics registry lock poisoned")
            .register_collector(Box::new(collector));
    }

    /// Adds the count of the service database's failed commits (kept by its
    /// [`crate::storage::StorageHealth`]).
    pub fn register_failed_commits(&self, counter: &Counter) {
        self.registry
            .lock()
            .expect("metrics registry lock poisoned")
            .register(
                "db_failed_commits",
                "Commits to the service's database that failed (full disk, I/O error, lost connection, conflict)",
                counter.clone(),
            );
    }

    /// Adds a service's own metric, named `mall_<name>` with the service label.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .expect("metrics registry lock poisoned")
            .register(name, help, metric);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .expect("metrics registry lock poisoned");
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::check_log_filter;

    #[test]
    fn a_log_filter_names_levels() {
        for good in ["info", "warn,chassis=debug", "order=TRACE, sqlx=off", ""] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in ["nonsense", "info,verbose", "chassis=loud"] {
            let refusal = check_log_filter(bad).unwrap_err();
            assert!(refusal.contains("neither a level"), "{refusal}");
        }
    }
}
