//! Spans of a service's work, with OpenTelemetry: one for each HTTP request served and
//! sent, each event published and handled, each database transaction.
//!
//! Every service has its own [`Tracer`], and so its own `TracerProvider` whose resource
//! names it (`service.name`): under `mall up` seven services share one process, and each
//! span must still say which of them did the work. The ids a span gets are the ids that
//! travel on (`traceparent` in HTTP headers and event envelopes, [`TraceContext`]), so a
//! child's parent is a span its parent's process recorded.
//!
//! Finished spans go two ways:
//! - to the service's [`SpanStore`], the last [`TracingSettings::span_store_capacity`]
//!   of them, kept whether or not they were sampled for export: an operator looking at one
//!   order sees its whole trace without a tracing backend;
//! - over OTLP (gRPC) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, only the sampled ones,
//!   through a bounded queue that a request never waits on: when the receiver is slow or
//!   down, spans are dropped and counted (`mall_trace_spans_dropped_total`).
//!
//! The span that is current for a piece of work (a request, an event being handled) is
//! task-local: [`Span::scope`] makes it so, and [`child_of_current`] starts a span under
//! it, so a database transaction or a call to another service needs no trace argument.

use std::{
    borrow::Cow,
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

pub use opentelemetry::trace::SpanKind;
use opentelemetry::{
    Context, KeyValue, Value,
    trace::{
        Link, Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId,
        TraceState, Tracer as _, TracerProvider as _,
    },
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{
        Sampler, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample,
        SpanData, SpanExporter, SpanProcessor,
    },
};
use prometheus_client::metrics::family::Family;
use prometheus_client::{encoding::EncodeLabelSet, metrics::counter::Counter};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{retry::Trouble, telemetry::Metrics, trace::TraceContext};

/// Spans waiting for export at most; more are dropped (and counted) rather than held.
const EXPORT_QUEUE: usize = 2048;
/// Most spans sent in one export.
const EXPORT_BATCH: usize = 512;
/// How long a span may wait for its batch to fill before it is sent anyway.
const EXPORT_DELAY: Duration = Duration::from_secs(1);
/// Longest an export may take; spans of one that takes longer are counted dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a service's spans are sampled, exported and kept: the standard OpenTelemetry
/// variables, and the size of the span store.
#[derive(clap::Args, Debug, Clone)]
pub struct TracingSettings {
    /// Where to send spans over OTLP/gRPC (`http://collector:4317`); none: not exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// The `service.name` of the spans of a process that runs one service (`mall serve`);
    /// unset, the service's own name. `mall up` gives each service its own name.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Which traces are exported: always_on, always_off, traceidratio, or parentbased_
    /// before one of them (follow the caller's decision; the named one for new traces).
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_enum,
          default_value_t = SamplerName::ParentbasedAlwaysOn)]
    pub otel_traces_sampler: SamplerName,

    /// The ratio of new traces the `traceidratio` samplers take, 0 to 1 (default 1).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_parser = parse_ratio)]
    pub otel_traces_sampler_arg: Option<f64>,

    /// Finished spans each service keeps for `/debug/traces`, sampled or not; 0 keeps none.
    #[arg(long, env = "MALL_SPAN_STORE_CAPACITY", default_value_t = 2_000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub span_store_capacity: u32,
}

/// The values of `OTEL_TRACES_SAMPLER` this shop understands (the specification's, less
/// the remote samplers it has no server for).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerName {
    #[value(name = "always_on")]
    AlwaysOn,
    #[value(name = "always_off")]
    AlwaysOff,
    #[value(name = "traceidratio")]
    TraceIdRatio,
    #[value(name = "parentbased_always_on")]
    ParentbasedAlwaysOn,
    #[value(name = "parentbased_always_off")]
    ParentbasedAlwaysOff,
    #[value(name = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    match value.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(value.to_owned()),
        _ if value.starts_with("https://") => Err(format!(
            "`{value}`: this build speaks OTLP over plain http:// only (no TLS client); \
             send to a collector beside the service"
        )),
        _ => Err(format!("`{value}` is not `http://host:port`")),
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| format!("`{value}` is not a ratio from 0 to 1"))
}

