//! The order aggregate, event-sourced: commands decide events, events fold into state.
//! Pure: no I/O, every value valid by construction.

use chassis::text::{Lines, clean};
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

/// Where the order goes: one line of 1 to 500 characters of clean text
/// ([`chassis::text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    pub fn parse(raw: &str) -> Result<Self, String> {
        clean(raw, 500, Lines::One)
            .map(Address)
            .map_err(|error| format!("address {error}"))
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
    /// PENDING it is locked) and until it is delivered. Every change from then on is a
    /// request that delivery answers.
    pub fn changeable(self) -> bool {
        matches!(self, OrderStatus::Confirmed | OrderStatus::Delivering)
    }

    /// Whether the customer may still cancel: until the delivery is completed. Before
    /// confirmation the order decides alone; after it, a cancel is a request.
    pub fn cancellable(self) -> bool {
        self == OrderStatus::Pending || self.changeable()
    }
}

/// What the customer asked of a confirmed order, which only delivery can grant: it alone
/// knows whether the parcel has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestKind {
    Cancel,
    ChangeAddress,
    UndoAddressChange,
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestKind::Cancel => "a cancellation",
            RequestKind::ChangeAddress => "an address change",
            RequestKind::UndoAddressChange => "the undo of an address change",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// Waiting for delivery's answer: the order is locked against other changes.
    Pending,
    /// Delivery said no; `reason` says why.
    Refused,
}

/// The customer's latest request to delivery and where it stands; a granted request
/// leaves none (its effect shows in the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChangeRequest {
    pub kind: RequestKind,
    pub status: RequestStatus,
    /// Where an address change would send the order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ChangeRequest {
    fn pending(kind: RequestKind, address: Option<Address>) -> Self {
        ChangeRequest {
            kind,
            status: RequestStatus::Pending,
            address,
            reason: None,
        }
    }

    fn is_pending(&self) -> bool {
        self.status == RequestStatus::Pending
    }

    /// Whether this pending request is the address change to `address`.
    fn redirects_to(&self, address: &Address) -> bool {
        self.is_pending()
            && self.kind != RequestKind::Cancel
            && self.address.as_ref() == Some(address)
    }
}

/// Why an order's pending request is refused when its delivery is completed first.
pub const DELIVERED_FIRST: &str = "the parcel was already delivered";

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
    /// The customer asked delivery to call the confirmed order back.
    CancellationRequested,
    /// The customer asked delivery to send the confirmed order to `address`.
    AddressChangeRequested {
        address: Address,
    },
    /// The customer asked delivery to send the order back to `address`, where it went
    /// before their last change.
    AddressChangeUndoRequested {
        address: Address,
    },
    /// Delivery refused the pending request (or completed the delivery first).
    RequestRefused {
        reason: String,
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
            OrderEvent::CancellationRequested => "CancellationRequested",
            OrderEvent::AddressChangeRequested { .. } => "AddressChangeRequested",
            OrderEvent::AddressChangeUndoRequested { .. } => "AddressChangeUndoRequested",
            OrderEvent::RequestRefused { .. } => "RequestRefused",
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
    /// The customer's latest request to delivery, while pending or once refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<ChangeRequest>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How many events the order has; the next one is `version + 1`.
    #[serde(skip)]
    pub version: u32,
    /// Addresses the customer changed away from, newest last: what undo restores.
    #[serde(skip)]
    pub earlier_addresses: Vec<Address>,
    /// Address changes and undos the customer asked for, granted or not.
    #[serde(skip)]
    pub changes_requested: u32,
}

/// Most address changes and undos one order takes: each adds events that every load of
/// the order replays, so a customer (or a script) must not add them without end.
pub const MAX_CHANGES_REQUESTED: u32 = 10;

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
    /// Product or payment refused, or the saga's deadline passed; `reason` says why in
    /// words.
    Reject {
        cause: RejectionCause,
        reason: String,
    },
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
    /// Delivery called the parcel back.
    DeliveryCancelled,
    /// Delivery refused to call the parcel back.
    CancellationRefused { reason: String },
    /// Delivery now goes to `address`.
    DeliveryRedirected { address: Address },
    /// Delivery refused to go to `address`.
    RedirectRefused { address: Address, reason: String },
}

