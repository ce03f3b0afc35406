//! A circuit breaker for a synchronous call to another service: after enough failures in
//! a row it opens and refuses calls at once (the caller answers 503 with `Retry-After`
//! instead of making its own clients wait), then lets one probe through; the probe's
//! success closes it, its failure opens it again.
//!
//! Written here rather than taken from a crate: tower-resilience (a maintained tower
//! layer) would need order's reqwest call, retries included, wrapped as a tower service,
//! and the fallback reports the time left open as `Retry-After`. The whole state machine
//! is the pure [`next`] function below, tested as such; worth revisiting when more calls
//! need a breaker.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus_client::metrics::gauge::Gauge;

use crate::telemetry::{Metrics, UpstreamLabels};

#[derive(clap::Args, Debug, Clone)]
pub struct BreakerSettings {
    /// Failed calls in a row to a service that open its circuit breaker.
    #[arg(long = "breaker-failures", env = "MALL_BREAKER_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub failures_to_open: u32,

    /// How long an open breaker refuses calls before it lets a probe through.
    #[arg(long = "breaker-open-ms", env = "MALL_BREAKER_OPEN_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub open_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out (`probing`) or may go out.
    HalfOpen {
        probing: bool,
    },
}

impl State {
    /// The value of the `circuit_breaker_state` gauge.
    fn gauge(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// A caller asks to make a call.
    Ask,
    Succeeded,
    Failed,
    /// A call was let through and then given up without a verdict.
    Abandoned,
}

/// The breaker's state after `event`, and for `Ask`, whether the call may go (`None`) or
/// how long the caller should wait before trying again.
fn next(
    state: State,
    event: Event,
    now: Instant,
    failures_to_open: u32,
    open_for: Duration,
) -> (State, Option<Duration>) {
    let open = State::Open {
        until: now + open_for,
    };
    match (state, event) {
        (State::Closed { .. }, Event::Ask) => (state, None),
        (State::Closed { .. }, Event::Succeeded) => (State::Closed { failures: 0 }, None),
        (State::Closed { failures }, Event::Failed) if failures + 1 >= failures_to_open => {
            (open, None)
        }
        (State::Closed { failures }, Event::Failed) => (
            State::Closed {
                failures: failures + 1,
            },
            None,
        ),
        (State::Open { until }, Event::Ask) if now < until => (state, Some(until - now)),
        (State::Open { .. }, Event::Ask) => (State::HalfOpen { probing: true }, None),
        (State::HalfOpen { probing: true }, Event::Ask) => (state, Some(open_for)),
        (State::HalfOpen { probing: false }, Event::Ask) => {
            (State::HalfOpen { probing: true }, None)
        }
        (State::HalfOpen { .. }, Event::Succeeded) => (State::Closed { failures: 0 }, None),
        (State::HalfOpen { .. }, Event::Failed) => (open, None),
        (State::HalfOpen { .. }, Event::Abandoned) => (State::HalfOpen { probing: false }, None),
        // Late answers to calls let through before the breaker opened change nothing.
        (State::Open { .. }, _) | (State::Closed { .. }, Event::Abandoned) => (state, None),
    }
}

pub struct CircuitBreaker {
    upstream: &'static str,
    failures_to_open: u32,
    open_for: Duration,
    state: Mutex<State>,
    gauge: Gauge,
}

/// The breaker is open: the call was not made.
#[derive(Debug, thiserror::Error)]
#[error("the circuit breaker to {upstream} is open; try again in {retry_after:?}")]
pub struct Open {
    pub upstream: &'static str,
    pub retry_after: Duration,
}

/// Leave to make one call. Say how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; a permit dropped without either counts as neither.
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    settled: bool,
}

impl Permit<'_> {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.apply(Event::Succeeded);
    }

    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.apply(Event::Failed);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.apply(Event::Abandoned);
        }
    }
}

