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
    /// Stock reserved and payment authorised.
    Confirmed,
    /// Stock or payment refused; nothing is held for it any more.
    Rejected,
    /// Cancelled by the customer; what was done for it is being undone.
    Cancelled,
    /// On its way.
    Delivering,
    Delivered,
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self).expect("a status always serialises");
        f.write_str(name.as_str().unwrap_or_default())
    }
}

impl OrderStatus {
    /// Whether the customer may change the order: once the saga confirmed it (while
    /// PENDING it is locked) and until it is delivered.
    pub fn changeable(self) -> bool {
        matches!(self, OrderStatus::Confirmed | OrderStatus::Delivering)
    }

    /// Whether the customer may still cancel: until the delivery is completed.
    pub fn cancellable(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending | OrderStatus::Confirmed | OrderStatus::Delivering
        )
    }
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
    OrderCancelled,
    DeliveryStarted,
    DeliveryCompleted,
    /// The customer changed where the order goes.
    AddressChanged {
        address: Address,
    },
    /// The customer undid their last address change: `address` is the one restored.
    AddressChangeUndone {
        address: Address,
    },
}

impl OrderEvent {
    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderConfirmed => "OrderConfirmed",
            OrderEvent::OrderRejected { .. } => "OrderRejected",
            OrderEvent::OrderCancelled => "OrderCancelled",
            OrderEvent::DeliveryStarted => "DeliveryStarted",
            OrderEvent::DeliveryCompleted => "DeliveryCompleted",
            OrderEvent::AddressChanged { .. } => "AddressChanged",
            OrderEvent::AddressChangeUndone { .. } => "AddressChangeUndone",
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
    /// Addresses the customer changed away from, newest last: what undo restores.
    #[serde(skip)]
    pub earlier_addresses: Vec<Address>,
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
    /// Stock is reserved and the payment authorised.
    Confirm,
    /// Product or payment refused; `reason` says why.
    Reject { reason: String },
    /// The customer cancels.
    Cancel,
    /// Delivery took the order.
    StartDelivery,
    /// Delivery handed the order over.
    CompleteDelivery,
    /// The customer sends the order elsewhere.
    ChangeAddress { address: Address },
    /// The customer takes back their last change.
    Undo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order already exists")]
    AlreadyPlaced,
    #[error("the order does not exist")]
    NotPlaced,
    #[error("the amount is too large")]
    AmountTooLarge,
    #[error("an order that is {0} cannot be cancelled")]
    NotCancellable(OrderStatus),
    #[error("an order that is {0} cannot be changed")]
    NotChangeable(OrderStatus),
    #[error("there is nothing to undo")]
    NothingToUndo,
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
        (Some(order), OrderCommand::Cancel) if order.status.cancellable() => {
            Ok(vec![OrderEvent::OrderCancelled])
        }
        (Some(order), OrderCommand::Cancel) => Err(OrderError::NotCancellable(order.status)),
        (Some(order), OrderCommand::ChangeAddress { .. } | OrderCommand::Undo)
            if !order.status.changeable() =>
        {
            Err(OrderError::NotChangeable(order.status))
        }
        (Some(order), OrderCommand::ChangeAddress { address }) => Ok(if address == order.address {
            vec![]
        } else {
            vec![OrderEvent::AddressChanged { address }]
        }),
        (Some(order), OrderCommand::Undo) => match order.earlier_addresses.last() {
            Some(address) => Ok(vec![OrderEvent::AddressChangeUndone {
                address: address.clone(),
            }]),
            None => Err(OrderError::NothingToUndo),
        },
        (Some(order), command) => Ok(match (order.status, command) {
            (OrderStatus::Pending, OrderCommand::Confirm) => vec![OrderEvent::OrderConfirmed],
            (OrderStatus::Pending, OrderCommand::Reject { reason }) => {
                vec![OrderEvent::OrderRejected { reason }]
            }
            (OrderStatus::Confirmed, OrderCommand::StartDelivery) => {
                vec![OrderEvent::DeliveryStarted]
            }
            (OrderStatus::Delivering, OrderCommand::CompleteDelivery) => {
                vec![OrderEvent::DeliveryCompleted]
            }
            // Late or repeated answers, and answers for a cancelled order, change nothing;
            // the other services undo their own steps on OrderCancelled.
            _ => vec![],
        }),
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
            earlier_addresses: vec![],
        },
        (Some(order), OrderEvent::OrderConfirmed) => order.moved_to(OrderStatus::Confirmed, at),
        (Some(order), OrderEvent::OrderCancelled) => order.moved_to(OrderStatus::Cancelled, at),
        (Some(order), OrderEvent::DeliveryStarted) => order.moved_to(OrderStatus::Delivering, at),
        (Some(order), OrderEvent::DeliveryCompleted) => order.moved_to(OrderStatus::Delivered, at),
        (Some(mut order), OrderEvent::AddressChanged { address }) => {
            let earlier = std::mem::replace(&mut order.address, address.clone());
            order.earlier_addresses.push(earlier);
            let status = order.status;
            order.moved_to(status, at)
        }
        (Some(mut order), OrderEvent::AddressChangeUndone { address }) => {
            order.earlier_addresses.pop();
            order.address = address.clone();
            let status = order.status;
            order.moved_to(status, at)
        }
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

