//! Order's part in the saga: the stock answer confirms or rejects a PENDING order.

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    outbox,
};
use contracts::{
    events::{StockReservationFailed, StockReserved},
    topics,
};
use sqlx::SqliteConnection;
use uuid::Uuid;

use crate::{
    domain::{OrderCommand, decide},
    integration_event, store,
};

pub struct StockAnswers;

impl EventHandler for StockAnswers {
    async fn handle(
        &self,
        conn: &mut SqliteConnection,
        delivery: &Delivery<'_>,
    ) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        let (order_id, command) = if envelope.is::<StockReserved>() {
            let reserved: StockReserved = envelope.decode()?;
            (reserved.order_id, OrderCommand::ConfirmStock)
        } else if envelope.is::<StockReservationFailed>() {
            let failed: StockReservationFailed = envelope.decode()?;
            (
                failed.order_id,
                OrderCommand::RejectStock {
                    reason: failed.reason,
                },
            )
        } else {
            return Ok(());
        };
        execute(conn, delivery, order_id, command).await
    }
}

/// Loads the order, decides, appends the events and their integration events.
async fn execute(
    conn: &mut SqliteConnection,
    delivery: &Delivery<'_>,
    order_id: Uuid,
    command: OrderCommand,
) -> Result<(), HandlerError> {
    let failed = |e: &dyn std::fmt::Display| HandlerError::Failed(format!("order {order_id}: {e}"));
    let (order, _) = store::load(conn, order_id).await.map_err(|e| failed(&e))?;
    let events = decide(order.as_ref(), command).map_err(|e| failed(&e))?;
    if events.is_empty() {
        tracing::info!(%order_id, "late or repeated saga answer ignored");
        return Ok(());
    }
    let order = store::append(conn, order_id, order, &events)
        .await
        .map_err(|e| failed(&e))?
        .expect("an order with events exists");
    for event in &events {
        let envelope = integration_event(&order, event, delivery.trace, Some(delivery.envelope));
        outbox::enqueue(conn, topics::ORDER, &envelope).await?;
    }
    Ok(())
}
