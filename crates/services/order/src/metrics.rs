//! The saga's business metrics: orders placed, confirmed, rejected by cause and
//! cancelled, and how long the saga took. Each is counted when the transaction that moved
//! the order commits, so a rolled-back attempt, a retry or a redelivered answer (which the
//! inbox skips, and `decide` ignores once the order moved on) counts nothing more.

use std::sync::Arc;

use chassis::{db::Tx, telemetry::Metrics};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

use crate::domain::{Order, OrderStatus, RejectionCause};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaLabels {
    /// `confirmed` or `final`.
    until: &'static str,
}

pub struct OrderMetrics {
    placed: Counter,
    confirmed: Counter,
    rejected: Family<RejectedLabels, Counter>,
    cancelled: Counter,
    saga_duration: Family<SagaLabels, Histogram>,
}

impl OrderMetrics {
    /// The metrics, registered with the service's, every series there from the start
    /// (at 0) so that a rate or an alert has a series to read before the first of each.
    pub fn new(metrics: &Metrics) -> Arc<Self> {
        let saga = OrderMetrics {
            placed: Counter::default(),
            confirmed: Counter::default(),
            rejected: Family::default(),
            cancelled: Counter::default(),
            saga_duration: Family::new_with_constructor(|| {
                // The saga takes milliseconds, its deadline 30 s by default.
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ])
            }),
        };
        for cause in RejectionCause::ALL {
            saga.rejected.get_or_create_owned(&RejectedLabels {
                reason: cause.name(),
            });
        }
        for until in ["confirmed", "final"] {
            saga.saga_duration
                .get_or_create_owned(&SagaLabels { until });
        }
        metrics.register("orders_placed", "Orders placed", saga.placed.clone());
        metrics.register(
            "orders_confirmed",
            "Orders confirmed: stock reserved and payment authorised",
            saga.confirmed.clone(),
        );
        metrics.register(
            "orders_rejected",
            "Orders the saga rejected, by cause: out_of_stock, payment_declined, deadline",
            saga.rejected.clone(),
        );
        metrics.register(
            "orders_cancelled",
            "Orders cancelled: by the customer while pending, or called back by delivery",
            saga.cancelled.clone(),
        );
        metrics.register(
            "saga_duration_seconds",
            "Time from an order placed to confirmed (until=confirmed), and to the end of the \
             saga's automatic part: delivering, rejected or cancelled (until=final)",
            saga.saga_duration.clone(),
        );
        Arc::new(saga)
    }

    /// Counts, once `tx` commits, what moving an order from `before` to `after` means for
    /// the saga; `cause` is the rejection's, when the command was one.
    pub fn count_on_commit(
        self: &Arc<Self>,
        tx: &mut Tx,
        before: Option<OrderStatus>,
        after: &Order,
        cause: Option<RejectionCause>,
    ) {
        let Some(step) = SagaStep::of(before, after.status, cause) else {
            return;
        };
        let took = (after.updated_at - after.created_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        let metrics = self.clone();
        tx.on_commit(move || metrics.count(step, took));
    }

    fn count(&self, step: SagaStep, took: f64) {
        match step.milestone {
            Milestone::Placed => {
                self.placed.inc();
            }
            Milestone::Confirmed => {
                self.confirmed.inc();
                self.saga("confirmed").observe(took);
            }
            Milestone::Rejected(cause) => {
                let reason = cause.name();
                self.rejected
                    .get_or_create(&RejectedLabels { reason })
                    .inc();
            }
            Milestone::Cancelled => {
                self.cancelled.inc();
            }
            Milestone::DeliveryStarted => {}
        }
        if step.ends_saga {
            self.saga("final").observe(took);
        }
    }

    fn saga(&self, until: &'static str) -> Histogram {
        self.saga_duration
            .get_or_create_owned(&SagaLabels { until })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Milestone {
    Placed,
    Confirmed,
    Rejected(RejectionCause),
    Cancelled,
    DeliveryStarted,
}

/// What a change of an order's status means for the saga's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SagaStep {
    milestone: Milestone,
    /// The automatic part of the saga is over: the order, placed or confirmed before,
    /// is now delivering, rejected or cancelled. Once per order: none of these leads
    /// back to placed or confirmed.
    ends_saga: bool,
}

impl SagaStep {
    /// `None` when the status did not change (a request, an address change, a late
    /// answer) or changed in a way the saga does not count (delivered).
    fn of(
        before: Option<OrderStatus>,
        after: OrderStatus,
        cause: Option<RejectionCause>,
    ) -> Option<SagaStep> {
        if before == Some(after) {
            return None;
        }
        let milestone = match (after, cause) {
            (OrderStatus::Pending, _) => Milestone::Placed,
            (OrderStatus::Confirmed, _) => Milestone::Confirmed,
            (OrderStatus::Rejected, Some(cause)) => Milestone::Rejected(cause),
            (OrderStatus::Cancelled, _) => Milestone::Cancelled,
            (OrderStatus::Delivering, _) => Milestone::DeliveryStarted,
            // Only a Reject command rejects, and it names its cause.
            (OrderStatus::Rejected, None) | (OrderStatus::Delivered, _) => return None,
        };
        let ends_saga = matches!(before, Some(OrderStatus::Pending | OrderStatus::Confirmed))
            && matches!(
                after,
                OrderStatus::Delivering | OrderStatus::Rejected | OrderStatus::Cancelled
            );
        Some(SagaStep {
            milestone,
            ends_saga,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    fn step(before: Option<OrderStatus>, after: OrderStatus) -> Option<(Milestone, bool)> {
        SagaStep::of(before, after, Some(RejectionCause::Deadline))
            .map(|step| (step.milestone, step.ends_saga))
    }

    #[test]
    fn each_order_ends_its_saga_once_and_is_counted_at_each_milestone() {
        assert_eq!(step(None, Pending), Some((Milestone::Placed, false)));
        assert_eq!(
            step(Some(Pending), Confirmed),
            Some((Milestone::Confirmed, false))
        );
        assert_eq!(
            step(Some(Confirmed), Delivering),
            Some((Milestone::DeliveryStarted, true))
        );
        assert_eq!(
            step(Some(Pending), Rejected),
            Some((Milestone::Rejected(RejectionCause::Deadline), true))
        );
        for before in [Pending, Confirmed] {
            assert_eq!(
                step(Some(before), Cancelled),
                Some((Milestone::Cancelled, true))
            );
        }
        assert_eq!(
            step(Some(Delivering), Cancelled),
            Some((Milestone::Cancelled, false)),
            "a cancel granted once delivering is counted; the saga ended before"
        );
        assert_eq!(step(Some(Delivering), Delivered), None);
        assert_eq!(step(Some(Confirmed), Confirmed), None, "a late answer");
    }
}
