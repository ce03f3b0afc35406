//! Canary releases at the gateway: one service's requests go to a new version's instances
//! for a cohort of customers and a growing share of everyone else, step by step, while
//! the gateway compares what each version answers; a canary that does worse than the
//! stable version is rolled back at once, one that does as well is promoted.
//!
//! Only requests are split. Events are shared by partition among every instance of a
//! consumer group, old and new alike (README, "Canary releases").
//!
//! A canary lives in the memory of the gateway that was told to start it: a gateway that
//! restarts sends everything to the stable version again, the safe side.

mod analysis;
pub mod api;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use chassis::{instances::Instances, telemetry::Metrics};
use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use analysis::Audience;
use analysis::{Cohort, Figures, Margins, Tally, Verdict};

/// How often a running canary's figures are judged, besides at each failed answer.
const REVIEW_EVERY: Duration = Duration::from_millis(100);

/// Which version answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Stable,
    Canary,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::Stable => "stable",
            Version::Canary => "canary",
        }
    }
}

/// What an operator asks for, once checked (see [`api::PlanRequest`]).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "instances_as_list")]
    pub instances: Instances,
    #[serde(flatten)]
    pub cohort: Cohort,
    /// Percentages of everyone outside the cohort, rising, the last 100.
    pub steps: Vec<u8>,
    pub interval_secs: u64,
    #[serde(flatten)]
    pub margins: Margins,
}

fn instances_as_list<S: serde::Serializer>(instances: &Instances, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(instances.to_string().split(','))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Taking its steps.
    Progressing,
    /// Every step passed (or an operator promoted it): it takes every request until the
    /// stable version runs the new code and the canary is ended.
    Promoted,
    /// Worse than the stable version, or aborted: every request goes to the stable one.
    RolledBack,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    upstream: &'static str,
    version: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: &'static str,
}

/// The canary figures in the gateway's `/metrics`.
#[derive(Clone)]
struct CanaryMetrics {
    answers: Family<AnswerLabels, Counter>,
    rollbacks: Family<UpstreamLabels, Counter>,
    weight: Family<UpstreamLabels, Gauge>,
}

impl CanaryMetrics {
    fn register(metrics: &Metrics) -> Self {
        let canary = CanaryMetrics {
            answers: Family::default(),
            rollbacks: Family::default(),
            weight: Family::default(),
        };
        metrics.register(
            "canary_answers",
            "Answers to requests for a service with a canary, by version and outcome (error: 5xx)",
            canary.answers.clone(),
        );
        metrics.register(
            "canary_rollbacks",
            "Canaries rolled back, automatically or by an operator",
            canary.rollbacks.clone(),
        );
        metrics.register(
            "canary_weight_percent",
            "Share of the customers outside the cohort a service's canary takes (0 without one)",
            canary.weight.clone(),
        );
        canary
    }
}

/// One canary of one service, from its start until it is ended.
pub struct Rollout {
    service: &'static str,
    plan: Plan,
    /// The share of everyone outside the cohort taken now, in percent.
    weight: AtomicU8,
    /// Whether the canary takes requests at all (not once rolled back).
    live: AtomicBool,
    /// Since the start, per [`Version`]: stable, canary.
    totals: [Tally; 2],
    /// In the current step.
    step: [Tally; 2],
    progress: Mutex<Progress>,
    metrics: CanaryMetrics,
}

struct Progress {
    phase: Phase,
    step: usize,
    step_started: Instant,
    started_at: DateTime<Utc>,
    reason: Option<String>,
    first_canary_error: Option<Instant>,
    rolled_back_after_first_error: Option<Duration>,
    log: Vec<LogEntry>,
}

#[derive(Debug, Clone, Serialize)]
struct LogEntry {
    at: DateTime<Utc>,
    what: String,
}

/// What `GET /api/admin/canaries` shows of a canary.
#[derive(Debug, Serialize)]
pub struct Status {
    service: &'static str,
    phase: Phase,
    weight_percent: u8,
    step: usize,
    started_at: DateTime<Utc>,
    step_started_secs_ago: u64,
    /// Why it was rolled back.
    reason: Option<String>,
    /// From the canary's first failed answer to its rollback.
    rolled_back_after_first_error_ms: Option<f64>,
    plan: Plan,
    totals: VersionFigures,
    this_step: VersionFigures,
    log: Vec<LogEntry>,
}

