//! Product's part in the order saga: reserve stock for a placed order, count it as sold
//! once the order is confirmed, and release it when the order is rejected or cancelled.
//! Events of one order arrive in order (one topic, keyed by order id).

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::{self, Tx},
    outbox,
};
use contracts::{
    Event,
    events::{
        OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected, StockReleased,
        StockReservationFailed, StockReserved,
    },
};
use prometheus_client::metrics::counter::Counter;
use uuid::Uuid;

use crate::{
    NAME,
    domain::{Quantity, Stock, StockError},
    store,
};

pub struct OrderEvents {
    /// Reservations refused for too few units, counted once their answer is committed.
    pub stock_outs: Counter,
}

impl EventHandler for OrderEvents {
    async fn handle(&self, conn: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        if envelope.is::<OrderPlaced>() {
            reserve_stock(conn, delivery, envelope.decode()?, &self.stock_outs).await
        } else if envelope.is::<OrderConfirmed>() {
            let confirmed: OrderConfirmed = envelope.decode()?;
            settle(conn, delivery, confirmed.order_id, Settlement::Sell).await
        } else if envelope.is::<OrderRejected>() {
            let rejected: OrderRejected = envelope.decode()?;
            settle(conn, delivery, rejected.order_id, Settlement::Release).await
        } else if envelope.is::<OrderCancelled>() {
            let cancelled: OrderCancelled = envelope.decode()?;
            settle(conn, delivery, cancelled.order_id, Settlement::Release).await
        } else {
            Ok(())
        }
    }
}

async fn reserve_stock(
    conn: &mut Tx,
    delivery: &Delivery<'_>,
    placed: OrderPlaced,
    stock_outs: &Counter,
) -> Result<(), HandlerError> {
    if store::find_reservation(conn, placed.order_id)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let outcome = match Quantity::parse(i64::from(placed.quantity)) {
        Err(reason) => Err(reason),
        Ok(quantity) => match locked_product(conn, placed.product_id).await? {
            None => Err(format!("product {} does not exist", placed.product_id)),
            Some(product) => match product.stock().reserve(quantity) {
                Err(refused) => {
                    if let StockError::Insufficient { .. } = refused {
                        let stock_outs = stock_outs.clone();
                        conn.on_commit(move || {
                            stock_outs.inc();
                        });
                    }
                    Err(refused.to_string())
                }
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
                customer_id: placed.customer_id,
                amount: placed.amount,
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

/// The product, with its stock locked against other writers until the transaction ends.
async fn locked_product(tx: &mut Tx, id: Uuid) -> Result<Option<store::Product>, sqlx::Error> {
    db::lock(tx, id).await?;
    store::find_product(tx, id).await
}

/// What becomes of an order's reserved units.
#[derive(Clone, Copy)]
enum Settlement {
    /// Confirmed: reserved units are sold.
    Sell,
    /// Rejected or cancelled: reserved or sold units are available again.
    Release,
}

async fn settle(
    conn: &mut Tx,
    delivery: &Delivery<'_>,
    order_id: Uuid,
    settlement: Settlement,
) -> Result<(), HandlerError> {
    let Some(reservation) = store::find_reservation(conn, order_id).await? else {
        // Nothing was reserved (the reservation failed): nothing to settle.
        return Ok(());
    };
    let quantity = Quantity::parse(reservation.quantity).map_err(HandlerError::Failed)?;
    let product = locked_product(conn, reservation.product_id)
        .await?
        .ok_or_else(|| HandlerError::Failed("reserved product vanished".into()))?;
    let stock = product.stock();
    let rule_broken = |e: StockError| HandlerError::Failed(e.to_string());
    let (stock, status): (Stock, &'static str) = match (settlement, reservation.status.as_str()) {
        (Settlement::Sell, "RESERVED") => (stock.sell(quantity).map_err(rule_broken)?, "SOLD"),
        (Settlement::Release, "RESERVED") => {
            (stock.release(quantity).map_err(rule_broken)?, "RELEASED")
        }
        (Settlement::Release, "SOLD") => {
            (stock.take_back(quantity).map_err(rule_broken)?, "RELEASED")
        }
        _ => return Ok(()),
    };
    store::save_stock(conn, product.id, stock).await?;
    store::set_reservation_status(conn, order_id, status).await?;
    if status == "RELEASED" {
        let released = delivery.answer(
            NAME,
            order_id,
            &StockReleased {
                order_id,
                product_id: product.id,
                quantity: quantity.units(),
            },
        );
        outbox::enqueue(conn, StockReleased::TOPIC, &released).await?;
    }
    Ok(())
}
