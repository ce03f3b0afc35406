//! Event payloads. Amounts and prices are integers in KRW.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
}

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

/// The customer cancelled the order; every step done for it is to be undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    pub order_id: Uuid,
}

/// The payment provider authorised (and captured) the order's amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDeclined {
    pub order_id: Uuid,
    pub amount: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryStarted {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCompleted {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCancelled {
    pub order_id: Uuid,
    pub delivery_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockReservationFailed {
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub quantity: u32,
    pub reason: String,
}

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

macro_rules! event {
    ($type:ident, $topic:expr) => {
        impl Event for $type {
            const TYPE: &'static str = stringify!($type);
            const TOPIC: &'static str = $topic;
        }
    };
}

event!(CustomerRegistered, topics::CUSTOMER);
event!(OrderPlaced, topics::ORDER);
event!(OrderConfirmed, topics::ORDER);
event!(OrderRejected, topics::ORDER);
event!(OrderCancelled, topics::ORDER);
event!(OrderAddressChanged, topics::ORDER);
event!(StockReserved, topics::RESERVATION);
event!(StockReleased, topics::RESERVATION);
event!(PaymentAuthorized, topics::PAYMENT);
event!(PaymentDeclined, topics::PAYMENT);
event!(PaymentRefunded, topics::PAYMENT);
event!(DeliveryStarted, topics::DELIVERY);
event!(DeliveryCompleted, topics::DELIVERY);
event!(DeliveryCancelled, topics::DELIVERY);
event!(StockReservationFailed, topics::RESERVATION);
event!(ProductAdded, topics::PRODUCT);
event!(StockAdjusted, topics::PRODUCT);

impl Event for DeadLettered {
    const TYPE: &'static str = "DeadLettered";
    /// Dead letters go to a per-group topic, see [`topics::dead_letter`].
    const TOPIC: &'static str = "";
}
