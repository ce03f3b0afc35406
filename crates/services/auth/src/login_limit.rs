//! How often one account's password may be tried: a budget per email (GCRA via
//! `governor`), far below the gateway's per-IP limit, so that guesses spread over many
//! addresses still meet the account's own limit.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use tokio_util::sync::CancellationToken;

use crate::domain::Email;

/// A refused attempt: the email's budget refills enough for one more after `wait`.
#[derive(Debug, thiserror::Error)]
#[error("too many login attempts for this email; retry later")]
pub struct TooManyAttempts {
    pub wait: Duration,
}

impl TooManyAttempts {
    /// `wait` in whole seconds, rounded up, at least one: a `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        let seconds = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        seconds.max(1)
    }
}

pub struct LoginLimit {
    by_email: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LoginLimit {
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        LoginLimit {
            by_email: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt from `email`'s budget, or says how long until there is one.
    pub fn attempt(&self, email: &Email) -> Result<(), TooManyAttempts> {
        self.by_email
            .check_key(&email.as_str().to_owned())
            .map_err(|not_until| TooManyAttempts {
                wait: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Drops the budgets of emails tried no more lately, so the table does not grow
    /// with every address a client makes up.
    pub async fn forget_quiet_emails(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
            self.by_email.retain_recent();
            self.by_email.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_email_has_its_own_budget_and_is_told_when_to_retry() {
        let limit = LoginLimit::new(NonZeroU32::new(6).unwrap(), NonZeroU32::new(2).unwrap());
        let kim = Email::parse("kim@example.com").unwrap();
        let lee = Email::parse("lee@example.com").unwrap();
        assert!(limit.attempt(&kim).is_ok());
        assert!(limit.attempt(&kim).is_ok());
        let refused = limit.attempt(&kim).unwrap_err();
        assert!(
            (1..=10).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        assert!(limit.attempt(&lee).is_ok());
    }
}