impl CircuitBreaker {
    pub fn new(upstream: &'static str, settings: &BreakerSettings, metrics: &Metrics) -> Self {
        let gauge = metrics
            .circuit_breaker_state
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .clone();
        gauge.set(0);
        CircuitBreaker {
            upstream,
            failures_to_open: settings.failures_to_open,
            open_for: Duration::from_millis(settings.open_ms),
            state: Mutex::new(State::Closed { failures: 0 }),
            gauge,
        }
    }

    /// Leave to call, or how long until the breaker lets a call through again.
    pub fn admit(&self) -> Result<Permit<'_>, Open> {
        match self.apply(Event::Ask) {
            None => Ok(Permit {
                breaker: self,
                settled: false,
            }),
            Some(retry_after) => Err(Open {
                upstream: self.upstream,
                retry_after,
            }),
        }
    }

    fn apply(&self, event: Event) -> Option<Duration> {
        let mut state = self.state.lock().expect("breaker lock poisoned");
        let (after, wait) = next(
            *state,
            event,
            Instant::now(),
            self.failures_to_open,
            self.open_for,
        );
        if after.name() != state.name() {
            tracing::warn!(
                upstream = self.upstream,
                from = state.name(),
                to = after.name(),
                "circuit breaker changed state"
            );
            self.gauge.set(after.gauge());
        }
        *state = after;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    fn step(state: State, event: Event, now: Instant) -> (State, Option<Duration>) {
        next(state, event, now, 3, OPEN_FOR)
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row_and_a_success_resets_the_count() {
        let now = Instant::now();
        let mut state = State::Closed { failures: 0 };
        for _ in 0..2 {
            state = step(state, Event::Failed, now).0;
        }
        state = step(state, Event::Succeeded, now).0;
        assert_eq!(state, State::Closed { failures: 0 });
        for _ in 0..3 {
            state = step(state, Event::Failed, now).0;
        }
        assert_eq!(
            state,
            State::Open {
                until: now + OPEN_FOR
            }
        );
    }

    #[test]
    fn an_open_breaker_refuses_with_the_time_left_then_lets_one_probe_through() {
        let now = Instant::now();
        let open = State::Open {
            until: now + OPEN_FOR,
        };
        let (state, wait) = step(open, Event::Ask, now + Duration::from_secs(2));
        assert_eq!((state, wait), (open, Some(Duration::from_secs(3))));

        let later = now + OPEN_FOR;
        let (probing, wait) = step(open, Event::Ask, later);
        assert_eq!((probing, wait), (State::HalfOpen { probing: true }, None));
        let (state, wait) = step(probing, Event::Ask, later);
        assert_eq!(state, probing, "only one probe at a time");
        assert!(wait.is_some());
    }

    #[test]
    fn the_probe_decides_closed_or_open_again() {
        let now = Instant::now();
        let probing = State::HalfOpen { probing: true };
        assert_eq!(
            step(probing, Event::Succeeded, now).0,
            State::Closed { failures: 0 }
        );
        assert_eq!(
            step(probing, Event::Failed, now).0,
            State::Open {
                until: now + OPEN_FOR
            }
        );
        assert_eq!(
            step(probing, Event::Abandoned, now).0,
            State::HalfOpen { probing: false },
            "an abandoned probe lets the next caller probe"
        );
    }

    #[test]
    fn late_answers_do_not_close_an_open_breaker() {
        let now = Instant::now();
        let open = State::Open {
            until: now + OPEN_FOR,
        };
        assert_eq!(step(open, Event::Succeeded, now).0, open);
        assert_eq!(step(open, Event::Failed, now).0, open);
    }

    #[test]
    fn a_dropped_permit_frees_the_probe() {
        let metrics = Metrics::new("test");
        let settings = BreakerSettings {
            failures_to_open: 1,
            open_ms: 10,
        };
        let breaker = CircuitBreaker::new("product", &settings, &metrics);
        breaker.admit().unwrap().failed();
        assert!(breaker.admit().is_err());
        std::thread::sleep(Duration::from_millis(15));
        drop(breaker.admit().unwrap());
        breaker.admit().unwrap().succeeded();
        assert!(
            metrics
                .render()
                .contains("circuit_breaker_state{service=\"test\",upstream=\"product\"} 0")
        );
    }
}
