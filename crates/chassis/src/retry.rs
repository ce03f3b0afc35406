//! Waiting out a failure that is not the work's fault (a full disk, a broker away): a
//! backoff that grows, and a log line when the trouble starts and one when it ends.

use std::{
    fmt,
    time::{Duration, Instant},
};

use rand::Rng;

/// The longest wait between tries while trouble lasts: short, so that work resumes within
/// a second of the trouble passing, and a failed try is cheap.
pub const TROUBLE_MAX_WAIT: Duration = Duration::from_secs(1);

/// 20 ms, 80 ms, 320 ms, ... capped at `max`, with up to 50 % jitter so that retries of
/// many consumers do not fall into step.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = 20u64
        .saturating_mul(4u64.saturating_pow(attempt.saturating_sub(1)))
        .min(max.as_millis() as u64);
    Duration::from_millis(base + rand::rng().random_range(0..=base / 2))
}

/// The consecutive failures of a loop that retries until it works.
pub struct Trouble {
    /// What fails, for the log ("the outbox relay", "consumer group order").
    what: String,
    failures: u32,
    since: Option<Instant>,
}

impl Trouble {
    pub fn new(what: impl Into<String>) -> Self {
        Trouble {
            what: what.into(),
            failures: 0,
            since: None,
        }
    }

    /// Records a failure; returns how long to wait before the next try. Only the first
    /// failure of a run is logged.
    pub fn failed(&mut self, error: &dyn fmt::Display) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, what = self.what, "failing; retrying with backoff until it works");
            self.since = Some(Instant::now());
        }
        self.failures += 1;
        backoff(self.failures, TROUBLE_MAX_WAIT)
    }

    /// Records a success, which ends a run of failures.
    pub fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                what = self.what,
                failed_tries = self.failures,
                failing_for_secs = since.elapsed().as_secs_f64(),
                "works again"
            );
        }
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Trouble, backoff};

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        assert!(
            backoff(1, max) >= Duration::from_millis(20)
                && backoff(1, max) <= Duration::from_millis(30)
        );
        assert!(backoff(3, max) >= Duration::from_millis(320));
        assert!(backoff(30, max) <= Duration::from_millis(7_500));
    }

    #[test]
    fn a_run_of_failures_waits_longer_each_time_until_a_success() {
        let mut trouble = Trouble::new("the test loop");
        let first = trouble.failed(&"disk full");
        trouble.failed(&"disk full");
        let third = trouble.failed(&"disk full");
        assert!(third > first, "{third:?} after {first:?}");
        trouble.succeeded();
        assert!(
            trouble.failed(&"disk full") <= Duration::from_millis(30),
            "a new run starts from the shortest wait"
        );
    }
}
