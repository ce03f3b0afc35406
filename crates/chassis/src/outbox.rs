//! Transactional outbox: a service stores the events a change causes in the same
//! transaction as the change; the relay publishes them after commit and only then forgets
//! them. A crash between publish and forget publishes again, which the consumers' inbox
//! absorbs: delivery is at least once, the effect exactly once.

use std::{sync::Arc, time::Duration};

use contracts::Envelope;
use sqlx::AssertSqlSafe;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{BusError, EventBus, OutgoingEvent},
    db::{AsConn, Database},
    execute,
    faults::{CrashPoint, Faults},
    on_conn,
    retry::Trouble,
    spans::{self, Span, SpanKind, Tracer},
    telemetry::{Metrics, TopicLabels},
    trace::TraceContext,
};

/// The outbox table, for SQLite and for PostgreSQL.
pub(crate) const SCHEMA: (&str, &str) = (
    "CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        envelope TEXT NOT NULL,
        created_at_us INTEGER NOT NULL
    );",
    "CREATE TABLE IF NOT EXISTS outbox (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic TEXT NOT NULL,
        envelope TEXT NOT NULL,
        created_at_us BIGINT NOT NULL
    );",
);

/// Most events the relay publishes in one go.
const RELAY_BATCH: i64 = 500;
/// How long the relay keeps trying to drain the outbox once shutdown began.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// The relay also looks on its own this often, for rows a crashed run left behind.
const RELAY_IDLE_CHECK: Duration = Duration::from_secs(1);

/// Stores `envelope` for publication on `topic` once the surrounding transaction commits.
pub async fn enqueue(
    conn: &mut impl AsConn,
    topic: &str,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    let envelope = serde_json::to_string(envelope).expect("envelopes always serialise");
    let now = chrono::Utc::now().timestamp_micros();
    execute!(
        conn,
        sqlx::query("INSERT INTO outbox (topic, envelope, created_at_us) VALUES ($1, $2, $3)")
            .bind(topic)
            .bind(&envelope)
            .bind(now)
    )?;
    Ok(())
}

/// Tells the relay that a committed transaction left events in the outbox.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("outbox row {seq} is unreadable: {source}")]
    Corrupt { seq: i64, source: serde_json::Error },
}

/// Publishes the outbox of `tracer`'s service until `shutdown`, then flushes what is left
/// once more.
pub(crate) async fn relay(
    db: Database,
    bus: Arc<dyn EventBus>,
    signal: OutboxSignal,
    metrics: Arc<Metrics>,
    faults: Faults,
    tracer: Tracer,
    shutdown: CancellationToken,
) {
    let mut trouble = Trouble::new(format!("the {} outbox relay", tracer.service()));
    loop {
        let wait = match publish_pending(&db, bus.as_ref(), &metrics, &faults, &tracer).await {
            Ok(published) => {
                trouble.succeeded();
                if published == RELAY_BATCH as usize {
                    continue;
                }
                RELAY_IDLE_CHECK
            }
            // A full disk or an absent broker: tried again later, logged once.
            Err(error) => trouble.failed(&error),
        };
        tokio::select! {
            _ = signal.0.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // The last flush is bounded: with the bus unreachable, what is left stays in the
    // outbox for the next start rather than holding up the shutdown.
    let flush = async {
        while let Ok(published) =
            publish_pending(&db, bus.as_ref(), &metrics, &faults, &tracer).await
        {
            if published == 0 {
                break;
            }
        }
    };
    if tokio::time::timeout(FINAL_FLUSH, flush).await.is_err() {
        tracing::warn!("outbox not drained at shutdown; the next start publishes the rest");
    }
}

/// A producer span for `event`, under the work that caused it (its `traceparent`), which
/// the event then carries instead: its consumers' spans are children of its publication.
fn publishing(
    tracer: &Tracer,
    system: &'static str,
    mut event: OutgoingEvent,
) -> (OutgoingEvent, Span) {
    let cause = event
        .envelope
        .traceparent
        .as_deref()
        .and_then(TraceContext::parse);
    let span = tracer.start(
        format!("publish {}", event.topic),
        SpanKind::Producer,
        cause,
    );
    describe_event(&span, system, &event.topic, &event.envelope);
    span.set("messaging.operation.type", "send");
    event.envelope.traceparent = Some(span.context().to_string());
    (event, span)
}

/// The attributes of a span that published or handled `envelope` on `topic`.
pub(crate) fn describe_event(span: &Span, system: &'static str, topic: &str, envelope: &Envelope) {
    span.set("messaging.system", system);
    span.set("messaging.destination.name", topic.to_owned());
    span.set("messaging.message.id", envelope.id.to_string());
    span.set(spans::CONVERSATION_ID, envelope.correlation_id.to_string());
    span.set("mall.event.type", envelope.event_type.clone());
    span.set("mall.event.subject", envelope.subject.clone());
}

async fn publish_pending(
    db: &Database,
    bus: &dyn EventBus,
    metrics: &Metrics,
    faults: &Faults,
    tracer: &Tracer,
) -> Result<usize, RelayError> {
    // No connection is held while publishing: with the bus slow or down that takes
    // seconds, and the pool is shared with the service's requests.
    let rows: Vec<(i64, String, String)> = on_conn!(&mut db.read().await?, c =>
        sqlx::query_as("SELECT seq, topic, envelope FROM outbox ORDER BY seq LIMIT $1")
            .bind(RELAY_BATCH)
            .fetch_all(c)
            .await)?;
    if rows.is_empty() {
        metrics.outbox_backlog.set(0);
        return Ok(0);
    }
    let events = rows
        .iter()
        .map(|(seq, topic, envelope)| {
            Ok(OutgoingEvent {
                topic: topic.clone(),
                envelope: serde_json::from_str(envelope)
                    .map_err(|source| RelayError::Corrupt { seq: *seq, source })?,
            })
        })
        .collect::<Result<Vec<_>, RelayError>>()?;
    let (events, spans): (Vec<OutgoingEvent>, Vec<Span>) = events
        .into_iter()
        .map(|event| publishing(tracer, bus.system(), event))
        .unzip();
    faults.maybe_crash(CrashPoint::BeforePublish);
    if let Err(error) = bus.publish(events).await {
        for span in &spans {
            span.fail(error.to_string());
        }
        return Err(error.into());
    }
    drop(spans);
    faults.maybe_crash(CrashPoint::AfterPublish);
    // Exactly the rows published: on PostgreSQL a row with a lower seq can commit later
    // than the ones read, so "everything up to the last seq" could take an unpublished one.
    let published = rows
        .iter()
        .map(|(seq, _, _)| seq.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let delete = format!("DELETE FROM outbox WHERE seq IN ({published})");
    let mut tx = db.begin_write().await?;
    execute!(&mut tx, sqlx::raw_sql(AssertSqlSafe(delete.clone())))?;
    tx.commit().await?;
    for (_, topic, _) in &rows {
        metrics
            .events_published
            .get_or_create(&TopicLabels {
                topic: topic.clone(),
            })
            .inc();
    }
    let backlog: i64 = on_conn!(&mut db.read().await?, c =>
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(c).await)?;
    metrics.outbox_backlog.set(backlog);
    Ok(rows.len())
}
