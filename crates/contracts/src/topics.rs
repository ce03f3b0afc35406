//! Topic names: `<service>.<aggregate>.v<major>`, keyed by the aggregate id.

/// Customer accounts, keyed by customer id.
pub const CUSTOMER: &str = "auth.customer.v1";
/// Order aggregate events, keyed by order id.
pub const ORDER: &str = "order.order.v1";
/// Stock reservations for an order, keyed by order id so a saga's events stay in order.
pub const RESERVATION: &str = "product.reservation.v1";
/// Payments for an order, keyed by order id.
pub const PAYMENT: &str = "payment.payment.v1";
/// Deliveries of an order, keyed by order id.
pub const DELIVERY: &str = "delivery.delivery.v1";
/// Catalogue changes, keyed by product id.
pub const PRODUCT: &str = "product.product.v1";

/// Where a consumer group's poison messages from `topic` go.
pub fn dead_letter(topic: &str, group: &str) -> String {
    format!("{topic}.dlq.{group}")
}