/// Why the saga rejected an order: a closed set, by which rejections are counted (the
/// words of the refusal vary and stay in the order's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCause {
    /// Product could not reserve the units.
    OutOfStock,
    /// The payment provider declined the charge.
    PaymentDeclined,
    /// Neither answered within the saga's deadline.
    Deadline,
}

impl RejectionCause {
    pub const ALL: [RejectionCause; 3] = [
        RejectionCause::OutOfStock,
        RejectionCause::PaymentDeclined,
        RejectionCause::Deadline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectionCause::OutOfStock => "out_of_stock",
            RejectionCause::PaymentDeclined => "payment_declined",
            RejectionCause::Deadline => "deadline",
        }
    }
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
    #[error("{0} of this order awaits delivery's answer; try again in a moment")]
    RequestPending(RequestKind),
    #[error(
        "the address of this order was changed or restored {MAX_CHANGES_REQUESTED} times, the most allowed"
    )]
    TooManyChanges,
}

/// Decides what a command does to the order (`None` before it is placed).
/// Saga answers to an order no longer PENDING change nothing: they are late or repeated.
/// Once confirmed, the order never decides alone on what delivery owns: a cancel or an
/// address change becomes a request, and only delivery's answer settles it.
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
        (
            Some(order),
            command @ (OrderCommand::Cancel
            | OrderCommand::ChangeAddress { .. }
            | OrderCommand::Undo),
        ) => decide_customer_change(order, command),
        (Some(order), command) => Ok(decide_answer(order, command)),
    }
}

/// A customer's cancel, address change or undo.
fn decide_customer_change(
    order: &Order,
    command: OrderCommand,
) -> Result<Vec<OrderEvent>, OrderError> {
    if order.status == OrderStatus::Pending && matches!(command, OrderCommand::Cancel) {
        // Nothing has left the warehouse: the order alone decides.
        return Ok(vec![OrderEvent::OrderCancelled]);
    }
    if !order.status.changeable() {
        return Err(match command {
            OrderCommand::Cancel => OrderError::NotCancellable(order.status),
            _ => OrderError::NotChangeable(order.status),
        });
    }
    if let Some(request) = order.request.as_ref().filter(|r| r.is_pending()) {
        return Err(OrderError::RequestPending(request.kind));
    }
    if !matches!(command, OrderCommand::Cancel) && order.changes_requested >= MAX_CHANGES_REQUESTED
    {
        return Err(OrderError::TooManyChanges);
    }
    Ok(match command {
        OrderCommand::Cancel => vec![OrderEvent::CancellationRequested],
        OrderCommand::ChangeAddress { address } if address == order.address => vec![],
        OrderCommand::ChangeAddress { address } => {
            vec![OrderEvent::AddressChangeRequested { address }]
        }
        _ => match order.earlier_addresses.last() {
            Some(address) => vec![OrderEvent::AddressChangeUndoRequested {
                address: address.clone(),
            }],
            None => return Err(OrderError::NothingToUndo),
        },
    })
}

