use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// A payload that can travel on the bus.
pub trait Event: Serialize + DeserializeOwned {
    /// The envelope `type`, e.g. `OrderPlaced`.
    const TYPE: &'static str;
    /// The topic it is published on.
    const TOPIC: &'static str;
    /// Major version of the payload shape.
    const SCHEMA_VERSION: u32 = 1;
}

/// CloudEvents-style envelope around every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// UUID v7: unique, and sortable by creation time.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The service that published it.
    pub source: String,
    /// The aggregate id; also the partition key.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub schema_version: u32,
    /// W3C trace context of the work that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Ties a whole saga together: the order id.
    pub correlation_id: Uuid,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected a {expected} event, got {actual}")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    #[error("{event_type} v{version} is not a version this service reads")]
    UnknownVersion { event_type: String, version: u32 },
    #[error("malformed {event_type} payload: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Wraps `payload` as a new event about `subject`.
    pub fn new<E: Event>(
        source: &str,
        subject: impl ToString,
        payload: &E,
        correlation_id: Uuid,
    ) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            source: source.to_owned(),
            subject: subject.to_string(),
            time: Utc::now(),
            schema_version: E::SCHEMA_VERSION,
            traceparent: None,
            causation_id: None,
            correlation_id,
            data: serde_json::to_value(payload).expect("event payloads always serialise"),
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Marks this event as caused by `cause`, keeping its saga id.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.causation_id = Some(cause.id);
        self.correlation_id = cause.correlation_id;
        self
    }

    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// Reads the payload as `E`, refusing other types and versions.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if !self.is::<E>() {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        if self.schema_version > E::SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion {
                event_type: self.event_type.clone(),
                version: self.schema_version,
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|source| DecodeError::Malformed {
            event_type: self.event_type.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{OrderConfirmed, StockReserved};

    #[test]
    fn an_event_round_trips_through_its_envelope() {
        let order_id = Uuid::now_v7();
        let sent = OrderConfirmed { order_id };
        let envelope = Envelope::new("order", order_id, &sent, order_id);
        let json = serde_json::to_string(&envelope).unwrap();
        let received: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(received.decode::<OrderConfirmed>().unwrap(), sent);
        assert!(json.contains(r#""type":"OrderConfirmed""#));
    }

    #[test]
    fn decoding_as_the_wrong_type_is_refused() {
        let order_id = Uuid::now_v7();
        let envelope = Envelope::new("order", order_id, &OrderConfirmed { order_id }, order_id);
        assert!(matches!(
            envelope.decode::<StockReserved>(),
            Err(DecodeError::WrongType { .. })
        ));
    }

    #[test]
    fn a_newer_major_version_is_refused_rather_than_misread() {
        let order_id = Uuid::now_v7();
        let mut envelope = Envelope::new("order", order_id, &OrderConfirmed { order_id }, order_id);
        envelope.schema_version = 2;
        assert!(matches!(
            envelope.decode::<OrderConfirmed>(),
            Err(DecodeError::UnknownVersion { .. })
        ));
    }
}
