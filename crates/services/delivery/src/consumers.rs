//! Delivery's part in the saga: keep the address of a placed order, start its delivery
//! once it is confirmed, cancel it when the order is rejected or cancelled before
//! confirmation, and answer the customer's requests after it: call the parcel back or
//! send it elsewhere, unless it was delivered. All of these come on the order topic keyed
//! by order id, so they arrive in order: a request always finds the delivery started.

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::{self, Tx},
    outbox,
};
use contracts::{
    Event,
    events::{
        DeliveryAddressChangeRefused, DeliveryAddressChanged, DeliveryCancellationRefused,
        DeliveryCancelled, DeliveryStarted, OrderAddressChangeRequested,
        OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected,
    },
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{self, DeliveryStatus},
    store,
};

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
            let shipment = existing(conn, order_id).await?;
            if shipment.status == DeliveryStatus::Awaiting {
                store::set_status(conn, order_id, DeliveryStatus::Started).await?;
                let started = DeliveryStarted {
                    order_id,
                    delivery_id: shipment.delivery_id,
                    address: shipment.address,
                };
                publish(conn, delivery, order_id, &started).await?;
            }
        } else if envelope.is::<OrderCancellationRequested>() {
            let order_id = envelope.decode::<OrderCancellationRequested>()?.order_id;
            let shipment = existing(conn, order_id).await?;
            let delivery_id = shipment.delivery_id;
            match domain::cancellation(shipment.status) {
                Ok(cancelled) => {
                    store::set_status(conn, order_id, cancelled).await?;
                    let answer = DeliveryCancelled {
                        order_id,
                        delivery_id,
                    };
                    publish(conn, delivery, order_id, &answer).await?;
                }
                Err(reason) => {
                    let answer = DeliveryCancellationRefused {
                        order_id,
                        delivery_id,
                        reason: reason.into(),
                    };
                    publish(conn, delivery, order_id, &answer).await?;
                }
            }
        } else if envelope.is::<OrderAddressChangeRequested>() {
            let requested: OrderAddressChangeRequested = envelope.decode()?;
            let order_id = requested.order_id;
            let shipment = existing(conn, order_id).await?;
            let delivery_id = shipment.delivery_id;
            let address = requested.address;
            match domain::redirection(shipment.status) {
                Ok(()) => {
                    store::change_address(conn, order_id, &address).await?;
                    let answer = DeliveryAddressChanged {
                        order_id,
                        delivery_id,
                        address,
                    };
                    publish(conn, delivery, order_id, &answer).await?;
                }
                Err(reason) => {
                    let answer = DeliveryAddressChangeRefused {
                        order_id,
                        delivery_id,
                        address,
                        reason: reason.into(),
                    };
                    publish(conn, delivery, order_id, &answer).await?;
                }
            }
        } else if envelope.is::<OrderCancelled>() || envelope.is::<OrderRejected>() {
            // Before confirmation nothing has left: the delivery simply never starts. (Once
            // started, a cancel is a request answered above.)
            let order_id = if envelope.is::<OrderCancelled>() {
                envelope.decode::<OrderCancelled>()?.order_id
            } else {
                envelope.decode::<OrderRejected>()?.order_id
            };
            if let Some(shipment) = store::find(conn, order_id).await?
                && shipment.status == DeliveryStatus::Awaiting
            {
                store::set_status(conn, order_id, DeliveryStatus::Cancelled).await?;
            }
        }
        Ok(())
    }
}

/// The order's delivery, which exists once its `OrderPlaced` was handled.
async fn existing(conn: &mut Tx, order_id: Uuid) -> Result<store::Delivery, HandlerError> {
    store::find(conn, order_id).await?.ok_or_else(|| {
        HandlerError::Failed(format!("order {order_id} has no delivery: never placed"))
    })
}

/// Puts delivery's answer about an order in the outbox, in the transaction of its effect.
async fn publish<E: Event>(
    conn: &mut Tx,
    delivery: &Delivery<'_>,
    order_id: Uuid,
    event: &E,
) -> Result<(), HandlerError> {
    outbox::enqueue(conn, E::TOPIC, &delivery.answer(NAME, order_id, event)).await?;
    Ok(())
}
