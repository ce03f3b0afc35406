//! The dead letters of a service's consumer group: kept in the service's own database
//! (and published to `<topic>.dlq.<group>` through the outbox, in the same transaction),
//! listed at `GET /admin/dlq` and replayed with `POST /admin/dlq/{id}/replay`.
//!
//! A replay puts the original event back on its topic through the outbox. Every other
//! group has it in its inbox already and skips it; this group's failed attempts were
//! rolled back, so it handles it anew. If it fails again it becomes a new dead letter.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use contracts::{Envelope, events::DeadLettered, topics};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    ServiceRuntime,
    auth::Admin,
    db::{self, Database, Tx},
    execute, on_conn, outbox,
    problem::Problem,
    telemetry::{GroupLabels, Metrics},
};

/// How often the dead-letter gauge is read again for what other processes did (another
/// instance of the service, `mall admin dlq replay`); this process's own changes show at
/// once.
const RECOUNT_EVERY: Duration = Duration::from_secs(5);

/// The dead letter table, for SQLite and for PostgreSQL.
pub(crate) const SCHEMA: (&str, &str) = (
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id BLOB PRIMARY KEY,
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        position INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        failed_at_us INTEGER NOT NULL,
        envelope TEXT NOT NULL,
        replayed_at_us INTEGER
    );",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id UUID PRIMARY KEY,
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition BIGINT NOT NULL,
        position BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        error TEXT NOT NULL,
        failed_at_us BIGINT NOT NULL,
        envelope TEXT NOT NULL,
        replayed_at_us BIGINT
    );",
);

/// Stores the dead letter `announcement` carries and puts the announcement in the outbox
/// for the dead-letter topic; both commit with `conn`'s transaction.
pub(crate) async fn record(
    conn: &mut Tx,
    announcement: &Envelope,
    dead: &DeadLettered,
) -> Result<(), sqlx::Error> {
    let event = serde_json::to_string(&dead.event).expect("envelopes always serialise");
    execute!(
        &mut *conn,
        sqlx::query(
            "INSERT INTO dead_letters (id, grp, topic, partition, position, attempts, error,
                                       failed_at_us, envelope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(announcement.id)
        .bind(&dead.group)
        .bind(&dead.topic)
        .bind(i64::from(dead.partition))
        .bind(dead.offset)
        .bind(i64::from(dead.attempts))
        .bind(&dead.error)
        .bind(dead.failed_at.timestamp_micros())
        .bind(&event)
    )?;
    outbox::enqueue(
        conn,
        &topics::dead_letter(&dead.topic, &dead.group),
        announcement,
    )
    .await
}

/// Keeps `mall_dead_letters{group}` at the number of `group`'s dead letters not yet
/// replayed, until `shutdown`. A count that fails leaves the last one (the storage's
/// failure shows in its own metrics and readiness).
pub(crate) async fn count(
    db: Database,
    group: String,
    metrics: Arc<Metrics>,
    mut changed: watch::Receiver<()>,
    shutdown: CancellationToken,
) {
    let gauge = metrics.dead_letters.get_or_create_owned(&GroupLabels {
        group: group.clone(),
    });
    loop {
        match unreplayed(&db, &group).await {
            Ok(count) => {
                gauge.set(count);
            }
            Err(error) => tracing::debug!(%error, group, "counting the dead letters failed"),
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(RECOUNT_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn unreplayed(db: &Database, group: &str) -> Result<i64, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM dead_letters WHERE grp = $1 AND replayed_at_us IS NULL",
        )
        .bind(group)
        .fetch_one(c)
        .await)
}

/// An event a consumer group gave up on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Id of the dead letter (of its `DeadLettered` announcement).
    pub id: Uuid,
    /// The consumer group (service) that could not handle the event.
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub attempts: u32,
    /// The last handler error.
    pub error: String,
    pub failed_at: DateTime<Utc>,
    /// Set once an operator replayed it.
    pub replayed_at: Option<DateTime<Utc>>,
    /// The event itself: its envelope.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// Dead letters, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
    /// Services that could not be asked (through the gateway); empty otherwise.
    pub unavailable: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    grp: String,
    topic: String,
    partition: i64,
    position: i64,
    attempts: i64,
    error: String,
    failed_at_us: i64,
    envelope: String,
    replayed_at_us: Option<i64>,
}

impl From<Row> for DeadLetter {
    fn from(row: Row) -> Self {
        let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
        DeadLetter {
            id: row.id,
            group: row.grp,
            topic: row.topic,
            partition: row.partition as u32,
            offset: row.position,
            attempts: row.attempts as u32,
            error: row.error,
            failed_at: time(row.failed_at_us),
            replayed_at: row.replayed_at_us.map(time),
            event: serde_json::from_str(&row.envelope).unwrap_or_default(),
        }
    }
}

/// `GET /admin/dlq` and `POST /admin/dlq/{id}/replay`, documented.
pub fn routes(rt: Arc<ServiceRuntime>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letter))
        .with_state(rt)
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no dead letter with id {0} here")]
    NotFound(Uuid),
    #[error("dead letter {0} was replayed already")]
    Replayed(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for DlqError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            DlqError::NotFound(_) => Problem::not_found(detail),
            DlqError::Replayed(_) => Problem::new(
                StatusCode::CONFLICT,
                "already-replayed",
                "The dead letter was replayed already",
                detail,
            ),
            DlqError::Database(error) => Problem::database(&error),
        }
        .into_response()
    }
}

