//! The canary's analysis: who goes to the canary, each version's figures, and whether a
//! step promotes, holds or rolls back. Pure rules over plain figures.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use chassis::auth::Role;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Who sent a request, as far as routing to a canary goes.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    Customer {
        id: Uuid,
        roles: &'a [Role],
    },
    /// No token: sticky by the client's address.
    Anonymous(IpAddr),
}

/// The customers who always meet the canary: listed ids, and anyone whose token holds one
/// of the listed roles (the shop's staff, `admin`, for a canary they try first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cohort {
    pub customers: Vec<Uuid>,
    pub roles: Vec<Role>,
}

impl std::fmt::Display for Cohort {
    /// "2 customers and roles admin", "no customers and no roles".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.customers.len() {
            0 => f.write_str("no customers")?,
            1 => f.write_str("1 customer")?,
            n => write!(f, "{n} customers")?,
        }
        if self.roles.is_empty() {
            return f.write_str(" and no roles");
        }
        let roles: Vec<&str> = self
            .roles
            .iter()
            .map(|role| match role {
                Role::Customer => "customer",
                Role::Admin => "admin",
            })
            .collect();
        write!(f, " and roles {}", roles.join(", "))
    }
}

impl Cohort {
    fn includes(&self, audience: Audience) -> bool {
        match audience {
            Audience::Customer { id, roles } => {
                self.customers.contains(&id) || roles.iter().any(|role| self.roles.contains(role))
            }
            Audience::Anonymous(_) => false,
        }
    }
}

/// Basis points: a weight of `p` % takes the audiences whose bucket is below `p * 100`.
const BUCKETS: u16 = 10_000;

/// A stable bucket in `0..10_000` for an audience: the same customer (or address) lands in
/// the same bucket on every gateway replica and every step, so a customer who met the
/// canary at 5 % still meets it at 25 %.
fn bucket(audience: Audience) -> u16 {
    let digest = match audience {
        Audience::Customer { id, .. } => Sha256::digest(id.as_bytes()),
        Audience::Anonymous(IpAddr::V4(address)) => Sha256::digest(address.octets()),
        Audience::Anonymous(IpAddr::V6(address)) => Sha256::digest(address.octets()),
    };
    (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % u64::from(BUCKETS)) as u16
}

/// Whether the canary takes a request from `audience` while it has `weight_percent` of
/// everyone outside the cohort.
pub fn takes(cohort: &Cohort, weight_percent: u8, audience: Audience) -> bool {
    cohort.includes(audience) || bucket(audience) < u16::from(weight_percent) * 100
}

/// A version's answers: how many, how many failed (5xx, the gateway's 502 and 504
/// included), and their 99th percentile latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    #[serde(rename = "p99_ms", serialize_with = "as_millis")]
    pub p99: Option<Duration>,
}

fn as_millis<S: serde::Serializer>(p99: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match p99 {
        Some(p99) => s.serialize_f64(p99.as_secs_f64() * 1000.0),
        None => s.serialize_none(),
    }
}

impl Figures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// How much worse than the stable version a canary may be.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Margins {
    /// Added to the stable version's error rate (0.01: one percentage point).
    pub max_error_rate_increase: f64,
    #[serde(rename = "max_p99_increase_ms", serialize_with = "duration_as_millis")]
    pub max_p99_increase: Duration,
    /// Answers a version must have given before its figures are judged.
    pub min_requests: u64,
}

fn duration_as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough answers yet, or the step's interval is not over.
    Hold,
    /// The step's interval is over and the canary did as well as the stable version.
    Promote,
    /// The canary is worse than the stable version by more than a margin: why.
    RollBack(String),
}

/// Judges the canary's answers in this step against the stable version's. The stable
/// version is compared only once it has `min_requests` answers of its own; before that its
/// error rate counts as 0 and its latency is not compared.
pub fn judge(margins: &Margins, stable: &Figures, canary: &Figures, step_over: bool) -> Verdict {
    if canary.requests < margins.min_requests {
        return Verdict::Hold;
    }
    let stable_judged = stable.requests >= margins.min_requests;
    let stable_rate = if stable_judged {
        stable.error_rate()
    } else {
        0.0
    };
    if canary.error_rate() > stable_rate + margins.max_error_rate_increase {
        return Verdict::RollBack(format!(
            "{:.1} % of the canary's answers failed against {:.1} % of the stable version's \
             (margin {:.1} points)",
            canary.error_rate() * 100.0,
            stable_rate * 100.0,
            margins.max_error_rate_increase * 100.0
        ));
    }
    if let (true, Some(canary_p99), Some(stable_p99)) = (stable_judged, canary.p99, stable.p99)
        && canary_p99 > stable_p99 + margins.max_p99_increase
    {
        return Verdict::RollBack(format!(
            "the canary's p99 is {} ms against the stable version's {} ms (margin {} ms)",
            canary_p99.as_millis(),
            stable_p99.as_millis(),
            margins.max_p99_increase.as_millis()
        ));
    }
    if step_over {
        Verdict::Promote
    } else {
        Verdict::Hold
    }
}

/// Latency buckets: the first ends at 50 µs, each next one 10 % wider, the last past 2 min.
const LATENCY_BUCKETS: usize = 160;
const FIRST_BUCKET_END_MICROS: f64 = 50.0;
const BUCKET_GROWTH: f64 = 1.1;

