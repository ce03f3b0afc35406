//! What the operations view shows of each service, from its instances' expositions: the
//! figures of one instance ([`Figures`]), what its counters gained between two readings,
//! and the sums over a service's instances as the view shows them ([`ServiceSummary`]).
//! Pure: no I/O, so that each rule (sums, the worst breaker, the largest dead-letter
//! count, a restarted instance's counters) is tested on its own.

use std::collections::BTreeMap;

use serde::Serialize;

use super::exposition::{self, Sample};

/// The saga latency SLO (deploy/monitoring/rules/slo.yml): this share of orders confirmed
/// within [`SAGA_THRESHOLD_SECONDS`] of their placement, a bucket boundary of order's
/// saga histogram.
const SAGA_OBJECTIVE: f64 = 0.99;
const SAGA_THRESHOLD_SECONDS: f64 = 2.5;

/// The quantile of request latency shown.
const LATENCY_QUANTILE: f64 = 0.99;

/// What one instance's `/metrics` says, of what the view shows.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Figures {
    /// When the instance's process started: counters count from 0 after a restart.
    started_at: Option<f64>,
    counters: Counters,
    gauges: Gauges,
}

/// Figures that only grow while the process runs: the view shows their rates.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Counters {
    /// HTTP answers, health checks and scrapes aside (as the availability SLO counts).
    requests: f64,
    /// Those that were 5xx.
    errors: f64,
    /// Their latency histogram, summed over routes.
    latency: Buckets,
    orders_placed: f64,
    orders_confirmed: f64,
    /// Sagas from placed to confirmed, and those that took at most the objective.
    sagas_confirmed: f64,
    sagas_confirmed_in_time: f64,
}

/// Figures that say how things are now.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Gauges {
    /// `None` where the service keeps no outbox.
    outbox_backlog: Option<f64>,
    /// By consumer group, summed over topics and partitions.
    consumer_lag: BTreeMap<String, f64>,
    /// By consumer group.
    dead_letters: BTreeMap<String, f64>,
    /// By upstream.
    breakers: BTreeMap<String, Breaker>,
}

/// A circuit breaker's state, ordered from best to worst: of several instances' breakers
/// the view shows the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Breaker {
    Closed,
    /// Letting one probe through.
    HalfOpen,
    Open,
}

impl Breaker {
    /// The gauge's encoding: 0 closed, 1 open, 2 half-open.
    fn from_gauge(value: f64) -> Option<Breaker> {
        match value {
            0.0 => Some(Breaker::Closed),
            1.0 => Some(Breaker::Open),
            2.0 => Some(Breaker::HalfOpen),
            _ => None,
        }
    }
}

/// A cumulative histogram: the count at or below each upper bound, in order of the
/// bounds, `+Inf` last.
#[derive(Debug, Default, Clone, PartialEq)]
struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    fn add(&mut self, le: f64, count: f64) {
        match self.0.iter_mut().find(|(bound, _)| *bound == le) {
            Some((_, sum)) => *sum += count,
            None => {
                let at = self.0.partition_point(|(bound, _)| *bound < le);
                self.0.insert(at, (le, count));
            }
        }
    }

    fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, count)| *count)
    }

    /// The `q` quantile, interpolated within its bucket as Prometheus's
    /// `histogram_quantile` does; beyond the last finite bound, that bound. `None` with
    /// nothing counted.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, count) in &self.0 {
            if count >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let share = if count > below {
                    (rank - below) / (count - below)
                } else {
                    1.0
                };
                return Some(lower + (upper - lower) * share);
            }
            (lower, below) = (upper, count);
        }
        Some(lower)
    }
}

