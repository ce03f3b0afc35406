//! The admin API of canaries: `/api/admin/canaries`, for `mall canary` and the admin page.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chassis::{
    auth::{Admin, Role},
    instances::Instances,
    problem::{ApiJson, Problem},
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{Canaries, Cohort, Margins, Phase, Plan, Slot};

/// The body of `PUT /api/admin/canaries/{service}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Base URLs of the new version's instances.
    pub instances: Vec<String>,
    #[serde(default)]
    pub customers: Vec<Uuid>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    #[serde(default = "default_max_error_rate_increase")]
    pub max_error_rate_increase: f64,
    #[serde(default = "default_max_p99_increase_ms")]
    pub max_p99_increase_ms: u64,
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_steps() -> Vec<u8> {
    vec![5, 25, 50, 100]
}
fn default_interval_secs() -> u64 {
    60
}
fn default_max_error_rate_increase() -> f64 {
    0.01
}
fn default_max_p99_increase_ms() -> u64 {
    100
}
fn default_min_requests() -> u64 {
    20
}

const MAX_INSTANCES: usize = 64;
const MAX_COHORT: usize = 10_000;
const MAX_STEPS: usize = 20;

impl PlanRequest {
    /// The plan, or what is wrong with the request. `stable` are the service's own
    /// instances, which a canary must not be.
    fn check(self, stable: &Instances) -> Result<Plan, String> {
        if self.instances.is_empty() || self.instances.len() > MAX_INSTANCES {
            return Err(format!(
                "instances: 1 to {MAX_INSTANCES} base URLs of the new version"
            ));
        }
        let instances: Instances = self.instances.join(",").parse()?;
        let stable_list = stable.to_string();
        let stable_bases: HashSet<&str> = stable_list.split(',').collect();
        if let Some(shared) = instances
            .to_string()
            .split(',')
            .find(|base| stable_bases.contains(base))
        {
            return Err(format!(
                "instances: {shared} is a stable instance of this service; a canary runs \
                 the new version on instances of its own"
            ));
        }
        if self.customers.len() > MAX_COHORT {
            return Err(format!("customers: at most {MAX_COHORT}"));
        }
        let rising = self.steps.windows(2).all(|pair| pair[0] < pair[1]);
        if self.steps.is_empty()
            || self.steps.len() > MAX_STEPS
            || !rising
            || self.steps.last() != Some(&100)
        {
            return Err(format!(
                "steps: 1 to {MAX_STEPS} rising percentages ending at 100, such as 5,25,50,100 \
                 (0 is the cohort alone); got {:?}",
                self.steps
            ));
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err("interval_secs: 1 to 86400".into());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate_increase) {
            return Err("max_error_rate_increase: a fraction from 0 to 1 (0.01 is 1 point)".into());
        }
        if self.max_p99_increase_ms > 600_000 {
            return Err("max_p99_increase_ms: at most 600000".into());
        }
        if !(1..=1_000_000).contains(&self.min_requests) {
            return Err("min_requests: 1 to 1000000".into());
        }
        Ok(Plan {
            instances,
            cohort: Cohort {
                customers: self.customers,
                roles: self.roles,
            },
            steps: self.steps,
            interval_secs: self.interval_secs,
            margins: Margins {
                max_error_rate_increase: self.max_error_rate_increase,
                max_p99_increase: Duration::from_millis(self.max_p99_increase_ms),
                min_requests: self.min_requests,
            },
        })
    }
}

type Shared = State<Arc<Canaries>>;

fn known<'a>(
    canaries: &'a Canaries,
    service: &str,
) -> Result<(&'static str, &'a Instances, &'a Slot), Problem> {
    canaries.service(service).ok_or_else(|| {
        let mut names: Vec<&str> = canaries.services.keys().copied().collect();
        names.sort_unstable();
        Problem::not_found(format!(
            "no service `{service}` behind the gateway; one of {}",
            names.join(", ")
        ))
    })
}

/// A service's canary, or a 404 naming what is missing: the service or its canary.
fn running<'a>(
    canaries: &'a Canaries,
    service: &str,
) -> Result<(&'static str, &'a Slot, Arc<super::Rollout>), Problem> {
    let (name, _, slot) = known(canaries, service)?;
    let rollout = slot
        .current()
        .ok_or_else(|| Problem::not_found(format!("{name} has no canary")))?;
    Ok((name, slot, rollout))
}

fn conflict(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "canary-conflict",
        "The canary is not in a state for that",
        detail,
    )
}

/// Every service's canary.
pub async fn list(State(canaries): Shared, _: Admin) -> Response {
    let mut names: Vec<&str> = canaries.services.keys().copied().collect();
    names.sort_unstable();
    let running: Vec<_> = names
        .into_iter()
        .filter_map(|name| canaries.slot(name).current())
        .map(|rollout| rollout.status())
        .collect();
    Json(json!({ "canaries": running })).into_response()
}

/// One service's canary.
pub async fn show(
    State(canaries): Shared,
    _: Admin,
    Path(service): Path<String>,
) -> Result<Response, Problem> {
    let (_, _, rollout) = running(&canaries, &service)?;
    Ok(Json(rollout.status()).into_response())
}

/// Starts a canary, unless one runs or is promoted and not ended.
pub async fn start(
    State(canaries): Shared,
    Admin(caller): Admin,
    Path(service): Path<String>,
    ApiJson(request): ApiJson<PlanRequest>,
) -> Result<Response, Problem> {
    let (name, stable, slot) = known(&canaries, &service)?;
    let plan = request.check(stable).map_err(Problem::validation)?;
    if let Some(phase) = slot.current().map(|running| running.progress().phase)
        && phase != Phase::RolledBack
    {
        return Err(conflict(format!(
            "{name} has a canary, {phase}: abort it, or end it once promoted, first"
        )));
    }
    let rollout = canaries.start(name, slot, plan);
    tracing::info!(service = name, by = %caller.customer_id, "canary started by an admin");
    Ok((StatusCode::CREATED, Json(rollout.status())).into_response())
}

/// Promotes the canary to every request now.
pub async fn promote(
    State(canaries): Shared,
    _: Admin,
    Path(service): Path<String>,
) -> Result<Response, Problem> {
    change(&canaries, &service, |rollout| rollout.promote())
}

/// Sends every request to the stable version now.
pub async fn abort(
    State(canaries): Shared,
    _: Admin,
    Path(service): Path<String>,
) -> Result<Response, Problem> {
    change(&canaries, &service, |rollout| rollout.abort())
}

fn change(
    canaries: &Canaries,
    service: &str,
    act: impl FnOnce(&super::Rollout) -> Result<(), String>,
) -> Result<Response, Problem> {
    let (_, _, rollout) = running(canaries, service)?;
    act(&rollout).map_err(conflict)?;
    Ok(Json(rollout.status()).into_response())
}

/// Forgets a promoted or rolled-back canary: every request goes to the stable instances
/// (which, after a promotion, run the new version by now).
pub async fn end(
    State(canaries): Shared,
    _: Admin,
    Path(service): Path<String>,
) -> Result<Response, Problem> {
    let (name, slot, rollout) = running(&canaries, &service)?;
    if rollout.progress().phase == Phase::Progressing {
        return Err(conflict(format!(
            "the canary of {name} is progressing: promote or abort it first"
        )));
    }
    canaries.end(name, slot);
    Ok(StatusCode::NO_CONTENT.into_response())
}
