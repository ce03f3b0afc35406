//! How events shape my page. Pure: an event becomes the row changes it makes.
//!
//! Each status has a rank and only moves to a higher one, so the row ends the same
//! whatever order events of different services arrive in, and applying an event twice
//! changes nothing.

use contracts::{
    DecodeError, Envelope,
    events::{
        DeliveryCancellationRefused, DeliveryCancelled, DeliveryCompleted, DeliveryStarted,
        OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected,
        PaymentAuthorized, PaymentDeclined, PaymentRefunded,
    },
};
use uuid::Uuid;

/// Which status of the row an event moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Order,
    Payment,
    Delivery,
    /// The customer's request to cancel a confirmed order.
    Cancellation,
}

/// One change to my page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The order itself, with what the page shows of it.
    Placed {
        order_id: Uuid,
        customer_id: Uuid,
        product_id: Uuid,
        quantity: u32,
        amount: u64,
    },
    Status {
        order_id: Uuid,
        column: Column,
        status: &'static str,
        rank: i64,
    },
}

fn status(order_id: Uuid, column: Column, status: &'static str, rank: i64) -> Vec<Change> {
    vec![Change::Status {
        order_id,
        column,
        status,
        rank,
    }]
}

/// The changes `event` makes; none for events my page does not show.
pub fn changes(event: &Envelope) -> Result<Vec<Change>, DecodeError> {
    use Column::{Cancellation, Delivery, Order, Payment};
    Ok(match event.event_type.as_str() {
        "OrderPlaced" => {
            let placed: OrderPlaced = event.decode()?;
            let mut changes = vec![Change::Placed {
                order_id: placed.order_id,
                customer_id: placed.customer_id,
                product_id: placed.product_id,
                quantity: placed.quantity,
                amount: placed.amount,
            }];
            changes.extend(status(placed.order_id, Order, "PENDING", 0));
            changes
        }
        "OrderConfirmed" => status(
            event.decode::<OrderConfirmed>()?.order_id,
            Order,
            "CONFIRMED",
            1,
        ),
        "DeliveryStarted" => {
            let id = event.decode::<DeliveryStarted>()?.order_id;
            [
                status(id, Order, "DELIVERING", 2),
                status(id, Delivery, "STARTED", 1),
            ]
            .concat()
        }
        "DeliveryCompleted" => {
            let id = event.decode::<DeliveryCompleted>()?.order_id;
            [
                status(id, Order, "DELIVERED", 3),
                status(id, Delivery, "COMPLETED", 2),
            ]
            .concat()
        }
        "OrderRejected" => status(
            event.decode::<OrderRejected>()?.order_id,
            Order,
            "REJECTED",
            4,
        ),
        "OrderCancelled" => status(
            event.decode::<OrderCancelled>()?.order_id,
            Order,
            "CANCELLED",
            4,
        ),
        "PaymentAuthorized" => status(
            event.decode::<PaymentAuthorized>()?.order_id,
            Payment,
            "AUTHORIZED",
            1,
        ),
        "PaymentDeclined" => status(
            event.decode::<PaymentDeclined>()?.order_id,
            Payment,
            "DECLINED",
            2,
        ),
        "PaymentRefunded" => status(
            event.decode::<PaymentRefunded>()?.order_id,
            Payment,
            "REFUNDED",
            2,
        ),
        "DeliveryCancelled" => status(
            event.decode::<DeliveryCancelled>()?.order_id,
            Delivery,
            "CANCELLED",
            2,
        ),
        "OrderCancellationRequested" => status(
            event.decode::<OrderCancellationRequested>()?.order_id,
            Cancellation,
            "REQUESTED",
            1,
        ),
        "DeliveryCancellationRefused" => status(
            event.decode::<DeliveryCancellationRefused>()?.order_id,
            Cancellation,
            "REFUSED",
            2,
        ),
        _ => vec![],
    })
}

#[cfg(test)]
mod tests {
    use contracts::events::{OrderCancelled, PaymentRefunded};

    use super::*;

    #[test]
    fn a_cancel_outranks_every_earlier_order_status() {
        let id = Uuid::now_v7();
        let cancelled = Envelope::new("order", id, &OrderCancelled { order_id: id }, id);
        let [Change::Status { rank, status, .. }] = changes(&cancelled).unwrap()[..] else {
            panic!("one status change");
        };
        assert_eq!(status, "CANCELLED");
        assert!(rank > 3, "above PENDING, CONFIRMED, DELIVERING, DELIVERED");
    }

    #[test]
    fn a_refused_cancellation_stays_refused_whichever_event_comes_first() {
        let id = Uuid::now_v7();
        let requested = Envelope::new(
            "order",
            id,
            &OrderCancellationRequested { order_id: id },
            id,
        );
        let refused = Envelope::new(
            "delivery",
            id,
            &DeliveryCancellationRefused {
                order_id: id,
                delivery_id: id,
                reason: "delivered".into(),
            },
            id,
        );
        let rank = |event: &Envelope| match changes(event).unwrap()[..] {
            [
                Change::Status {
                    column: Column::Cancellation,
                    rank,
                    ..
                },
            ] => rank,
            ref other => panic!("one cancellation change, not {other:?}"),
        };
        assert!(rank(&refused) > rank(&requested));
    }

    #[test]
    fn a_refund_outranks_the_authorisation() {
        let id = Uuid::now_v7();
        let refunded = Envelope::new(
            "payment",
            id,
            &PaymentRefunded {
                order_id: id,
                payment_id: id,
                amount: 1,
            },
            id,
        );
        assert!(matches!(
            changes(&refunded).unwrap()[..],
            [Change::Status {
                column: Column::Payment,
                rank: 2,
                ..
            }]
        ));
    }
}