impl Order {
    fn moved_to(self, status: OrderStatus, at: DateTime<Utc>) -> Order {
        Order {
            status,
            updated_at: at,
            version: self.version + 1,
            ..self
        }
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
    fn an_authorised_payment_confirms_a_pending_order() {
        let order = given(vec![place(1, 1_000)]);
        let events = decide(order.as_ref(), OrderCommand::Confirm).unwrap();
        assert_eq!(events, vec![OrderEvent::OrderConfirmed]);
    }

    #[test]
    fn a_confirmed_order_is_delivered_in_two_steps() {
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::StartDelivery,
            OrderCommand::CompleteDelivery,
        ])
        .unwrap();
        assert_eq!(order.status, OrderStatus::Delivered);
        assert_eq!(order.version, 4);
    }

    #[test]
    fn an_order_can_be_cancelled_until_it_is_delivered() {
        for steps in [
            vec![],
            vec![OrderCommand::Confirm],
            vec![OrderCommand::Confirm, OrderCommand::StartDelivery],
        ] {
            let mut commands = vec![place(1, 1_000)];
            commands.extend(steps);
            let order = given(commands);
            assert_eq!(
                decide(order.as_ref(), OrderCommand::Cancel).unwrap(),
                vec![OrderEvent::OrderCancelled]
            );
        }
        let delivered = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::StartDelivery,
            OrderCommand::CompleteDelivery,
        ]);
        assert_eq!(
            decide(delivered.as_ref(), OrderCommand::Cancel),
            Err(OrderError::NotCancellable(OrderStatus::Delivered))
        );
        let cancelled = given(vec![place(1, 1_000), OrderCommand::Cancel]);
        assert!(decide(cancelled.as_ref(), OrderCommand::Cancel).is_err());
    }

    #[test]
    fn an_address_change_is_undone_by_a_compensating_event() {
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::ChangeAddress {
                address: Address::parse("2 Haeundae-ro, Busan").unwrap(),
            },
            OrderCommand::ChangeAddress {
                address: Address::parse("3 Jeju-daero, Jeju").unwrap(),
            },
        ]);
        let events = decide(order.as_ref(), OrderCommand::Undo).unwrap();
        assert_eq!(
            events,
            vec![OrderEvent::AddressChangeUndone {
                address: Address::parse("2 Haeundae-ro, Busan").unwrap()
            }]
        );
        let undone = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::ChangeAddress {
                address: Address::parse("2 Haeundae-ro, Busan").unwrap(),
            },
            OrderCommand::Undo,
        ])
        .unwrap();
        assert_eq!(undone.address.as_str(), "1 Teheran-ro, Seoul");
        assert_eq!(undone.version, 4, "undo appends, never deletes");
        assert_eq!(
            decide(Some(&undone), OrderCommand::Undo),
            Err(OrderError::NothingToUndo)
        );
    }

    #[test]
    fn a_pending_or_finished_order_cannot_be_changed() {
        let change = || OrderCommand::ChangeAddress {
            address: Address::parse("elsewhere").unwrap(),
        };
        let pending = given(vec![place(1, 1_000)]);
        assert_eq!(
            decide(pending.as_ref(), change()),
            Err(OrderError::NotChangeable(OrderStatus::Pending))
        );
        let cancelled = given(vec![place(1, 1_000), OrderCommand::Cancel]);
        assert!(decide(cancelled.as_ref(), change()).is_err());
        assert!(decide(cancelled.as_ref(), OrderCommand::Undo).is_err());
    }

    #[test]
    fn a_payment_answer_after_a_cancel_changes_nothing() {
        let cancelled = given(vec![place(1, 1_000), OrderCommand::Cancel]);
        assert_eq!(
            decide(cancelled.as_ref(), OrderCommand::Confirm).unwrap(),
            vec![]
        );
        assert_eq!(
            decide(cancelled.as_ref(), OrderCommand::StartDelivery).unwrap(),
            vec![]
        );
    }

    #[test]
    fn stock_failure_rejects_with_the_reason() {
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::Reject {
                reason: "insufficient stock".into(),
            },
        ])
        .unwrap();
        assert_eq!(order.status, OrderStatus::Rejected);
        assert_eq!(order.reason.as_deref(), Some("insufficient stock"));
    }

    #[test]
    fn a_late_or_repeated_saga_answer_changes_nothing() {
        let confirmed = given(vec![place(1, 1_000), OrderCommand::Confirm]);
        for command in [
            OrderCommand::Confirm,
            OrderCommand::Reject {
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
            decide(None, OrderCommand::Confirm),
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
