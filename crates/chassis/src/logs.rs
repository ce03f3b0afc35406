//! Log lines as Cloud Logging reads them natively: one JSON object per line on stderr,
//! with `severity`, `message` and `time`, and the trace and span of the work that logged
//! it (`logging.googleapis.com/trace`, `.../spanId`, `.../trace_sampled`), so the logs of a
//! request or an event open beside its trace. Everything else is a field of its own at the
//! top level: the fields of the spans the line was logged in (service, route, request id,
//! trace id, ...), outermost first, then the event's.
//!
//! ```json
//! {"time":"2026-12-01T09:30:00.123456Z","severity":"INFO","message":"answered",
//!  "target":"chassis::server","service":"order","method":"POST","route":"/orders",
//!  "request_id":"…","trace_id":"4bf9…4736","status":202,"latency_ms":4.2,
//!  "logging.googleapis.com/trace":"projects/shop-prod/traces/4bf9…4736",
//!  "logging.googleapis.com/spanId":"00f067aa0ba902b7",
//!  "logging.googleapis.com/trace_sampled":true}
//! ```

use std::{fmt, io::Write};

use serde_json::{Map, Value};
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

/// Where a line's trace and span go, and the fields of the shop's spans they come from.
const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_KEY: &str = "logging.googleapis.com/spanId";
const SAMPLED_KEY: &str = "logging.googleapis.com/trace_sampled";
const TRACE_FIELD: &str = "trace_id";
const SPAN_FIELD: &str = "span_id";
const SAMPLED_FIELD: &str = "trace_sampled";

/// Writes each event as one JSON line on stderr.
pub struct JsonLines {
    /// The Google Cloud project whose Cloud Trace holds the traces; without one, the
    /// trace field is the bare trace id.
    project: Option<String>,
}

impl JsonLines {
    pub fn new(project: Option<String>) -> Self {
        JsonLines { project }
    }

    /// The line for an event at `level` from `target`, logged within spans whose fields
    /// are `scopes` (outermost first), with its own `fields`.
    fn line<'a>(
        &self,
        level: &Level,
        target: &str,
        scopes: impl Iterator<Item = &'a Map<String, Value>>,
        fields: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut line = Map::new();
        for scope in scopes {
            line.extend(
                scope
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
        }
        line.extend(fields);
        let message = line
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        if let Some(Value::String(trace_id)) = line.get(TRACE_FIELD) {
            let trace = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace_id}"),
                None => trace_id.clone(),
            };
            line.insert(TRACE_KEY.into(), Value::String(trace));
        }
        if let Some(span_id) = line.remove(SPAN_FIELD) {
            line.insert(SPAN_KEY.into(), span_id);
        }
        if let Some(sampled) = line.remove(SAMPLED_FIELD) {
            line.insert(SAMPLED_KEY.into(), sampled);
        }
        line.insert("time".into(), Value::String(now()));
        line.insert("severity".into(), Value::String(severity(level).into()));
        line.insert("message".into(), message);
        line.insert("target".into(), Value::String(target.to_owned()));
        line
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Cloud Logging's name for a level (`LogSeverity`): it has no TRACE, and says WARNING.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// A span's fields, kept in its extensions for the lines logged within it.
struct SpanFields(Map<String, Value>);

/// Collects fields as JSON values: numbers and booleans as such, the rest as text.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attributes.record(&mut Collect(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Collect(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        event.record(&mut Collect(&mut fields));
        let scopes: Vec<Map<String, Value>> = ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .filter_map(|span| {
                span.extensions()
                    .get::<SpanFields>()
                    .map(|SpanFields(fields)| fields.clone())
            })
            .collect();
        let metadata = event.metadata();
        let line = self.line(metadata.level(), metadata.target(), scopes.iter(), fields);
        let mut bytes = serde_json::to_vec(&line).expect("a JSON map always serialises");
        bytes.push(b'\n');
        // One write of the whole line, so lines of concurrent tasks never interleave; a
        // closed stderr loses the line, which nothing could report anyway.
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_line_has_cloud_logging_s_fields_and_the_spans_fields() {
        let request = map(json!({
            "service": "order",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "trace_sampled": true,
        }));
        let inner = map(json!({"service": "order", "group": "order"}));
        let fields = map(json!({"message": "answered", "status": 202}));
        let line = JsonLines::new(Some("shop-prod".into())).line(
            &Level::WARN,
            "chassis::server",
            [&request, &inner].into_iter(),
            fields,
        );
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "answered");
        assert_eq!(line["status"], 202);
        assert_eq!(line["group"], "order");
        assert_eq!(line["target"], "chassis::server");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            line[TRACE_KEY],
            "projects/shop-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(line[SPAN_KEY], "00f067aa0ba902b7");
        assert_eq!(line[SAMPLED_KEY], true);
        assert!(line.get("span_id").is_none() && line.get("trace_sampled").is_none());
        let time = line["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");

        let bare =
            JsonLines::new(None).line(&Level::TRACE, "t", [&request].into_iter(), Map::new());
        assert_eq!(bare[TRACE_KEY], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(bare["severity"], "DEBUG");
        assert_eq!(bare["message"], "");
    }

    #[test]
    fn a_line_outside_any_trace_has_no_trace_fields() {
        let line = JsonLines::new(None).line(
            &Level::ERROR,
            "mall",
            std::iter::empty(),
            map(json!({"message": "a service stopped"})),
        );
        assert_eq!(line["severity"], "ERROR");
        assert!(line.get(TRACE_KEY).is_none() && line.get(SPAN_KEY).is_none());
    }
}
