//! Fault injection, for tests and `mall chaos`: added latency and errors on a service's
//! API, and crashes at named points of its event plumbing. Off unless `MALL_FAULTS` names
//! the service; refused when `MALL_ENV=production`.
//!
//! `MALL_FAULTS` is `service:fault,fault;service:fault`, where `service` is a service name
//! or `*` and a fault is `latency-ms=N`, `error-rate=F` (0 to 1) or `crash-at=POINT@P`
//! (probability P, default 1), POINT being one of [`CrashPoint`]'s names, e.g.
//! `product:latency-ms=300;order:crash-at=before-publish@0.02`.

use std::{fmt, time::Duration};

use clap::ValueEnum;
use rand::Rng;

/// Where a service can be made to crash, each a moment where losing the process must not
/// lose or double an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrashPoint {
    /// A state change and its outbox rows are committed; the relay has not published them.
    BeforePublish,
    /// The relay published; it has not yet deleted the outbox rows (they go out again).
    AfterPublish,
    /// A consumer committed its effects; it has not yet committed the offsets (the events
    /// come again).
    BeforeOffsetCommit,
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no variant is skipped");
        f.write_str(name.get_name())
    }
}

/// Which environment the process runs in; production refuses fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("MALL_FAULTS is set, and fault injection is refused when MALL_ENV=production")]
    RefusedInProduction,
    #[error("MALL_FAULTS: {0}")]
    Malformed(String),
}

/// The faults one service injects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Faults {
    pub latency: Duration,
    pub error_rate: f64,
    pub crashes: Vec<(CrashPoint, f64)>,
}

impl Faults {
    pub const NONE: Faults = Faults {
        latency: Duration::ZERO,
        error_rate: 0.0,
        crashes: Vec::new(),
    };

    /// The faults `spec` gives `service` (entries for `*` and for its name, in order).
    pub fn parse(spec: &str, service: &str, environment: Environment) -> Result<Self, FaultError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(Faults::default());
        }
        if environment == Environment::Production {
            return Err(FaultError::RefusedInProduction);
        }
        let malformed = |what: &str| FaultError::Malformed(what.to_owned());
        let mut faults = Faults::default();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (target, list) = entry
                .split_once(':')
                .ok_or_else(|| malformed(&format!("`{entry}` names no service")))?;
            if target != "*" && target != service {
                continue;
            }
            for fault in list.split(',').map(str::trim) {
                let (key, value) = fault
                    .split_once('=')
                    .ok_or_else(|| malformed(&format!("`{fault}` is not key=value")))?;
                match key {
                    "latency-ms" => {
                        let ms = value
                            .parse()
                            .map_err(|_| malformed(&format!("latency-ms `{value}`")))?;
                        faults.latency = Duration::from_millis(ms);
                    }
                    "error-rate" => faults.error_rate = probability(value)?,
                    "crash-at" => {
                        let (point, chance) = value.split_once('@').unwrap_or((value, "1"));
                        let point = CrashPoint::from_str(point, false)
                            .map_err(|_| malformed(&format!("crash point `{point}`")))?;
                        faults.crashes.push((point, probability(chance)?));
                    }
                    other => return Err(malformed(&format!("unknown fault `{other}`"))),
                }
            }
        }
        Ok(faults)
    }

    /// Whether this request should fail (with the configured error rate).
    pub fn should_fail(&self) -> bool {
        self.error_rate > 0.0 && rand::rng().random_bool(self.error_rate)
    }

    /// Ends the process on the spot, as a power cut or a SIGKILL would, if `point` is
    /// configured and its dice say so.
    pub fn maybe_crash(&self, point: CrashPoint) {
        for &(at, chance) in &self.crashes {
            if at == point && rand::rng().random_bool(chance) {
                tracing::error!(%point, "injected crash");
                std::process::abort();
            }
        }
    }
}

fn probability(value: &str) -> Result<f64, FaultError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| FaultError::Malformed(format!("`{value}` is not a probability from 0 to 1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "product:latency-ms=300; *:error-rate=0.1; order:crash-at=before-publish@0.5,crash-at=before-offset-commit";

    #[test]
    fn each_service_takes_its_own_entries_and_the_shared_ones() {
        let product = Faults::parse(SPEC, "product", Environment::Test).unwrap();
        assert_eq!(product.latency, Duration::from_millis(300));
        assert_eq!(product.error_rate, 0.1);
        assert!(product.crashes.is_empty());

        let order = Faults::parse(SPEC, "order", Environment::Development).unwrap();
        assert_eq!(order.latency, Duration::ZERO);
        assert_eq!(
            order.crashes,
            [
                (CrashPoint::BeforePublish, 0.5),
                (CrashPoint::BeforeOffsetCommit, 1.0)
            ]
        );
    }

    #[test]
    fn production_refuses_any_fault_and_an_empty_spec_is_no_fault() {
        assert_eq!(
            Faults::parse(SPEC, "payment", Environment::Production),
            Err(FaultError::RefusedInProduction)
        );
        assert_eq!(
            Faults::parse(" ", "payment", Environment::Production),
            Ok(Faults::NONE)
        );
    }

    #[test]
    fn malformed_specs_say_what_is_wrong() {
        for (spec, mentions) in [
            ("product", "names no service"),
            ("product:latency", "not key=value"),
            ("product:latency-ms=soon", "latency-ms"),
            ("product:error-rate=2", "probability"),
            ("product:crash-at=somewhere", "crash point"),
            ("product:teleport=1", "unknown fault"),
        ] {
            let error = Faults::parse(spec, "product", Environment::Test).unwrap_err();
            assert!(error.to_string().contains(mentions), "{spec}: {error}");
        }
    }
}
