//! Runs a service's event handler over a subscription: each event in its own transaction
//! with the inbox and the outbox, bounded retries with backoff, then the dead-letter topic.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use contracts::{DecodeError, Envelope, Event, events::DeadLettered};
use tracing::Instrument;

use crate::{
    bus::{BusError, Record, Subscription},
    db::{Tx, is_data_error, is_storage_failure},
    dead_letters,
    faults::CrashPoint,
    flows::ServiceFlows,
    inbox,
    outbox::describe_event,
    retry::{TROUBLE_MAX_WAIT, Trouble, backoff},
    runtime::ServiceRuntime,
    spans::{Span, SpanKind},
    telemetry::{ConsumedLabels, HandlerLabels, LagLabels},
    trace::TraceContext,
};

/// Most events taken from the bus at once.
const BATCH: usize = 100;
/// Consumer lag is measured at most this often (it costs a query per partition).
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// When consumer lag was last measured, and whether events were left then.
#[derive(Debug, Default)]
struct LagReport {
    at: Option<Instant>,
    behind: bool,
}

impl LagReport {
    /// Whether to measure the lag now, at most every [`LAG_REPORT_EVERY`]: after a batch,
    /// and while idle as long as the last measure left events. Otherwise the lag measured
    /// in the middle of the last busy second would stay on show once everything is handled;
    /// idle and caught up, nothing is measured.
    fn due(&self, batch_was_empty: bool) -> bool {
        (!batch_was_empty || self.behind)
            && self.at.is_none_or(|at| at.elapsed() >= LAG_REPORT_EVERY)
    }
}
/// How long a consumer waits for new events before it checks for shutdown again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// The longest wait before handling an event that failed once more.
const HANDLER_MAX_WAIT: Duration = Duration::from_secs(5);

/// An event being handled, with the trace context of its handling.
pub struct Delivery<'a> {
    pub envelope: &'a Envelope,
    pub trace: TraceContext,
}

