//! Order's part in the saga: answers from product, payment and delivery move the order on.

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::Tx,
};
use contracts::events::{
    DeliveryCompleted, DeliveryStarted, PaymentAuthorized, PaymentDeclined, StockReservationFailed,
};

use crate::{domain::OrderCommand, execute};

pub struct SagaAnswers;

impl EventHandler for SagaAnswers {
    async fn handle(&self, conn: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        let (order_id, command) = if envelope.is::<PaymentAuthorized>() {
            let authorized: PaymentAuthorized = envelope.decode()?;
            (authorized.order_id, OrderCommand::Confirm)
        } else if envelope.is::<StockReservationFailed>() {
            let failed: StockReservationFailed = envelope.decode()?;
            (
                failed.order_id,
                OrderCommand::Reject {
                    reason: failed.reason,
                },
            )
        } else if envelope.is::<PaymentDeclined>() {
            let declined: PaymentDeclined = envelope.decode()?;
            let reason = format!("payment declined: {}", declined.reason);
            (declined.order_id, OrderCommand::Reject { reason })
        } else if envelope.is::<DeliveryStarted>() {
            let started: DeliveryStarted = envelope.decode()?;
            (started.order_id, OrderCommand::StartDelivery)
        } else if envelope.is::<DeliveryCompleted>() {
            let completed: DeliveryCompleted = envelope.decode()?;
            (completed.order_id, OrderCommand::CompleteDelivery)
        } else {
            return Ok(());
        };
        execute(conn, order_id, command, delivery.trace, Some(envelope))
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::Failed(format!("order {order_id}: {e}")))
    }
}
