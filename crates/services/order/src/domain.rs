//! The order aggregate, event-sourced: commands decide events, events fold into state.
//! Pure: no I/O, every value valid by construction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Most units of a product one order may ask for.
pub const MAX_QUANTITY: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u32::try_from(raw) {
            Ok(units @ 1..=MAX_QUANTITY) => Ok(Quantity(units)),
            _ => Err(format!("quantity must be between 1 and {MAX_QUANTITY}")),
        }
    }

    pub fn units(self) -> u32 {
        self.0
    }
}

/// Where the order goes: not blank, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let address = raw.trim();
        match address.chars().count() {
            0 => Err("address must not be empty".into()),
            1..=500 => Ok(Address(address.to_owned())),
            _ => Err("address must be at most 500 characters".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Placed; the saga is running and the order is semantically locked.
    Pending,
    Confirmed,
    Rejected,
}

/// What happened to an order, as stored in its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: Uuid,
        product_id: Uuid,
        quantity: Quantity,
        unit_price: u64,
        amount: u64,
        address: Address,
    },
    OrderConfirmed,
    OrderRejected {
        reason: String,
    },
}

impl OrderEvent {
    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderConfirmed => "OrderConfirmed",
            OrderEvent::OrderRejected { .. } => "OrderRejected",
        }
    }
}

/// The state an order's events fold into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Order {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub quantity: Quantity,
    pub address: Address,
    pub unit_price: u64,
    pub amount: u64,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How many events the order has; the next one is `version + 1`.
    #[serde(skip)]
    pub version: u32,
}