/// An answer from another service in the saga. Late or repeated answers, and answers
/// for a cancelled order, change nothing; the other services undo their own steps on
/// OrderCancelled.
fn decide_answer(order: &Order, command: OrderCommand) -> Vec<OrderEvent> {
    let pending = order.request.as_ref().filter(|r| r.is_pending());
    match (order.status, command) {
        (OrderStatus::Pending, OrderCommand::Confirm) => vec![OrderEvent::OrderConfirmed],
        (OrderStatus::Pending, OrderCommand::Reject { reason, .. }) => {
            vec![OrderEvent::OrderRejected { reason }]
        }
        (OrderStatus::Confirmed, OrderCommand::StartDelivery) => vec![OrderEvent::DeliveryStarted],
        (OrderStatus::Delivering, OrderCommand::CompleteDelivery) => {
            let mut events = vec![OrderEvent::DeliveryCompleted];
            if pending.is_some() {
                // Delivery handles the request after the completion and will refuse it.
                events.push(OrderEvent::RequestRefused {
                    reason: DELIVERED_FIRST.into(),
                });
            }
            events
        }
        (_, OrderCommand::DeliveryCancelled)
            if pending.is_some_and(|r| r.kind == RequestKind::Cancel) =>
        {
            vec![OrderEvent::OrderCancelled]
        }
        (_, OrderCommand::CancellationRefused { reason })
            if pending.is_some_and(|r| r.kind == RequestKind::Cancel) =>
        {
            vec![OrderEvent::RequestRefused { reason }]
        }
        (_, OrderCommand::DeliveryRedirected { address })
            if pending.is_some_and(|r| r.redirects_to(&address)) =>
        {
            if pending.is_some_and(|r| r.kind == RequestKind::UndoAddressChange) {
                vec![OrderEvent::AddressChangeUndone { address }]
            } else {
                vec![OrderEvent::AddressChanged { address }]
            }
        }
        (_, OrderCommand::RedirectRefused { address, reason })
            if pending.is_some_and(|r| r.redirects_to(&address)) =>
        {
            vec![OrderEvent::RequestRefused { reason }]
        }
        _ => vec![],
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
            request: None,
            created_at: at,
            updated_at: at,
            version: 1,
            earlier_addresses: vec![],
            changes_requested: 0,
        },
        (Some(order), OrderEvent::OrderConfirmed) => order.moved_to(OrderStatus::Confirmed, at),
        (Some(order), OrderEvent::OrderCancelled) => Order {
            request: None,
            ..order.moved_to(OrderStatus::Cancelled, at)
        },
        (Some(order), OrderEvent::DeliveryStarted) => order.moved_to(OrderStatus::Delivering, at),
        (Some(order), OrderEvent::DeliveryCompleted) => order.moved_to(OrderStatus::Delivered, at),
        (Some(mut order), OrderEvent::AddressChanged { address }) => {
            let earlier = std::mem::replace(&mut order.address, address.clone());
            order.earlier_addresses.push(earlier);
            order.request = None;
            order.touched(at)
        }
        (Some(mut order), OrderEvent::AddressChangeUndone { address }) => {
            order.earlier_addresses.pop();
            order.address = address.clone();
            order.request = None;
            order.touched(at)
        }
        (Some(order), OrderEvent::CancellationRequested) => Order {
            request: Some(ChangeRequest::pending(RequestKind::Cancel, None)),
            ..order.touched(at)
        },
        (Some(order), OrderEvent::AddressChangeRequested { address }) => Order {
            request: Some(ChangeRequest::pending(
                RequestKind::ChangeAddress,
                Some(address.clone()),
            )),
            changes_requested: order.changes_requested + 1,
            ..order.touched(at)
        },
        (Some(order), OrderEvent::AddressChangeUndoRequested { address }) => Order {
            request: Some(ChangeRequest::pending(
                RequestKind::UndoAddressChange,
                Some(address.clone()),
            )),
            changes_requested: order.changes_requested + 1,
            ..order.touched(at)
        },
        (Some(mut order), OrderEvent::RequestRefused { reason }) => {
            if let Some(request) = &mut order.request {
                request.status = RequestStatus::Refused;
                request.reason = Some(reason.clone());
            }
            order.touched(at)
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

    /// One more event that leaves the status as it is.
    fn touched(self, at: DateTime<Utc>) -> Order {
        let status = self.status;
        self.moved_to(status, at)
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

    fn confirmed_and_delivering() -> Vec<OrderCommand> {
        vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::StartDelivery,
        ]
    }

    fn address(raw: &str) -> Address {
        Address::parse(raw).unwrap()
    }

    #[test]
    fn address_changes_and_undos_are_bounded_but_a_cancel_is_not() {
        let mut commands = confirmed_and_delivering();
        for i in 0..MAX_CHANGES_REQUESTED {
            let to = address(&format!("{i} Haeundae-ro, Busan"));
            commands.push(OrderCommand::ChangeAddress {
                address: to.clone(),
            });
            commands.push(OrderCommand::DeliveryRedirected { address: to });
        }
        let order = given(commands);
        assert_eq!(
            decide(
                order.as_ref(),
                OrderCommand::ChangeAddress {
                    address: address("elsewhere")
                }
            ),
            Err(OrderError::TooManyChanges)
        );
        assert_eq!(
            decide(order.as_ref(), OrderCommand::Undo),
            Err(OrderError::TooManyChanges)
        );
        assert_eq!(
            decide(order.as_ref(), OrderCommand::Cancel).unwrap(),
            vec![OrderEvent::CancellationRequested]
        );
    }

    #[test]
    fn a_pending_order_is_cancelled_at_once() {
        let pending = given(vec![place(1, 1_000)]);
        assert_eq!(
            decide(pending.as_ref(), OrderCommand::Cancel).unwrap(),
            vec![OrderEvent::OrderCancelled]
        );
    }

    #[test]
    fn after_confirmation_a_cancel_is_a_request_that_only_delivery_grants() {
        for commands in [
            vec![place(1, 1_000), OrderCommand::Confirm],
            confirmed_and_delivering(),
        ] {
            let order = given(commands.clone());
            assert_eq!(
                decide(order.as_ref(), OrderCommand::Cancel).unwrap(),
                vec![OrderEvent::CancellationRequested]
            );
            let mut requested = commands;
            requested.push(OrderCommand::Cancel);
            let order = given(requested).unwrap();
            assert_ne!(
                order.status,
                OrderStatus::Cancelled,
                "not before delivery answers"
            );
            assert_eq!(order.request.as_ref().unwrap().kind, RequestKind::Cancel);
            assert_eq!(
                decide(Some(&order), OrderCommand::DeliveryCancelled).unwrap(),
                vec![OrderEvent::OrderCancelled]
            );
        }
        let mut commands = confirmed_and_delivering();
        commands.extend([OrderCommand::Cancel, OrderCommand::DeliveryCancelled]);
        let cancelled = given(commands).unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(cancelled.request, None);
        assert_eq!(
            decide(Some(&cancelled), OrderCommand::Cancel),
            Err(OrderError::NotCancellable(OrderStatus::Cancelled))
        );
    }

    #[test]
    fn a_refused_cancel_leaves_the_order_as_it_was_and_says_why() {
        let mut commands = confirmed_and_delivering();
        commands.extend([
            OrderCommand::Cancel,
            OrderCommand::CancellationRefused {
                reason: "delivered".into(),
            },
        ]);
        let order = given(commands).unwrap();
        assert_eq!(order.status, OrderStatus::Delivering);
        let request = order.request.unwrap();
        assert_eq!(request.status, RequestStatus::Refused);
        assert_eq!(request.reason.as_deref(), Some("delivered"));
    }

    #[test]
    fn a_completion_while_a_request_is_pending_refuses_it() {
        for request in [
            OrderCommand::Cancel,
            OrderCommand::ChangeAddress {
                address: address("2 Haeundae-ro, Busan"),
            },
        ] {
            let mut commands = confirmed_and_delivering();
            commands.extend([request, OrderCommand::CompleteDelivery]);
            let order = given(commands).unwrap();
            assert_eq!(order.status, OrderStatus::Delivered);
            assert_eq!(order.address.as_str(), "1 Teheran-ro, Seoul");
            let request = order.request.as_ref().unwrap();
            assert_eq!(request.status, RequestStatus::Refused);
            assert_eq!(request.reason.as_deref(), Some(DELIVERED_FIRST));
            // Delivery's own answers, arriving after, change nothing more.
            for late in [
                OrderCommand::DeliveryCancelled,
                OrderCommand::CancellationRefused {
                    reason: "delivered".into(),
                },
                OrderCommand::DeliveryRedirected {
                    address: address("2 Haeundae-ro, Busan"),
                },
            ] {
                assert_eq!(decide(Some(&order), late).unwrap(), vec![]);
            }
            assert_eq!(
                decide(Some(&order), OrderCommand::Cancel),
                Err(OrderError::NotCancellable(OrderStatus::Delivered))
            );
        }
    }

    #[test]
    fn a_pending_request_locks_the_order_against_other_changes() {
        let mut commands = confirmed_and_delivering();
        commands.push(OrderCommand::Cancel);
        let order = given(commands);
        for command in [
            OrderCommand::Cancel,
            OrderCommand::ChangeAddress {
                address: address("elsewhere"),
            },
            OrderCommand::Undo,
        ] {
            assert_eq!(
                decide(order.as_ref(), command),
                Err(OrderError::RequestPending(RequestKind::Cancel))
            );
        }
    }

    #[test]
    fn answers_nobody_asked_for_change_nothing() {
        let order = given(confirmed_and_delivering());
        for answer in [
            OrderCommand::DeliveryCancelled,
            OrderCommand::CancellationRefused {
                reason: "delivered".into(),
            },
            OrderCommand::DeliveryRedirected {
                address: address("elsewhere"),
            },
        ] {
            assert_eq!(decide(order.as_ref(), answer).unwrap(), vec![]);
        }
        let mut commands = confirmed_and_delivering();
        commands.push(OrderCommand::ChangeAddress {
            address: address("2 Haeundae-ro, Busan"),
        });
        let redirecting = given(commands);
        for answer in [
            OrderCommand::DeliveryCancelled,
            OrderCommand::DeliveryRedirected {
                address: address("somewhere else"),
            },
        ] {
            assert_eq!(decide(redirecting.as_ref(), answer).unwrap(), vec![]);
        }
    }

    #[test]
    fn an_address_change_is_undone_by_a_compensating_event() {
        let busan = address("2 Haeundae-ro, Busan");
        let jeju = address("3 Jeju-daero, Jeju");
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::ChangeAddress {
                address: busan.clone(),
            },
            OrderCommand::DeliveryRedirected {
                address: busan.clone(),
            },
            OrderCommand::ChangeAddress {
                address: jeju.clone(),
            },
            OrderCommand::DeliveryRedirected {
                address: jeju.clone(),
            },
        ]);
        assert_eq!(order.as_ref().unwrap().address, jeju);
        let events = decide(order.as_ref(), OrderCommand::Undo).unwrap();
        assert_eq!(
            events,
            vec![OrderEvent::AddressChangeUndoRequested {
                address: busan.clone()
            }]
        );
        let undone = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::ChangeAddress {
                address: busan.clone(),
            },
            OrderCommand::DeliveryRedirected {
                address: busan.clone(),
            },
            OrderCommand::Undo,
            OrderCommand::DeliveryRedirected {
                address: address("1 Teheran-ro, Seoul"),
            },
        ])
        .unwrap();
        assert_eq!(undone.address.as_str(), "1 Teheran-ro, Seoul");
        assert_eq!(undone.version, 6, "undo appends, never deletes");
        assert_eq!(undone.request, None);
        assert_eq!(
            decide(Some(&undone), OrderCommand::Undo),
            Err(OrderError::NothingToUndo)
        );
    }

    #[test]
    fn a_refused_address_change_keeps_the_address() {
        let order = given(vec![
            place(1, 1_000),
            OrderCommand::Confirm,
            OrderCommand::ChangeAddress {
                address: address("2 Haeundae-ro, Busan"),
            },
            OrderCommand::RedirectRefused {
                address: address("2 Haeundae-ro, Busan"),
                reason: "delivered".into(),
            },
        ])
        .unwrap();
        assert_eq!(order.address.as_str(), "1 Teheran-ro, Seoul");
        assert_eq!(order.request.unwrap().status, RequestStatus::Refused);
        assert!(order.earlier_addresses.is_empty(), "nothing to undo");
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
                cause: RejectionCause::OutOfStock,
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
                cause: RejectionCause::PaymentDeclined,
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