/// Lists the events consumer groups gave up on, newest first (admin).
#[utoipa::path(get, path = "/admin/dlq", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dead letters", body = DeadLetterList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_dead_letters(
    State(rt): State<Arc<ServiceRuntime>>,
    _admin: Admin,
) -> Result<Json<DeadLetterList>, DlqError> {
    Ok(Json(DeadLetterList {
        dead_letters: list(&rt.db).await?,
        unavailable: vec![],
    }))
}

/// The service's dead letters, newest first.
pub async fn list(db: &Database) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut conn = db.read().await?;
    let rows: Vec<Row> = on_conn!(&mut conn, c =>
        sqlx::query_as("SELECT * FROM dead_letters ORDER BY failed_at_us DESC")
            .fetch_all(c)
            .await)?;
    Ok(rows.into_iter().map(DeadLetter::from).collect())
}

/// Puts a dead letter's event back on its topic for its group to handle again, once the
/// cause is fixed (admin). Other groups skip it: they handled it already.
#[utoipa::path(post, path = "/admin/dlq/{id}/replay", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "Replayed: the event is on its topic again", body = DeadLetter),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Replayed already", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not found in the services that answered, and one could not be asked (through the gateway)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replay_dead_letter(
    State(rt): State<Arc<ServiceRuntime>>,
    _admin: Admin,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<DeadLetter>), DlqError> {
    let replayed = replay(&rt.db, id).await?;
    rt.outbox.wake();
    rt.dead_letters_changed();
    Ok((StatusCode::ACCEPTED, Json(replayed)))
}

/// Marks the dead letter replayed and puts its event in the outbox for its topic, in one
/// transaction; the service's relay publishes it.
pub async fn replay(db: &Database, id: Uuid) -> Result<DeadLetter, DlqError> {
    let mut tx = db.begin_write().await?;
    db::lock(&mut tx, id).await?;
    let row: Option<Row> = on_conn!(&mut tx, c =>
        sqlx::query_as("SELECT * FROM dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await)?;
    let row = row.ok_or(DlqError::NotFound(id))?;
    if row.replayed_at_us.is_some() {
        return Err(DlqError::Replayed(id));
    }
    let now = Utc::now();
    execute!(
        &mut tx,
        sqlx::query("UPDATE dead_letters SET replayed_at_us = $1 WHERE id = $2")
            .bind(now.timestamp_micros())
            .bind(id)
    )?;
    let envelope: Envelope =
        serde_json::from_str(&row.envelope).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    outbox::enqueue(&mut tx, &row.topic, &envelope).await?;
    tx.commit().await?;
    tracing::warn!(%id, group = row.grp, event_id = %envelope.id, "dead letter replayed");
    let mut replayed = DeadLetter::from(row);
    replayed.replayed_at = Some(now);
    Ok(replayed)
}