/// The route label of the chassis's health checks and scrapes: the view's own readings,
/// and a load balancer's or Prometheus's, are not the service's traffic.
fn is_operators_route(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

impl Figures {
    /// The figures of an exposition; an error names a line that is not a sample.
    pub fn read(exposition: &str) -> Result<Figures, String> {
        let mut figures = Figures::default();
        for sample in exposition::samples(exposition) {
            figures.take(&sample?);
        }
        Ok(figures)
    }

    fn take(&mut self, sample: &Sample) {
        let (counters, gauges) = (&mut self.counters, &mut self.gauges);
        let value = sample.value;
        let route_counted = || {
            sample
                .label("route")
                .is_some_and(|r| !is_operators_route(r))
        };
        let le = || sample.label("le").and_then(|le| le.parse::<f64>().ok());
        let confirmed = || sample.label("until") == Some("confirmed");
        let group = || sample.label("group").unwrap_or_default().to_owned();
        match sample.name {
            "mall_http_requests_total" if route_counted() => {
                counters.requests += value;
                if sample.label("status").is_some_and(|s| s.starts_with('5')) {
                    counters.errors += value;
                }
            }
            "mall_http_request_duration_seconds_bucket" if route_counted() => {
                if let Some(le) = le() {
                    counters.latency.add(le, value);
                }
            }
            "mall_process_start_time_seconds" => self.started_at = Some(value),
            "mall_orders_placed_total" => counters.orders_placed += value,
            "mall_orders_confirmed_total" => counters.orders_confirmed += value,
            "mall_saga_duration_seconds_count" if confirmed() => counters.sagas_confirmed += value,
            "mall_saga_duration_seconds_bucket"
                if confirmed() && le() == Some(SAGA_THRESHOLD_SECONDS) =>
            {
                counters.sagas_confirmed_in_time += value;
            }
            "mall_outbox_backlog" => *gauges.outbox_backlog.get_or_insert(0.0) += value,
            "mall_consumer_lag" => *gauges.consumer_lag.entry(group()).or_default() += value,
            "mall_dead_letters" => {
                let count = gauges.dead_letters.entry(group()).or_default();
                *count = count.max(value);
            }
            "mall_circuit_breaker_state" => {
                if let Some(state) = Breaker::from_gauge(value) {
                    let upstream = sample.label("upstream").unwrap_or_default().to_owned();
                    let worst = gauges.breakers.entry(upstream).or_insert(state);
                    *worst = (*worst).max(state);
                }
            }
            _ => {}
        }
    }
}

/// A counter's gain from `then` to `now`. A smaller value means it counted from 0 again
/// (as Prometheus's `rate` reads a reset).
fn gain(now: f64, then: f64) -> f64 {
    if now >= then { now - then } else { now }
}

impl Figures {
    /// What the counters gained since `earlier`, a reading of the same instance: all of
    /// them when its process started anew in between, since a counter that is higher
    /// after a restart (a histogram's bucket, say) does not show it.
    pub fn gained_since(&self, earlier: &Figures) -> Counters {
        if self.started_at != earlier.started_at {
            return self.counters.clone();
        }
        self.counters.since(&earlier.counters)
    }
}

impl Counters {
    /// What each counter gained since `earlier`.
    fn since(&self, earlier: &Counters) -> Counters {
        let mut latency = Buckets::default();
        for &(le, count) in &self.latency.0 {
            let before = earlier
                .latency
                .0
                .iter()
                .find(|(bound, _)| *bound == le)
                .map_or(0.0, |(_, count)| *count);
            latency.add(le, gain(count, before));
        }
        Counters {
            requests: gain(self.requests, earlier.requests),
            errors: gain(self.errors, earlier.errors),
            latency,
            orders_placed: gain(self.orders_placed, earlier.orders_placed),
            orders_confirmed: gain(self.orders_confirmed, earlier.orders_confirmed),
            sagas_confirmed: gain(self.sagas_confirmed, earlier.sagas_confirmed),
            sagas_confirmed_in_time: gain(
                self.sagas_confirmed_in_time,
                earlier.sagas_confirmed_in_time,
            ),
        }
    }

    fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        for &(le, count) in &other.latency.0 {
            self.latency.add(le, count);
        }
        self.orders_placed += other.orders_placed;
        self.orders_confirmed += other.orders_confirmed;
        self.sagas_confirmed += other.sagas_confirmed;
        self.sagas_confirmed_in_time += other.sagas_confirmed_in_time;
    }
}