#[derive(Debug, Serialize)]
struct VersionFigures {
    stable: Figures,
    canary: Figures,
}

impl Rollout {
    fn new(service: &'static str, plan: Plan, metrics: CanaryMetrics) -> Self {
        let weight = plan.steps[0];
        let mut progress = Progress {
            phase: Phase::Progressing,
            step: 0,
            step_started: Instant::now(),
            started_at: Utc::now(),
            reason: None,
            first_canary_error: None,
            rolled_back_after_first_error: None,
            log: Vec::new(),
        };
        progress.note(format!(
            "started: {} takes the cohort ({}) and {weight} % of everyone else",
            plan.instances, plan.cohort
        ));
        metrics
            .weight
            .get_or_create(&UpstreamLabels { upstream: service })
            .set(i64::from(weight));
        Rollout {
            service,
            plan,
            weight: AtomicU8::new(weight),
            live: AtomicBool::new(true),
            totals: Default::default(),
            step: Default::default(),
            progress: Mutex::new(progress),
            metrics,
        }
    }

    /// Whether it still takes requests (it does not once rolled back).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// The canary's instances when it takes this request, else `None`.
    pub fn takes(&self, audience: Audience) -> Option<&Instances> {
        let weight = self.weight.load(Ordering::Relaxed);
        analysis::takes(&self.plan.cohort, weight, audience).then_some(&self.plan.instances)
    }

    /// Counts an answer of `version`; a failed canary answer is judged at once.
    pub fn record(&self, version: Version, status: u16, took: Duration) {
        let failed = status >= 500;
        let index = version as usize;
        self.totals[index].record(failed, took);
        self.step[index].record(failed, took);
        let labels = AnswerLabels {
            upstream: self.service,
            version: version.name(),
            outcome: if failed { "error" } else { "ok" },
        };
        self.metrics.answers.get_or_create(&labels).inc();
        if failed && version == Version::Canary {
            self.progress()
                .first_canary_error
                .get_or_insert_with(Instant::now);
            self.review();
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("canary progress lock poisoned")
    }

    /// Judges the step so far and acts on the verdict. False once the canary no longer
    /// progresses (promoted or rolled back).
    fn review(&self) -> bool {
        let mut progress = self.progress();
        if progress.phase != Phase::Progressing {
            return false;
        }
        let step_over =
            progress.step_started.elapsed() >= Duration::from_secs(self.plan.interval_secs);
        let verdict = analysis::judge(
            &self.plan.margins,
            &self.totals[Version::Stable as usize].figures(),
            &self.step[Version::Canary as usize].figures(),
            step_over,
        );
        match verdict {
            Verdict::Hold => {}
            Verdict::Promote => self.next_step(&mut progress),
            Verdict::RollBack(why) => self.roll_back(&mut progress, why),
        }
        progress.phase == Phase::Progressing
    }

    fn next_step(&self, progress: &mut Progress) {
        progress.step += 1;
        let Some(&weight) = self.plan.steps.get(progress.step) else {
            progress.step -= 1;
            progress.phase = Phase::Promoted;
            progress.note("promoted: every step passed; the canary takes every request".into());
            tracing::info!(service = self.service, "canary promoted");
            return;
        };
        self.set_weight(weight);
        for tally in &self.step {
            tally.reset();
        }
        progress.step_started = Instant::now();
        progress.note(format!("step passed: now {weight} % of everyone else"));
        tracing::info!(service = self.service, weight, "canary promoted a step");
    }

    fn roll_back(&self, progress: &mut Progress, why: String) {
        self.live.store(false, Ordering::Relaxed);
        self.set_weight(0);
        progress.phase = Phase::RolledBack;
        progress.rolled_back_after_first_error = progress.first_canary_error.map(|at| at.elapsed());
        progress.note(format!("rolled back: {why}"));
        tracing::warn!(service = self.service, reason = %why, "canary rolled back");
        progress.reason = Some(why);
        self.metrics
            .rollbacks
            .get_or_create(&UpstreamLabels {
                upstream: self.service,
            })
            .inc();
    }

    fn set_weight(&self, weight: u8) {
        self.weight.store(weight, Ordering::Relaxed);
        self.metrics
            .weight
            .get_or_create(&UpstreamLabels {
                upstream: self.service,
            })
            .set(i64::from(weight));
    }

    /// An operator's promotion: the canary takes every request now.
    fn promote(&self) -> Result<(), String> {
        let mut progress = self.progress();
        if progress.phase != Phase::Progressing {
            return Err(format!("the canary of {} is not progressing", self.service));
        }
        progress.step = self.plan.steps.len() - 1;
        self.set_weight(100);
        progress.phase = Phase::Promoted;
        progress.note("promoted by an operator: the canary takes every request".into());
        tracing::info!(service = self.service, "canary promoted by an operator");
        Ok(())
    }

    /// An operator's abort: every request goes to the stable version now.
    fn abort(&self) -> Result<(), String> {
        let mut progress = self.progress();
        if progress.phase == Phase::RolledBack {
            return Err(format!(
                "the canary of {} is rolled back already",
                self.service
            ));
        }
        self.roll_back(&mut progress, "aborted by an operator".into());
        Ok(())
    }

    pub fn status(&self) -> Status {
        let progress = self.progress();
        let figures = |tallies: &[Tally; 2]| VersionFigures {
            stable: tallies[Version::Stable as usize].figures(),
            canary: tallies[Version::Canary as usize].figures(),
        };
        Status {
            service: self.service,
            phase: progress.phase,
            weight_percent: self.weight.load(Ordering::Relaxed),
            step: progress.step,
            started_at: progress.started_at,
            step_started_secs_ago: progress.step_started.elapsed().as_secs(),
            reason: progress.reason.clone(),
            rolled_back_after_first_error_ms: progress
                .rolled_back_after_first_error
                .map(|took| took.as_secs_f64() * 1000.0),
            plan: self.plan.clone(),
            totals: figures(&self.totals),
            this_step: figures(&self.step),
            log: progress.log.clone(),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Progressing => "progressing",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled back",
        })
    }
}

