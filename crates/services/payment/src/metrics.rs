//! What became of payments, counted when the transaction that records it commits: a
//! rolled-back attempt or a redelivered event (which the inbox skips) counts nothing more.

use chassis::{db::Tx, telemetry::Metrics};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

/// A payment's outcome: its status as stored, and its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Authorized,
    Declined,
    Refunded,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Authorized, Outcome::Declined, Outcome::Refunded];

    fn name(self) -> &'static str {
        match self {
            Outcome::Authorized => "authorized",
            Outcome::Declined => "declined",
            Outcome::Refunded => "refunded",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone)]
pub struct PaymentMetrics {
    payments: Family<OutcomeLabels, Counter>,
}

impl PaymentMetrics {
    /// The metrics, registered with the service's, each outcome's series there from the
    /// start (at 0).
    pub fn new(metrics: &Metrics) -> Self {
        let payments = Family::<OutcomeLabels, Counter>::default();
        for outcome in Outcome::ALL {
            payments.get_or_create_owned(&OutcomeLabels {
                outcome: outcome.name(),
            });
        }
        metrics.register(
            "payments",
            "Payments by outcome: authorized or declined by the provider, refunded after a \
             cancel or a late rejection",
            payments.clone(),
        );
        PaymentMetrics { payments }
    }

    /// Counts `outcome` once `tx` commits.
    pub fn count_on_commit(&self, tx: &mut Tx, outcome: Outcome) {
        let counter = self.payments.get_or_create_owned(&OutcomeLabels {
            outcome: outcome.name(),
        });
        tx.on_commit(move || {
            counter.inc();
        });
    }
}