impl TracingSettings {
    /// The sampler the settings name, deciding which spans are exported.
    pub fn sampler(&self) -> Sampler {
        let ratio = || Sampler::TraceIdRatioBased(self.otel_traces_sampler_arg.unwrap_or(1.0));
        let parent_based = |root| Sampler::ParentBased(Box::new(root));
        match self.otel_traces_sampler {
            SamplerName::AlwaysOn => Sampler::AlwaysOn,
            SamplerName::AlwaysOff => Sampler::AlwaysOff,
            SamplerName::TraceIdRatio => ratio(),
            SamplerName::ParentbasedAlwaysOn => parent_based(Sampler::AlwaysOn),
            SamplerName::ParentbasedAlwaysOff => parent_based(Sampler::AlwaysOff),
            SamplerName::ParentbasedTraceIdRatio => parent_based(ratio()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("cannot export spans to {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    /// `queue_full` (the receiver is slower than the spans come) or `export_failed` (it
    /// refused them, did not answer in time, or is not there).
    reason: &'static str,
}

/// A service's source of spans.
#[derive(Clone)]
pub struct Tracer {
    service: &'static str,
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    store: Arc<SpanStore>,
    exporting: Arc<Mutex<Option<Exporting>>>,
}

/// The export task of a tracer, and how to tell it to send what is left and stop.
struct Exporting {
    flush: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Tracer {
    /// The tracer of service `service` (instance `instance`), its spans named as
    /// `settings` say, its dropped spans counted in `metrics`. Starts the export task when
    /// an endpoint is set, so it is called within the service's runtime.
    pub fn new(
        service: &'static str,
        settings: &TracingSettings,
        instance: &str,
        metrics: &Metrics,
    ) -> Result<Self, TracingError> {
        let name = settings
            .otel_service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        let resource = Resource::builder()
            .with_service_name(name)
            .with_attribute(KeyValue::new("service.namespace", "12st-mall"))
            .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
            .build();
        let store = Arc::new(SpanStore::new(
            service,
            settings.span_store_capacity as usize,
        ));
        let mut provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(RecordLocally {
                exported: settings.sampler(),
                keep_unsampled: store.capacity > 0,
            })
            .with_span_processor(StoreProcessor(store.clone()));
        // Registered with or without an endpoint, so that the metric a dashboard names is
        // always there.
        let dropped = Family::<DropLabels, Counter>::default();
        metrics.register(
            "trace_spans_dropped",
            "Sampled spans that never reached the OTLP receiver",
            dropped.clone(),
        );
        let mut exporting = None;
        if let Some(endpoint) = &settings.otel_exporter_otlp_endpoint {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|source| TracingError::Exporter {
                    endpoint: endpoint.clone(),
                    source,
                })?;
            let (queue, spans) = mpsc::channel(EXPORT_QUEUE);
            let (flush, flushed) = oneshot::channel();
            let (resource_tx, resource_rx) = oneshot::channel();
            let done = tokio::spawn(export(
                exporter,
                resource_rx,
                spans,
                flushed,
                dropped.clone(),
                endpoint.clone(),
                service,
            ));
            exporting = Some(Exporting { flush, done });
            provider = provider.with_span_processor(ExportProcessor {
                queue,
                dropped,
                resource: Mutex::new(Some(resource_tx)),
            });
        }
        let provider = provider.build();
        Ok(Tracer {
            service,
            tracer: provider.tracer(service),
            provider,
            store,
            exporting: Arc::new(Mutex::new(exporting)),
        })
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The service's recent spans.
    pub fn store(&self) -> &SpanStore {
        &self.store
    }

    /// Starts a span continuing `parent`, a context that came from elsewhere (a request's
    /// `traceparent`, an event's), or a new trace.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<TraceContext>,
    ) -> Span {
        let parent = match parent {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(parent.trace_id),
                SpanId::from(parent.span_id),
                if parent.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        self.start_in(name, kind, &parent, Vec::new())
    }

    /// Starts a span of its own trace, linked to the spans of `linked` (work done for
    /// several traces at once, such as a batch of events in one transaction).
    pub fn start_linked(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        linked: &[TraceContext],
    ) -> Span {
        let links = linked
            .iter()
            .map(|context| {
                Link::with_context(SpanContext::new(
                    TraceId::from(context.trace_id),
                    SpanId::from(context.span_id),
                    TraceFlags::default().with_sampled(context.sampled),
                    false,
                    TraceState::default(),
                ))
            })
            .collect();
        self.start_in(name, kind, &Context::new(), links)
    }

    fn start_in(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        links: Vec<Link>,
    ) -> Span {
        let span = self.tracer.build_with_context(
            opentelemetry::trace::SpanBuilder::from_name(name)
                .with_kind(kind)
                .with_links(links),
            parent,
        );
        let context = span.span_context();
        let trace = TraceContext {
            trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(context.span_id().to_bytes()),
            sampled: context.is_sampled(),
        };
        Span {
            tracer: self.clone(),
            context: Context::new().with_span(span),
            trace,
        }
    }

    /// Sends the spans still queued, waiting at most `deadline`, and stops exporting.
    pub async fn shutdown(&self, deadline: Duration) {
        let exporting = self
            .exporting
            .lock()
            .expect("exporting lock poisoned")
            .take();
        if let Some(Exporting { flush, done }) = exporting {
            let _ = flush.send(());
            if tokio::time::timeout(deadline, done).await.is_err() {
                tracing::warn!(
                    service = self.service,
                    "spans still queued at shutdown are lost"
                );
            }
        }
        // Ends the processors: spans started after this are no longer recorded.
        let _ = self.provider.shutdown();
    }
}

/// A span being recorded; it ends when dropped.
pub struct Span {
    tracer: Tracer,
    /// Holds the SDK's span, as the parent of the spans started under this one.
    context: Context,
    trace: TraceContext,
}

impl Span {
    /// The ids that carry this span on: its `traceparent`.
    pub fn context(&self) -> TraceContext {
        self.trace
    }

    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        self.context
            .span()
            .set_attribute(KeyValue::new(key, value.into()));
    }

    /// Marks the work this span stands for as failed, and why.
    pub fn fail(&self, why: impl Into<Cow<'static, str>>) {
        self.context.span().set_status(Status::error(why));
    }

    /// A span under this one, in the same process.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        self.tracer.start_in(name, kind, &self.context, Vec::new())
    }

    /// Runs `work` with this span as the current one: the database transactions it opens
    /// and the calls it sends are spans under this one.
    pub fn scope<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(
            Current {
                tracer: self.tracer.clone(),
                context: self.context.clone(),
            },
            work,
        )
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.context.span().end();
    }
}

tokio::task_local! {
    static CURRENT: Current;
}

#[derive(Clone)]
struct Current {
    tracer: Tracer,
    context: Context,
}

/// A span under the current one ([`Span::scope`]); `None` outside any traced work (a
/// background sweep, a tool), which then records nothing.
pub fn child_of_current(name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Option<Span> {
    CURRENT
        .try_with(|current| {
            current
                .tracer
                .start_in(name, kind, &current.context, Vec::new())
        })
        .ok()
}

/// The span of an HTTP request the current work sends to service `service` at `url`;
/// `None` outside any traced work.
pub fn http_client(method: &str, service: &'static str, url: &str) -> Option<Span> {
    let span = child_of_current(format!("{method} {service}"), SpanKind::Client)?;
    span.set("http.request.method", method.to_owned());
    span.set("url.full", url.to_owned());
    span.set("peer.service", service);
    Some(span)
}

impl Span {
    /// Records the answer to the HTTP request of this client span: to a client, any 4xx
    /// or 5xx is a failure.
    pub fn answered(&self, status: u16) {
        self.set("http.response.status_code", i64::from(status));
        if status >= 400 {
            self.fail(format!("answered {status}"));
        }
    }
}

/// Samples with the configured sampler for export, but records locally (for the span
/// store) what it would drop: an operator sees every recent trace, not a sample of them.
#[derive(Clone, Debug)]
struct RecordLocally {
    exported: Sampler,
    keep_unsampled: bool,
}

impl ShouldSample for RecordLocally {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result = self.exported.should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        );
        if self.keep_unsampled && result.decision == SamplingDecision::Drop {
            result.decision = SamplingDecision::RecordOnly;
        }
        result
    }
}

/// Hands each finished span to the span store.
#[derive(Debug)]
struct StoreProcessor(Arc<SpanStore>);

impl SpanProcessor for StoreProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.keep(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Queues each finished, sampled span for the export task, or drops it when the queue is
/// full: the request or handler that ended it never waits.
#[derive(Debug)]
struct ExportProcessor {
    queue: mpsc::Sender<SpanData>,
    dropped: Family<DropLabels, Counter>,
    /// The service's resource, handed to the export task once the provider is built.
    resource: Mutex<Option<oneshot::Sender<Resource>>>,
}

impl SpanProcessor for ExportProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(span) {
            self.dropped
                .get_or_create(&DropLabels {
                    reason: "queue_full",
                })
                .inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(handover) = self.resource.get_mut().ok().and_then(Option::take) {
            let _ = handover.send(resource.clone());
        }
    }
}

/// Sends queued spans in batches, one export at a time, until told to flush: then sends
/// what is queued and stops. A failed or late export loses its batch, counted.
async fn export(
    mut exporter: opentelemetry_otlp::SpanExporter,
    resource: oneshot::Receiver<Resource>,
    mut spans: mpsc::Receiver<SpanData>,
    mut flush: oneshot::Receiver<()>,
    dropped: Family<DropLabels, Counter>,
    endpoint: String,
    service: &'static str,
) {
    if let Ok(resource) = resource.await {
        exporter.set_resource(&resource);
    }
    let mut trouble = Trouble::new(format!("exporting {service}'s spans to {endpoint}"));
    let mut flushing = false;
    loop {
        let mut batch = Vec::with_capacity(EXPORT_BATCH);
        if flushing {
            while batch.len() < EXPORT_BATCH {
                match spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        } else {
            tokio::select! {
                span = spans.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                _ = &mut flush => {
                    flushing = true;
                    continue;
                }
            }
            let filled = tokio::time::sleep(EXPORT_DELAY);
            tokio::pin!(filled);
            while batch.len() < EXPORT_BATCH {
                tokio::select! {
                    span = spans.recv() => match span {
                        Some(span) => batch.push(span),
                        None => break,
                    },
                    _ = &mut filled => break,
                }
            }
        }
        let count = batch.len() as u64;
        let failure = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {} s", EXPORT_TIMEOUT.as_secs())),
        };
        match failure {
            None => trouble.succeeded(),
            Some(error) => {
                dropped
                    .get_or_create(&DropLabels {
                        reason: "export_failed",
                    })
                    .inc_by(count);
                // Logged once per episode; the next batch is tried at once, as the queue
                // bounds what waits meanwhile.
                let _ = trouble.failed(&error);
            }
        }
    }
}

/// A finished span as `/debug/traces/{trace_id}` shows it.
///
/// ```json
/// {
///   "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",   // 32 hex digits
///   "span_id": "00f067aa0ba902b7",                    // 16 hex digits
///   "parent_span_id": "53995c3f42cd8ad8",             // null for a trace's root
///   "name": "POST /orders",
///   "kind": "server",            // server, client, producer, consumer or internal
///   "service": "order",
///   "start": "2026-12-01T09:30:00.123456789Z",        // RFC 3339, UTC
///   "start_unix_nano": 1795944600123456789,
///   "duration_ms": 4.21,
///   "attributes": {"http.route": "/orders", "http.response.status_code": 202},
///   "links": [{"trace_id": "...", "span_id": "..."}], // other traces' spans it served
///   "status": {"code": "unset", "message": null}      // unset, ok or error (with why)
/// }
/// ```
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: &'static str,
    pub service: &'static str,
    pub start: String,
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub links: Vec<LinkedSpan>,
    pub status: SpanStatus,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkedSpan {
    pub trace_id: String,
    pub span_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpanStatus {
    pub code: &'static str,
    pub message: Option<String>,
}

/// A trace that touched an order, as `/debug/traces?order_id=` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The earliest of its spans this service kept, and when it started.
    pub first_span: String,
    pub start: String,
}

/// The attribute that ties a span to a saga: the correlation id of the event it
/// published or handled, which is the order's id for every event of an order's saga.
pub const CONVERSATION_ID: &str = "messaging.message.conversation_id";

/// A service's most recent finished spans: a ring of fixed capacity, the oldest dropped
/// first (zPages-style), searched by trace id or by order.
#[derive(Debug)]
pub struct SpanStore {
    service: &'static str,
    capacity: usize,
    spans: Mutex<VecDeque<SpanData>>,
}

impl SpanStore {
    pub fn new(service: &'static str, capacity: usize) -> Self {
        SpanStore {
            service,
            capacity,
            spans: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    fn keep(&self, span: SpanData) {
        if self.capacity == 0 {
            return;
        }
        let mut spans = self.spans.lock().expect("span store lock poisoned");
        if spans.len() == self.capacity {
            spans.pop_front();
        }
        spans.push_back(span);
    }

    /// The spans it holds of trace `trace_id`, earliest first.
    pub fn trace(&self, trace_id: u128) -> Vec<FinishedSpan> {
        let trace_id = TraceId::from(trace_id);
        let mut spans: Vec<FinishedSpan> = self
            .spans
            .lock()
            .expect("span store lock poisoned")
            .iter()
            .filter(|span| span.span_context.trace_id() == trace_id)
            .map(|span| self.finished(span))
            .collect();
        spans.sort_by_key(|span| span.start_unix_nano);
        spans
    }

    /// The traces it holds a span of that published or handled an event of order
    /// `order_id`'s saga, earliest first.
    pub fn traces_of_order(&self, order_id: &str) -> Vec<TraceSummary> {
        let spans = self.spans.lock().expect("span store lock poisoned");
        let mut traces: Vec<TraceId> = Vec::new();
        for span in spans.iter().filter(|span| {
            span.attributes.iter().any(|attribute| {
                attribute.key.as_str() == CONVERSATION_ID && attribute.value.as_str() == order_id
            })
        }) {
            if !traces.contains(&span.span_context.trace_id()) {
                traces.push(span.span_context.trace_id());
            }
        }
        let mut found: Vec<TraceSummary> = traces
            .into_iter()
            .filter_map(|trace_id| {
                let first = spans
                    .iter()
                    .filter(|span| span.span_context.trace_id() == trace_id)
                    .min_by_key(|span| span.start_time)?;
                Some(TraceSummary {
                    trace_id: trace_id.to_string(),
                    first_span: first.name.to_string(),
                    start: rfc3339(first.start_time),
                })
            })
            .collect();
        // RFC 3339 in UTC with a fixed number of digits sorts as time does.
        found.sort_by(|a, b| a.start.cmp(&b.start));
        found
    }

    fn finished(&self, span: &SpanData) -> FinishedSpan {
        let parent = span.parent_span_id;
        let unix_nano = |time: SystemTime| {
            time.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64)
        };
        let (code, message) = match &span.status {
            Status::Unset => ("unset", None),
            Status::Ok => ("ok", None),
            Status::Error { description } => ("error", Some(description.to_string())),
        };
        FinishedSpan {
            trace_id: span.span_context.trace_id().to_string(),
            span_id: span.span_context.span_id().to_string(),
            parent_span_id: (parent != SpanId::INVALID).then(|| parent.to_string()),
            name: span.name.to_string(),
            kind: match span.span_kind {
                SpanKind::Server => "server",
                SpanKind::Client => "client",
                SpanKind::Producer => "producer",
                SpanKind::Consumer => "consumer",
                SpanKind::Internal => "internal",
            },
            service: self.service,
            start: rfc3339(span.start_time),
            start_unix_nano: unix_nano(span.start_time),
            duration_ms: span
                .end_time
                .duration_since(span.start_time)
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            attributes: span
                .attributes
                .iter()
                .map(|attribute| (attribute.key.to_string(), json_value(&attribute.value)))
                .collect(),
            links: span
                .links
                .iter()
                .map(|link| LinkedSpan {
                    trace_id: link.span_context.trace_id().to_string(),
                    span_id: link.span_context.span_id().to_string(),
                })
                .collect(),
            status: SpanStatus { code, message },
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(value) => serde_json::Value::Bool(*value),
        Value::I64(value) => serde_json::Value::from(*value),
        Value::F64(value) => serde_json::Value::from(*value),
        other => serde_json::Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: TracingSettings,
    }

    fn settings(args: &[&str]) -> Result<TracingSettings, String> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.settings)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_standard_sampler_names_are_understood_and_default_to_following_the_parent() {
        let defaults = settings(&[]).unwrap();
        assert_eq!(
            defaults.otel_traces_sampler,
            SamplerName::ParentbasedAlwaysOn
        );
        assert_eq!(defaults.otel_exporter_otlp_endpoint, None);
        assert_eq!(defaults.span_store_capacity, 2_000);
        for (name, expected) in [
            ("always_on", "AlwaysOn"),
            ("always_off", "AlwaysOff"),
            ("traceidratio", "TraceIdRatioBased(0.1)"),
            ("parentbased_always_on", "ParentBased(AlwaysOn)"),
            ("parentbased_always_off", "ParentBased(AlwaysOff)"),
            (
                "parentbased_traceidratio",
                "ParentBased(TraceIdRatioBased(0.1))",
            ),
        ] {
            let parsed = settings(&[
                "--otel-traces-sampler",
                name,
                "--otel-traces-sampler-arg",
                "0.1",
            ])
            .unwrap();
            assert_eq!(format!("{:?}", parsed.sampler()), expected, "{name}");
        }
        let no_arg = settings(&["--otel-traces-sampler", "traceidratio"]).unwrap();
        assert_eq!(format!("{:?}", no_arg.sampler()), "TraceIdRatioBased(1.0)");
    }

    #[test]
    fn bad_sampling_and_endpoint_settings_are_refused_with_their_name() {
        for (args, names) in [
            (
                &["--otel-traces-sampler", "jaeger_remote"][..],
                "--otel-traces-sampler",
            ),
            (
                &["--otel-traces-sampler", "AlwaysOn"][..],
                "--otel-traces-sampler",
            ),
            (
                &["--otel-traces-sampler-arg", "1.5"][..],
                "--otel-traces-sampler-arg",
            ),
            (
                &["--otel-traces-sampler-arg", "ten"][..],
                "--otel-traces-sampler-arg",
            ),
            (
                &["--otel-exporter-otlp-endpoint", "collector:4317"][..],
                "--otel-exporter-otlp-endpoint",
            ),
            (
                &["--otel-exporter-otlp-endpoint", "https://c:4317"][..],
                "plain http",
            ),
        ] {
            let refusal = settings(args).unwrap_err();
            assert!(refusal.contains(names), "{args:?}: {refusal}");
        }
        assert!(settings(&["--otel-exporter-otlp-endpoint", "http://127.0.0.1:4317"]).is_ok());
    }

    fn tracer(capacity: u32, sampler: &str) -> Tracer {
        let settings = settings(&[
            "--span-store-capacity",
            &capacity.to_string(),
            "--otel-traces-sampler",
            sampler,
        ])
        .unwrap();
        Tracer::new("svc", &settings, "0", &Metrics::new("svc")).unwrap()
    }

    #[tokio::test]
    async fn the_span_store_keeps_only_the_most_recent_spans() {
        let tracer = tracer(3, "always_on");
        let first = tracer.start("first", SpanKind::Internal, None).context();
        for n in 0..5 {
            drop(tracer.start(format!("span {n}"), SpanKind::Internal, None));
        }
        assert_eq!(tracer.store().spans.lock().unwrap().len(), 3);
        assert!(
            tracer.store().trace(first.trace_id).is_empty(),
            "the oldest went first"
        );
        let names: Vec<String> = ["span 2", "span 3", "span 4"].map(String::from).into();
        let kept: Vec<String> = tracer
            .store()
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|span| span.name.to_string())
            .collect();
        assert_eq!(kept, names);
    }