#[derive(Debug, Clone)]
pub enum OrderCommand {
    Place {
        customer_id: Uuid,
        product_id: Uuid,
        quantity: Quantity,
        unit_price: u64,
        address: Address,
    },
    /// Product set the stock aside.
    ConfirmStock,
    /// Product could not; `reason` says why.
    RejectStock { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order already exists")]
    AlreadyPlaced,
    #[error("the order does not exist")]
    NotPlaced,
    #[error("the amount is too large")]
    AmountTooLarge,
}

/// Decides what a command does to the order (`None` before it is placed).
/// Saga answers to an order no longer PENDING change nothing: they are late or repeated.
pub fn decide(order: Option<&Order>, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
    match (order, command) {
        (
            None,
            OrderCommand::Place {
                customer_id,
                product_id,
                quantity,
                unit_price,
                address,
            },
        ) => {
            let amount = unit_price
                .checked_mul(u64::from(quantity.units()))
                .filter(|amount| *amount <= i64::MAX as u64)
                .ok_or(OrderError::AmountTooLarge)?;
            Ok(vec![OrderEvent::OrderPlaced {
                customer_id,
                product_id,
                quantity,
                unit_price,
                amount,
                address,
            }])
        }
        (Some(_), OrderCommand::Place { .. }) => Err(OrderError::AlreadyPlaced),
        (None, _) => Err(OrderError::NotPlaced),
        (Some(order), _) if order.status != OrderStatus::Pending => Ok(vec![]),
        (Some(_), OrderCommand::ConfirmStock) => Ok(vec![OrderEvent::OrderConfirmed]),
        (Some(_), OrderCommand::RejectStock { reason }) => {
            Ok(vec![OrderEvent::OrderRejected { reason }])
        }
    }
}

/// Folds one event into the order. Events come from the store, so they are trusted to
/// follow `decide`; an event that cannot apply is a bug and panics.
pub fn apply(order: Option<Order>, order_id: Uuid, event: &OrderEvent, at: DateTime<Utc>) -> Order {
    match (order, event) {
        (
            None,
            OrderEvent::OrderPlaced {
                customer_id,
                product_id,
                quantity,
                unit_price,
                amount,
                address,
            },
        ) => Order {
            order_id,
            customer_id: *customer_id,
            product_id: *product_id,
            quantity: *quantity,
            address: address.clone(),
            unit_price: *unit_price,
            amount: *amount,
            status: OrderStatus::Pending,
            reason: None,
            created_at: at,
            updated_at: at,
            version: 1,
        },
        (Some(order), OrderEvent::OrderConfirmed) => Order {
            status: OrderStatus::Confirmed,
            updated_at: at,
            version: order.version + 1,
            ..order
        },
        (Some(order), OrderEvent::OrderRejected { reason }) => Order {
            status: OrderStatus::Rejected,
            reason: Some(reason.clone()),
            updated_at: at,
            version: order.version + 1,
            ..order
        },
        (order, event) => panic!(
            "{} cannot apply to order {order_id} in state {:?}",
            event.name(),
            order.map(|o| o.status)
        ),
    }
}

/// One field an event changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

/// Every field whose value differs between `before` and `after`: the diff an event
/// carries in its stream, so history shows what each event changed.
pub fn diff(before: Option<&Order>, after: &Order) -> Vec<FieldChange> {
    let fields = |order: Option<&Order>| match order.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(before), fields(Some(after)));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !matches!(name.as_str(), "updated_at"))
        .filter_map(|name| {
            let from = before.get(name).cloned().unwrap_or(serde_json::Value::Null);
            let to = after.get(name).cloned().unwrap_or(serde_json::Value::Null);
            (from != to).then(|| FieldChange {
                field: name.clone(),
                from,
                to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(quantity: i64, unit_price: u64) -> OrderCommand {
        OrderCommand::Place {
            customer_id: Uuid::nil(),
            product_id: Uuid::now_v7(),
            quantity: Quantity::parse(quantity).unwrap(),
            unit_price,
            address: Address::parse("1 Teheran-ro, Seoul").unwrap(),
        }
    }

    /// Given these commands already applied, returns the order.
    fn given(commands: Vec<OrderCommand>) -> Option<Order> {
        let id = Uuid::now_v7();
        commands.into_iter().fold(None, |order, command| {
            decide(order.as_ref(), command)
                .unwrap()
                .iter()
                .fold(order, |order, event| {
                    Some(apply(order, id, event, Utc::now()))
                })
        })
    }

    #[test]
    fn placing_an_order_makes_it_pending_with_its_amount() {
        let order = given(vec![place(3, 12_000)]).unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.amount, 36_000);
        assert_eq!(order.version, 1);
    }

    #[test]
    fn stock_reserved_confirms_a_pending_order() {
        let order = given(vec![place(1, 1_000)]);
        let events = decide(order.as_ref(), OrderCommand::ConfirmStock).unwrap();
        assert_eq!(events, vec![OrderEvent::OrderConfirmed]);
    }

    #[test]
    fn stock_failure_rejects_with_the_reason() {
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::RejectStock {
                reason: "insufficient stock".into(),
            },
        ])
        .unwrap();
        assert_eq!(order.status, OrderStatus::Rejected);
        assert_eq!(order.reason.as_deref(), Some("insufficient stock"));
    }

    #[test]
    fn a_late_or_repeated_saga_answer_changes_nothing() {
        let confirmed = given(vec![place(1, 1_000), OrderCommand::ConfirmStock]);
        for command in [
            OrderCommand::ConfirmStock,
            OrderCommand::RejectStock {
                reason: "late".into(),
            },
        ] {
            assert_eq!(decide(confirmed.as_ref(), command).unwrap(), vec![]);
        }
    }

    #[test]
    fn an_order_cannot_be_placed_twice_nor_answered_before_it_exists() {
        let order = given(vec![place(1, 1_000)]);
        assert_eq!(
            decide(order.as_ref(), place(1, 1_000)),
            Err(OrderError::AlreadyPlaced)
        );
        assert_eq!(
            decide(None, OrderCommand::ConfirmStock),
            Err(OrderError::NotPlaced)
        );
    }

    #[test]
    fn an_amount_beyond_what_can_be_stored_is_refused() {
        assert_eq!(
            decide(None, place(1_000, u64::MAX / 10)),
            Err(OrderError::AmountTooLarge)
        );
    }

    #[test]
    fn the_diff_names_exactly_the_fields_an_event_changed() {
        let pending = given(vec![place(1, 1_000)]).unwrap();
        let rejected = apply(
            Some(pending.clone()),
            pending.order_id,
            &OrderEvent::OrderRejected {
                reason: "none left".into(),
            },
            Utc::now(),
        );
        let changes = diff(Some(&pending), &rejected);
        let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["reason", "status"]);
        assert_eq!(changes[1].from, "PENDING");
        assert_eq!(changes[1].to, "REJECTED");
    }

    #[test]
    fn bad_input_is_refused_by_the_types() {
        for bad in [0, -1, 1_001, i64::MAX] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert!(Address::parse("  ").is_err());
        assert!(Address::parse(&"x".repeat(501)).is_err());
    }
}