impl Delivery<'_> {
    /// An event this one causes: same saga, caused by it, in its trace.
    pub fn answer<E: Event>(&self, source: &str, subject: impl ToString, payload: &E) -> Envelope {
        Envelope::new(source, subject, payload, self.envelope.correlation_id)
            .caused_by(self.envelope)
            .with_traceparent(Some(self.trace.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Failed(String),
}

/// A service's reaction to events. It runs inside the transaction that also records the
/// event in the inbox; events it causes go to the outbox through the same connection.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut Tx,
        delivery: &Delivery<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// The service's handler, shown only the event types its policies name: an event it has
/// not declared is skipped, so what the docs draw from the declaration is what runs.
struct Declared<H> {
    flows: &'static ServiceFlows,
    handler: H,
}

#[derive(Clone, Copy)]
enum Outcome {
    Handled,
    Duplicate,
    Ignored,
}

impl Outcome {
    /// The `outcome` label of the consumed-events metric.
    fn label(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

pub(crate) async fn run<H: EventHandler>(
    rt: Arc<ServiceRuntime>,
    group: String,
    flows: &'static ServiceFlows,
    handler: H,
) {
    let topics = flows.topics();
    let handler = Declared { flows, handler };
    let member = format!("{group}-{}", rt.settings.instance_id);
    let mut subscription = loop {
        match rt.bus.subscribe(&group, &member, &topics).await {
            Ok(subscription) => break subscription,
            Err(error) => {
                tracing::warn!(%error, group, "cannot subscribe yet, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = rt.shutdown.cancelled() => return,
                }
            }
        }
    };
    let mut lag_report = LagReport::default();
    // Reading the bus or committing a batch failed: the batch is read again after a wait.
    let mut trouble = Trouble::new(format!("consumer group {group}"));
    while !rt.shutdown.is_cancelled() {
        let batch = tokio::select! {
            batch = subscription.next_batch(BATCH, IDLE_WAIT) => batch,
            _ = rt.shutdown.cancelled() => break,
        };
        let handled = match batch {
            Ok(batch) => {
                handle_batch(
                    &rt,
                    &group,
                    &handler,
                    subscription.as_mut(),
                    &batch,
                    &mut lag_report,
                )
                .await
            }
            Err(error) => Err(error.into()),
        };
        match handled {
            Ok(()) => trouble.succeeded(),
            Err(error) => {
                let wait = trouble.failed(&error);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = rt.shutdown.cancelled() => break,
                }
            }
        }
    }
    if let Err(error) = subscription.close().await {
        tracing::warn!(%error, group, "leaving the consumer group failed");
    }
}

/// Why a batch was left uncommitted, to be read again.
#[derive(Debug, thiserror::Error)]
enum Uncommitted {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the service's database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("shutdown came while the storage was failing")]
    ShutDown,
}

async fn handle_batch<H: EventHandler>(
    rt: &ServiceRuntime,
    group: &str,
    handler: &Declared<H>,
    subscription: &mut dyn Subscription,
    batch: &[Record],
    lag_report: &mut LagReport,
) -> Result<(), Uncommitted> {
    let handled_together = batch.len() > 1
        && match handle_together(rt, group, handler, batch).await {
            Ok(outcomes) => {
                for (record, (outcome, took)) in batch.iter().zip(outcomes) {
                    count(rt, group, record, outcome, took);
                }
                rt.outbox.wake();
                true
            }
            Err(error) => {
                tracing::info!(%error, group, "a batch failed; handling its events one by one");
                false
            }
        };
    for record in batch.iter().filter(|_| !handled_together) {
        let span = consuming(rt, group, record);
        let trace = span.context();
        let log_span = tracing::info_span!(
            "consume",
            service = rt.name,
            group,
            topic = record.topic,
            event_type = record.envelope.event_type,
            event_id = %record.envelope.id,
            trace_id = %trace.trace_id_hex(),
            span_id = %trace.span_id_hex(),
            trace_sampled = trace.sampled,
        );
        let handled = span
            .scope(handle_with_retries(rt, group, handler, record, &span))
            .instrument(log_span)
            .await;
        if let Err(error) = &handled {
            span.fail(error.to_string());
        }
        handled?;
    }
    if !batch.is_empty() {
        rt.faults.maybe_crash(CrashPoint::BeforeOffsetCommit);
    }
    subscription.commit(batch).await?;
    if lag_report.due(batch.is_empty()) {
        let lags = subscription.lag().await?;
        *lag_report = LagReport {
            at: Some(Instant::now()),
            behind: lags.iter().any(|lag| lag.lag > 0),
        };
        for lag in lags {
            rt.metrics
                .consumer_lag
                .get_or_create(&LagLabels {
                    topic: lag.topic,
                    group: group.to_owned(),
                    partition: lag.partition,
                })
                .set(lag.lag);
        }
    }
    Ok(())
}

/// Handles a whole batch in one transaction: one commit for many events, which is what
/// keeps a busy consumer from being bound by commits. Any failure rolls all of it back,
/// and the caller handles the events one by one instead, with retries and dead letters.
/// Each outcome comes with the event's time: its own handling plus an equal share of
/// the transaction's begin and commit.
async fn handle_together<H: EventHandler>(
    rt: &ServiceRuntime,
    group: &str,
    handler: &Declared<H>,
    batch: &[Record],
) -> Result<Vec<(Outcome, Duration)>, HandlerError> {
    // Each event's span is a child of its publication, in its own trace; the one
    // transaction they share is a span of its own, linked to all of them.
    let spans: Vec<Span> = batch
        .iter()
        .map(|record| consuming(rt, group, record))
        .collect();
    let contexts: Vec<TraceContext> = spans.iter().map(Span::context).collect();
    let shared = rt
        .tracer
        .start_linked("handle batch", SpanKind::Internal, &contexts);
    shared.set("messaging.batch.message_count", batch.len() as i64);
    let started = Instant::now();
    let handled: Result<Vec<(Outcome, Duration)>, HandlerError> = shared
        .scope(async {
            let mut tx = rt.db.begin_write().await?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for (record, span) in batch.iter().zip(&spans) {
                let delivery = Delivery {
                    envelope: &record.envelope,
                    trace: span.context(),
                };
                let handling = Instant::now();
                let outcome = handle_in(&mut tx, group, handler, &delivery).await?;
                outcomes.push((outcome, handling.elapsed()));
            }
            tx.commit().await?;
            Ok(outcomes)
        })
        .await;
    if let Err(error) = &handled {
        let why = format!("rolled back with its batch, to be handled alone: {error}");
        for span in spans.iter().chain([&shared]) {
            span.fail(why.clone());
        }
    }
    // Each event's time, and an equal share of the transaction's begin and commit.
    let outcomes = handled?;
    let handling: Duration = outcomes.iter().map(|(_, took)| *took).sum();
    let share = started.elapsed().saturating_sub(handling) / batch.len().max(1) as u32;
    Ok(outcomes
        .into_iter()
        .map(|(outcome, took)| (outcome, took + share))
        .collect())
}

/// The span of handling `record`: a child of the span that published it.
fn consuming(rt: &ServiceRuntime, group: &str, record: &Record) -> Span {
    let publication = record
        .envelope
        .traceparent
        .as_deref()
        .and_then(TraceContext::parse);
    let span = rt.tracer.start(
        format!("process {}", record.topic),
        SpanKind::Consumer,
        publication,
    );
    describe_event(&span, rt.bus.system(), &record.topic, &record.envelope);
    span.set("messaging.operation.type", "process");
    span.set("messaging.consumer.group.name", group.to_owned());
    span
}

async fn handle_with_retries<H: EventHandler>(
    rt: &ServiceRuntime,
    group: &str,
    handler: &Declared<H>,
    record: &Record,
    span: &Span,
) -> Result<(), Uncommitted> {
    let delivery = Delivery {
        envelope: &record.envelope,
        trace: span.context(),
    };
    let max_attempts = rt.settings.consumer_max_attempts;
    let mut attempt = 0;
    let mut storage_failures = 0;
    let (attempts, last_error) = loop {
        let attempt_started = Instant::now();
        let error = match handle_once(rt, group, handler, &delivery).await {
            Ok(outcome) => {
                match outcome {
                    Outcome::Handled => rt.outbox.wake(),
                    Outcome::Duplicate => tracing::info!("duplicate delivery skipped"),
                    Outcome::Ignored => {}
                }
                count(rt, group, record, outcome, attempt_started.elapsed());
                return Ok(());
            }
            Err(error) => error,
        };
        let wait = match &error {
            // The storage's fault, not the event's: waited out however long it lasts (its
            // health logs it once), and never a reason to dead-letter the event.
            HandlerError::Database(cause) if is_storage_failure(cause) => {
                rt.db.health().observe(cause);
                storage_failures += 1;
                backoff(storage_failures, TROUBLE_MAX_WAIT)
            }
            _ => {
                attempt += 1;
                tracing::warn!(%error, attempt, max_attempts, "handling an event failed");
                // An event that cannot be decoded or stored fails the same way every
                // time: retrying would only hold up the partition behind it.
                if attempt >= max_attempts || cannot_succeed(&error) {
                    break (attempt, error.to_string());
                }
                backoff(attempt, HANDLER_MAX_WAIT)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rt.shutdown.cancelled() => return Err(Uncommitted::ShutDown),
        }
    };
    tracing::error!(error = last_error, "event moved to the dead-letter topic");
    span.fail(format!(
        "dead-lettered after {attempts} attempts: {last_error}"
    ));
    let dead_letter = DeadLettered {
        group: group.to_owned(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        attempts,
        error: last_error,
        failed_at: chrono::Utc::now(),
        event: record.envelope.clone(),
    };
    let announcement = delivery.answer(rt.name, &record.envelope.subject, &dead_letter);
    let mut tx = rt.db.begin_write().await?;
    dead_letters::record(&mut tx, &announcement, &dead_letter).await?;
    rt.commit(tx).await?;
    rt.dead_letters_changed();
    count_consumed(rt, group, record, "dead_lettered");
    Ok(())
}

/// Whether retrying `error` is pointless: the event does not decode, or its data cannot
/// be stored.
fn cannot_succeed(error: &HandlerError) -> bool {
    match error {
        HandlerError::Decode(_) => true,
        HandlerError::Database(error) => is_data_error(error),
        HandlerError::Failed(_) => false,
    }
}

async fn handle_once<H: EventHandler>(
    rt: &ServiceRuntime,
    group: &str,
    handler: &Declared<H>,
    delivery: &Delivery<'_>,
) -> Result<Outcome, HandlerError> {
    let mut tx = rt.db.begin_write().await?;
    let outcome = handle_in(&mut tx, group, handler, delivery).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Records the event in the inbox and, unless it was there already, lets the handler
/// apply it: both in `conn`'s transaction.
async fn handle_in<H: EventHandler>(
    conn: &mut Tx,
    group: &str,
    handler: &Declared<H>,
    delivery: &Delivery<'_>,
) -> Result<Outcome, HandlerError> {
    if !handler.flows.reacts_to(&delivery.envelope.event_type) {
        return Ok(Outcome::Ignored);
    }
    if !inbox::first_delivery(conn, group, delivery.envelope.id).await? {
        return Ok(Outcome::Duplicate);
    }
    handler.handler.handle(conn, delivery).await?;
    Ok(Outcome::Handled)
}

/// Counts an event taken with `outcome`; when the handler ran, also the time it took
/// (`took`, its transaction included). A skipped event's time would only tell how fast
/// the inbox says "seen".
fn count(rt: &ServiceRuntime, group: &str, record: &Record, outcome: Outcome, took: Duration) {
    count_consumed(rt, group, record, outcome.label());
    if let Outcome::Handled = outcome {
        rt.metrics
            .event_handler_duration
            .get_or_create(&HandlerLabels {
                topic: record.topic.clone(),
                group: group.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

fn count_consumed(rt: &ServiceRuntime, group: &str, record: &Record, outcome: &'static str) {
    rt.metrics
        .events_consumed
        .get_or_create(&ConsumedLabels {
            topic: record.topic.clone(),
            group: group.to_owned(),
            outcome,
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use contracts::{
        Envelope,
        events::{DeadLettered, OrderCancelled, OrderConfirmed},
        topics,
    };
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::{Delivery, EventHandler, HandlerError, LAG_REPORT_EVERY, LagReport};
    use crate::{
        ServiceRuntime,
        bus::{EventBus, OutgoingEvent, embedded::EmbeddedLog},
        config::{ChassisSettings, DatabaseLocation, Durability},
        db::Tx,
        flows::{EventRef, Policy, ServiceFlows, Subdomain},
    };

    const FLOWS: ServiceFlows = ServiceFlows {
        service: "svc",
        subdomain: Subdomain::Supporting,
        aggregate: None,
        commands: &[],
        policies: &[Policy {
            name: "Note confirmations",
            on: &[EventRef::of::<OrderConfirmed>()],
            emits: &[],
        }],
        read_models: &[],
        calls: &[],
    };

    /// Fails every event whose subject is "poison"; records the others it handled, in the
    /// transaction it is given (as real handlers do), but an "unstorable" one breaks a
    /// NOT NULL constraint.
    struct PoisonSensitive;

    impl EventHandler for PoisonSensitive {
        async fn handle(&self, tx: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
            if delivery.envelope.subject == "poison" {
                return Err(HandlerError::Failed("cannot digest poison".into()));
            }
            let id =
                Some(delivery.envelope.id).filter(|_| delivery.envelope.subject != "unstorable");
            crate::execute!(
                tx,
                sqlx::query("INSERT INTO handled (event_id) VALUES ($1)").bind(id)
            )?;
            Ok(())
        }
    }

    #[test]
    fn lag_left_at_the_last_measure_is_measured_again_while_idle_and_caught_up_never() {
        let long_ago = std::time::Instant::now() - LAG_REPORT_EVERY;
        let never = LagReport::default();
        assert!(never.due(false), "after the first batch");
        assert!(!never.due(true), "idle from the start");
        let behind = LagReport {
            at: Some(long_ago),
            behind: true,
        };
        assert!(
            behind.due(true),
            "idle, events were left at the last measure"
        );
        let caught_up = LagReport {
            at: Some(long_ago),
            behind: false,
        };
        assert!(!caught_up.due(true), "idle and caught up");
        assert!(caught_up.due(false), "after a batch");
        let just_now = LagReport {
            at: Some(std::time::Instant::now()),
            behind: true,
        };
        assert!(
            !just_now.due(false) && !just_now.due(true),
            "at most every second"
        );
    }

    fn event(subject: &str) -> OutgoingEvent {
        let id = Uuid::now_v7();
        OutgoingEvent {
            topic: topics::ORDER.into(),
            envelope: Envelope::new("test", subject, &OrderConfirmed { order_id: id }, id),
        }
    }

    #[tokio::test]
    async fn a_poison_event_goes_to_the_dead_letter_topic_and_the_rest_flow_on() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(
            EmbeddedLog::open(&dir.path().join("bus.db"), Durability::Normal, 1)
                .await
                .unwrap(),
        );
        let settings = ChassisSettings {
            body_limit_bytes: 1024,
            request_timeout_ms: 1000,
            header_timeout_ms: 1000,
            shutdown_deadline_ms: 1000,
            max_connections: 10,
            operations_port: None,
            bus: crate::config::BusLocation::Embedded,
            db: DatabaseLocation::Embedded,
            db_max_connections: 2,
            bus_partitions: 1,
            bus_session_timeout_ms: 45_000,
            consumer_max_attempts: 3,
            instance_id: "0".into(),
            tokens: crate::auth::TokenSettings {
                jwks_url: "http://127.0.0.1:9/jwks".into(),
                jwks_refresh_secs: 300,
                max_token_lifetime_secs: 900,
                issuer: "test".into(),
                audience: "test".into(),
            },
            tracing: crate::spans::TracingSettings {
                otel_exporter_otlp_endpoint: None,
                otel_service_name: None,
                otel_traces_sampler: crate::spans::SamplerName::ParentbasedAlwaysOn,
                otel_traces_sampler_arg: None,
                span_store_capacity: 100,
            },
            sqlite_synchronous: Durability::Normal,
            environment: Some(crate::faults::Environment::Test),
            faults: String::new(),
        };
        let rt = ServiceRuntime::start(
            "svc",
            settings,
            dir.path(),
            bus.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        rt.db
            .apply_schema("CREATE TABLE handled (event_id BLOB NOT NULL)", "")
            .await
            .unwrap();
        let handled = || async {
            let mut conn = rt.db.read().await.unwrap();
            crate::on_conn!(&mut conn, c => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM handled")
                .fetch_one(c)
                .await
                .unwrap())
        };
        let first = event("fine");
        let id = Uuid::now_v7();
        let undeclared = OutgoingEvent {
            topic: topics::ORDER.into(),
            envelope: Envelope::new("test", "fine", &OrderCancelled { order_id: id }, id),
        };
        bus.publish(vec![
            first.clone(),
            event("poison"),
            event("unstorable"),
            undeclared,
            event("fine"),
            first,
        ])
        .await
        .unwrap();
        rt.consume(&FLOWS, PoisonSensitive);

        let mut dead_letters = bus
            .subscribe(
                "inspector",
                "i",
                &[&topics::dead_letter(topics::ORDER, "svc")],
            )
            .await
            .unwrap();
        let mut records = Vec::new();
        while records.len() < 2 {
            let batch = dead_letters
                .next_batch(10, Duration::from_secs(10))
                .await
                .unwrap();
            assert!(!batch.is_empty(), "dead letters: {records:?}");
            dead_letters.commit(&batch).await.unwrap();
            records.extend(batch);
        }
        let dead: Vec<DeadLettered> = records
            .iter()
            .map(|record| record.envelope.decode().unwrap())
            .collect();
        assert_eq!(dead[0].event.subject, "poison");
        assert_eq!(dead[0].attempts, 3, "a handler's failure may pass: retried");
        assert_eq!(dead[0].error, "cannot digest poison");
        assert_eq!(dead[1].event.subject, "unstorable");
        assert_eq!(dead[1].attempts, 1, "data that cannot be stored: at once");
        assert!(dead[1].error.contains("NOT NULL"), "{}", dead[1].error);

        for _ in 0..200 {
            if handled().await >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            handled().await,
            2,
            "both fine events once each; the redelivered first one and the undeclared \
             OrderCancelled are skipped"
        );
        let series = |name: &str| {
            let metrics = rt.metrics.render();
            metrics
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        };
        assert_eq!(
            series("mall_event_handler_duration_seconds_count"),
            2.0,
            "the handler's time, for the events it handled"
        );
        for _ in 0..200 {
            if series("mall_dead_letters{") == 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(series("mall_dead_letters{"), 2.0);
        rt.shutdown.cancel();
        rt.stopped().await;
    }
}