    #[tokio::test]
    async fn a_trace_is_found_by_its_id_with_its_parent_links_and_by_its_order() {
        let tracer = tracer(100, "parentbased_always_off");
        let caller =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let server = tracer.start("POST /orders", SpanKind::Server, Some(caller));
        let transaction = server.child("db transaction", SpanKind::Internal);
        transaction.set(CONVERSATION_ID, "order-1");
        transaction.fail("disk full");
        let (server_id, transaction_id) = (server.context(), transaction.context());
        assert_eq!(server_id.trace_id, caller.trace_id);
        assert!(server_id.sampled, "the caller's decision is followed");
        drop(transaction);
        drop(server);
        drop(tracer.start("another trace", SpanKind::Internal, None));

        let spans = tracer.store().trace(caller.trace_id);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].name, "POST /orders");
        assert_eq!(spans[0].kind, "server");
        assert_eq!(spans[0].service, "svc");
        assert_eq!(spans[0].parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(spans[0].span_id, format!("{:016x}", server_id.span_id));
        assert_eq!(spans[1].parent_span_id, Some(spans[0].span_id.clone()));
        assert_eq!(spans[1].span_id, format!("{:016x}", transaction_id.span_id));
        assert_eq!(spans[1].status.code, "error");
        assert_eq!(spans[1].status.message.as_deref(), Some("disk full"));
        assert_eq!(spans[1].attributes[CONVERSATION_ID], "order-1");

        let unsampled = tracer.start("new trace", SpanKind::Internal, None);
        assert!(!unsampled.context().sampled, "a new trace is not exported");
        let unsampled_trace = unsampled.context().trace_id;
        drop(unsampled);
        assert_eq!(
            tracer.store().trace(unsampled_trace).len(),
            1,
            "but keeps it here"
        );

        let found = tracer.store().traces_of_order("order-1");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trace_id, spans[0].trace_id);
        assert_eq!(found[0].first_span, "POST /orders");
        assert!(tracer.store().traces_of_order("order-2").is_empty());
    }

    #[tokio::test]
    async fn a_full_export_queue_drops_and_counts_spans_rather_than_wait() {
        let tracer = tracer(10, "always_on");
        drop(tracer.start("finished", SpanKind::Internal, None));
        let finished = tracer.store().spans.lock().unwrap()[0].clone();
        let (queue, _waiting) = mpsc::channel(2);
        let dropped = Family::<DropLabels, Counter>::default();
        let processor = ExportProcessor {
            queue,
            dropped: dropped.clone(),
            resource: Mutex::new(None),
        };
        for _ in 0..5 {
            processor.on_end(finished.clone());
        }
        let full = DropLabels {
            reason: "queue_full",
        };
        assert_eq!(dropped.get_or_create(&full).get(), 3);
    }

    #[tokio::test]
    async fn a_span_started_in_a_scope_is_a_child_of_the_scope_s_span() {
        let tracer = tracer(10, "always_on");
        assert!(child_of_current("outside", SpanKind::Internal).is_none());
        let parent = tracer.start("request", SpanKind::Server, None);
        let child = parent
            .scope(async {
                child_of_current("transaction", SpanKind::Internal)
                    .unwrap()
                    .context()
            })
            .await;
        assert_eq!(child.trace_id, parent.context().trace_id);
        drop(parent);
        let spans = tracer.store().trace(child.trace_id);
        assert_eq!(spans[1].parent_span_id, Some(spans[0].span_id.clone()));
    }
}
