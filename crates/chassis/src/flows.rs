//! What a service declares about its part in the shop: the commands it takes, the events
//! they emit, the policies that react to other services' events, its read models and its
//! synchronous calls.
//!
//! The declaration is load-bearing, so it cannot drift from the code: a consumer
//! subscribes to the topics of its service's policies and its handler sees only the event
//! types they name ([`crate::ServiceRuntime::consume`]); a test of the whole shop checks
//! that every event on the bus was declared by the service that sent it. `mall docs` draws
//! the event storming board, the context map and the AsyncAPI document from it.

use contracts::Event;

/// An event type and the topic it travels on, taken from the contracts crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRef {
    pub name: &'static str,
    pub topic: &'static str,
}

impl EventRef {
    pub const fn of<E: Event>() -> Self {
        Self {
            name: E::TYPE,
            topic: E::TOPIC,
        }
    }
}

/// Who issues a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Visitor,
    Customer,
    Operator,
    /// A timer in the service itself.
    Clock,
}

impl Actor {
    pub fn label(self) -> &'static str {
        match self {
            Actor::Visitor => "Visitor",
            Actor::Customer => "Customer",
            Actor::Operator => "Operator",
            Actor::Clock => "Clock",
        }
    }
}

/// A request to change the service's state, and the events it emits when it succeeds.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    pub actor: Actor,
    /// The HTTP route (method and path on the service) or, for the clock, when it fires.
    pub trigger: &'static str,
    pub emits: &'static [EventRef],
}

/// "Whenever one of `on` happens, do `name`": the service's reaction to events, and the
/// events that reaction may emit.
#[derive(Debug)]
pub struct Policy {
    pub name: &'static str,
    pub on: &'static [EventRef],
    pub emits: &'static [EventRef],
}

/// A synchronous call to another service, which makes this service its customer.
#[derive(Debug)]
pub struct Call {
    pub to: &'static str,
    pub route: &'static str,
    pub why: &'static str,
}

/// What kind of capability a service is to the business (docs/analysis.md says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subdomain {
    Core,
    Supporting,
    Generic,
}

impl Subdomain {
    pub fn label(self) -> &'static str {
        match self {
            Subdomain::Core => "core",
            Subdomain::Supporting => "supporting",
            Subdomain::Generic => "generic",
        }
    }
}

#[derive(Debug)]
pub struct ServiceFlows {
    pub service: &'static str,
    pub subdomain: Subdomain,
    /// The aggregate whose consistency the service guards, if it has one.
    pub aggregate: Option<&'static str>,
    pub commands: &'static [Command],
    pub policies: &'static [Policy],
    pub read_models: &'static [&'static str],
    pub calls: &'static [Call],
}

impl ServiceFlows {
    /// Every event type the service reacts to, each once.
    pub fn consumed(&self) -> Vec<EventRef> {
        distinct(self.policies.iter().flat_map(|policy| policy.on))
    }

    /// Every event type the service may emit, each once.
    pub fn emitted(&self) -> Vec<EventRef> {
        let by_commands = self.commands.iter().flat_map(|command| command.emits);
        let by_policies = self.policies.iter().flat_map(|policy| policy.emits);
        distinct(by_commands.chain(by_policies))
    }

    /// The topics the service subscribes to, each once.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics: Vec<_> = self.consumed().iter().map(|event| event.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    pub fn reacts_to(&self, event_type: &str) -> bool {
        self.policies
            .iter()
            .flat_map(|policy| policy.on)
            .any(|event| event.name == event_type)
    }
}

fn distinct<'a>(events: impl Iterator<Item = &'a EventRef>) -> Vec<EventRef> {
    let mut events: Vec<_> = events.copied().collect();
    events.sort_unstable();
    events.dedup();
    events
}

#[cfg(test)]
mod tests {
    use contracts::events::{OrderCancelled, OrderPlaced, PaymentRefunded, StockReserved};

    use super::*;

    const FLOWS: ServiceFlows = ServiceFlows {
        service: "payment",
        subdomain: Subdomain::Supporting,
        aggregate: Some("Payment"),
        commands: &[],
        policies: &[
            Policy {
                name: "Refund",
                on: &[EventRef::of::<OrderCancelled>()],
                emits: &[EventRef::of::<PaymentRefunded>()],
            },
            Policy {
                name: "Note the order",
                on: &[
                    EventRef::of::<OrderPlaced>(),
                    EventRef::of::<StockReserved>(),
                ],
                emits: &[EventRef::of::<PaymentRefunded>()],
            },
        ],
        read_models: &[],
        calls: &[],
    };

    #[test]
    fn topics_and_events_are_listed_once() {
        assert_eq!(FLOWS.topics(), ["order.order.v1", "product.reservation.v1"]);
        assert_eq!(FLOWS.consumed().len(), 3);
        assert_eq!(FLOWS.emitted(), [EventRef::of::<PaymentRefunded>()]);
    }

    #[test]
    fn reacts_only_to_declared_events() {
        assert!(FLOWS.reacts_to("StockReserved"));
        assert!(!FLOWS.reacts_to("OrderConfirmed"));
    }
}