impl Progress {
    fn note(&mut self, what: String) {
        self.log.push(LogEntry {
            at: Utc::now(),
            what,
        });
    }
}

/// Where an [`Upstream`](crate::Upstream) finds its service's canary, if one runs.
#[derive(Clone, Default)]
pub struct Slot(Arc<RwLock<Option<Arc<Rollout>>>>);

impl Slot {
    pub fn current(&self) -> Option<Arc<Rollout>> {
        self.0.read().expect("canary slot lock poisoned").clone()
    }

    fn set(&self, rollout: Option<Arc<Rollout>>) {
        *self.0.write().expect("canary slot lock poisoned") = rollout;
    }
}

/// Every service's canary slot, and the stable instances a canary is told apart from.
pub struct Canaries {
    services: HashMap<&'static str, (Instances, Slot)>,
    metrics: CanaryMetrics,
    shutdown: CancellationToken,
}

impl Canaries {
    pub fn new(
        services: impl IntoIterator<Item = (&'static str, Instances)>,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Canaries {
            services: services
                .into_iter()
                .map(|(name, stable)| (name, (stable, Slot::default())))
                .collect(),
            metrics: CanaryMetrics::register(metrics),
            shutdown,
        }
    }

    pub fn slot(&self, service: &str) -> Slot {
        self.services[service].1.clone()
    }

    fn service(&self, name: &str) -> Option<(&'static str, &Instances, &Slot)> {
        self.services
            .get_key_value(name)
            .map(|(name, (stable, slot))| (*name, stable, slot))
    }

    /// Starts a canary and the task that reviews it until it is promoted or rolled back.
    fn start(&self, service: &'static str, slot: &Slot, plan: Plan) -> Arc<Rollout> {
        let rollout = Arc::new(Rollout::new(service, plan, self.metrics.clone()));
        slot.set(Some(rollout.clone()));
        tracing::info!(service, "canary started");
        let reviewed = rollout.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REVIEW_EVERY);
            while reviewed.review() {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => break,
                }
            }
        });
        rollout
    }

    /// Forgets a service's canary: every request goes to its stable instances.
    fn end(&self, service: &'static str, slot: &Slot) {
        slot.set(None);
        self.metrics
            .weight
            .get_or_create(&UpstreamLabels { upstream: service })
            .set(0);
        tracing::info!(service, "canary ended");
    }
}
