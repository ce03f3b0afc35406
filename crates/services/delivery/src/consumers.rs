//! Delivery's part in the saga: keep the address of a placed order, start its delivery
//! once it is confirmed, cancel it when the order is cancelled or rejected. All three come on the
//! order topic keyed by order id, so they arrive in order.

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::{self, Tx},
    outbox,
};
use contracts::{
    Event,
    events::{
        DeliveryCancelled, DeliveryStarted, OrderAddressChanged, OrderCancelled, OrderConfirmed,
        OrderPlaced, OrderRejected,
    },
};

use crate::{NAME, store};

pub struct OrderEvents;

impl EventHandler for OrderEvents {
    async fn handle(&self, conn: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        // Every event here is about one order: its delivery is locked against the
        // operator completing it at the same moment.
        if let Ok(order_id) = envelope.subject.parse() {
            db::lock(conn, order_id).await?;
        }
        if envelope.is::<OrderPlaced>() {
            let placed: OrderPlaced = envelope.decode()?;
            store::insert_awaiting(conn, placed.order_id, &placed.address).await?;
        } else if envelope.is::<OrderConfirmed>() {
            let order_id = envelope.decode::<OrderConfirmed>()?.order_id;
            let Some(shipment) = store::find(conn, order_id).await? else {
                return Err(HandlerError::Failed(format!(
                    "order {order_id} confirmed but never placed"
                )));
            };
            if shipment.status == "AWAITING" {
                store::set_status(conn, order_id, "STARTED").await?;
                let started = DeliveryStarted {
                    order_id,
                    delivery_id: shipment.delivery_id,
                    address: shipment.address,
                };
                outbox::enqueue(
                    conn,
                    DeliveryStarted::TOPIC,
                    &delivery.answer(NAME, order_id, &started),
                )
                .await?;
            }
        } else if envelope.is::<OrderAddressChanged>() {
            let changed: OrderAddressChanged = envelope.decode()?;
            store::change_address(conn, changed.order_id, &changed.address).await?;
        } else if envelope.is::<OrderCancelled>() || envelope.is::<OrderRejected>() {
            let order_id = if envelope.is::<OrderCancelled>() {
                envelope.decode::<OrderCancelled>()?.order_id
            } else {
                envelope.decode::<OrderRejected>()?.order_id
            };
            if let Some(shipment) = store::find(conn, order_id).await? {
                match shipment.status.as_str() {
                    "AWAITING" => store::set_status(conn, order_id, "CANCELLED").await?,
                    "STARTED" => {
                        store::set_status(conn, order_id, "CANCELLED").await?;
                        let cancelled = DeliveryCancelled {
                            order_id,
                            delivery_id: shipment.delivery_id,
                        };
                        outbox::enqueue(
                            conn,
                            DeliveryCancelled::TOPIC,
                            &delivery.answer(NAME, order_id, &cancelled),
                        )
                        .await?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
