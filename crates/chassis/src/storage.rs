//! Whether a database can take work now, learned from the work itself: a full disk, an
//! I/O error or a lost server starts a failure episode, the next successful commit ends
//! it. An episode is logged twice (when it starts, when it ends), however many calls
//! fail in between, and readiness reports it while it lasts.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use prometheus_client::metrics::counter::Counter;

/// The storage-failure state of one database.
#[derive(Debug)]
pub struct StorageHealth {
    /// Names the database in logs and readiness ("the order database", "the event log").
    name: String,
    /// Mirrors `episode.is_some()`, so that a healthy commit checks a flag, not a lock.
    failing: AtomicBool,
    episode: Mutex<Option<Episode>>,
    failed_commits: Counter,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    reason: String,
}

/// The storage failure a response was answered with, for the HTTP stack to record in the
/// service's [`StorageHealth`] (the handler that met it has no handle on it).
#[derive(Debug, Clone)]
pub struct StorageFailure(pub String);

impl StorageHealth {
    pub fn new(name: impl Into<String>) -> Self {
        StorageHealth {
            name: name.into(),
            failing: AtomicBool::new(false),
            episode: Mutex::new(None),
            failed_commits: Counter::default(),
        }
    }

    /// Commits that failed, whatever the cause, for a metric.
    pub fn failed_commits(&self) -> &Counter {
        &self.failed_commits
    }

    /// Records a commit that failed.
    pub fn commit_failed(&self, error: &sqlx::Error) {
        self.failed_commits.inc();
        self.observe(error);
    }

    /// Records `error` if it says the storage cannot take work now (see
    /// [`crate::db::is_storage_failure`]).
    pub fn observe(&self, error: &sqlx::Error) {
        if crate::db::is_storage_failure(error) {
            self.failed(error.to_string());
        }
    }

    /// Records a call that failed because the storage could not take it.
    pub fn failed(&self, reason: String) {
        let mut episode = self.episode.lock().expect("storage health lock poisoned");
        if episode.is_none() {
            tracing::error!(
                storage = self.name,
                error = reason,
                "storage failing: calls are refused with 503 and retried until it recovers"
            );
            *episode = Some(Episode {
                since: Instant::now(),
                reason,
            });
            self.failing.store(true, Ordering::Release);
        }
    }

    /// Records a commit that worked: whatever failed before works again.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut episode = self.episode.lock().expect("storage health lock poisoned");
        if let Some(ended) = episode.take() {
            self.failing.store(false, Ordering::Release);
            tracing::warn!(
                storage = self.name,
                failing_for_secs = ended.since.elapsed().as_secs_f64(),
                "storage recovered"
            );
        }
    }

    /// What is wrong, while an episode lasts.
    pub fn failing(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let episode = self.episode.lock().expect("storage health lock poisoned");
        episode.as_ref().map(|episode| {
            format!(
                "{} has failed for {} s: {}",
                self.name,
                episode.since.elapsed().as_secs(),
                episode.reason
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::StorageHealth;

    #[test]
    fn an_episode_starts_with_a_storage_failure_and_ends_with_a_commit() {
        let health = StorageHealth::new("the test database");
        assert_eq!(health.failing(), None);
        health.succeeded();

        health.commit_failed(&sqlx::Error::RowNotFound);
        assert_eq!(health.failing(), None, "not a storage failure");
        health.observe(&sqlx::Error::PoolTimedOut);
        health.failed("database or disk is full".into());
        let failing = health.failing().expect("failing after a storage failure");
        assert!(
            failing.starts_with("the test database has failed for 0 s: "),
            "{failing}"
        );
        assert!(
            failing.contains("timed out"),
            "the first reason is kept: {failing}"
        );

        health.succeeded();
        assert_eq!(health.failing(), None);
        assert_eq!(
            health.failed_commits().get(),
            1,
            "only the commit is counted"
        );
    }
}