/// One version's answers, counted as they come by any number of requests at once.
///
/// Written here rather than taken from a crate: prometheus-client's histogram does not
/// give its buckets back to read a percentile from, and hdrhistogram records through
/// `&mut` (or a synchronising phase); this one records with a few relaxed atomic adds and
/// starts again at each step. A percentile read from it is within 10 % above the truth.
pub struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    latencies: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latencies: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    pub fn record(&self, failed: bool, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latencies[latency_bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Figures {
        let counts: Vec<u64> = self
            .latencies
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        let counted: u64 = counts.iter().sum();
        let rank = counted - counted / 100; // the 99th percentile's rank, 1-based
        let mut seen = 0;
        let p99 = counts.iter().position(|count| {
            seen += count;
            counted > 0 && seen >= rank
        });
        Figures {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p99: p99.map(bucket_end),
        }
    }

    /// Starts counting again (a request counted meanwhile may land on either side).
    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for count in &self.latencies {
            count.store(0, Ordering::Relaxed);
        }
    }
}

fn latency_bucket(took: Duration) -> usize {
    let micros = took.as_secs_f64() * 1e6;
    if micros <= FIRST_BUCKET_END_MICROS {
        return 0;
    }
    let index = (micros / FIRST_BUCKET_END_MICROS).ln() / BUCKET_GROWTH.ln();
    (index.ceil() as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_end(index: usize) -> Duration {
    Duration::from_secs_f64(FIRST_BUCKET_END_MICROS * BUCKET_GROWTH.powi(index as i32) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGINS: Margins = Margins {
        max_error_rate_increase: 0.01,
        max_p99_increase: Duration::from_millis(100),
        min_requests: 20,
    };

    fn figures(requests: u64, errors: u64, p99_ms: u64) -> Figures {
        Figures {
            requests,
            errors,
            p99: Some(Duration::from_millis(p99_ms)),
        }
    }

    #[test]
    fn too_few_canary_answers_are_not_judged_however_bad() {
        let stable = figures(1_000, 0, 10);
        let verdict = judge(&MARGINS, &stable, &figures(19, 19, 5_000), true);
        assert_eq!(verdict, Verdict::Hold);
    }

    #[test]
    fn a_canary_failing_more_than_the_margin_rolls_back_before_its_step_is_over() {
        let stable = figures(1_000, 10, 10); // 1 %
        let Verdict::RollBack(why) = judge(&MARGINS, &stable, &figures(100, 3, 10), false) else {
            panic!("3 % against 1 % with a 1-point margin must roll back");
        };
        assert!(why.contains("3.0 %") && why.contains("1.0 %"), "{why}");
        assert_eq!(
            judge(&MARGINS, &stable, &figures(100, 2, 10), false),
            Verdict::Hold,
            "2 % is within the margin"
        );
    }

    #[test]
    fn a_slower_canary_rolls_back_and_one_within_the_margin_is_promoted() {
        let stable = figures(1_000, 0, 40);
        assert!(matches!(
            judge(&MARGINS, &stable, &figures(100, 0, 141), false),
            Verdict::RollBack(why) if why.contains("141 ms")
        ));
        assert_eq!(
            judge(&MARGINS, &stable, &figures(100, 0, 140), true),
            Verdict::Promote
        );
    }

    #[test]
    fn a_stable_version_with_few_answers_is_a_baseline_of_no_errors_and_no_latency() {
        let stable = figures(5, 5, 10);
        assert!(matches!(
            judge(&MARGINS, &stable, &figures(100, 2, 10), false),
            Verdict::RollBack(_)
        ));
        assert_eq!(
            judge(&MARGINS, &stable, &figures(100, 0, 10_000), true),
            Verdict::Promote
        );
    }

    #[test]
    fn the_cohort_always_meets_the_canary_and_nobody_else_at_weight_zero() {
        let listed = Uuid::now_v7();
        let cohort = Cohort {
            customers: vec![listed],
            roles: vec![Role::Admin],
        };
        let customer = |id| Audience::Customer {
            id,
            roles: &[Role::Customer],
        };
        assert!(takes(&cohort, 0, customer(listed)));
        let staff = Audience::Customer {
            id: Uuid::now_v7(),
            roles: &[Role::Customer, Role::Admin],
        };
        assert!(takes(&cohort, 0, staff));
        assert!((0..1_000).all(|_| !takes(&cohort, 0, customer(Uuid::now_v7()))));
        assert!((0..1_000).all(|_| takes(&cohort, 100, customer(Uuid::now_v7()))));
    }

    #[test]
    fn a_weight_takes_about_its_share_and_keeps_whom_it_took_as_it_grows() {
        let cohort = Cohort::default();
        let audiences: Vec<Audience> = (0..10_000)
            .map(|_| Audience::Customer {
                id: Uuid::now_v7(),
                roles: &[],
            })
            .collect();
        let at_5: Vec<bool> = audiences.iter().map(|a| takes(&cohort, 5, *a)).collect();
        let share = at_5.iter().filter(|taken| **taken).count();
        assert!((400..600).contains(&share), "5 % took {share} of 10,000");
        for (audience, taken) in audiences.iter().zip(&at_5) {
            assert_eq!(takes(&cohort, 5, *audience), *taken, "sticky");
            assert!(!taken || takes(&cohort, 25, *audience), "kept at 25 %");
        }
        let address = Audience::Anonymous("127.0.0.1".parse().unwrap());
        assert_eq!(takes(&cohort, 50, address), takes(&cohort, 50, address));
    }

    #[test]
    fn a_tally_reads_its_99th_percentile_within_ten_percent() {
        let tally = Tally::default();
        for ms in 1..=1_000 {
            tally.record(ms % 100 == 0, Duration::from_millis(ms));
        }
        let figures = tally.figures();
        assert_eq!((figures.requests, figures.errors), (1_000, 10));
        let p99 = figures.p99.unwrap().as_secs_f64() * 1000.0;
        assert!((990.0..=990.0 * 1.1).contains(&p99), "p99 {p99} ms");
        tally.reset();
        assert_eq!(tally.figures(), Figures::default());
    }
}
