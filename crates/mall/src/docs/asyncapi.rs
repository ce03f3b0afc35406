//! `docs/asyncapi.yaml`: every topic, every event type with its payload schema, and which
//! service sends and which receives it, as an AsyncAPI 3 document.

use std::collections::BTreeMap;

use chassis::flows::EventRef;
use contracts::{Envelope, events};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Value, json};

use super::{SERVICES, consumers, publishers};

/// The channel of the per-group dead-letter topics (`topics::dead_letter`).
const DEAD_LETTERS: &str = "deadLetters";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AsyncApi {
    asyncapi: &'static str,
    info: Value,
    default_content_type: &'static str,
    channels: BTreeMap<String, Value>,
    operations: BTreeMap<String, Value>,
    components: Value,
}

pub fn document() -> anyhow::Result<String> {
    let catalogue = events::catalogue();
    let refs: Vec<EventRef> = catalogue
        .iter()
        .map(|event| EventRef {
            name: event.name,
            topic: event.topic,
        })
        .collect();

    let mut channels = BTreeMap::new();
    for topic in topics(&refs) {
        let on_topic: Vec<_> = refs.iter().filter(|e| e.topic == topic).collect();
        let messages: BTreeMap<_, _> = on_topic
            .iter()
            .map(|e| {
                (
                    e.name,
                    json!({ "$ref": format!("#/components/messages/{}", e.name) }),
                )
            })
            .collect();
        let senders = names(on_topic.iter().flat_map(|e| publishers(e)));
        let receivers = names(on_topic.iter().flat_map(|e| consumers(e)));
        channels.insert(
            topic.to_owned(),
            json!({
                "address": topic,
                "description": format!(
                    "Sent by {senders}; received by {}. Keyed by the aggregate id.",
                    if receivers.is_empty() { "no service yet" } else { &receivers }
                ),
                "messages": messages,
            }),
        );
    }
    channels.insert(
        DEAD_LETTERS.to_owned(),
        json!({
            "address": "{topic}.dlq.{group}",
            "description": "Events a consumer group gave up on after its retries, with the \
                error; one topic per topic and group.",
            "parameters": {
                "topic": { "description": "The topic the event was read from." },
                "group": { "description": "The consumer group (service) that failed it." },
            },
            "messages": {
                "DeadLettered": { "$ref": "#/components/messages/DeadLettered" },
            },
        }),
    );

    let mut operations = BTreeMap::new();
    for service in SERVICES {
        let sends = service.emitted();
        let receives = service.consumed();
        for (action, events) in [("send", &sends), ("receive", &receives)] {
            for topic in topics(events) {
                let messages: Vec<_> = events
                    .iter()
                    .filter(|e| e.topic == topic)
                    .map(|e| json!({ "$ref": format!("#/channels/{topic}/messages/{}", e.name) }))
                    .collect();
                operations.insert(
                    format!("{}.{action}.{topic}", service.service),
                    json!({
                        "action": action,
                        "channel": { "$ref": format!("#/channels/{topic}") },
                        "title": format!("{} {action}s on {topic}", service.service),
                        "messages": messages,
                    }),
                );
            }
        }
        if !receives.is_empty() {
            operations.insert(
                format!("{}.send.{DEAD_LETTERS}", service.service),
                json!({
                    "action": "send",
                    "channel": { "$ref": format!("#/channels/{DEAD_LETTERS}") },
                    "title": format!("{} dead-letters what it cannot handle", service.service),
                    "messages": [
                        { "$ref": format!("#/channels/{DEAD_LETTERS}/messages/DeadLettered") },
                    ],
                }),
            );
        }
    }

    let settings = SchemaSettings::draft07().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut schemas = BTreeMap::new();
    let mut messages = BTreeMap::new();
    schemas.insert("Envelope", schema::<Envelope>(&settings)?);
    for event in &catalogue {
        let schema = serde_json::to_value((event.schema)(&settings))?;
        messages.insert(event.name, message(event.name, &schema));
        schemas.insert(event.name, schema);
    }
    let dead_lettered = schema::<events::DeadLettered>(&settings)?;
    messages.insert("DeadLettered", message("DeadLettered", &dead_lettered));
    schemas.insert("DeadLettered", dead_lettered);

    let document = AsyncApi {
        asyncapi: "3.0.0",
        info: json!({
            "title": "12st mall events",
            "version": "1.0.0",
            "description": "The published language of the 12st mall: every event the \
                services exchange. Each message is the JSON envelope with the event in \
                `data`; `subject` (the aggregate id) is the partition key. Generated by \
                `cargo run -- docs` from crates/contracts and each service's FLOWS.",
        }),
        default_content_type: "application/json",
        channels,
        operations,
        components: json!({ "schemas": schemas, "messages": messages }),
    };
    Ok(serde_yaml_ng::to_string(&document)?)
}

fn schema<T: JsonSchema>(settings: &SchemaSettings) -> serde_json::Result<Value> {
    serde_json::to_value(
        settings
            .clone()
            .into_generator()
            .into_root_schema_for::<T>(),
    )
}

/// A message: the envelope, its `type` fixed, its `data` the event's payload, summed up
/// by the payload type's doc comment.
fn message(name: &str, payload: &Value) -> Value {
    json!({
        "name": name,
        "title": name,
        "summary": payload.get("description").unwrap_or(&json!(name)),
        "correlationId": {
            "description": "The saga (order) the event belongs to.",
            "location": "$message.payload#/correlation_id",
        },
        "payload": {
            "allOf": [
                { "$ref": "#/components/schemas/Envelope" },
                {
                    "type": "object",
                    "properties": {
                        "type": { "const": name },
                        "data": { "$ref": format!("#/components/schemas/{name}") },
                    },
                },
            ],
        },
    })
}

fn topics(events: &[EventRef]) -> Vec<&'static str> {
    let mut topics: Vec<_> = events.iter().map(|e| e.topic).collect();
    topics.sort_unstable();
    topics.dedup();
    topics
}

fn names(services: impl Iterator<Item = &'static chassis::flows::ServiceFlows>) -> String {
    let mut names: Vec<_> = services.map(|s| s.service).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}