impl Gauges {
    /// Another instance's gauges into these: backlogs and lags add up; dead letters are
    /// the largest count (every instance reads the same table); a breaker, the worst.
    fn merge(&mut self, other: &Gauges) {
        if let Some(backlog) = other.outbox_backlog {
            *self.outbox_backlog.get_or_insert(0.0) += backlog;
        }
        for (group, lag) in &other.consumer_lag {
            *self.consumer_lag.entry(group.clone()).or_default() += lag;
        }
        for (group, count) in &other.dead_letters {
            let largest = self.dead_letters.entry(group.clone()).or_default();
            *largest = largest.max(*count);
        }
        for (upstream, state) in &other.breakers {
            let worst = self.breakers.entry(upstream.clone()).or_insert(*state);
            *worst = (*worst).max(*state);
        }
    }
}

/// One instance as read now: whether it is ready (or why not), its figures (or why
/// there are none), and what its counters gained since the previous reading, when that
/// reading had them too.
pub(super) struct InstanceReading {
    pub url: String,
    pub ready: Result<(), String>,
    pub figures: Result<Figures, String>,
    pub gained: Option<Counters>,
}

/// An instance in the answer: ready, or why not; or, ready, why it has no figures.
#[derive(Debug, Serialize)]
pub(super) struct InstanceHealth {
    url: String,
    ready: bool,
    reason: Option<String>,
}

/// One service in the answer. Rates are per second over the interval between the two
/// readings, of the instances read both times; `None` (null) without two readings.
#[derive(Debug, Serialize)]
pub(super) struct ServiceSummary {
    service: &'static str,
    /// Every instance ready.
    ready: bool,
    instances: Vec<InstanceHealth>,
    requests_per_second: Option<f64>,
    /// 5xx answers.
    errors_per_second: Option<f64>,
    /// 5xx answers over all answers; `None` with no answers.
    error_ratio: Option<f64>,
    /// The 99th percentile of the answers' latency, from the histogram's buckets.
    p99_seconds: Option<f64>,
    outbox_backlog: Option<f64>,
    consumer_lag: BTreeMap<String, f64>,
    dead_letters: BTreeMap<String, f64>,
    breakers: BTreeMap<String, Breaker>,
}

/// The saga in the answer: orders per second, and the share of orders confirmed within
/// the threshold (the saga latency SLI) over the interval and since order started, beside
/// the SLO's objective for it.
#[derive(Debug, Serialize)]
pub(super) struct SagaSummary {
    objective: f64,
    threshold_seconds: f64,
    orders_placed_per_second: Option<f64>,
    orders_confirmed_per_second: Option<f64>,
    /// `None` with no order confirmed in the interval.
    confirmed_in_time: Option<f64>,
    confirmed_in_time_since_start: Option<f64>,
}

/// Sums of every instance of a service, of the whole shop for the saga.
#[derive(Default)]
pub(super) struct Totals {
    now: Counters,
    gained: Option<Counters>,
}

impl Totals {
    fn add(&mut self, instance: &InstanceReading) {
        if let Ok(figures) = &instance.figures {
            self.now.add(&figures.counters);
        }
        if let Some(gained) = &instance.gained {
            self.gained.get_or_insert_default().add(gained);
        }
    }

    pub fn merge(&mut self, other: &Totals) {
        self.now.add(&other.now);
        if let Some(gained) = &other.gained {
            self.gained.get_or_insert_default().add(gained);
        }
    }

    /// The saga's figures over `interval_seconds` (`None`: the first reading).
    pub fn saga(&self, interval_seconds: Option<f64>) -> SagaSummary {
        let gained = self.gained.as_ref().zip(interval_seconds);
        let per_second = |count: fn(&Counters) -> f64| gained.map(|(g, s)| count(g) / s);
        let in_time = |c: &Counters| {
            (c.sagas_confirmed > 0.0).then(|| c.sagas_confirmed_in_time / c.sagas_confirmed)
        };
        SagaSummary {
            objective: SAGA_OBJECTIVE,
            threshold_seconds: SAGA_THRESHOLD_SECONDS,
            orders_placed_per_second: per_second(|c| c.orders_placed),
            orders_confirmed_per_second: per_second(|c| c.orders_confirmed),
            confirmed_in_time: gained.and_then(|(g, _)| in_time(g)),
            confirmed_in_time_since_start: in_time(&self.now),
        }
    }
}

