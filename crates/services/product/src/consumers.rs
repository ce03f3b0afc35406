//! Product's part in the order saga: reserve stock for a placed order, and count it as
//! sold once the order is confirmed.

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    outbox,
};
use contracts::{
    Event,
    events::{OrderConfirmed, OrderPlaced, StockReservationFailed, StockReserved},
};
use sqlx::SqliteConnection;

use crate::{NAME, domain::Quantity, store};

pub struct OrderEvents;

impl EventHandler for OrderEvents {
    async fn handle(
        &self,
        conn: &mut SqliteConnection,
        delivery: &Delivery<'_>,
    ) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        if envelope.is::<OrderPlaced>() {
            reserve_stock(conn, delivery, envelope.decode()?).await
        } else if envelope.is::<OrderConfirmed>() {
            sell_reserved(conn, envelope.decode()?).await
        } else {
            Ok(())
        }
    }
}

async fn reserve_stock(
    conn: &mut SqliteConnection,
    delivery: &Delivery<'_>,
    placed: OrderPlaced,
) -> Result<(), HandlerError> {
    if store::find_reservation(conn, placed.order_id)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let outcome = match Quantity::parse(i64::from(placed.quantity)) {
        Err(reason) => Err(reason),
        Ok(quantity) => match store::find_product(conn, placed.product_id).await? {
            None => Err(format!("product {} does not exist", placed.product_id)),
            Some(product) => match product.stock().reserve(quantity) {
                Err(refused) => Err(refused.to_string()),
                Ok(stock) => {
                    store::save_stock(conn, product.id, stock).await?;
                    store::insert_reservation(conn, placed.order_id, product.id, quantity).await?;
                    Ok(())
                }
            },
        },
    };
    let answer = match outcome {
        Ok(()) => delivery.answer(
            NAME,
            placed.order_id,
            &StockReserved {
                order_id: placed.order_id,
                product_id: placed.product_id,
                quantity: placed.quantity,
            },
        ),
        Err(reason) => {
            tracing::info!(order_id = %placed.order_id, reason, "stock not reserved");
            delivery.answer(
                NAME,
                placed.order_id,
                &StockReservationFailed {
                    order_id: placed.order_id,
                    product_id: placed.product_id,
                    quantity: placed.quantity,
                    reason,
                },
            )
        }
    };
    outbox::enqueue(conn, StockReserved::TOPIC, &answer).await?;
    Ok(())
}

async fn sell_reserved(
    conn: &mut SqliteConnection,
    confirmed: OrderConfirmed,
) -> Result<(), HandlerError> {
    let Some(reservation) = store::find_reservation(conn, confirmed.order_id).await? else {
        return Err(HandlerError::Failed(format!(
            "order {} was confirmed without a reservation",
            confirmed.order_id
        )));
    };
    if reservation.status != "RESERVED" {
        return Ok(());
    }
    let quantity = Quantity::parse(reservation.quantity).map_err(HandlerError::Failed)?;
    let product = store::find_product(conn, reservation.product_id)
        .await?
        .ok_or_else(|| HandlerError::Failed("reserved product vanished".into()))?;
    let stock = product
        .stock()
        .sell(quantity)
        .map_err(|e| HandlerError::Failed(e.to_string()))?;
    store::save_stock(conn, product.id, stock).await?;
    store::mark_reservation_sold(conn, confirmed.order_id).await?;
    Ok(())
}
