//! Event payloads. Amounts and prices are integers in KRW.

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, generate::SchemaSettings};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Envelope, Event, topics};

/// Someone signed up; `customer_id` is the `sub` of their tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerRegistered {
    pub customer_id: Uuid,
    pub email: String,
    pub name: String,
}

/// A customer placed an order; it is PENDING until the saga answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub quantity: u32,
    pub unit_price: u64,
    pub amount: u64,
    pub address: String,
}

/// Stock is reserved and the payment authorised: the order is CONFIRMED.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
}

/// The saga failed (no stock, payment declined, or no answer before the deadline);
/// `reason` says which. Steps already done are to be undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub reason: String,
}

/// Stock for an order is set aside; it is no longer available to others. Carries what
/// the next step of the saga (payment) needs to know of the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockReserved {
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub quantity: u32,
    pub customer_id: Uuid,
    pub amount: u64,
}

/// Units reserved or sold for an order are available again (the order was rejected or
/// cancelled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockReleased {
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub quantity: u32,
}

/// The customer changed where the order goes (or undid such a change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAddressChanged {
    pub order_id: Uuid,
    pub address: String,
}

/// The order is cancelled (by the customer before confirmation, or after delivery called
/// the parcel back); every step done for it is to be undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    pub order_id: Uuid,
}

/// The customer asks to cancel a confirmed order. Delivery answers: `DeliveryCancelled`,
/// or `DeliveryCancellationRefused` once the parcel was delivered. Until then the order
/// stands as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancellationRequested {
    pub order_id: Uuid,
}

/// The customer asks to send a confirmed order to `address` (a change, or the undo of
/// one). Delivery answers: `DeliveryAddressChanged`, or `DeliveryAddressChangeRefused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAddressChangeRequested {
    pub order_id: Uuid,
    pub address: String,
}

/// The payment provider authorised (and captured) the order's amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: u64,
}

/// The payment provider refused the charge; `reason` is its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub amount: u64,
    pub reason: String,
}

/// A charged amount went back to the customer (the order was cancelled or rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: u64,
}

/// The confirmed order left the warehouse for `address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryStarted {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub address: String,
}

/// The order reached the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCompleted {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
}

/// A started delivery was called back: the answer to a cancellation request (or, from
/// earlier versions, to a cancelled order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCancelled {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
}

/// Delivery refused to cancel the order: the parcel was already delivered; `reason` says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCancellationRefused {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub reason: String,
}

/// The delivery now goes to `address`, as the customer asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAddressChanged {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub address: String,
}

/// Delivery refused to send the order to `address` (delivered or cancelled meanwhile);
/// `reason` says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAddressChangeRefused {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub address: String,
    pub reason: String,
}

/// Too few units on hand for the order; `reason` says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockReservationFailed {
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub quantity: u32,
    pub reason: String,
}

/// An operator added a product to the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductAdded {
    pub product_id: Uuid,
    pub name: String,
    pub price: u64,
    pub stock: u32,
}

/// An operator changed the stock on hand by `delta`; `stock` is the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockAdjusted {
    pub product_id: Uuid,
    pub delta: i64,
    pub stock: u32,
}

/// A message a consumer group gave up on after its retries, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLettered {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub attempts: u32,
    pub error: String,
    pub failed_at: DateTime<Utc>,
    pub event: Envelope,
}

/// An event type of the published language, for the documents generated from the code.
pub struct EventSpec {
    pub name: &'static str,
    pub topic: &'static str,
    /// Writes the payload's JSON Schema with the given settings.
    pub schema: fn(&SchemaSettings) -> Schema,
}

macro_rules! published_language {
    ($($type:ident => $topic:expr,)*) => {
        $(impl Event for $type {
            const TYPE: &'static str = stringify!($type);
            const TOPIC: &'static str = $topic;
        })*

        /// Every event type that travels on a topic of its own (all but dead letters).
        pub fn catalogue() -> Vec<EventSpec> {
            vec![$(EventSpec {
                name: stringify!($type),
                topic: $topic,
                schema: |settings| settings.clone().into_generator().into_root_schema_for::<$type>(),
            },)*]
        }
    };
}

published_language! {
    CustomerRegistered => topics::CUSTOMER,
    OrderPlaced => topics::ORDER,
    OrderConfirmed => topics::ORDER,
    OrderRejected => topics::ORDER,
    OrderCancelled => topics::ORDER,
    OrderAddressChanged => topics::ORDER,
    OrderCancellationRequested => topics::ORDER,
    OrderAddressChangeRequested => topics::ORDER,
    StockReserved => topics::RESERVATION,
    StockReservationFailed => topics::RESERVATION,
    StockReleased => topics::RESERVATION,
    PaymentAuthorized => topics::PAYMENT,
    PaymentDeclined => topics::PAYMENT,
    PaymentRefunded => topics::PAYMENT,
    DeliveryStarted => topics::DELIVERY,
    DeliveryCompleted => topics::DELIVERY,
    DeliveryCancelled => topics::DELIVERY,
    DeliveryCancellationRefused => topics::DELIVERY,
    DeliveryAddressChanged => topics::DELIVERY,
    DeliveryAddressChangeRefused => topics::DELIVERY,
    ProductAdded => topics::PRODUCT,
    StockAdjusted => topics::PRODUCT,
}

impl Event for DeadLettered {
    const TYPE: &'static str = "DeadLettered";
    /// Dead letters go to a per-group topic, see [`topics::dead_letter`].
    const TOPIC: &'static str = "";
}