/// A service's summary from its instances' readings; also its totals, for the saga.
pub(super) fn summarize(
    service: &'static str,
    instances: &[InstanceReading],
    interval_seconds: Option<f64>,
) -> (ServiceSummary, Totals) {
    let mut totals = Totals::default();
    let mut gauges = Gauges::default();
    for instance in instances {
        totals.add(instance);
        if let Ok(figures) = &instance.figures {
            gauges.merge(&figures.gauges);
        }
    }
    let gained = totals.gained.as_ref().zip(interval_seconds);
    let summary = ServiceSummary {
        service,
        ready: instances.iter().all(|i| i.ready.is_ok()),
        instances: instances
            .iter()
            .map(|i| InstanceHealth {
                url: i.url.clone(),
                ready: i.ready.is_ok(),
                reason: match (&i.ready, &i.figures) {
                    (Err(why), _) => Some(why.clone()),
                    (Ok(()), Err(why)) => Some(format!("no figures: {why}")),
                    (Ok(()), Ok(_)) => None,
                },
            })
            .collect(),
        requests_per_second: gained.map(|(g, s)| g.requests / s),
        errors_per_second: gained.map(|(g, s)| g.errors / s),
        error_ratio: gained
            .filter(|(g, _)| g.requests > 0.0)
            .map(|(g, _)| g.errors / g.requests),
        p99_seconds: gained.and_then(|(g, _)| g.latency.quantile(LATENCY_QUANTILE)),
        outbox_backlog: gauges.outbox_backlog,
        consumer_lag: gauges.consumer_lag,
        dead_letters: gauges.dead_letters,
        breakers: gauges.breakers,
    };
    (summary, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance of order whose figures are these lines.
    fn order(lines: &str) -> Figures {
        Figures::read(lines).unwrap()
    }

    fn reading(url: &str, now: &Figures, before: Option<&Figures>) -> InstanceReading {
        InstanceReading {
            url: url.to_owned(),
            ready: Ok(()),
            figures: Ok(now.clone()),
            gained: before.map(|b| now.gained_since(b)),
        }
    }

    const BEFORE: &str = r#"
mall_http_requests_total{service="order",method="POST",route="/orders",status="202"} 10
mall_http_requests_total{service="order",method="GET",route="/orders/{id}",status="503"} 1
mall_http_requests_total{service="order",method="GET",route="/health/ready",status="503"} 50
mall_http_requests_total{service="order",method="GET",route="/metrics",status="200"} 50
mall_http_request_duration_seconds_bucket{le="0.01",method="POST",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="0.1",method="POST",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="0.01",method="GET",route="/orders/{id}"} 0
mall_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/orders/{id}"} 0
mall_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/orders/{id}"} 1
mall_orders_placed_total{service="order"} 10
mall_orders_confirmed_total{service="order"} 9
mall_saga_duration_seconds_count{until="confirmed"} 9
mall_saga_duration_seconds_bucket{le="2.5",until="confirmed"} 9
mall_saga_duration_seconds_count{until="final"} 100
mall_saga_duration_seconds_bucket{le="2.5",until="final"} 0
"#;

    const NOW: &str = r#"
mall_http_requests_total{service="order",method="POST",route="/orders",status="202"} 30
mall_http_requests_total{service="order",method="GET",route="/orders/{id}",status="503"} 3
mall_http_requests_total{service="order",method="GET",route="/orders/{id}",status="500"} 7
mall_http_requests_total{service="order",method="GET",route="/health/ready",status="503"} 90
mall_http_requests_total{service="order",method="GET",route="/metrics",status="200"} 90
mall_http_request_duration_seconds_bucket{le="0.01",method="POST",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="0.1",method="POST",route="/orders"} 30
mall_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/orders"} 30
mall_http_request_duration_seconds_bucket{le="0.01",method="GET",route="/orders/{id}"} 0
mall_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/orders/{id}"} 0
mall_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/orders/{id}"} 10
mall_http_request_duration_seconds_bucket{le="0.01",method="GET",route="/metrics"} 0
mall_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/metrics"} 0
mall_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/metrics"} 900
mall_orders_placed_total{service="order"} 30
mall_orders_confirmed_total{service="order"} 29
mall_saga_duration_seconds_count{until="confirmed"} 29
mall_saga_duration_seconds_bucket{le="2.5",until="confirmed"} 28
mall_outbox_backlog{service="order"} 4
mall_consumer_lag{service="order",topic="a",group="order",partition="0"} 2
mall_consumer_lag{service="order",topic="b",group="order",partition="1"} 3
mall_dead_letters{service="order",group="order"} 1
mall_circuit_breaker_state{service="order",upstream="product"} 0
"#;

    fn json(value: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn rates_are_what_counters_gained_over_the_interval_health_checks_and_scrapes_aside() {
        let (before, now) = (order(BEFORE), order(NOW));
        let (summary, totals) = summarize("order", &[reading("a", &now, Some(&before))], Some(2.0));
        let summary = json(&summary);
        // 20 accepted + 2 and 7 errors more, over 2 s; health and /metrics not counted.
        assert_eq!(summary["requests_per_second"], 14.5);
        assert_eq!(summary["errors_per_second"], 4.5);
        assert_eq!(summary["error_ratio"], 9.0 / 29.0);
        // 29 answers in the interval: 20 within 0.1 s, 9 beyond it (the +Inf bucket), so
        // the p99 is the last finite bound.
        assert_eq!(summary["p99_seconds"], 0.1);
        assert_eq!(summary["outbox_backlog"], 4.0);
        assert_eq!(summary["consumer_lag"], serde_json::json!({"order": 5.0}));
        assert_eq!(summary["dead_letters"], serde_json::json!({"order": 1.0}));
        assert_eq!(
            summary["breakers"],
            serde_json::json!({"product": "closed"})
        );
        assert_eq!(summary["ready"], true);
        assert_eq!(summary["instances"][0]["reason"], serde_json::Value::Null);

        let saga = json(&totals.saga(Some(2.0)));
        assert_eq!(saga["orders_placed_per_second"], 10.0);
        assert_eq!(saga["orders_confirmed_per_second"], 10.0);
        // In the interval 20 confirmed, 19 within 2.5 s; since the start 28 of 29.
        assert_eq!(saga["confirmed_in_time"], 19.0 / 20.0);
        assert_eq!(saga["confirmed_in_time_since_start"], 28.0 / 29.0);
        assert_eq!(saga["threshold_seconds"], 2.5);
        assert_eq!(saga["objective"], 0.99);
    }

    #[test]
    fn the_first_reading_has_no_rates_but_every_gauge() {
        let now = order(NOW);
        let (summary, totals) = summarize("order", &[reading("a", &now, None)], None);
        let summary = json(&summary);
        for rate in [
            "requests_per_second",
            "errors_per_second",
            "error_ratio",
            "p99_seconds",
        ] {
            assert_eq!(summary[rate], serde_json::Value::Null, "{rate}");
        }
        assert_eq!(summary["outbox_backlog"], 4.0);
        let saga = json(&totals.saga(None));
        assert_eq!(saga["orders_placed_per_second"], serde_json::Value::Null);
        assert_eq!(saga["confirmed_in_time"], serde_json::Value::Null);
        assert_eq!(saga["confirmed_in_time_since_start"], 28.0 / 29.0);
    }

    #[test]
    fn a_restarted_instance_counts_from_zero() {
        let started = |at: &str| format!("mall_process_start_time_seconds {at}\n");
        let before = order(&(started("100.5") + NOW));
        let restarted = order(&(started("160.25") + BEFORE));
        assert_eq!(
            restarted.gained_since(&before),
            restarted.counters,
            "all of it counted since the restart, the buckets that did not go down too"
        );
        // Without a start time, a counter that went down counts from 0 again.
        let (before, restarted) = (order(NOW), order(BEFORE));
        let gained = restarted.gained_since(&before);
        assert_eq!(gained.requests, restarted.counters.requests);
        assert_eq!(gained.orders_placed, restarted.counters.orders_placed);
        // The same process: what it gained.
        let (before, now) = (
            order(&(started("1") + BEFORE)),
            order(&(started("1") + NOW)),
        );
        assert_eq!(now.gained_since(&before).requests, 29.0);
    }

    #[test]
    fn several_instances_add_up_with_dead_letters_their_largest_and_breakers_their_worst() {
        let a = order(
            r#"mall_http_requests_total{route="/orders",status="202"} 10
mall_http_request_duration_seconds_bucket{le="0.01",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="1",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="+Inf",route="/orders"} 10
mall_outbox_backlog 1
mall_consumer_lag{group="order",partition="0"} 4
mall_dead_letters{group="order"} 2
mall_circuit_breaker_state{upstream="product"} 2"#,
        );
        let b = order(
            r#"mall_http_requests_total{route="/orders",status="202"} 30
mall_http_request_duration_seconds_bucket{le="0.01",route="/orders"} 10
mall_http_request_duration_seconds_bucket{le="1",route="/orders"} 30
mall_http_request_duration_seconds_bucket{le="+Inf",route="/orders"} 30
mall_outbox_backlog 2
mall_consumer_lag{group="order",partition="1"} 6
mall_dead_letters{group="order"} 2
mall_circuit_breaker_state{upstream="product"} 1"#,
        );
        let zero = Figures::default();
        let instances = [reading("a", &a, Some(&zero)), reading("b", &b, Some(&zero))];
        let summary = json(&summarize("order", &instances, Some(10.0)).0);
        assert_eq!(summary["requests_per_second"], 4.0);
        assert_eq!(summary["outbox_backlog"], 3.0);
        assert_eq!(summary["consumer_lag"]["order"], 10.0);
        assert_eq!(
            summary["dead_letters"]["order"], 2.0,
            "one table, read twice"
        );
        assert_eq!(summary["breakers"]["product"], "open");
        // 40 answers: 20 within 10 ms, 20 between 10 ms and 1 s; the 99th percentile,
        // the 39.6th, lies 19.6/20 of the way through that bucket.
        let p99 = summary["p99_seconds"].as_f64().unwrap();
        assert!((p99 - (0.01 + 0.99 * 19.6 / 20.0)).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn an_instance_down_makes_its_service_not_ready_and_says_why() {
        let now = order(NOW);
        let down = InstanceReading {
            url: "http://b".into(),
            ready: Err("no answer within 1000 ms".into()),
            figures: Err("no answer within 1000 ms".into()),
            gained: None,
        };
        let unreadable = InstanceReading {
            url: "http://c".into(),
            ready: Ok(()),
            figures: Err("line 3: \"garbage\"".into()),
            gained: None,
        };
        let instances = [reading("http://a", &now, Some(&now)), down, unreadable];
        let summary = json(&summarize("order", &instances, Some(1.0)).0);
        assert_eq!(summary["ready"], false);
        assert_eq!(summary["instances"][1]["ready"], false);
        assert_eq!(
            summary["instances"][1]["reason"],
            "no answer within 1000 ms"
        );
        assert_eq!(summary["instances"][2]["ready"], true);
        assert_eq!(
            summary["instances"][2]["reason"],
            "no figures: line 3: \"garbage\""
        );
        // The one read twice still has its rates: nothing happened there.
        assert_eq!(summary["requests_per_second"], 0.0);
        assert_eq!(summary["error_ratio"], serde_json::Value::Null);
        assert_eq!(summary["p99_seconds"], serde_json::Value::Null);
    }

    #[test]
    fn breaker_gauges_read_as_states() {
        assert_eq!(Breaker::from_gauge(0.0), Some(Breaker::Closed));
        assert_eq!(Breaker::from_gauge(1.0), Some(Breaker::Open));
        assert_eq!(Breaker::from_gauge(2.0), Some(Breaker::HalfOpen));
        assert_eq!(Breaker::from_gauge(3.0), None);
        assert!(Breaker::Open > Breaker::HalfOpen && Breaker::HalfOpen > Breaker::Closed);
    }
}
