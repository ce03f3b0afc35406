//! Order's part in the saga: answers from product, payment and delivery move the order on.

use std::sync::Arc;

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::Tx,
};
use contracts::events::{
    DeliveryAddressChangeRefused, DeliveryAddressChanged, DeliveryCancellationRefused,
    DeliveryCancelled, DeliveryCompleted, DeliveryStarted, PaymentAuthorized, PaymentDeclined,
    StockReservationFailed,
};

use crate::{
    domain::{Address, OrderCommand, RejectionCause},
    execute,
    metrics::OrderMetrics,
};

pub struct SagaAnswers {
    pub saga: Arc<OrderMetrics>,
}

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
                    cause: RejectionCause::OutOfStock,
                    reason: failed.reason,
                },
            )
        } else if envelope.is::<PaymentDeclined>() {
            let declined: PaymentDeclined = envelope.decode()?;
            let reason = format!("payment declined: {}", declined.reason);
            (
                declined.order_id,
                OrderCommand::Reject {
                    cause: RejectionCause::PaymentDeclined,
                    reason,
                },
            )
        } else if envelope.is::<DeliveryStarted>() {
            let started: DeliveryStarted = envelope.decode()?;
            (started.order_id, OrderCommand::StartDelivery)
        } else if envelope.is::<DeliveryCompleted>() {
            let completed: DeliveryCompleted = envelope.decode()?;
            (completed.order_id, OrderCommand::CompleteDelivery)
        } else if envelope.is::<DeliveryCancelled>() {
            let cancelled: DeliveryCancelled = envelope.decode()?;
            (cancelled.order_id, OrderCommand::DeliveryCancelled)
        } else if envelope.is::<DeliveryCancellationRefused>() {
            let refused: DeliveryCancellationRefused = envelope.decode()?;
            let reason = refused.reason;
            (
                refused.order_id,
                OrderCommand::CancellationRefused { reason },
            )
        } else if envelope.is::<DeliveryAddressChanged>() {
            let changed: DeliveryAddressChanged = envelope.decode()?;
            let address = delivered_address(&changed.address)?;
            (
                changed.order_id,
                OrderCommand::DeliveryRedirected { address },
            )
        } else if envelope.is::<DeliveryAddressChangeRefused>() {
            let refused: DeliveryAddressChangeRefused = envelope.decode()?;
            let address = delivered_address(&refused.address)?;
            let reason = refused.reason;
            (
                refused.order_id,
                OrderCommand::RedirectRefused { address, reason },
            )
        } else {
            return Ok(());
        };
        let trace = delivery.trace;
        execute(conn, order_id, command, trace, Some(envelope), &self.saga)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::Failed(format!("order {order_id}: {e}")))
    }
}

/// An address delivery echoes back: one order asked for, so a bad one is a broken contract.
fn delivered_address(raw: &str) -> Result<Address, HandlerError> {
    Address::parse(raw).map_err(|e| HandlerError::Failed(format!("delivery's address: {e}")))
}
